"""The daemon's counters: what it counts per message, write and error, for Prometheus
(chatd/server/metrics.py renders them) and the admin `stats` reply."""

from __future__ import annotations

from collections.abc import Callable

from chatd.protocol.events import GENERAL, Code
from chatd.server.metrics import ChatdMetrics, Counter, Registry

#: Chat kinds, the `kind` label of the message counters.
KINDS = ("general", "room", "private")


def chat_kind(chat: str) -> str:
    """`general`, `room` or `private` for a chat key (`#general`, `#room`, `@a|b`)."""
    if chat == GENERAL:
        return "general"
    return "private" if chat.startswith("@") else "room"


class ServerMetrics:
    """The daemon's counters, children resolved once so each event is one attribute add.

    Gauges that the daemon already knows (connections, sessions, users online) are read
    at scrape time through `watch`, so they cost nothing between scrapes.
    """

    __slots__ = (
        "_errors",
        "bytes_in",
        "bytes_out",
        "chatd",
        "connections_accepted",
        "connections_refused",
        "delivered",
        "errors",
        "registry",
        "sent",
    )

    def __init__(self, registry: Registry | None = None) -> None:
        m = ChatdMetrics.create(registry)
        reg = m.registry
        self.chatd = m
        self.registry = reg
        self.connections_accepted = m.connections_accepted
        self.connections_refused = reg.counter(
            "chatd_connections_refused_total",
            "Connections refused with server-busy (limits or shutdown).",
        )
        self.sent: dict[str, Counter] = {k: m.messages_sent.labels(k) for k in KINDS}
        delivered = reg.counter_family(
            "chatd_messages_delivered_total",
            "Messages written live to sessions (each session counts once), by chat kind.",
            ("kind",),
        )
        self.delivered: dict[str, Counter] = {k: delivered.labels(k) for k in KINDS}
        self._errors = m.errors
        self.errors: dict[str, Counter] = {str(c): m.errors.labels(str(c)) for c in Code}
        self.bytes_in = reg.counter("chatd_bytes_received_total", "Bytes read from clients.")
        self.bytes_out = reg.counter("chatd_bytes_sent_total", "Bytes written to clients.")

    def error(self, code: str) -> None:
        """Counts one error reply; codes are a small fixed set (the protocol's tokens)."""
        counter = self.errors.get(code)
        if counter is None:
            counter = self.errors[code] = self._errors.labels(code)
        counter.value += 1

    def snapshot(self) -> dict[str, float]:
        """The server's counters as flat names, e.g. for the admin `stats` reply."""
        out: dict[str, float] = {
            "connections_accepted": self.connections_accepted.value,
            "connections_refused": self.connections_refused.value,
            "bytes_in": self.bytes_in.value,
            "bytes_out": self.bytes_out.value,
            "errors": sum(c.value for c in self.errors.values()),
            "store_commits": self.chatd.store_commit_seconds.count,
        }
        for kind in KINDS:
            out[f"messages_sent_{kind}"] = self.sent[kind].value
            out[f"messages_delivered_{kind}"] = self.delivered[kind].value
        return out

    def watch(
        self,
        *,
        connections: Callable[[], float],
        sessions: Callable[[], float],
        users: Callable[[], float],
        messages: Callable[[], float],
        accounts: Callable[[], float],
        slow_consumers: Callable[[], float],
    ) -> None:
        """Registers the values read at scrape time; call once, when the daemon has them."""
        reg = self.registry
        reg.gauge_callback("chatd_connections_open", "Client connections open.", connections)
        reg.gauge_callback("chatd_sessions_online", "Logged-in sessions.", sessions)
        reg.gauge_callback("chatd_users_online", "Users with at least one session.", users)
        reg.gauge_callback("chatd_messages_stored", "Messages held (before retention).", messages)
        reg.gauge_callback("chatd_accounts", "Accounts registered.", accounts)
        reg.counter_callback(
            "chatd_slow_consumers_total",
            "Sessions closed because they stopped reading (send buffer over its limit).",
            slow_consumers,
        )
