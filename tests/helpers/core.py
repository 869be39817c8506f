"""Driving the pure core with plain calls: sessions, commands as typed, deferred work."""

from __future__ import annotations

from chatd.config import Config
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.protocol.commands import parse
from chatd.protocol.events import Error, Ok
from chatd.store.memory import MemoryStore

T0 = 1_800_000_000.0


class Harness:
    """A Chat over a MemoryStore, with changes committed as the server would."""

    def __init__(self, config: Config | None = None, store: MemoryStore | None = None) -> None:
        self.store = store or MemoryStore()
        self.config = config or Config()
        self.chat = Chat(self.config, self.store.load(), started=T0)
        self.now = T0
        self._ids = 0

    def session(self) -> Session:
        self._ids += 1
        return Session(self._ids, "127.0.0.1", self.now)

    def run(self, s: Session, line: str) -> Outcome:
        """Handles one line; runs deferred work inline; commits the changes."""
        out = self.chat.handle(s, parse(line), self.now)
        while out.deferred is not None:
            d = out.deferred
            out = d.resume(d.work(), self.now)
        self.store.commit(out.changes)
        return out

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
