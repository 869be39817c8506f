"""The HTTP door's shared state: tokens, token sessions, the commit watermark, idempotent
sends, static files, and the per-address connection count.

One HttpDoor per daemon; each TCP connection is an HttpConnection (connection.py) that
asks the door for what outlives it.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass
from pathlib import Path

import chatd
from chatd import logs
from chatd.config import HttpSection
from chatd.core import tokens
from chatd.core.flood import address_key
from chatd.core.model import Account
from chatd.core.outcome import Outcome
from chatd.core.state import Refused
from chatd.protocol.events import Code, Message, Push
from chatd.protocol.http import HttpError, content_type
from chatd.protocol.notices import Shutdown
from chatd.protocol.render import Renderer
from chatd.server.context import Context
from chatd.server.http.connection import HttpConnection
from chatd.server.http.session import TokenSession, strip_login_ok
from chatd.server.http.wake import Answers
from chatd.server.http.websocket import FrameCache, WebSocket
from chatd.server.peer import Peer
from chatd.store.base import Store

log = logs.get_logger("chatd.http")

STATIC_DIR = Path(chatd.__file__).parent / "web" / "static"
IDEMPOTENCY_TTL_S = 86400.0
RENDER_CACHE = 4096  # rendered messages kept for the next wake-up of other sessions
IDEMPOTENCY_MAX = 10000  # remembered keys, all users together; the oldest go first


@dataclass(frozen=True, slots=True)
class StaticFile:
    data: bytes
    etag: str
    content_type: str
    mtime_ns: int


class HttpDoor:
    """What the HTTP connections share."""

    def __init__(self, ctx: Context, store: Store, *, static_dir: Path = STATIC_DIR) -> None:
        self.ctx = ctx
        self.loop = ctx.loop
        self.renderer = Renderer()  # JSON only: no time zone needed
        self.tokens = tokens.TokenTable(store.load_tokens())
        self.sessions: dict[str, TokenSession] = {}
        self.static_dir = static_dir
        self._static: dict[str, StaticFile] = {}
        self.frames = FrameCache()
        self._rendered: dict[tuple[int, str, bool], bytes] = {}
        self.per_ip: Counter[str] = Counter()
        self.connections = 0
        self.open: set[HttpConnection] = set()
        self.stopping = False
        # The highest message id known committed: every id up to it is on disk
        # (batches commit in id order), so events may be handed out up to it.
        self.watermark = ctx.chat.next_id - 1
        self._mark_pending = False
        self._marks: list[asyncio.Future[None]] = []
        self._to_wake: set[TokenSession] = set()
        self._wake_scheduled = False
        self.token_sockets: dict[str, set[WebSocket]] = {}  # by token digest
        self.idempotent: OrderedDict[tuple[str, str], tuple[float, asyncio.Future[object]]] = (
            OrderedDict()
        )

    @property
    def settings(self) -> HttpSection:
        return self.ctx.config.http

    # Connections ---------------------------------------------------------------------

    def admit(self, ip: str) -> str | None:
        if self.stopping:
            return "the server is shutting down"
        limit = self.settings.max_connections_per_ip
        unit = address_key(ip)  # IPv6 counts by /64, as on the line door
        if self.per_ip[unit] >= limit:
            return f"too many connections from {ip} (at most {limit})"
        self.per_ip[unit] += 1
        self.connections += 1
        return None

    def left(self, ip: str) -> None:
        self.connections -= 1
        unit = address_key(ip)
        self.per_ip[unit] -= 1
        if self.per_ip[unit] <= 0:
            del self.per_ip[unit]

    def shutdown(self) -> None:
        """The daemon stops: every WebSocket gets the `shutdown` notice and closes, as
        an nc session does; every token session queues it for its SSE streams and
        long-polls, logs out (its read position saved), and then every connection
        closes once what was written has gone out."""
        if self.stopping:
            return
        self.stopping = True
        notice = Shutdown()
        line = self.renderer.json(notice).rstrip(b"\n")
        for conn in list(self.open):
            ws = conn.ws
            if ws is not None and not ws.peer.closing:
                self.ctx.apply(ws.peer, Outcome(closes=[(ws.peer, notice)]))
        for session in list(self.sessions.values()):
            session.add_notice(line)
            session.wake()
        self.loop.call_later(0.05, self._close_all)

    def _close_all(self) -> None:
        for session in list(self.sessions.values()):
            session.close()
        for conn in list(self.open):
            conn.close_now()

    # Tokens and sessions ---------------------------------------------------------------

    def account_for(self, token: str | None) -> Account:
        if token is None:
            raise HttpError(
                Code.NOT_LOGGED_IN, "send Authorization: Bearer <token> from POST /connect"
            )
        acct = self.tokens.check(token, self.ctx.chat.accounts)
        if acct is None:
            raise HttpError(Code.NOT_LOGGED_IN, "unknown or revoked token; POST /connect again")
        return acct

    def new_peer(self, ip: str) -> Peer:
        from chatd.protocol.events import Mode

        ctx = self.ctx
        peer = Peer(
            self.next_session_id(),
            ip,
            ctx.clock(),
            transport=None,
            buffer_limit=ctx.config.limits.send_buffer_bytes,
        )
        peer.mode = Mode.JSON
        return peer

    def next_session_id(self) -> int:
        # Session ids only name sessions in logs; the HTTP door's count down from -1 so
        # they never collide with the daemon's.
        self._ids = getattr(self, "_ids", 0) - 1
        return self._ids

    def session_for(self, token: str | None, ip: str) -> TokenSession:
        """The token's live session, logging a new one in when there is none."""
        acct = self.account_for(token)
        assert token is not None
        digest = tokens.digest(token)
        session = self.sessions.get(digest)
        if session is not None and session.alive:
            return session
        ctx = self.ctx
        peer = self.new_peer(ip)
        session = TokenSession(self, digest, peer)
        try:
            out = tokens.attach(ctx.chat, peer, acct, ctx.clock())
        except Refused as e:
            session.alive = False
            raise HttpError(e.code, e.message, retry_after=e.retry_after) from e
        ctx.apply(peer, strip_login_ok(out))
        self.sessions[digest] = session
        session.use()
        session.release()  # arms the idle expiry; the caller's use() cancels it
        log.info("http.session", user=acct.name, session=peer.id)
        return session

    def adopt(self, token: str, session: TokenSession) -> None:
        """A session logged in by POST /connect becomes its token's session."""
        session.digest = tokens.digest(token)
        old = self.sessions.get(session.digest)
        if old is not None and old is not session:
            old.close()
        self.sessions[session.digest] = session

    def forget(self, session: TokenSession) -> None:
        if self.sessions.get(session.digest) is session:
            del self.sessions[session.digest]
        self._to_wake.discard(session)

    def revoke(self, token: str) -> None:
        """DELETE /session: the token stops working, its session logs out (its SSE
        streams end, its parked long-polls are answered), and every WebSocket opened
        with it closes."""
        change = self.tokens.revoke(token)
        digest = tokens.digest(token)
        session = self.sessions.get(digest)
        if session is not None:
            session.close()
        for ws in list(self.token_sockets.pop(digest, ())):
            ws.revoked()
        if change is not None:
            self.ctx.hub.changes([change])

    def token_socket(self, token: str, ws: WebSocket) -> None:
        """A WebSocket logged in with `token` (closed if it is revoked)."""
        ws.token = tokens.digest(token)
        self.token_sockets.setdefault(ws.token, set()).add(ws)

    def socket_gone(self, ws: WebSocket) -> None:
        if ws.token is None:
            return
        found = self.token_sockets.get(ws.token)
        if found is not None:
            found.discard(ws)
            if not found:
                del self.token_sockets[ws.token]

    # Events -----------------------------------------------------------------------

    def wake_soon(self, session: TokenSession) -> None:
        """The hub wrote to a session's sink: once this turn's writes are done (and the
        peer's written_id is set), raise the watermark and wake its waiters."""
        self._to_wake.add(session)
        if not self._wake_scheduled:
            self._wake_scheduled = True
            self.loop.call_soon(self._wake)

    def _wake(self) -> None:
        self._wake_scheduled = False
        sessions, self._to_wake = self._to_wake, set()
        for s in sessions:
            if s.peer.written_id > self.watermark:
                self.watermark = s.peer.written_id
        answers = Answers(self)  # one answer per (chats, cursor) for every waiter
        answers.wake(sessions)
        answers.finish()
        self.mark()

    def mark(self) -> asyncio.Future[None] | None:
        """Makes sure the watermark reaches every message the core holds now, once
        committed (hub.after), and wakes every session then. The future is done when
        it has (None: it already has)."""
        top = self.ctx.chat.next_id - 1
        if top <= self.watermark:
            return None
        fut: asyncio.Future[None] = self.loop.create_future()
        self._marks.append(fut)
        if self._mark_pending:
            return fut
        self._mark_pending = True

        def reached() -> None:
            self._mark_pending = False
            marks, self._marks = self._marks, []
            if top > self.watermark:
                self.watermark = top
                answers = Answers(self)
                answers.wake([s for s in self.sessions.values() if s.waiters or s.parked])
                answers.finish()
            for f in marks:
                if not f.done():
                    f.set_result(None)
            again = self.mark()
            if again is not None:
                again.add_done_callback(lambda _: None)

        self.ctx.hub.after(reached)
        return fut

    def chats_of(self, acct: Account) -> tuple[str, ...]:
        """The chats whose messages the user reads, as the core lists them."""
        return tuple(self.ctx.chat.chats_of(acct))

    def recent_after(self, acct: Account, since: int, limit: int) -> list[Message] | None:
        """The user's messages with since < id <= watermark, oldest first, at most
        `limit`, from the core's recent window; None when some are only in the store
        (then `messages_after`)."""
        return self.ctx.reader.recent_after(acct, since, self.watermark, limit)

    async def messages_after(self, acct: Account, since: int, limit: int) -> list[Message]:
        """The same from the recent window when it holds them (no suspension), else
        read from the store off the loop. A caller that waits when this is empty
        checks `watermark` again after it: a commit may have come meanwhile."""
        found = self.recent_after(acct, since, limit)
        if found is not None:
            return found
        return await self.ctx.reader.after(acct, since, self.watermark, limit)

    def unread_before(self, acct: Account, since: int, msg_id: int) -> bool:
        """Whether the user has a message with since < id < msg_id (ids only)."""
        return bool(self.ctx.reader.ids_after(acct, since, msg_id - 1, 1))

    def render(self, m: Message, viewer: str, live_from: int) -> bytes:
        """A message as a JSON-mode `message` object (no newline). Rendered once per
        message (and viewer, for a private one) however many sessions it wakes."""
        replay = m.id < live_from
        key = (m.id, viewer if m.to is not None else "", replay)
        data = self._rendered.get(key)
        if data is None:
            if len(self._rendered) >= RENDER_CACHE:
                self._rendered.clear()
            data = self._rendered[key] = self.renderer.json(Push(m, viewer, replay))[:-1]
        return data

    # Idempotent sends ---------------------------------------------------------------------

    def idempotent_result(self, user: str, key: str) -> tuple[asyncio.Future[object], bool]:
        """The future of the first send with this key (and True), or a new one (False)."""
        now = time.monotonic()
        while self.idempotent:
            oldest = next(iter(self.idempotent.values()))
            if now - oldest[0] < IDEMPOTENCY_TTL_S and len(self.idempotent) <= IDEMPOTENCY_MAX:
                break
            self.idempotent.popitem(last=False)
        found = self.idempotent.get((user, key))
        if found is not None:
            return found[1], True
        fut: asyncio.Future[object] = self.loop.create_future()
        self.idempotent[user, key] = (now, fut)
        return fut, False

    def forget_idempotent(self, user: str, key: str) -> None:
        self.idempotent.pop((user, key), None)

    # Static files ---------------------------------------------------------------------

    def static(self, name: str) -> StaticFile:
        """A file of the web client, cached while its mtime stays the same."""
        root = self.static_dir.resolve()
        path = (root / name).resolve()
        if not path.is_relative_to(root) or not path.is_file():
            raise HttpError("not-found", f"no such file: {name}")
        stat = path.stat()
        cached = self._static.get(name)
        if cached is not None and cached.mtime_ns == stat.st_mtime_ns:
            return cached
        data = path.read_bytes()
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        found = StaticFile(data, etag, content_type(name), stat.st_mtime_ns)
        self._static[name] = found
        return found
