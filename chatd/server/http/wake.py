"""Waking parked long-polls: one answer per (chats, cursor), written to every waiter
that shares it, the bookkeeping after the last write.

When a commit makes new messages readable, every parked `GET /events` whose user sees
them must be answered. Most waiters share their answer: the users of #general waiting
at the same cursor get the same events, rendered the same way. So a wake-up builds
each distinct answer once, as the whole HTTP response (head and body), and each
waiter costs a dictionary lookup and one `transport.write`. What does not delay the
next waiter's bytes (h11 readied for the next request, timers, the read position, the
session's idle clock) runs after the last write (`Answers.finish`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from chatd.core.model import Account
from chatd.protocol.events import Message
from chatd.protocol.http import MAX_EVENTS, events_body

if TYPE_CHECKING:
    from chatd.server.http.door import HttpDoor
    from chatd.server.http.session import Parked, TokenSession

_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"


def ok_response(body: bytes) -> bytes:
    """The bytes of a keep-alive `200` JSON answer, as `HttpConnection._respond`
    writes them."""
    return _HEAD % len(body) + body


class Shared:
    """The messages after one cursor in one set of chats, and their answers."""

    __slots__ = ("first", "last", "msgs", "plain", "private", "wires")

    def __init__(self, msgs: list[Message]) -> None:
        self.msgs = msgs
        self.first = msgs[0].id if msgs else 0
        self.last = msgs[-1].id if msgs else 0
        # A private message names its viewer in `chat`: then each user's own answer.
        self.private = any(m.to is not None for m in msgs)
        self.plain: bytes | None = None  # the common answer: nothing private or replayed
        # (viewer or "", how many are replayed) -> the answer
        self.wires: dict[tuple[str, int], bytes] = {}


_UNSEEN = Shared([])  # a (chats, cursor) not looked up yet in this wake-up


class Answers:
    """The answers of one wake-up, shared by the waiters they fit."""

    __slots__ = ("_door", "_found", "written")

    def __init__(self, door: HttpDoor) -> None:
        self._door = door
        # (chats, cursor) -> its Shared; None when memory does not reach back there.
        self._found: dict[tuple[tuple[str, ...], int], Shared | None] = {}
        self.written: list[tuple[TokenSession, Parked, int]] = []

    def shared(self, acct: Account, start: int) -> Shared | None:
        """The user's messages after `start` up to the watermark, at most MAX_EVENTS,
        shared by every waiter with the same chats and cursor; None when they are not
        in memory (the caller reads the store)."""
        door = self._door
        key = (door.chats_of(acct), start)
        try:
            return self._found[key]
        except KeyError:
            pass
        msgs = door.recent_after(acct, start, MAX_EVENTS)
        found = self._found[key] = Shared(msgs) if msgs is not None else None
        return found

    def response(self, acct: Account, shared: Shared, live_from: int) -> bytes:
        """The whole HTTP answer of `shared` for a session of `acct`."""
        msgs = shared.msgs
        if not shared.private and live_from <= shared.first:
            if shared.plain is None:
                shared.plain = self._render(msgs, acct.key, live_from)
            return shared.plain
        viewer = acct.key if shared.private else ""
        replayed = sum(1 for m in msgs if m.id < live_from)
        wire = shared.wires.get((viewer, replayed))
        if wire is None:
            wire = shared.wires[viewer, replayed] = self._render(msgs, acct.key, live_from)
        return wire

    def _render(self, msgs: list[Message], viewer: str, live_from: int) -> bytes:
        render = self._door.render
        return ok_response(events_body([render(m, viewer, live_from) for m in msgs], msgs[-1].id))

    def wake(self, sessions: Iterable[TokenSession]) -> None:
        """Wakes every session: SSE streams resume; each parked poll with something
        to read gets its answer, in one write when it is the common kind (a
        keep-alive poll with no notices waiting); the rest are answered one by one
        (`TokenSession.answer_parked`)."""
        # The loop every waiter goes through: the few lookups it needs, bound here.
        written = self.written
        found = self._found
        chats_of = self._door.ctx.chat.chats_of
        for s in sessions:
            if s.waiters:
                s.resume_streams()
            parked = s.parked
            if not parked:
                continue
            acct = s.peer.account
            if len(parked) != 1 or acct is None or not s.alive:
                s.answer_parked(self)
                continue
            p = parked[0]
            if p.answered or not p.direct or s.notice_seq > p.seq:
                s.answer_parked(self)
                continue
            shared = found.get((tuple(chats_of(acct)), p.start), _UNSEEN)
            if shared is _UNSEEN:
                shared = self.shared(acct, p.start)
            if shared is None:
                s.answer_parked(self)  # not in memory: read from the store
                continue
            if not shared.msgs:
                continue  # nothing new for this one
            transport = p.conn.transport
            if transport is None:
                continue
            live_from = s.peer.live_from
            wire = shared.plain
            if wire is None or live_from > shared.first:
                wire = self.response(acct, shared, live_from)
            transport.write(wire)
            p.answered = True
            written.append((s, p, shared.last))

    def finish(self) -> None:
        """After the last write: each answered poll's connection readied for its next
        request, its timer cancelled, the read position moved, the session released."""
        written, self.written = self.written, []
        for session, parked, last in written:
            session.answered(parked, last)
