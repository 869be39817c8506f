"""A bearer token's session: a Peer logged in to the core like any nc session, in JSON
mode, whose "transport" is an EventSink instead of a socket.

The hub writes to the sink what it would write to a socket: pushed messages, notices,
and the few replies that bypass `Submit` (an upload's or a download's, which the file
service queues itself). The sink does not keep messages: message ids are the cursor,
so `GET /events` and SSE read a user's messages by id (`ctx.reader`: the core's recent
window, else the store), up to the highest id known to be committed (the door's
`watermark`), and the sink only wakes the waiting requests. Notices have no id: they
are queued per session and handed to the next events answer or SSE stream once
(docs/http.md, "Notices"). A command submitted by a request writes a small marker in
its reply's place, so the sink also learns whether the hub wrote the reply after the
commit or replaced it with `unavailable` (the commit given up: a full disk).

Read position: the peer counts as paused forever, so the hub never moves its `sent_id`;
an events answer or SSE event moves it once written, and the account's read position
(the max over its sessions) follows, shared with the user's nc and WebSocket sessions.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from chatd import logs
from chatd.core.outcome import Outcome
from chatd.protocol import commands as c
from chatd.protocol.events import Error, Event, Message, Ok
from chatd.protocol.http import MAX_EVENTS, events_body
from chatd.protocol.render import Rendered
from chatd.server.http.wake import Answers
from chatd.server.peer import Peer
from chatd.server.pipeline import Pipeline, Submit

if TYPE_CHECKING:
    from chatd.server.http.connection import HttpConnection
    from chatd.server.http.door import HttpDoor

log = logs.get_logger("chatd.http")

_MARK = b'{"type":"http-reply","n":'  # what a submitted command writes to the sink
_MESSAGE = b'{"type":"message"'
MAX_NOTICES = 256  # notices kept for a session nobody is reading; the oldest go first

Reply = Ok | Error | Rendered


class SessionGone(Exception):
    """The session closed (kicked, quit, shut down) while a request waited on it."""


class EventSink:
    """The transport of a token session's Peer (asyncio.Transport's write side)."""

    __slots__ = ("_reading", "closed", "session")

    def __init__(self, session: TokenSession) -> None:
        self.session = session
        self.closed = False
        self._reading = True

    def write(self, data: bytes) -> None:
        s = self.session
        # Most writes are one message of a fan-out (a string value cannot hold
        # `{"type":`, JSON escapes its quotes): only wake. Else look for the lines
        # that are not messages.
        if not (data.startswith(_MESSAGE) and data.count(b'{"type":') == 1):
            for line in data.splitlines():
                if line.startswith(b'{"type":"notice"'):
                    s.add_notice(line)
                elif line.startswith(_MARK):
                    s.written(int(line[len(_MARK) : -1]))
                elif line.startswith((b'{"type":"ok"', b'{"type":"error"')):
                    s.raw_reply(line)
        s.door.wake_soon(s)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.session.door.loop.call_soon(self.session.gone)

    def abort(self) -> None:
        self.close()

    def get_write_buffer_size(self) -> int:
        return 0

    def is_reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        self._reading = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: object = None) -> object:
        return default


class TokenSession:
    """One token's live session, shared by the requests that carry the token."""

    def __init__(self, door: HttpDoor, digest: str, peer: Peer) -> None:
        self.door = door
        self.digest = digest
        self.peer = peer
        self.sink = EventSink(self)
        peer.transport = self.sink  # type: ignore[assignment]  # the transport's subset
        peer.paused = True  # the hub never moves sent_id: answers do (module doc)
        self.pipeline = Pipeline(door.ctx, peer)
        self.waiters: set[asyncio.Future[bool]] = set()
        self.notices: deque[tuple[int, bytes]] = deque(maxlen=MAX_NOTICES)
        self.notice_seq = 0
        self.notice_taken = 0  # long-poll: notices up to here were answered
        self._raw: deque[tuple[bytes, asyncio.Future[Reply]]] = deque()
        self._pending: set[asyncio.Future[Reply]] = set()
        self._submitted = 0
        # Submitted commands whose reply is not written yet -> None, or the error
        # that replaced it (`submit`).
        self._marks: dict[int, bytes | None] = {}
        self.users = 0  # requests and streams using the session now
        self.parked: list[Parked] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._idle_since = 0.0
        self.alive = True

    # Commands ---------------------------------------------------------------------

    def submit(self, command: c.Command | str) -> asyncio.Future[Reply]:
        """Runs a command through the session's pipeline; the future is its reply once
        committed and written (HTTP answers only what a crash cannot take back)."""
        loop = self.door.loop
        fut: asyncio.Future[Reply] = loop.create_future()
        captured: list[Reply] = []
        self._submitted += 1
        n = self._submitted

        def reply(event: Event) -> Event | None:
            if isinstance(event, Ok | Error | Rendered):
                captured.append(event)
                if len(captured) > 1:
                    return None
                # Written in the reply's place: the hub replaces it with `unavailable`
                # if the commit is given up (a full disk), so the sink learns which.
                self._marks[n] = None
                return Rendered(_MARK + b"%d}\n" % n)
            return event  # replayed messages and notices go to the sink as usual

        def done() -> None:
            self._pending.discard(fut)
            refused = self._marks.pop(n, None)
            if fut.done():
                return
            if refused is not None:
                fut.set_result(Rendered(refused))  # withdrawn: nothing was sent
            elif captured:
                first = captured[0]
                if isinstance(first, Ok) and isinstance(first.fields.get("id"), int):
                    self.acked(first.fields["id"])
                fut.set_result(first)
            else:
                fut.set_exception(SessionGone())

        self._pending.add(fut)
        self.pipeline.feed([Submit(command, reply=reply, done=done)])
        return fut

    def acked(self, msg_id: int) -> None:
        """The user's own message `msg_id` is committed: like the line door's OK, it
        counts as received, but only if nothing before it is still unread here (an
        HTTP session has no socket that already got the earlier ones)."""
        peer, acct = self.peer, self.peer.account
        if acct is None or msg_id <= peer.sent_id:
            return
        if msg_id > self.door.watermark:
            self.door.watermark = msg_id  # committed: every lower id is too
        if not self.door.unread_before(acct, acct.received(), msg_id):
            peer.sent_id = msg_id

    def expect_raw(self, cmd: str) -> asyncio.Future[Reply]:
        """The next reply line of `cmd` the sink sees (an upload's or a download's,
        queued by the file service rather than through Submit); replies of one command
        come in order, and the two commands are told apart by their `cmd`."""
        fut: asyncio.Future[Reply] = self.door.loop.create_future()
        self._raw.append((b'"cmd":"%s"' % cmd.encode(), fut))
        return fut

    def raw_reply(self, line: bytes) -> None:
        for i, (tag, fut) in enumerate(self._raw):
            if tag in line:
                del self._raw[i]
                if not fut.done():
                    fut.set_result(Rendered(line))
                return
        if line.startswith(b'{"type":"error"'):
            # A submitted command's reply replaced by the hub (its commit given up):
            # replies come in order, so it is the oldest one not written yet.
            for k, got in self._marks.items():
                if got is None:
                    self._marks[k] = line
                    return

    def written(self, n: int) -> None:
        """Submitted command `n`'s reply was written after its commit."""
        self._marks.pop(n, None)

    # Notices ---------------------------------------------------------------------

    def add_notice(self, line: bytes) -> None:
        self.notice_seq += 1
        self.notices.append((self.notice_seq, line))

    def notices_after(self, seq: int) -> list[tuple[int, bytes]]:
        return [(n, line) for n, line in self.notices if n > seq]

    # Waiting ---------------------------------------------------------------------

    def wait(self, timeout: float) -> asyncio.Future[bool]:
        """A future done at the next wake-up (True) or after `timeout` (False)."""
        loop = self.door.loop
        fut: asyncio.Future[bool] = loop.create_future()
        self.waiters.add(fut)
        handle = loop.call_later(timeout, _settle, fut)

        def settled(f: asyncio.Future[bool]) -> None:
            self.waiters.discard(f)
            handle.cancel()

        fut.add_done_callback(settled)
        return fut

    def resume_streams(self) -> None:
        """Waiting SSE streams look for something new."""
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(True)
        self.waiters.clear()

    def wake(self) -> None:
        """This session alone may have something new (a notice, its end); a commit
        wakes every session at once (`HttpDoor._wake`)."""
        answers = Answers(self.door)
        answers.wake((self,))
        answers.finish()

    # Long-polls --------------------------------------------------------------------

    def answer(self, start: int, msgs: list[Message], notes: list[tuple[int, bytes]]) -> bytes:
        """An events answer's body; the read position and the notices handed out
        move with it."""
        door, acct = self.door, self.peer.account
        assert acct is not None
        live = self.peer.live_from
        items = [door.render(m, acct.key, live) for m in msgs]
        items.extend(line for _, line in notes)  # notices have no id: after the messages
        if notes and notes[-1][0] > self.notice_taken:
            self.notice_taken = notes[-1][0]
        if msgs and msgs[-1].id > self.peer.sent_id:
            self.peer.sent_id = msgs[-1].id  # the read position moves once answered
        return events_body(items, msgs[-1].id if msgs else start)

    def park(self, conn: HttpConnection, start: int, seq: int, timeout: float) -> None:
        """A long-poll with nothing to answer yet waits here, not in a task: the
        wake-up answers every parked poll from one loop (as the hub's fan-out writes
        to every socket), so a message to 1,000 waiting clients costs 1,000 writes and
        little Python, not 1,000 task switches (wake.py)."""
        self.use()  # released when answered
        p = Parked(conn, start, seq, direct=conn.can_answer_directly())
        p.timer = self.door.loop.call_later(timeout, self._parked_timeout, p)
        conn.parked = (self, p)
        self.parked.append(p)

    def answer_parked(self, answers: Answers) -> None:
        """Answers the parked polls that have something now: the wake-up's shared
        answer in one write where it fits (its bookkeeping left to
        `answers.finish`), else each on its own (notices, HEAD, HTTP/1.0, the end)."""
        acct = self.peer.account
        for p in list(self.parked):
            if p.answered:
                continue
            if acct is not None and self.alive and p.direct and self.notice_seq <= p.seq:
                shared = answers.shared(acct, p.start)
                transport = p.conn.transport
                if shared is not None and transport is not None:
                    if shared.msgs:
                        transport.write(answers.response(acct, shared, self.peer.live_from))
                        p.answered = True
                        answers.written.append((self, p, shared.last))
                    continue
            msgs = self.door.recent_after(acct, p.start, MAX_EVENTS) if acct else []
            if msgs is None:  # only in the store
                if self.alive:
                    self._read_then_answer(p)
                    continue
                msgs = []
            notes = self.notices_after(p.seq)
            if msgs or notes or not self.alive:
                self._answer(p, self.answer(p.start, msgs, notes) if acct else b"")

    def _read_then_answer(self, p: Parked) -> None:
        """A parked poll whose messages are no longer all in memory (it waited at an
        old cursor): read them from the store, then answer, unless it went meanwhile."""
        if p.reading is not None:
            return

        async def read() -> None:
            acct = self.peer.account
            try:
                msgs = await self.door.messages_after(acct, p.start, MAX_EVENTS) if acct else []
            finally:
                p.reading = None
            if p in self.parked and not p.answered:
                notes = self.notices_after(p.seq)
                if msgs or notes or not self.alive:
                    self._answer(p, self.answer(p.start, msgs, notes) if acct else b"")

        p.reading = self.door.loop.create_task(read())

    def answered(self, p: Parked, last: int) -> None:
        """A parked poll's answer (up to message `last`) was written by a wake-up."""
        if last > self.peer.sent_id:
            self.peer.sent_id = last  # the read position moves once answered
        if p not in self.parked:
            return  # its connection closed meanwhile (unpark released it)
        self.parked.remove(p)
        if p.timer is not None:
            p.timer.cancel()
        p.conn.answered_directly()
        self.release()

    def _parked_timeout(self, p: Parked) -> None:
        if p in self.parked and not p.answered:
            self._answer(p, events_body([], p.start))

    def _answer(self, p: Parked, body: bytes) -> None:
        self.parked.remove(p)
        if p.timer is not None:
            p.timer.cancel()
        if not body:
            body = events_body([], p.start)
        p.conn.answer_parked(body)
        self.release()

    def unpark(self, p: Parked) -> None:
        """The parked poll's connection closed."""
        if p.reading is not None:
            p.reading.cancel()
        if p in self.parked:
            self.parked.remove(p)
            if p.timer is not None:
                p.timer.cancel()
            self.release()

    # Life time ---------------------------------------------------------------------

    def use(self) -> None:
        self.users += 1

    def release(self) -> None:
        """A request is done with the session. The idle clock restarts; one timer
        per session checks it (not a timer per request: long-polls come and go by
        the thousand)."""
        self.users -= 1
        if self.users <= 0 and self.alive:
            self.users = 0
            loop = self.door.loop
            self._idle_since = loop.time()
            if self._expiry is None:
                idle = self.door.settings.session_idle_s
                self._expiry = loop.call_later(idle, self.expire)

    def expire(self) -> None:
        """Nobody used the token for `http.session_idle_s`: log the session out (the
        token stays valid; the next request logs a new session in)."""
        self._expiry = None
        if self.users or not self.alive:
            return  # in use: the last release arms the timer again
        loop = self.door.loop
        left = self._idle_since + self.door.settings.session_idle_s - loop.time()
        if left > 0.001:
            self._expiry = loop.call_later(left, self.expire)
            return
        self.close()

    def close(self) -> None:
        """Logs the session out of the core, as a closed socket would."""
        if not self.alive:
            return
        peer = self.peer
        if not peer.closing:
            peer.closing = True
            self.door.ctx.apply(None, self.door.ctx.chat.close(peer, self.door.ctx.clock()))
        self.gone()

    def gone(self) -> None:
        """The session ended (closed here, or by the hub: kick, quit, shutdown)."""
        if not self.alive:
            return
        self.alive = False
        if self._expiry is not None:
            self._expiry.cancel()
        self.pipeline.close()
        self.peer.transport = None
        self.peer.closing = True
        self.door.forget(self)
        self.wake()  # parked polls get an empty answer
        for fut in (*self._pending, *(f for _, f in self._raw)):
            if not fut.done():
                fut.set_exception(SessionGone())
        self._pending.clear()
        self._raw.clear()


@dataclass(slots=True, eq=False)
class Parked:
    """A long-poll waiting for something to answer."""

    conn: HttpConnection
    start: int
    seq: int
    direct: bool = False  # its answer may be written without h11 (wake.py)
    answered: bool = False  # written by a wake-up; the bookkeeping follows
    reading: asyncio.Task[None] | None = None  # its messages being read from the store
    timer: asyncio.TimerHandle | None = None


def _settle(fut: asyncio.Future[bool]) -> None:
    if not fut.done():
        fut.set_result(False)


def strip_login_ok(out: Outcome) -> Outcome:
    """A token attach's outcome without its `login` OK (nobody typed `login`)."""
    out.replies = [e for e in out.replies if not isinstance(e, Ok)]
    return out
