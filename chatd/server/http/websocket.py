"""GET /ws: the line protocol in JSON mode over a WebSocket, one object per text frame.

After the handshake the socket is a session like an nc connection: a Peer in JSON mode
with its own Pipeline. Each text message from the client is one command line (a message
holding several lines is several commands); each JSON line the hub writes becomes one
text frame. The first message may be `login ...`, or the upgrade request carries
`?token=` from POST /connect and the session starts logged in.

wsproto parses the client's frames (masking, fragments, control frames, close
handshake). The server's text frames are built here instead: the hub writes the same
bytes to every session of a chat, so the frames of one write are built once and reused
for every WebSocket that gets the same bytes (fan-out costs one slice per recipient).
"""

from __future__ import annotations

import asyncio
import struct
from typing import TYPE_CHECKING

from wsproto.connection import Connection as WsConnection
from wsproto.connection import ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.utilities import generate_accept_token

from chatd import logs
from chatd.core import tokens
from chatd.core.outcome import Outcome
from chatd.core.state import Refused
from chatd.protocol.events import Code
from chatd.protocol.framing import FrameError
from chatd.protocol.http import HttpError
from chatd.protocol.notices import LoginTimeout
from chatd.server.peer import Peer
from chatd.server.pipeline import Pipeline

if TYPE_CHECKING:
    from chatd.server.http.connection import HttpConnection, Request, Response
    from chatd.server.http.door import HttpDoor

log = logs.get_logger("chatd.http")

REVOKED = 4401  # close code (application range): the session's token was revoked


def text_frames(data: bytes) -> bytes:
    """Unmasked server text frames, one per line of `data` (JSON Lines)."""
    out = []
    for line in data.split(b"\n"):
        if not line:
            continue
        n = len(line)
        if n < 126:
            out.append(b"\x81" + bytes((n,)))
        elif n < 65536:
            out.append(b"\x81\x7e" + struct.pack("!H", n))
        else:
            out.append(b"\x81\x7f" + struct.pack("!Q", n))
        out.append(line)
    return b"".join(out)


class FrameCache:
    """The frames of the last bytes written: a fan-out writes one bytes object to
    many sessions, so each is framed once."""

    __slots__ = ("_in", "_out")

    def __init__(self) -> None:
        self._in: bytes | None = None
        self._out = b""

    def frames(self, data: bytes) -> bytes:
        if data is not self._in:
            self._out = text_frames(data)
            self._in = data
        return self._out


def accept_websocket(conn: HttpConnection, req: Request) -> Response | None:
    """The handshake (RFC 6455): checks the upgrade request, answers 101, hands the
    socket to a WebSocket session."""
    upgrade = (req.header(b"upgrade") or "").lower()
    key = req.header(b"sec-websocket-key")
    version = req.header(b"sec-websocket-version")
    if upgrade != "websocket" or not key:
        raise HttpError(Code.BAD_ARGS, "GET /ws needs a WebSocket upgrade")
    if version != "13":
        raise HttpError(Code.BAD_ARGS, "WebSocket version 13 only")
    door = conn.door
    peer = door.new_peer(conn.ip)
    token = req.route.query.get("token")
    out: Outcome | None = None
    if token:
        acct = door.account_for(token)
        ctx = door.ctx
        try:
            out = tokens.attach(ctx.chat, peer, acct, ctx.clock())
        except Refused as e:
            raise HttpError(e.code, e.message, retry_after=e.retry_after) from e
    ws = WebSocket(door, conn, peer)
    if token:
        door.token_socket(token, ws)  # closed when the token is revoked
    response = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + generate_accept_token(key.encode()) + b"\r\n\r\n"
    )
    conn.upgraded(ws, response)
    if out is not None:
        door.ctx.apply(peer, out)  # the login OK, replay and notices, as frames
    else:
        ws.start_login_timer()
    log.info("http.websocket", session=peer.id, user=peer.account.name if peer.account else None)
    return None


class WebSocket:
    """One WebSocket session; also its Peer's transport (the hub writes JSON Lines)."""

    __slots__ = (
        "_close_code",
        "_conn",
        "_door",
        "_login_timer",
        "_parts",
        "_reading",
        "_size",
        "peer",
        "pipeline",
        "token",
        "ws",
    )

    def __init__(self, door: HttpDoor, conn: HttpConnection, peer: Peer) -> None:
        self._door = door
        self._conn = conn
        self.peer = peer
        self.ws = WsConnection(ConnectionType.SERVER)
        self.pipeline = Pipeline(door.ctx, peer)
        self._parts: list[str] = []
        self._size = 0
        self._reading = True
        self._login_timer: asyncio.TimerHandle | None = None
        self._close_code = (1000, "")
        self.token: str | None = None  # the digest of the ?token= it logged in with
        peer.transport = self  # type: ignore[assignment]  # the transport's subset

    # From the client ---------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        self.ws.receive_data(data)
        items: list[str | FrameError] = []
        limit = self._door.ctx.config.limits.max_line_bytes
        for event in self.ws.events():
            if isinstance(event, TextMessage):
                self._size += len(event.data)
                if self._size <= limit:
                    self._parts.append(event.data)
                if event.message_finished:
                    if self._size > limit:
                        items.append(
                            FrameError(Code.LINE_TOO_LONG, f"a message may be {limit} bytes")
                        )
                    else:
                        items.extend(x for x in "".join(self._parts).split("\n") if x.strip())
                    self._parts, self._size = [], 0
            elif isinstance(event, BytesMessage):
                if event.message_finished:
                    items.append(
                        FrameError(
                            Code.BAD_ENCODING, "send text frames (UTF-8 JSON Lines commands)"
                        )
                    )
            elif isinstance(event, Ping):
                self._raw(self.ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if self.ws.state is ConnectionState.REMOTE_CLOSING:
                    self._raw(self.ws.send(event.response()))
                self._close_socket()
                return
        if items:
            self.pipeline.feed(items)
        if self.peer.account is not None and self._login_timer is not None:
            self._login_timer.cancel()
            self._login_timer = None

    def eof(self) -> bool:
        return False

    def lost(self, exc: Exception | None) -> None:
        peer = self.peer
        if self._login_timer is not None:
            self._login_timer.cancel()
        self._door.socket_gone(self)
        self.pipeline.close()
        peer.lost(clean=exc is None)
        ctx = self._door.ctx
        ctx.apply(None, ctx.chat.close(peer, ctx.clock()))

    def start_login_timer(self) -> None:
        timeout = self._door.ctx.config.limits.login_timeout_s
        self._login_timer = self._door.loop.call_later(timeout, self._login_timeout)

    def _login_timeout(self) -> None:

        peer = self.peer
        if peer.account is None and not peer.closing:
            timeout = self._door.ctx.config.limits.login_timeout_s
            notice = LoginTimeout(f"{timeout:g}")
            self._door.ctx.apply(peer, Outcome(closes=[(peer, notice)]))

    def revoked(self) -> None:
        """Its token was revoked (DELETE /session): the session logs out and the
        socket closes with code REVOKED, which tells a client not to reconnect
        with that token."""
        peer = self.peer
        if peer.closing or self.ws.state is not ConnectionState.OPEN:
            return
        self._close_code = (REVOKED, "the token was revoked; POST /connect again")
        self._door.ctx.apply(peer, Outcome(closes=[(peer, None)]))

    # The Peer's transport --------------------------------------------------------------

    def write(self, data: bytes) -> None:
        transport = self._conn.transport
        if transport is not None:
            transport.write(self._door.frames.frames(data))

    def _raw(self, data: bytes) -> None:
        transport = self._conn.transport
        if transport is not None and data:
            transport.write(data)

    def close(self) -> None:
        """The hub closes the session (quit, kick, shutdown, slow reader)."""
        if self.ws.state is ConnectionState.OPEN:
            code, reason = self._close_code
            self._raw(self.ws.send(CloseConnection(code=code, reason=reason or None)))
        self._close_socket()

    def _close_socket(self) -> None:
        transport = self._conn.transport
        if transport is not None:
            transport.close()

    def abort(self) -> None:
        transport = self._conn.transport
        if transport is not None:
            transport.abort()

    def get_write_buffer_size(self) -> int:
        transport = self._conn.transport
        return transport.get_write_buffer_size() if transport is not None else 0

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False
        transport = self._conn.transport
        if transport is not None:
            transport.pause_reading()

    def resume_reading(self) -> None:
        self._reading = True
        transport = self._conn.transport
        if transport is not None:
            transport.resume_reading()

    def is_closing(self) -> bool:
        transport = self._conn.transport
        return transport is None or transport.is_closing()

    def get_extra_info(self, name: str, default: object = None) -> object:
        transport = self._conn.transport
        return transport.get_extra_info(name, default) if transport is not None else default

    def pause_writing(self) -> None:
        self.peer.paused = True

    def resume_writing(self) -> None:
        self.peer.drained(self._door.ctx.config.limits.send_buffer_bytes)
