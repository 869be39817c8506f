"""Driving the pure core with plain calls: sessions, commands as typed, deferred work.

`Harness` takes a Config; `Core`, the same harness with dotted settings, adds what the
rooms, threads and schedules tests need: replies as fields or codes, the clock's `tick()`,
a restart in place, and what an outcome writes to one session (`received`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chatd.config import Config
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.protocol.commands import parse
from chatd.protocol.events import Error, Event, Message, Notice, Ok, Push
from chatd.store.memory import MemoryStore

T0 = 1_800_000_000.0


class Harness:
    """A Chat over a MemoryStore, with changes committed as the server would."""

    address = "127.0.0.1"  # the peer address of every session

    def __init__(self, config: Config | None = None, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()
        self.config = config or Config()
        self.chat = Chat(self.config, self.store.load(), started=T0, read=self.store.read)
        self.now = T0
        self._ids = 0

    def session(self) -> Session:
        self._ids += 1
        return Session(self._ids, self.address, self.now)

    def run(self, s: Session, line: str) -> Outcome:
        """Handles one line; runs deferred work (password hashing, reading messages)
        inline, each step's outcome appended to the command's; commits the changes
        and lets the recent window drop what is now durable, as the server does."""
        out = self.chat.handle(s, parse(line), self.now)
        while out.deferred is not None:
            d, out.deferred = out.deferred, None
            out.extend(d.resume(d.work(), self.now))
        self.commit(out)
        return out

    def commit(self, out: Outcome) -> None:
        self.store.commit(out.changes)
        self.chat.recent.durable = self.chat.next_id - 1
        self.chat.recent.trim()

    def login(self, name: str, password: str = "") -> Session:
        s = self.session()
        assert isinstance(first(self.run(s, f"login {name} {password}".strip())), Ok)
        return s

    def restart(self) -> Harness:
        return Harness(self.config, self.store)


def first(out: Outcome) -> Ok | Error:
    reply = out.replies[0]
    assert isinstance(reply, Ok | Error)
    return reply


def error_code(out: Outcome) -> str:
    reply = first(out)
    assert isinstance(reply, Error), reply
    return str(reply.code)


class Core(Harness):
    """The harness with dotted settings (`Core(chat__history_on_join=2)`) and a movable
    clock; every outcome is committed, so `restart()` sees what a restarted server would."""

    address = "test"

    def __init__(self, **settings: object) -> None:
        overrides = {k.replace("__", "."): v for k, v in settings.items()}
        super().__init__(Config().with_overrides(overrides))

    def ok(self, s: Session, line: str) -> Mapping[str, Any]:
        out = self.run(s, line)
        reply = out.replies[0]
        assert isinstance(reply, Ok), reply
        return reply.fields

    def err(self, s: Session, line: str) -> str:
        reply = self.run(s, line).replies[0]
        assert isinstance(reply, Error), reply
        return str(reply.code)

    def tick(self, seconds: float = 0.0) -> Outcome:
        self.now += seconds
        out = self.chat.tick(self.now)
        self.commit(out)
        return out

    def restart(self) -> Core:
        """In place: the same store and clock, a new Chat loaded from the store."""
        self.chat = Chat(self.config, self.store.load(), started=self.now, read=self.store.read)
        return self

    def received(self, out: Outcome, s: Session) -> list[Event]:
        """What the outcome writes to `s` besides its own replies: pushes naming it, and
        broadcasts of the chats whose topic it is subscribed to (not its own sends)."""
        got: list[Event] = [e for e, sessions in out.pushes if s in sessions]
        for msg, sender in out.broadcasts:
            if sender is not s and s in self.chat.topics.get(msg.chat, ()):
                got.append(Push(msg))
        return got


def notices(events: list[Event], name: str) -> list[Mapping[str, Any]]:
    return [e.fields for e in events if isinstance(e, Notice) and e.event == name]


def messages(events: list[Event]) -> list[Message]:
    return [e.message for e in events if isinstance(e, Push)]


def room_with(core: Core, owner: str, *members: str) -> list[Session]:
    """Logs in everyone, creates #dev owned by the first and invites the rest."""
    sessions = [core.login(owner), *(core.login(m) for m in members)]
    core.ok(sessions[0], "room create dev")
    for m in members:
        core.ok(sessions[0], f"room invite #dev {m}")
    return sessions
