"""Listeners and what comes with them: the doors' sockets (plain, TLS, socket
activation by name), the systemd notify protocol and watchdog, and the metrics endpoint.

Kept apart from daemon.py so the daemon reads as the chat server it is, and so the
pieces here stay no-ops when nothing asks for them: without NOTIFY_SOCKET nothing is
sent, without LISTEN_FDS the configured addresses are bound, without `[tls] port` and
`[metrics] port` no extra listener exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

from chatd import logs
from chatd.cluster.forward import Handoff
from chatd.config import Config, ConfigError
from chatd.server.counters import ServerMetrics
from chatd.server.metrics import LoopLagProbe
from chatd.server.metrics import start_metrics_server as _start_metrics_server
from chatd.server.passed import behind_proxy
from chatd.server.systemd import ListenSocket, Notifier, Watchdog, listen_fds
from chatd.server.tls import load_certificate, server_context

log = logs.get_logger("chatd.listeners")

BACKLOG = 65535  # the kernel caps it at net.core.somaxconn; a login storm needs the room
#: Socket-activation names that are not the plain line protocol (docs/operations.md).
NOT_LINE_SOCKETS = frozenset(
    {"tls", "metrics", "telnet", "telnet-tls", "http", "http-tls", "irc", "irc-tls"}
)
#: A TLS client that never answers close_notify holds its connection this long at most.
TLS_SHUTDOWN_TIMEOUT_S = 5.0


class Operations:
    """Listeners, systemd and metrics for one Daemon; see the module docstring.

    `prepare` (before the store loads, so a bad TLS file fails fast), `listen`, then
    `ready` once serving; `stopping` when shutdown begins and `close` at its end.
    """

    def __init__(
        self, metrics: ServerMetrics, environ: MutableMapping[str, str] | None = None
    ) -> None:
        self.metrics = metrics
        self._environ = environ
        self.notifier = Notifier(None)
        self._inherited: list[ListenSocket] = []
        self._tls: ssl.SSLContext | None = None
        self._watchdog: Watchdog | None = None
        self._lag = LoopLagProbe(metrics.chatd.loop_lag_seconds)
        self._metrics_server: asyncio.Server | None = None
        self.port = 0
        self.tls_port = 0
        self.metrics_port = 0
        self.door_ports: dict[str, int] = {}  # "http", "http-tls", "irc", "telnet", ...
        # Each open door's protocol factory by name ("line", "tls", "http", "irc-tls",
        # ...): connections passed on by other nodes are served by them (cluster/forward.py).
        self.factories: dict[str, Callable[[], asyncio.Protocol]] = {}
        self._proxy_from: tuple[str, ...] = ()  # server.proxy_protocol_from

    def prepare(self, config: Config) -> None:
        """Reads systemd's environment and builds the TLS context. Raises ConfigError."""
        self.notifier = Notifier.from_env(self._environ)
        self._proxy_from = config.server.proxy_protocol_from
        try:
            self._inherited = listen_fds(self._environ)
        except ValueError as e:
            raise ConfigError(f"socket activation: {e}") from e
        tls = config.tls
        tls_named = [s.name for s in self._inherited if s.name.endswith("tls")]
        if tls_named and not (tls.cert and tls.key):
            raise ConfigError(
                f"a socket named {tls_named[0]} was passed, but tls.cert and tls.key are not set"
            )
        if tls.port or config.http.tls_port or config.irc.tls_port or tls_named:
            self._tls = server_context(tls.cert, tls.key)

    @property
    def tls_context(self) -> ssl.SSLContext | None:
        """The server's TLS context once `prepare` built one (a standby's doors use it)."""
        return self._tls

    @property
    def activated(self) -> bool:
        """Whether systemd passed the listening sockets (socket activation)."""
        return bool(self._inherited)

    def _named(self, name: str) -> list[ListenSocket]:
        return [s for s in self._inherited if s.name == name]

    async def listen(
        self, config: Config, factory: Callable[[], asyncio.Protocol]
    ) -> list[asyncio.Server]:
        """Serves the inherited sockets by name (`tls`, `metrics`, anything else is plain),
        and binds the configured address of each listener that got no socket."""
        loop = asyncio.get_running_loop()
        plain = [s for s in self._inherited if s.name not in NOT_LINE_SOCKETS]
        proxied = behind_proxy(factory, self._proxy_from)
        servers = [
            await loop.create_server(proxied, sock=s.sock, backlog=BACKLOG) for s in plain
        ] or [
            await loop.create_server(
                proxied, config.server.host, config.server.port, backlog=BACKLOG
            )
        ]
        self.port = _port(servers[0])
        self.factories["line"] = factory
        tls_servers: list[asyncio.Server] = []
        if self._tls is not None:
            # asyncio calls connection_made only after the handshake, so the login
            # timeout does not cover a client that never completes one: this does.
            timeout = config.limits.login_timeout_s
            tls_servers = [
                await loop.create_server(
                    factory,
                    sock=s.sock,
                    backlog=BACKLOG,
                    ssl=self._tls,
                    ssl_handshake_timeout=timeout,
                    ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S,
                )
                for s in self._named("tls")
            ] or [
                await loop.create_server(
                    factory,
                    config.tls.host or config.server.host,
                    config.tls.port,
                    backlog=BACKLOG,
                    ssl=self._tls,
                    ssl_handshake_timeout=timeout,
                    ssl_shutdown_timeout=TLS_SHUTDOWN_TIMEOUT_S,
                )
            ]
            self.tls_port = _port(tls_servers[0])
            self.factories["tls"] = factory
        for server in (*servers, *tls_servers):
            for sock in server.sockets:
                _keepalive(sock)
        metrics_sock = self._named("metrics")
        if config.metrics.port or metrics_sock:
            self._metrics_server = await _start_metrics_server(
                config.metrics.host,
                config.metrics.port,
                self.metrics.registry.render,
                sock=metrics_sock[0].sock if metrics_sock else None,
            )
            self.metrics_port = _port(self._metrics_server)
        self._lag.start()
        log.info(
            "server.listeners",
            plain=_addresses(servers),
            tls=_addresses(tls_servers),
            metrics=_addresses([self._metrics_server] if self._metrics_server else []),
            activated=[s.name for s in self._inherited],
        )
        return servers + tls_servers

    async def listen_door(
        self,
        name: str,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
        *,
        tls_port: int = 0,
        handshake_timeout: float = 60.0,
    ) -> list[asyncio.Server]:
        """Listeners of one more door (`telnet`, `http`, `irc`): the inherited sockets
        named `name` and `name-tls`, else `host:port` and `host:tls_port` when non-zero.
        The door's port numbers are kept in `door_ports` (tests bind port 0)."""
        loop = asyncio.get_running_loop()
        servers: list[asyncio.Server] = []
        for label, want, ssl_ctx in ((name, port, None), (f"{name}-tls", tls_port, self._tls)):
            named = self._named(label)
            extra: dict[str, Any] = {}
            if ssl_ctx is not None:
                extra = {
                    "ssl": ssl_ctx,
                    "ssl_handshake_timeout": handshake_timeout,
                    "ssl_shutdown_timeout": TLS_SHUTDOWN_TIMEOUT_S,
                }
            elif label.endswith("-tls") and (want or named):
                raise ConfigError(f"{label} needs tls.cert and tls.key")
            # A PROXY header comes before TLS's own bytes: only plain doors read one.
            made = factory if ssl_ctx is not None else behind_proxy(factory, self._proxy_from)
            if named:
                got = [
                    await loop.create_server(made, sock=s.sock, backlog=BACKLOG, **extra)
                    for s in named
                ]
            elif want:
                got = [await loop.create_server(made, host, want, backlog=BACKLOG, **extra)]
            else:
                continue
            for server in got:
                for sock in server.sockets:
                    _keepalive(sock)
            self.door_ports[label] = _port(got[0])
            self.factories[label] = factory
            servers.extend(got)
            log.info("server.listeners", door=label, addresses=_addresses(got))
        return servers

    async def listen_cluster(self, config: Config) -> list[asyncio.Server]:
        """`[cluster] port`: where the other nodes pass their clients on to this one
        while it holds the lease; each connection goes to its door's factory."""
        cluster = config.cluster
        if not cluster.port:
            return []
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: Handoff(self.factories, cluster.secret), cluster.host, cluster.port
        )
        for sock in server.sockets:
            _keepalive(sock)
        log.info("server.listeners", door="cluster", addresses=_addresses([server]))
        return [server]

    def ready(self, status: Callable[[], str]) -> None:
        """READY=1 with a status line, then the watchdog (which refreshes the status)."""
        self.notifier.ready(status())
        if self._watchdog is None:
            self._watchdog = Watchdog(self.notifier, status=status)
            self._watchdog.start()

    def reloading(self) -> None:
        self.notifier.reloading()

    def reloaded(self, config: Config, status: str) -> None:
        """Picks up a renewed certificate at the same paths, then READY=1 (always: after
        RELOADING=1 systemd waits for it, also when the new file was refused)."""
        if self._tls is not None:
            try:
                load_certificate(self._tls, config.tls.cert, config.tls.key)
            except ConfigError as e:
                log.error("tls.reload_failed", error=str(e))
        self.notifier.ready(status)

    def stopping(self) -> None:
        self.notifier.stopping()

    async def close(self) -> None:
        """Ends what `listen`/`ready` started; the watchdog last, so a drain keeps pinging."""
        self._lag.stop()
        if self._metrics_server is not None:
            self._metrics_server.close()
            await self._metrics_server.wait_closed()
            self._metrics_server = None
        if self._watchdog is not None:
            self._watchdog.stop()
        self.notifier.close()


def _port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


def _addresses(servers: Iterable[asyncio.Server]) -> list[str]:
    out = []
    for server in servers:
        for sock in server.sockets:
            name = sock.getsockname()
            out.append(f"{name[0]}:{name[1]}" if isinstance(name, tuple) else str(name))
    return out


def _keepalive(sock: Any) -> None:
    """TCP keepalive and no-delay on a listening socket. Linux copies these options to
    every accepted socket, which saves five syscalls per connection in a login storm.
    Keepalive finds dead peers in about two minutes instead of the kernel's two hours."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 6)
