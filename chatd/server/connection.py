"""The line door: one TCP connection (plain, TLS or telnet) speaking the line protocol.

An asyncio Protocol, not a stream task: data_received frames every complete line at
once and feeds them to the session's Pipeline, so pipelined commands cost no extra
loop turns. What is door-specific stays here: framing and telnet, the greeting, the
login timeout, and a half-close (`nc -N`): the client's EOF ends its input, every
command it sent is still answered, then the server closes.
"""

from __future__ import annotations

import asyncio
from typing import Protocol, cast

from chatd import __version__, logs
from chatd.core.outcome import Outcome
from chatd.protocol.events import Code
from chatd.protocol.framing import LineFramer
from chatd.protocol.notices import LoginTimeout
from chatd.server.acks import Acks, CountingTransport
from chatd.server.context import Context
from chatd.server.peer import Peer
from chatd.server.pipeline import END, Pipeline

log = logs.get_logger("chatd.connection")

GREETING = f"* chatd {__version__} ready; type help, or login <name> [password]\n".encode()
#: With `auth.require_password` new accounts need a password, and the greeting says so.
GREETING_PASSWORD = f"* chatd {__version__} ready; type help, or login <name> <password>\n".encode()


class DoorConnection(Protocol):
    """What the server keeps of any door's connection (line, IRC, WebSocket): its
    address, its session, and new limits at a config reload."""

    ip: str
    peer: Peer | None

    def set_limits(
        self, max_line_bytes: int, flood_burst: int, flood_rate_per_s: float
    ) -> None: ...


class Doorman(Protocol):
    """What a connection asks of the server around its session (the Daemon does it):
    may this address connect, a new session id, and the open/close bookkeeping."""

    def admit(self, ip: str) -> str | None: ...
    def next_session_id(self) -> int: ...
    def opened(self, conn: DoorConnection) -> None: ...
    def closed(self, conn: DoorConnection) -> None: ...


class Connection(asyncio.Protocol):
    # Slots: ten thousand idle connections are ten thousand of these.
    __slots__ = (
        "_bytes_in",
        "_ctx",
        "_door",
        "_framer",
        "_login_timer",
        "_raw",
        "_telnet_door",
        "_telnet_port",
        "ip",
        "peer",
        "pipeline",
    )

    def __init__(
        self, ctx: Context, door: Doorman, *, telnet: bool = False, telnet_port: int = 0
    ) -> None:
        """`telnet`: this is the telnet door (BINARY offered at connect). `telnet_port`:
        where a user whose telnet mangles 8-bit text should connect instead."""
        self._ctx = ctx
        self._door = door
        self._telnet_door = telnet
        self._telnet_port = telnet_port
        self._framer = LineFramer(ctx.config.limits.max_line_bytes)
        self._login_timer: asyncio.TimerHandle | None = None
        self._raw: asyncio.Transport | None = None  # the socket's, without CRLF
        self._bytes_in = ctx.metrics.bytes_in  # resolved once: one add per chunk
        self.peer: Peer | None = None
        self.pipeline: Pipeline | None = None
        self.ip = ""

    @property
    def flood_holds(self) -> int:
        return self.pipeline.flood_holds if self.pipeline is not None else 0

    # asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)  # uvloop's is not a subclass
        self._raw = transport
        ctx = self._ctx
        peername = transport.get_extra_info("peername")
        self.ip = str(peername[0]) if isinstance(peername, tuple) else "local"
        refusal = self._door.admit(self.ip)
        if refusal is not None:
            ctx.metrics.connections_refused.value += 1
            ctx.metrics.error(Code.SERVER_BUSY)
            transport.write(f"ERR {Code.SERVER_BUSY} {refusal}\n".encode())
            transport.close()
            log.info("session.refused", peer=self.ip, reason=refusal)
            return
        limits = ctx.config.limits
        acks: Acks | None = None
        sock = transport.get_extra_info("socket")
        if (
            ctx.config.chat.received == "acknowledged"
            and sock is not None
            and transport.get_extra_info("sslcontext") is None
        ):
            counted = CountingTransport(transport)
            acks = Acks(counted, sock.fileno())
            transport = cast(asyncio.Transport, counted)
            self._raw = transport
        peer = Peer(
            self._door.next_session_id(),
            self.ip,
            ctx.clock(),
            transport=transport,
            buffer_limit=limits.send_buffer_bytes,
            acks=acks,
        )
        self.peer = peer
        self.pipeline = Pipeline(ctx, peer)
        if self._telnet_port:
            here = transport.get_extra_info("sockname")
            host = here[0] if isinstance(here, tuple) else "HOST"
            self._framer.hint = (
                f"for 8-bit text (Russian, emoji) use: telnet {host} {self._telnet_port}"
            )
        self._door.opened(self)
        # Pause at any unsent byte: pause/resume then tell exactly when the kernel took
        # everything written, which is when delivered messages count as received.
        transport.set_write_buffer_limits(high=0)
        greeting = GREETING_PASSWORD if ctx.config.auth.require_password else GREETING
        if self._telnet_door:
            self._framer.telnet.offer_binary()
            self._speak_telnet(peer)
            greeting = self._telnet_answers() + greeting.replace(b"\n", b"\r\n")
        transport.write(greeting)
        ctx.metrics.bytes_out.value += len(greeting)
        self._login_timer = ctx.loop.call_later(limits.login_timeout_s, self._login_timeout)
        log.info("session.opened", session=peer.id, peer=self.ip, telnet=self._telnet_door)

    def data_received(self, data: bytes) -> None:
        self._bytes_in.value += len(data)
        peer, pipeline = self.peer, self.pipeline
        if peer is None or pipeline is None or peer.closing:
            return
        items = self._framer.feed(data)
        telnet = self._framer.telnet
        if telnet.out and self._raw is not None and peer.transport is not None:
            if not isinstance(peer.transport, CrlfTransport):
                self._speak_telnet(peer)  # its first IAC: this client is telnet
            self._raw.write(self._telnet_answers())
        pipeline.feed(items)
        if peer.account is not None and self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None

    def eof_received(self) -> bool:
        """The client will send nothing more (`nc -N`, a script's stdin ending): answer
        every command it sent, then close. An unterminated last line is not a command:
        a client that died mid-line must not post half a message."""
        peer, pipeline = self.peer, self.pipeline
        if peer is None or pipeline is None:
            return False
        peer.settle()  # the socket is still open: ask what the client acknowledged
        if not peer.closing:  # closing (`quit`): the hub closes once the replies are out
            pipeline.feed([END])
        return True  # keep our side open for the replies

    def connection_lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if peer is None:
            return
        if self._login_timer is not None:
            self._login_timer.cancel()
        if self.pipeline is not None:
            self.pipeline.close()
        peer.lost(clean=exc is None)
        self._door.closed(self)
        log.info("session.closed", session=peer.id, error=str(exc) if exc else None)

    def pause_writing(self) -> None:
        if self.peer is not None:
            self.peer.paused = True

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None:
            peer.drained(self._ctx.config.limits.send_buffer_bytes)
            if self.pipeline is not None:
                self.pipeline.drained()

    # ---------------------------------------------------------------------------------

    def _speak_telnet(self, peer: Peer) -> None:
        if peer.transport is not None:
            peer.transport = cast(asyncio.Transport, CrlfTransport(peer.transport))

    def _telnet_answers(self) -> bytes:
        out = self._framer.telnet.out
        data = bytes(out)
        out.clear()
        self._ctx.metrics.bytes_out.value += len(data)
        return data

    def _login_timeout(self) -> None:
        peer = self.peer
        if peer is None or peer.account is not None or peer.closing:
            return
        timeout = self._ctx.config.limits.login_timeout_s
        log.info("session.login_timeout", session=peer.id, peer=self.ip)
        notice = LoginTimeout(f"{timeout:g}")
        self._ctx.apply(peer, Outcome(closes=[(peer, notice)]))

    def set_limits(self, max_line_bytes: int, flood_burst: int, flood_rate_per_s: float) -> None:
        """New limits after a config reload."""
        self._framer.max_line_bytes = max_line_bytes
        if self.pipeline is not None:
            self.pipeline.set_flood(flood_burst, flood_rate_per_s)


class CrlfTransport:
    """A transport whose newlines go out as CR LF, telnet's newline (RFC 854): once
    BINARY is on, Debian's telnet leaves the terminal raw and a bare LF would make
    every line start where the last one ended. Only telnet sessions pay for this."""

    __slots__ = ("_transport",)

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def write(self, data: bytes) -> None:
        # The leading CR: the terminal echoed the user's Enter as a bare LF too.
        self._transport.write(b"\r" + data.replace(b"\n", b"\r\n"))

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)
