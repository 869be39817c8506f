"""A node's copy of the chat, advanced only by the log (docs/cluster.md): every node
runs every entry, in log order, through the same pure core, so every node assigns the
same message ids and decides every conflict (two new accounts with one name, the
20-an-hour limit, three reporters) the same way, by the order.

A prototype of the design's "apply" step, built on the real core without changing it,
to show that property on real commands; not used by the daemon yet. What it leaves
out, and the core changes that need, are in docs/cluster.md ("What building the rest
takes"): commands whose handling draws random values (join links, bearer tokens,
password salts) are not replicated deterministically yet, so entries carry only
commands without them.

An entry (`LogEntry.entries`) is a list of items, each a JSON object:
`{"session": n, "open": "<peer address>"}` opens session n of the appending node,
`{"session": n, "line": "<command line>"}` runs a command in it (a line the origin
already parsed without error), `{"session": n, "close": true}` ends it, and
`{"tick": true}` runs the timed work due (scheduled messages, retention): appended by
the one timekeeper, so a schedule fires at the first tick past its time, once, on every
node. The entry's `at` is the time every node runs it at (never earlier than the
previous entry's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chatd.cluster.log import LogEntry
from chatd.config import Config
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.core.snapshot import Snapshot
from chatd.protocol.commands import parse
from chatd.protocol.events import Message


@dataclass(frozen=True, slots=True)
class Applied:
    """What one item did: on its origin node, the outcome's replies go to that
    session; every node fans out the outcome's deliveries to its own sessions."""

    node: str
    session: int  # the session's number on its node (0: a tick)
    outcome: Outcome


class Replica:
    """The chat state of one node, fed the log's entries in order, each at most once."""

    def __init__(
        self,
        config: Config,
        snapshot: Snapshot,
        *,
        after: int = 0,
        read: Callable[[Sequence[int]], list[Message]] | None = None,
    ) -> None:
        self.chat = Chat(config, snapshot, started=0.0, read=read)
        self.position = after  # the last entry applied
        self._now = 0.0
        self._sessions: dict[tuple[str, int], Session] = {}
        self._opened = 0  # sessions get core ids in log order: the same on every node

    def apply(self, entry: LogEntry) -> list[Applied]:
        """Runs one entry; an entry at or below `position` was applied already."""
        if entry.pos <= self.position:
            return []
        now = self._now = max(self._now, entry.at)
        done = [self._item(entry.node, item, now) for item in entry.entries]
        self.position = entry.pos
        return [a for a in done if a is not None]

    def _item(self, node: str, item: dict[str, Any], now: float) -> Applied | None:
        if item.get("tick"):
            return Applied(node, 0, self.chat.tick(now))
        key = (node, int(item["session"]))
        if "open" in item:
            self._opened += 1
            self._sessions[key] = Session(self._opened, str(item["open"]), now)
            return None
        session = self._sessions[key]
        if item.get("close"):
            del self._sessions[key]
            return Applied(node, key[1], self.chat.close(session, now))
        outcome = self.chat.handle(session, parse(str(item["line"])), now)
        while outcome.deferred is not None and not outcome.deferred.paced:
            step = outcome.deferred  # slow work, run here: its result decides the rest
            outcome.deferred = None
            outcome.extend(step.resume(step.work(), now))
        return Applied(node, key[1], outcome)
