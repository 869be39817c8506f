"""One TCP connection: bytes in, commands to the core, outcomes to the hub.

An asyncio Protocol, not a stream task: data_received frames and handles every complete
line at once, so pipelined commands cost no extra loop turns. Replies stay in order
because the hub releases output batch by batch. Only password hashing makes a
connection wait; its later lines are held, and reading pauses, until the hash is done.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, cast

from chatd import __version__, logs
from chatd.core.flood import TokenBucket
from chatd.core.outcome import Deferred, Outcome
from chatd.protocol.commands import Download, ParseError, Upload, parse
from chatd.protocol.events import Code, Error, Notice
from chatd.protocol.framing import FrameError, LineFramer
from chatd.server.peer import Peer

if TYPE_CHECKING:
    from chatd.server.daemon import Daemon
    from chatd.server.uploads import UploadSession

log = logs.get_logger("chatd.connection")

GREETING = f"* chatd {__version__} ready; type help, or login <name> [password]\n".encode()


class Connection(asyncio.Protocol):
    # Slots: ten thousand idle connections are ten thousand of these.
    __slots__ = (
        "_backlog",
        "_bytes_in",
        "_daemon",
        "_flood",
        "_flood_timer",
        "_framer",
        "_login_timer",
        "_upload",
        "_waiting",
        "flood_holds",
        "ip",
        "peer",
    )

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon
        self._framer = LineFramer(daemon.config.limits.max_line_bytes)
        self._backlog: deque[str | FrameError] | None = None  # lines held while waiting
        self._waiting = False
        self._login_timer: asyncio.TimerHandle | None = None
        self._bytes_in = daemon.metrics.bytes_in  # resolved once: one add per chunk
        limits = daemon.config.limits
        self._flood = TokenBucket(limits.flood_burst, limits.flood_rate_per_s, daemon.loop.time())
        self._flood_timer: asyncio.TimerHandle | None = None
        self.flood_holds = 0  # times this connection was paused by the flood guard
        self._upload: UploadSession | None = None  # upload mode: lines are its data
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
            d.metrics.connections_refused.value += 1
            d.metrics.error(Code.SERVER_BUSY)
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
        transport.write(GREETING)
        d.metrics.bytes_out.value += len(GREETING)
        self._login_timer = d.loop.call_later(limits.login_timeout_s, self._login_timeout)
        log.info("session.opened", session=peer.id, peer=self.ip)

    def data_received(self, data: bytes) -> None:
        self._bytes_in.value += len(data)
        if self.peer is None or self.peer.closing:
            return
        items = self._framer.feed(data)
        if self._waiting:
            assert self._backlog is not None
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
        if self._flood_timer is not None:
            self._flood_timer.cancel()
        if self._upload is not None:
            self._upload.abort()
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
        queue = items if isinstance(items, deque) else deque(items)
        while queue:
            if peer.closing:
                return
            if self._upload is not None:  # upload mode: data lines, exempt from the flood guard
                if self._upload_lines(queue):
                    return
                continue
            if not self._flood.take(d.loop.time()):
                self._hold(queue)
                return
            item = queue.popleft()
            if isinstance(item, FrameError):
                hub.apply(peer, _error(item.code, item.message, None))
                continue
            try:
                cmd = parse(item)
            except ParseError as e:
                if e.cmd == "upload":  # its data follows anyway: skip it, answer after `.`
                    self._upload = d.files.upload(peer, e)
                    continue
                hub.apply(peer, _error(e.code, e.message, e.cmd))
                continue
            if isinstance(cmd, Upload):
                self._upload = d.files.upload(peer, cmd)
                continue
            if isinstance(cmd, Download):
                self._wait_for(d.files.download(self, cmd), queue)
                return
            out = chat.handle(peer, cmd, d.clock())
            deferred = out.deferred
            hub.apply(peer, out)
            if out.rearm:
                d.rearm()
            if deferred is not None:
                self._defer(deferred, queue)
                return
        if peer.account is not None and self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None

    def _park(self, rest: deque[str | FrameError]) -> None:
        """Stops reading and holds `rest` (and whatever arrives meanwhile) until
        `_resume`: later lines wait for slow work so replies stay in order."""
        self._waiting = True
        if self._backlog:
            rest.extend(self._backlog)
        self._backlog = rest
        peer = self.peer
        if peer is not None and peer.transport is not None and peer.transport.is_reading():
            peer.transport.pause_reading()

    def _take_backlog(self) -> deque[str | FrameError]:
        backlog, self._backlog = self._backlog or deque(), None
        return backlog

    def _resume(self) -> None:
        self._waiting = False
        peer = self.peer
        if peer is None or peer.closing:
            return
        if peer.transport is not None:
            peer.transport.resume_reading()
        self._run(self._take_backlog())

    def _defer(self, deferred: Deferred, rest: deque[str | FrameError]) -> None:
        """Runs slow pure work (password hashing) off the loop."""
        self._park(rest)
        peer = self.peer
        assert peer is not None
        d = self._daemon
        fut = d.loop.run_in_executor(d.workers, deferred.work)

        def done(f: asyncio.Future[object]) -> None:
            if peer.closing:
                return
            out = deferred.resume(f.result(), d.clock())
            d.hub.apply(peer, out)
            if out.deferred is not None:  # e.g. the name was taken meanwhile: verify instead
                self._defer(out.deferred, self._take_backlog())
                return
            self._resume()

        fut.add_done_callback(done)

    def _upload_lines(self, queue: deque[str | FrameError]) -> bool:
        """Gives the upload its data lines from `queue`; True when the connection now
        waits for the upload to be stored (its `.` came)."""
        upload = self._upload
        assert upload is not None
        if not upload.feed(queue):
            return False
        self._upload = None
        waiter = upload.finish()
        if waiter is None:
            return False
        self._wait_for(waiter, queue)
        return True

    def _wait_for(self, waiter: asyncio.Future[None], rest: deque[str | FrameError]) -> None:
        """Holds later lines until `waiter` is done (an upload being stored, a download
        being read)."""
        self._park(rest)
        waiter.add_done_callback(lambda _: self._resume())

    def _hold(self, rest: deque[str | FrameError]) -> None:
        """Flood guard: over its command budget, a connection is slowed, not refused.
        Reading pauses (TCP pushes back on the client) until the bucket has refilled
        for the queued lines, or a tenth of a burst, so no connection keeps the loop
        busy and the wake-ups stay few."""
        self.flood_holds += 1
        self._park(rest)
        loop = self._daemon.loop
        need = min(len(self._backlog or ()), max(1, int(self._flood.capacity) // 10))
        self._flood_timer = loop.call_later(self._flood.wait(loop.time(), need), self._unhold)

    def _unhold(self) -> None:
        self._flood_timer = None
        self._resume()

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

    def set_flood(self, burst: int, rate_per_s: float) -> None:
        """New flood-guard limits (a config reload); the tokens held stay."""
        self._flood.capacity, self._flood.rate = float(burst), float(rate_per_s)


def _error(code: Code, message: str, cmd: str | None) -> Outcome:
    log.info("command.failed", cmd=cmd, code=str(code))
    return Outcome(replies=[Error(code, message, cmd)])
