"""One HTTP/1.1 connection: h11 under a thin asyncio Protocol, like the line door's
Connection — bytes in, events out, no web framework.

Requests are handled strictly one after another (h11 pauses a pipelined request until
the previous response is complete), so pipelining and keep-alive need nothing more.
Limits, all `[http]` settings read live: header bytes (h11's incomplete-event limit:
431), body bytes (413, before reading when Content-Length says so; `files.max_bytes`
for uploads), a header timeout from a request's first byte to its end of headers (408),
an idle timeout between requests and between a body's chunks (closed), and connections
per address (503). A half-sent request costs one small object and one timer until
its header timeout, so a slowloris cannot tie up anything another client needs.

`GET /ws` upgrades to a WebSocket (websocket.py) that then owns the socket.
"""

from __future__ import annotations

import asyncio
import http
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import h11

from chatd import logs
from chatd.protocol.events import Code
from chatd.protocol.http import (
    BAD_REQUEST,
    TIMEOUT,
    HttpError,
    Route,
    error_body,
    error_headers,
    header,
    route,
)

if TYPE_CHECKING:
    from chatd.server.http.door import HttpDoor
    from chatd.server.http.session import Parked, TokenSession
    from chatd.server.http.websocket import WebSocket

log = logs.get_logger("chatd.http")

_REASONS = {
    400: b"Bad Request",
    408: b"Request Timeout",
    413: b"Payload Too Large",
    431: b"Request Header Fields Too Large",
    503: b"Service Unavailable",
}
WRITE_HIGH = 256 * 1024  # streamed responses wait for the socket above this
LINGER_BYTES = 8 << 20  # body bytes read and dropped after an early answer, then close


@dataclass(slots=True)
class Request:
    method: str
    target: str
    headers: list[tuple[bytes, bytes]]
    route: Route
    ip: str
    body: bytearray = field(default_factory=bytearray)
    keep_alive: bool = False  # HTTP/1.1 without `Connection: close`

    @property
    def head(self) -> bool:
        return self.method == "HEAD"

    def header(self, name: bytes) -> str | None:
        return header(self.headers, name)


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(body: bytes, status: int = 200) -> Response:
    return Response(status, body)


def error_response(e: HttpError) -> Response:
    return Response(
        e.status,
        error_body(e.code, e.message, e.retry_after),
        headers=tuple(error_headers(e.status, e.retry_after, e.allow)),
    )


class BodyReader:
    """Where a request's body goes: buffered (JSON endpoints) or streamed (uploads)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.size = 0

    def feed(self, req: Request, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise HttpError(Code.TOO_LARGE, f"the body is larger than {self.limit} bytes")
        req.body += data

    def abort(self) -> None:
        """The connection closed before the body ended."""


Handler = Callable[["HttpConnection", Request], Awaitable[Response | None]]


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "_body",
        "_close_after",
        "_drained",
        "_error",
        "_lingered",
        "_paused_reading",
        "_req",
        "_state",
        "_task",
        "_timer",
        "_write_paused",
        "door",
        "endless",
        "h11",
        "ip",
        "parked",
        "transport",
        "ws",
    )

    def __init__(self, door: HttpDoor) -> None:
        self.door = door
        self.h11 = h11.Connection(
            h11.SERVER, max_incomplete_event_size=door.settings.max_header_bytes
        )
        self.transport: asyncio.Transport | None = None
        self.ip = ""
        self._timer: asyncio.TimerHandle | None = None
        # idle: waiting for a request; head: its first bytes came; body: reading it;
        # handling: a handler runs or streams; ws: a WebSocket owns the socket.
        self._state = "idle"
        self._req: Request | None = None
        self._body: BodyReader | None = None
        self._task: asyncio.Task[None] | None = None
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._paused_reading = False
        self._close_after = False
        self._error: HttpError | None = None
        self._lingered = 0
        self.ws: WebSocket | None = None
        self.parked: tuple[TokenSession, Parked] | None = None  # a long-poll waiting
        self.endless = False  # an SSE stream is being written

    # asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, base)
        self.transport = transport
        peername = transport.get_extra_info("peername")
        self.ip = str(peername[0]) if isinstance(peername, tuple) else "local"
        refusal = self.door.admit(self.ip)
        if refusal is not None:
            self.ip = ""
            self._state = "closed"
            self._raw_error(503, Code.SERVER_BUSY, refusal)
            log.info("http.refused", peer=transport.get_extra_info("peername"), reason=refusal)
            return
        transport.set_write_buffer_limits(high=WRITE_HIGH)
        self.door.open.add(self)
        self._arm(self.door.settings.idle_timeout_s, self._idle_timeout)

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.receive(data)
            return
        if self._state == "closed":
            return
        self.h11.receive_data(data)
        if self._state == "idle":
            self._state = "head"
            self._arm(self.door.settings.header_timeout_s, self._header_timeout)
        elif self._state == "body":
            self._arm(self.door.settings.idle_timeout_s, self._idle_timeout)
        self._process()

    def eof_received(self) -> bool | None:
        if self.ws is not None:
            return self.ws.eof()
        if self.parked is not None or self.endless:
            return False  # a waiting long-poll or an SSE stream: nobody is left to read it
        self.h11.receive_data(b"")
        if self._state in ("idle", "head", "body"):
            self._process()
        return True  # keep our side open while a response is still being written

    def connection_lost(self, exc: Exception | None) -> None:
        prev = self._state
        self._state = "closed"
        self._cancel_timer()
        if self.ws is not None:
            self.ws.lost(exc)
        if self._body is not None:
            self._body.abort()
            self._body = None
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self.parked is not None:
            session, parked = self.parked
            self.parked = None
            session.unpark(parked)
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self.ip:
            self.door.left(self.ip)
            self.door.open.discard(self)
        self.transport = None
        del prev

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        if self.ws is not None:
            self.ws.resume_writing()

    # Requests ------------------------------------------------------------------------

    def _process(self) -> None:
        conn = self.h11
        while self._state in ("idle", "head", "body", "linger"):
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as e:
                status = e.error_status_hint
                code = Code.TOO_LARGE if status == 431 else BAD_REQUEST
                self._raw_error(status, code, f"malformed request: {e}")
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if self._state == "linger":
                self._linger(event)
            elif isinstance(event, h11.Request):
                self._on_request(event)
            elif isinstance(event, h11.Data):
                self._on_data(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self._on_end()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return
        # Pipelined requests wait in h11's buffer while one is handled: bounded.
        if (
            self._state == "handling"
            and not self._paused_reading
            and self.transport is not None
            and len(conn.trailing_data[0]) > self.door.settings.max_header_bytes
        ):
            self._paused_reading = True
            self.transport.pause_reading()

    def _on_request(self, event: h11.Request) -> None:
        self._state = "body"
        self._arm(self.door.settings.idle_timeout_s, self._idle_timeout)
        method = event.method.decode("ascii", "replace").upper()
        target = event.target.decode("latin-1")
        headers = [(k, v) for k, v in event.headers]
        size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in headers)
        limit = self.door.settings.max_header_bytes
        if size > limit:  # h11 only limits headers that arrive in pieces
            self._raw_error(431, Code.TOO_LARGE, f"the request headers pass {limit} bytes")
            return
        from chatd.server.http import endpoints

        try:
            req = self._req = Request(method, target, headers, route(method, target), self.ip)
            req.keep_alive = event.http_version == b"1.1" and not any(
                k == b"connection" and b"close" in v.lower() for k, v in headers
            )
            self._body = endpoints.body_reader(self, req)
        except HttpError as e:
            self._req = Request(method, target, headers, Route("error"), self.ip)
            if _has_body(headers):
                self._refuse(e)  # not worth reading: answer now, then close
            else:
                self._error = e  # answered at its end, and the connection stays
            return
        if self.h11.they_are_waiting_for_100_continue:
            self._send(h11.InformationalResponse(status_code=100, headers=[]))

    def _refuse(self, e: HttpError) -> None:
        """Answers now, before or amid the body, then closes. A client still sending
        its body would see a reset instead of the answer, so the rest of the body is
        read and dropped first (up to LINGER_BYTES, within the idle timeout), unless
        the client waits for 100-continue and so sends nothing more."""
        self._state = "handling"
        self._cancel_timer()
        self._body = None
        linger = False
        if self.h11.their_state is h11.SEND_BODY:
            self._close_after = True
            linger = not self.h11.they_are_waiting_for_100_continue
        self._respond(error_response(e))
        if linger and self.transport is not None:
            self._state = "linger"
            self._lingered = 0
            self._arm(self.door.settings.idle_timeout_s, self._close)
            self.door.loop.call_soon(self._process)
        elif self._close_after:
            self._close()

    def _linger(self, event: object) -> None:
        if isinstance(event, h11.Data):
            self._lingered += len(event.data)
            if self._lingered <= LINGER_BYTES:
                return
        self._close()

    def _on_data(self, data: bytes) -> None:
        body, req = self._body, self._req
        if body is None or req is None:
            return
        try:
            body.feed(req, data)
        except HttpError as e:
            body.abort()
            self._refuse(e)

    def _on_end(self) -> None:
        req = self._req
        if self._state != "body" or req is None:
            return
        self._state = "handling"
        self._cancel_timer()
        if self._error is not None:
            error, self._error = self._error, None
            self._respond(error_response(error))
            return
        from chatd.server.http import endpoints

        self._task = self.door.loop.create_task(self._run(endpoints.handler(req.route.name), req))

    async def _run(self, handler: Handler, req: Request) -> None:
        try:
            resp = await handler(self, req)
        except HttpError as e:
            resp = error_response(e)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("http.failed", method=req.method, path=req.target)
            resp = error_response(HttpError(Code.INTERNAL, "internal error; logged"))
        if resp is not None and self._state == "handling":
            self._respond(resp)
        elif self.parked is not None:
            self._task = None  # done: freed now rather than on the wake-up's time

    # Responses -----------------------------------------------------------------------

    def _send(self, event: h11._events.Event) -> None:
        data = self.h11.send(event)
        if data and self.transport is not None:
            self.transport.write(data)

    def _respond(self, resp: Response) -> None:
        req = self._req
        if resp.status == 304:  # no body, and no length: that of the 200 it stands for
            headers = list(resp.headers)
        else:
            headers = [
                ("Content-Type", resp.content_type),
                ("Content-Length", str(len(resp.body))),
                *resp.headers,
            ]
        if self._close_after:
            headers.append(("Connection", "close"))
        elif req is not None and req.keep_alive and self._fast_respond(req, resp, headers):
            return
        conn = self.h11
        try:  # one write, one syscall, for the whole answer
            data = conn.send(
                h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status))
            )
            if resp.body and not (req is not None and req.head):
                data += conn.send(h11.Data(data=resp.body))
            data += conn.send(h11.EndOfMessage())
            if self.transport is not None:
                self.transport.write(data)
        except h11.LocalProtocolError as e:
            log.warning("http.response_failed", error=str(e))
            self._close()
            return
        self._next_cycle()

    def answer_parked(self, body: bytes) -> None:
        """The answer of a long-poll that waited (session.py's `park`)."""
        self.parked = None
        if self._state == "handling" and self.transport is not None:
            self._respond(Response(200, body))

    def start_stream(self, status: int, headers: list[tuple[str, str]]) -> None:
        """Starts a response whose body follows in `stream` calls (SSE, downloads)."""
        self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))

    async def stream(self, data: bytes) -> bool:
        """Writes a piece of a streamed body; waits while the socket is behind. False
        when the connection is gone."""
        if self.transport is None or self._state != "handling":
            return False
        self._send(h11.Data(data=data))
        if self._write_paused:
            self._drained = self.door.loop.create_future()
            await self._drained
            self._drained = None
        return self.transport is not None

    def end_stream(self) -> None:
        if self.transport is None or self._state != "handling":
            return
        self._send(h11.EndOfMessage())
        self._next_cycle()

    def _fast_respond(self, req: Request, resp: Response, headers: list[tuple[str, str]]) -> bool:
        """A keep-alive answer written without h11's send side, which costs more than
        the rest of a long-poll's answer (building its events validates every header
        again): the bytes are built here, and a fresh h11 connection takes over the
        bytes already received (the next pipelined requests). False when h11's state
        is not the plain one (a body still coming): then h11 answers."""
        conn = self.h11
        transport = self.transport
        if (
            transport is None
            or conn.our_state is not h11.SEND_RESPONSE
            or conn.their_state is not h11.DONE
        ):
            return False
        head = [b"HTTP/1.1 %d %s\r\n" % (resp.status, _reason(resp.status))]
        head += [b"%s: %s\r\n" % (k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        head.append(b"\r\n")
        if resp.body and not req.head:
            head.append(resp.body)
        transport.write(b"".join(head))
        self._take_over()
        return True

    def can_answer_directly(self) -> bool:
        """Whether the request being handled (a long-poll about to park) may be
        answered by a bare write of a keep-alive `200` (wake.py), h11 then replaced by
        `answered_directly`: HTTP/1.1 keep-alive, not HEAD, its body read, nothing of
        the answer sent yet."""
        req, conn = self._req, self.h11
        return (
            req is not None
            and req.keep_alive
            and not req.head
            and not self._close_after
            and self._state == "handling"
            and conn.our_state is h11.SEND_RESPONSE
            and conn.their_state is h11.DONE
        )

    def answered_directly(self) -> None:
        """A parked long-poll's answer was written by the wake-up (wake.py)."""
        self.parked = None
        if self._state == "handling" and self.transport is not None:
            self._take_over()

    def _take_over(self) -> None:
        """After an answer written without h11: a fresh h11 connection takes over the
        bytes already received (the next pipelined requests)."""
        data, closed = self.h11.trailing_data
        fresh = h11.Connection(
            h11.SERVER, max_incomplete_event_size=self.door.settings.max_header_bytes
        )
        if data:
            fresh.receive_data(bytes(data))
        if closed:
            fresh.receive_data(b"")
        self.h11 = fresh
        self._req = None
        self._task = None
        self._ready_for_next()

    def _next_cycle(self) -> None:
        conn = self.h11
        self._req = None
        self._task = None
        if self._close_after and conn.their_state is h11.SEND_BODY:
            return  # _refuse lingers, then closes
        if self._close_after or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            self._close()
            return
        conn.start_next_cycle()
        self._ready_for_next()

    def _ready_for_next(self) -> None:
        data, closed = self.h11.trailing_data
        if data:  # the next pipelined request has begun
            self._state = "head"
            self._arm(self.door.settings.header_timeout_s, self._header_timeout)
        else:
            self._state = "idle"
            self._arm(self.door.settings.idle_timeout_s, self._idle_timeout)
        if self._paused_reading and self.transport is not None:
            self._paused_reading = False
            self.transport.resume_reading()
        if data or closed:
            self.door.loop.call_soon(self._process)

    def upgraded(self, ws: WebSocket, response: bytes) -> None:
        """The WebSocket handshake answer is written; from now on frames, not HTTP."""
        self._cancel_timer()
        self._state = "ws"
        self.ws = ws
        assert self.transport is not None
        self.transport.write(response)
        # Pause at any unsent byte, as the line door does: the hub's sent_id is exact.
        self.transport.set_write_buffer_limits(high=0)
        data, _closed = self.h11.trailing_data
        if data:
            ws.receive(bytes(data))

    def _raw_error(self, status: int, code: str, message: str) -> None:
        """An answer outside h11 (a malformed request, a refused connection), then close."""
        transport = self.transport
        self._state = "closed"
        self._cancel_timer()
        if transport is None:
            return
        body = error_body(code, message)
        reason = _REASONS.get(status, b"Error")
        transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s" % (status, reason, len(body), body)
        )
        transport.close()

    def close_now(self) -> None:
        """Shutdown: close once what was written has gone out."""
        if self.transport is not None and self.ws is None:
            self._close()
        elif self.transport is not None:
            self.transport.close()

    def _close(self) -> None:
        self._state = "closed"
        self._cancel_timer()
        if self.transport is not None:
            self.transport.close()

    # Timers -------------------------------------------------------------------------------

    def _arm(self, seconds: float, fn: Callable[[], None]) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.door.loop.call_later(seconds, fn)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_timeout(self) -> None:
        self._timer = None
        if self._state in ("idle", "body"):
            self._close()

    def _header_timeout(self) -> None:
        self._timer = None
        if self._state == "head":
            self._raw_error(408, TIMEOUT, "the request headers did not arrive in time")


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""
