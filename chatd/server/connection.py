"""One TCP connection: bytes in, commands to the core, outcomes to the hub.

An asyncio Protocol, not a stream task: data_received frames and handles every complete
line at once, so pipelined commands cost no extra loop turns. Replies stay in order
because the hub releases output batch by batch. Only password hashing makes a
connection wait; its later lines are held, and reading pauses, until the hash is done.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from typing import TYPE_CHECKING, cast

import structlog

from chatd.core.outcome import Deferred, Outcome
from chatd.protocol.commands import ParseError, parse
from chatd.protocol.events import Code, Error, Notice
from chatd.protocol.framing import FrameError, LineFramer
from chatd.server.hub import Peer

if TYPE_CHECKING:
    from chatd.server.daemon import Daemon

log = structlog.get_logger("chatd.connection")

GREETING = "* chatd {version} ready; type help, or login <name> [password]\n"


class Connection(asyncio.Protocol):
    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._framer = LineFramer(daemon.config.limits.max_line_bytes)
        self._backlog: deque[str | FrameError] = deque()
        self._waiting = False
        self._login_timer: asyncio.TimerHandle | None = None
        self.peer: Peer | None = None
        self.ip = ""

    # asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's is not a subclass
        d = self._daemon
        peername = transport.get_extra_info("peername")
        self.ip = str(peername[0]) if isinstance(peername, tuple) else "local"
        refusal = d.admit(self.ip)
        if refusal is not None:
            transport.write(f"ERR {Code.SERVER_BUSY} {refusal}\n".encode())
            transport.close()
            log.info("session.refused", peer=self.ip, reason=refusal)
            return
        limits = d.config.limits
        now = d.clock()
        peer = Peer(
            d.next_session_id(),
            self.ip,
            now,
            transport=transport,
            buffer_limit=limits.send_buffer_bytes,
        )
        self.peer = peer
        d.opened(self)
        # Pause at any unsent byte: pause/resume then tell exactly when the kernel took
        # everything written, which is when delivered messages count as received.
        transport.set_write_buffer_limits(high=0)
        _keepalive(transport)
        transport.write(GREETING.format(version=d.version).encode())
        self._login_timer = d.loop.call_later(limits.login_timeout_s, self._login_timeout)
        log.info("session.opened", session=peer.id, peer=self.ip)

    def data_received(self, data: bytes) -> None:
        if self.peer is None or self.peer.closing:
            return
        items = self._framer.feed(data)
        if self._waiting:
            self._backlog.extend(items)
            return
        self._run(items)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is None:
            return
        if self._login_timer is not None:
            self._login_timer.cancel()
        if exc is None and not peer.paused:
            peer.sent_id = max(peer.sent_id, peer.written_id)
        peer.transport = None
        peer.closing = True
        self._daemon.closed(self)
        log.info("session.closed", session=peer.id, error=str(exc) if exc else None)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.paused = True

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.paused = False
            peer.sent_id = max(peer.sent_id, peer.written_id)
            peer.buffer_limit = self._daemon.config.limits.send_buffer_bytes

    # Commands ------------------------------------------------------------------------

    def _run(self, items: list[str | FrameError] | deque[str | FrameError]) -> None:
        peer = self.peer
        assert peer is not None
        d = self._daemon
        chat, hub = d.chat, d.hub
        for n, item in enumerate(items):
            if peer.closing:
                return
            if isinstance(item, FrameError):
                hub.apply(peer, _error(item.code, item.message, None))
                continue
            try:
                cmd = parse(item)
            except ParseError as e:
                hub.apply(peer, _error(e.code, e.message, e.cmd))
                continue
            out = chat.handle(peer, cmd, d.clock())
            deferred = out.deferred
            hub.apply(peer, out)
            if out.changes:
                d.rearm()
            if deferred is not None:
                self._defer(deferred, list(items)[n + 1 :])
                return
        if peer.account is not None and self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None

    def _defer(self, deferred: Deferred, rest: list[str | FrameError]) -> None:
        """Runs slow work off the loop; this connection's later lines wait for it."""
        self._waiting = True
        self._backlog.extendleft(reversed(rest))
        peer = self.peer
        assert peer is not None and peer.transport is not None
        peer.transport.pause_reading()
        d = self._daemon
        fut = d.loop.run_in_executor(d.workers, deferred.work)

        def done(f: asyncio.Future[object]) -> None:
            self._waiting = False
            if peer.closing:
                return
            d.hub.apply(peer, deferred.resume(f.result(), d.clock()))
            if peer.transport is not None:
                peer.transport.resume_reading()
            backlog, self._backlog = self._backlog, deque()
            self._run(backlog)

        fut.add_done_callback(done)

    def _login_timeout(self) -> None:
        peer = self.peer
        if peer is None or peer.account is not None or peer.closing:
            return
        timeout = self._daemon.config.limits.login_timeout_s
        log.info("session.login_timeout", session=peer.id, peer=self.ip)
        self._daemon.hub.apply(
            peer, Outcome(closes=[(peer, Notice("login-timeout", {"timeout_s": f"{timeout:g}"}))])
        )

    def set_max_line(self, max_line_bytes: int) -> None:
        self._framer.max_line_bytes = max_line_bytes


def _error(code: Code, message: str, cmd: str | None) -> Outcome:
    return Outcome(replies=[Error(code, message, cmd)])


def _keepalive(transport: asyncio.Transport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
