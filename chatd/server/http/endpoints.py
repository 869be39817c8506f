"""The endpoints of HTTP.md, each an async function of (connection, request).

Every chat action is a Command fed to the token session's Pipeline (the one command
path of every door), and the answer is the reply it produced, once committed. Only
what is HTTP's own lives here: tokens, events by cursor, SSE, idempotent sends, the
raw-body upload, the download stream and static files.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
from collections.abc import Awaitable, Callable

from chatd import logs
from chatd.core.outcome import Body, UploadTicket
from chatd.protocol import commands as c
from chatd.protocol.events import Code, Error, Ok
from chatd.protocol.http import (
    MAX_EVENTS,
    NO_AUTH,
    SSE_KEEPALIVE,
    SSE_RETRY,
    HttpError,
    bearer,
    command_line,
    content_disposition,
    cursor_param,
    download_type,
    dumps,
    etag_matches,
    file_id_param,
    json_object,
    login_command,
    send_command,
    sse_event,
    static_name,
    wait_param,
)
from chatd.protocol.http_openapi import openapi_document
from chatd.protocol.render import Rendered, Renderer
from chatd.server.http.connection import (
    BodyReader,
    HttpConnection,
    Request,
    Response,
    json_response,
)
from chatd.server.http.door import HttpDoor
from chatd.server.http.session import Reply, SessionGone, TokenSession
from chatd.server.http.websocket import accept_websocket

log = logs.get_logger("chatd.http")

Handler = Callable[[HttpConnection, Request], Awaitable[Response | None]]
READ_CHUNK = 256 * 1024
MAX_UNWRITTEN = 1 << 20


def handler(name: str) -> Handler:
    return _HANDLERS[name]


def body_reader(conn: HttpConnection, req: Request) -> BodyReader:
    """How to read this request's body; raises HttpError to refuse before reading it
    (a missing token, a Content-Length over the limit, an upload the core refuses)."""
    door = conn.door
    name = req.route.name
    if name not in NO_AUTH:
        door.account_for(bearer(req.headers))  # 401 before any body is read
    limit = door.settings.max_body_bytes
    if name == "upload":
        limit = door.ctx.config.files.max_bytes
    length = req.header(b"content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise HttpError(Code.TOO_LARGE, f"the body is larger than {limit} bytes")
    if name == "upload":
        return RawUpload.begin(conn, req)
    return BodyReader(limit)


# Sessions ---------------------------------------------------------------------------


async def _with_session(
    conn: HttpConnection, req: Request, fn: Callable[[TokenSession], Awaitable[Response | None]]
) -> Response | None:
    session = conn.door.session_for(bearer(req.headers), conn.ip)
    session.use()
    try:
        return await fn(session)
    except SessionGone as e:
        raise HttpError(Code.NOT_LOGGED_IN, "the session was closed; connect again") from e
    finally:
        session.release()


def _reply_response(reply: Reply, strip: bool = False) -> Response:
    """A command's reply as HTTP: the JSON-mode object, with its status for an error
    (`strip`: the ok object's fields alone, for GET /status)."""
    if isinstance(reply, Error):
        raise HttpError(reply.code, reply.message, retry_after=reply.retry_after)
    if isinstance(reply, Rendered):
        data = reply.data.rstrip(b"\n")
        if data.startswith(b'{"type":"error"'):
            obj = json.loads(data)
            raise HttpError(obj["code"], obj["message"], retry_after=obj.get("retry_after"))
        return json_response(data)
    data = _RENDERER.json(reply).rstrip(b"\n")  # JSON mode's own rendering
    if not strip:
        return json_response(data)
    obj = json.loads(data)
    del obj["type"], obj["cmd"]
    return json_response(dumps(obj))


_RENDERER = Renderer()  # stateless for JSON (its cache is for text-mode clocks)


def _committed(door: HttpDoor) -> asyncio.Future[None]:
    """Done once everything queued so far is committed (hub.after)."""
    done: asyncio.Future[None] = door.loop.create_future()

    def after() -> None:
        if not done.done():
            done.set_result(None)

    door.ctx.hub.after(after)
    return done


# Endpoints ----------------------------------------------------------------------------


async def connect(conn: HttpConnection, req: Request) -> Response:
    """POST /connect: logs a session in through the pipeline and issues a token."""
    door = conn.door
    login = login_command(json_object(bytes(req.body)))
    session = TokenSession(door, "", door.new_peer(conn.ip))
    ctx = door.ctx
    try:
        reply = await session.submit(login)
        if not isinstance(reply, Ok):
            session.close()
            return _reply_response(reply)
        acct = session.peer.account
        assert acct is not None
        token, put = door.tokens.issue(acct, ctx.clock())
        # Durable before it is handed out: the answer waits for the token's commit.
        ctx.hub.changes([put])
        await _committed(door)
    except SessionGone as e:
        raise HttpError(Code.INTERNAL, "the session closed during login") from e
    except BaseException:  # the client went away: do not leave the session logged in
        session.close()
        raise
    door.adopt(token, session)
    session.use()
    session.release()
    body = {"token": token, **reply.fields}
    log.info("http.connected", user=acct.name, session=session.peer.id)
    return json_response(dumps({k: body[k] for k in ("token", "user", "new", "unread")}))


async def logout(conn: HttpConnection, req: Request) -> Response:
    """DELETE /session: revokes the token and logs its session out."""
    token = bearer(req.headers)
    conn.door.account_for(token)
    assert token is not None
    conn.door.revoke(token)
    await _committed(conn.door)
    return json_response(b'{"ok":true}')


async def status(conn: HttpConnection, req: Request) -> Response | None:
    async def run(session: TokenSession) -> Response:
        return _reply_response(await session.submit(c.Status(verb="status")), strip=True)

    return await _with_session(conn, req, run)


async def send(conn: HttpConnection, req: Request) -> Response | None:
    """POST /send; with Idempotency-Key, a retry gets the first answer again."""
    cmd = send_command(json_object(bytes(req.body)))
    key = req.header(b"idempotency-key")

    async def run(session: TokenSession) -> Response:
        user = session.peer.account.key if session.peer.account else ""
        if key is None:
            return _sent(await session.submit(cmd))
        fut, seen = conn.door.idempotent_result(user, key)
        if seen:
            first = await asyncio.shield(fut)
            assert isinstance(first, Response)
            return first
        try:
            resp = _sent(await session.submit(cmd))
        except HttpError as e:
            conn.door.forget_idempotent(user, key)  # a refusal may be retried for real
            fut.cancel()
            raise e
        except BaseException:
            conn.door.forget_idempotent(user, key)
            fut.cancel()
            raise
        fut.set_result(resp)
        return resp

    return await _with_session(conn, req, run)


def _sent(reply: Reply) -> Response:
    if isinstance(reply, Ok):
        f = reply.fields
        return json_response(dumps({"id": f["id"], "ts": f["ts"]}))
    return _reply_response(reply)


async def command(conn: HttpConnection, req: Request) -> Response | None:
    """POST /command: any line-protocol command; the JSON-mode ok object, or the error."""
    line = command_line(json_object(bytes(req.body)))
    try:
        cmd = c.parse(line)
    except c.ParseError as e:
        raise HttpError(e.code, e.message) from e
    if isinstance(cmd, c.Upload):
        raise HttpError(Code.BAD_ARGS, "upload over HTTP: POST /files?to=<target>&name=<name>")
    if isinstance(cmd, c.SetMode) and cmd.mode != "json":
        raise HttpError(Code.BAD_ARGS, "the HTTP door speaks JSON only")

    async def run(session: TokenSession) -> Response:
        if isinstance(cmd, c.Download):
            waiter = session.expect_raw(cmd.verb)
            session.pipeline.feed([cmd])
            return _reply_response(await waiter)
        return _reply_response(await session.submit(cmd))

    return await _with_session(conn, req, run)


async def events(conn: HttpConnection, req: Request) -> Response | None:
    """GET /events: long-poll by message id, or SSE with Accept: text/event-stream."""
    accept = req.header(b"accept") or ""
    since = cursor_param(req.route.query.get("since"), "since")
    if "text/event-stream" in accept:
        last = cursor_param(req.header(b"last-event-id"), "Last-Event-ID")
        return await _with_session(
            conn, req, lambda s: _sse(conn, s, last if last is not None else since)
        )
    timeout = wait_param(req.route.query.get("timeout"))

    async def run(session: TokenSession) -> Response | None:
        door = conn.door
        acct = session.peer.account
        assert acct is not None
        start = since if since is not None else acct.received()
        marked = door.mark()
        if marked is not None:
            await marked  # read your own writes: what is queued now, once committed
        seq = session.notice_taken
        while True:
            top = door.watermark
            msgs = await door.messages_after(acct, start, MAX_EVENTS)
            if msgs or door.watermark == top:
                break  # else a commit came during a store read: look again
        notes = session.notices_after(seq)
        if not msgs and not notes and timeout > 0 and session.alive:
            session.park(conn, start, seq, timeout)  # answered by the wake-up, or empty
            return None
        return json_response(session.answer(start, msgs, notes))

    return await _with_session(conn, req, run)


async def _sse(conn: HttpConnection, session: TokenSession, since: int | None) -> None:
    door = conn.door
    acct = session.peer.account
    assert acct is not None
    cursor = since if since is not None else acct.received()
    seq = session.notice_seq  # a stream gets the notices that come while it is open
    conn.endless = True
    conn.start_stream(
        200,
        [
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("X-Accel-Buffering", "no"),
        ],
    )
    if not await conn.stream(SSE_RETRY):
        return None
    keepalive = door.settings.sse_keepalive_s
    marked = door.mark()
    if marked is not None:
        await marked
    while session.alive and conn.transport is not None:
        top = door.watermark
        msgs = await door.messages_after(acct, cursor, MAX_EVENTS)
        notes = session.notices_after(seq)
        if msgs or notes:
            live = session.peer.live_from
            parts = [sse_event(door.render(m, acct.key, live), m.id) for m in msgs]
            parts.extend(sse_event(line, None) for _, line in notes)
            if msgs:
                cursor = msgs[-1].id
            if notes:
                seq = notes[-1][0]
            if not await conn.stream(b"".join(parts)):
                return None
            if cursor > session.peer.sent_id:
                session.peer.sent_id = cursor
            continue
        if door.watermark != top:
            continue  # a commit came during a store read
        woken = await session.wait(keepalive)
        if not woken and not await conn.stream(SSE_KEEPALIVE):
            return None
    conn.end_stream()
    return None


# Files -------------------------------------------------------------------------------


class RawUpload(BodyReader):
    """POST /files: the raw body streamed to a temp file on the file thread, hashed as
    it comes, never whole in memory; then the file service stores it and the core
    finishes the upload (its rules: target, size, quota, rate limit, ban)."""

    def __init__(self, conn: HttpConnection, session: TokenSession, ticket: UploadTicket) -> None:
        super().__init__(ticket.limit)
        self.conn = conn
        self.session = session
        self.ticket = ticket
        files = conn.door.ctx.files
        self.files = files
        self.temp = files.blobs.temp()
        self.sha = hashlib.sha256()
        self.unwritten = 0
        self.paused = False
        self.failed: str | None = None
        self.done = False

    @classmethod
    def begin(cls, conn: HttpConnection, req: Request) -> RawUpload:
        q = req.route.query
        to, name = q.get("to", ""), q.get("name", "")
        if not to or not name or " " in to:
            raise HttpError(Code.BAD_ARGS, "POST /files?to=<target>&name=<filename>")
        session = conn.door.session_for(bearer(req.headers), conn.ip)
        ctx = conn.door.ctx
        name = name.replace(" ", "_")
        began = ctx.chat.begin_upload(session.peer, c.Upload(to, name, verb="upload"), ctx.clock())
        if isinstance(began, Error):
            raise HttpError(began.code, began.message, retry_after=began.retry_after)
        session.use()
        return cls(conn, session, began)

    def feed(self, req: Request, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            raise HttpError(Code.TOO_LARGE, self.ticket.too_large)
        self.sha.update(data)
        self.unwritten += len(data)
        fut = self.files.loop.run_in_executor(self.files.thread, self.temp.write, data)
        fut.add_done_callback(functools.partial(self._written, len(data)))
        transport = self.conn.transport
        if self.unwritten > MAX_UNWRITTEN and not self.paused and transport is not None:
            self.paused = True
            transport.pause_reading()

    def _written(self, n: int, fut: asyncio.Future[None]) -> None:
        self.unwritten -= n
        if not fut.cancelled() and fut.exception() is not None and self.failed is None:
            self.failed = str(fut.exception())
        transport = self.conn.transport
        if self.paused and self.unwritten <= MAX_UNWRITTEN // 2 and transport is not None:
            self.paused = False
            transport.resume_reading()

    def abort(self) -> None:
        if not self.done:
            self.done = True
            self.files.thread.submit(self.temp.discard)
            self.session.release()

    async def finish(self) -> Response:
        self.done = True
        session, files = self.session, self.files
        try:
            if self.paused and self.conn.transport is not None:
                self.paused = False
                self.conn.transport.resume_reading()
            body = Body(self.size, self.sha.hexdigest())
            waiter: asyncio.Future[None] = files.loop.create_future()
            files.committing(body.sha256, waiter)
            stored = files.loop.run_in_executor(
                files.thread, self.temp.commit, body.size, body.sha256
            )
            error: str | None = self.failed
            try:
                await stored
            except Exception as e:
                error = str(e)
                log.error("file.store_failed", session=session.peer.id, error=error)
            reply = session.expect_raw(self.ticket.verb)
            files.committed(self.ticket, body, session.peer, error)
            waiter.set_result(None)
            answer = await reply
            if isinstance(answer, Rendered) and answer.data.startswith(b'{"type":"ok"'):
                ok = json.loads(answer.data)
                return json_response(dumps({"id": ok["id"], "file": ok["file"]}))
            return _reply_response(answer)
        finally:
            session.release()


async def upload(conn: HttpConnection, req: Request) -> Response:
    reader = conn._body  # the RawUpload body_reader made for this request
    assert isinstance(reader, RawUpload)
    conn._body = None
    try:
        return await reader.finish()
    except SessionGone as e:
        raise HttpError(Code.NOT_LOGGED_IN, "the session was closed; connect again") from e


async def download(conn: HttpConnection, req: Request) -> Response | None:
    """GET /files/<id>: the body streamed from disk with its type, name and ETag."""
    file_id = file_id_param(req.route.arg)

    async def run(session: TokenSession) -> Response | None:
        ctx = conn.door.ctx
        out = ctx.chat.handle(session.peer, c.Download(file_id, verb="download"), ctx.clock())
        reply = out.replies[0] if out.replies else None
        if not isinstance(reply, Ok):
            if isinstance(reply, Error):
                raise HttpError(reply.code, reply.message)
            raise HttpError(Code.INTERNAL, "internal error; logged")
        f = reply.fields["file"]
        etag = f'"{f["sha256"]}"'
        headers = [
            ("Content-Type", download_type(f["name"])),
            ("Content-Disposition", content_disposition(f["name"])),
            ("ETag", etag),
            ("Cache-Control", "private, max-age=31536000, immutable"),
            ("X-Content-Type-Options", "nosniff"),
            ("Content-Security-Policy", "sandbox"),
        ]
        if etag_matches(req.header(b"if-none-match"), etag):
            return Response(304, b"", headers=tuple(headers[2:]))
        path = ctx.files.blobs.path(f["sha256"])
        try:
            fh = await ctx.loop.run_in_executor(ctx.workers, open, path, "rb")
        except OSError as e:
            raise HttpError(Code.NO_SUCH_MESSAGE, f"no file {file_id}") from e
        try:
            conn.start_stream(200, [*headers, ("Content-Length", str(f["size"]))])
            if req.head:
                conn.end_stream()
                return None
            while True:
                chunk = await ctx.loop.run_in_executor(ctx.workers, fh.read, READ_CHUNK)
                if not chunk:
                    break
                if not await conn.stream(chunk):
                    return None
            conn.end_stream()
        finally:
            fh.close()
        return None

    return await _with_session(conn, req, run)


# No login needed -------------------------------------------------------------------------


async def index(conn: HttpConnection, req: Request) -> Response:
    return _static(conn, req, "index.html")


async def static(conn: HttpConnection, req: Request) -> Response:
    return _static(conn, req, static_name(req.route.arg))


def _static(conn: HttpConnection, req: Request, name: str) -> Response:
    found = conn.door.static(name)
    headers = (
        ("ETag", found.etag),
        ("Cache-Control", "no-cache"),
        ("X-Content-Type-Options", "nosniff"),
    )
    if etag_matches(req.header(b"if-none-match"), found.etag):
        return Response(304, b"", content_type=found.content_type, headers=headers)
    return Response(200, found.data, content_type=found.content_type, headers=headers)


async def openapi(conn: HttpConnection, req: Request) -> Response:
    return json_response(dumps(openapi_document()))


async def websocket(conn: HttpConnection, req: Request) -> Response | None:
    return accept_websocket(conn, req)


_HANDLERS: dict[str, Handler] = {
    "index": index,
    "static": static,
    "openapi": openapi,
    "connect": connect,
    "logout": logout,
    "status": status,
    "send": send,
    "command": command,
    "events": events,
    "upload": upload,
    "download": download,
    "ws": websocket,
}
