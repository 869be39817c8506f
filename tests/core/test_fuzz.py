"""Fuzz harness: random command lines (well-formed, malformed and raw bytes) from
several sessions against the real core, with the clock moving and retention sweeping.

It is hypothesis-based, so CI needs nothing else: the budget is bounded by
`CHATD_FUZZ_EXAMPLES` (default 60 programs of up to 60 steps, a few seconds); a longer
soak is `CHATD_FUZZ_EXAMPLES=5000 pytest tests/core/test_fuzz.py`. Whatever the input, the
core must never answer `internal`, and its indexes must stay consistent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from chatd.config import Config
from chatd.core import passwords
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import DeleteMessages, Outcome
from chatd.protocol.commands import ParseError, parse
from chatd.protocol.events import Code, Error, Ok
from chatd.protocol.framing import FrameError, LineFramer
from chatd.store.memory import MemoryStore
from tests.helpers.core import T0

EXAMPLES = int(os.environ.get("CHATD_FUZZ_EXAMPLES", "60"))

NAMES = ["alice", "bob", "Carol", "root", "x", "ghost"]
CONFIG = Config().with_overrides(
    {
        "moderation.admins": ["root"],
        "moderation.strikes_to_ban": 2,
        "limits.general_messages_per_window": 5,
        "retention.delivered_ttl_s": 120.0,
        "retention.max_age_s": 3600.0,
        "retention.sweep_interval_s": 30.0,
        "retention.general_recipient_idle_s": 600.0,
        "chat.max_sessions_per_user": 3,
        "chat.recent_bytes": 1000,  # a few messages: the rest is read from the store
        "chat.replay_page": 3,  # replays come in several pages
    }
)

_name = st.sampled_from([*NAMES, "nobody", "#general", "@bob", "#den", "a" * 40, "ü"])
_number = st.sampled_from(["0", "1", "2", "3", "7", "-1", "99999999999999999999", "x", "²"])
_text = st.text(max_size=30).filter(lambda t: "\n" not in t)
_when = st.sampled_from(["+1s", "+10m", "12:00", "2030-01-01T00:00:00Z", "soon", "+0s"])
LINES = st.one_of(
    st.builds("login {} {}".format, _name, st.sampled_from(["", "pw", "other"])),
    st.builds("send_all {}".format, _text),
    st.builds("send {} {}".format, _name, _text),
    st.builds("ban {} {} {}".format, _name, st.sampled_from(["", "10m", "0", "3d"]), _text),
    st.builds("report {}".format, _name),
    st.builds("history {} {}".format, _name, st.sampled_from(["", "5", "5 before 3"])),
    st.builds("comment {} {}".format, _number, _text),
    st.builds("thread {}".format, _number),
    st.builds("schedule {} send_all {}".format, _when, _text),
    st.builds("cancel {}".format, _number),
    st.builds(
        "room {} {} {}".format,
        st.sampled_from(["create", "invite", "link", "leave", "kick", "members", "approve"]),
        st.sampled_from(["den", "#den", "#x"]),
        _name,
    ),
    st.builds("join {}".format, _text),
    st.builds("{} {}".format, st.sampled_from(["unban", "kick", "announce"]), _name),
    st.builds("passwd {} {}".format, st.sampled_from(["pw", "new"]), st.sampled_from(["", "pw"])),
    st.sampled_from(
        [
            "who",
            "status",
            "rooms",
            "scheduled",
            "stats",
            "help",
            "ping",
            "mode json",
            "mode text",
            "help send",
            "who #den",
            "quit",
            "download 1",
        ]
    ),
    st.text(max_size=60),
)


@pytest.fixture(autouse=True)
def cheap_passwords() -> Iterator[None]:
    """scrypt costs 50 ms on purpose; the fuzzer needs it fast, not strong."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(passwords, "hash_password", lambda pw: "plain$" + pw)
        mp.setattr(passwords, "verify_password", lambda pw, enc: enc == "plain$" + pw)
        yield


class CoreFuzz(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.store = MemoryStore()
        self.chat = Chat(CONFIG, self.store.load(), started=T0, read=self.store.read)
        self.now = T0
        self.sessions: list[Session] = []
        self.framers: dict[int, LineFramer] = {}

    def _session(self, index: int) -> Session:
        while len(self.sessions) <= index % 4:
            s = Session(len(self.sessions) + 1, f"10.0.0.{len(self.sessions) % 2}", self.now)
            self.sessions.append(s)
            self.framers[s.id] = LineFramer(CONFIG.limits.max_line_bytes)
        return self.sessions[index % 4]

    def _apply(self, s: Session, out: Outcome) -> None:
        while True:
            for reply in out.replies:
                assert not (isinstance(reply, Error) and reply.code is Code.INTERNAL), reply
                if isinstance(reply, Error | Ok):  # --hypothesis-show-statistics shows reach
                    event(f"error {reply.code}" if isinstance(reply, Error) else f"ok {reply.name}")
            if any(isinstance(ch, DeleteMessages) for ch in out.changes):
                event("messages deleted")
            self.store.commit(out.changes)
            self.chat.recent.durable = self.chat.next_id - 1  # as the hub does
            self.chat.recent.trim()
            for closed, _ in out.closes:
                self.store.commit(self.chat.close(closed, self.now).changes)
                self._replace(closed)
            if out.deferred is None:
                return
            out = out.deferred.resume(out.deferred.work(), self.now)

    def _replace(self, closed: Session) -> None:
        """A closed connection is gone; its slot gets a fresh one."""
        for i, s in enumerate(self.sessions):
            if s is closed:
                fresh = Session(s.id + 100, s.peer, self.now)
                self.sessions[i] = fresh
                self.framers[fresh.id] = LineFramer(CONFIG.limits.max_line_bytes)

    def _line(self, s: Session, line: str) -> None:
        try:
            cmd = parse(line)
        except ParseError:
            return
        self._apply(s, self.chat.handle(s, cmd, self.now))

    @rule(who=st.integers(0, 3), line=LINES)
    def command(self, who: int, line: str) -> None:
        self._line(self._session(who), line)

    @rule(who=st.integers(0, 3), data=st.binary(max_size=80))
    def raw_bytes(self, who: int, data: bytes) -> None:
        s = self._session(who)
        for item in self.framers[s.id].feed(data):
            if not isinstance(item, FrameError):
                self._line(s, item)

    @rule(who=st.integers(0, 3), to=st.sampled_from(["#general", "bob", "@alice", "#den"]))
    def say(self, who: int, to: str) -> None:
        self._line(self._session(who), f"send {to} hello")

    @rule(who=st.integers(0, 3), ident=st.integers(1, 30))
    def comment_on(self, who: int, ident: int) -> None:
        self._line(self._session(who), f"comment {ident} indeed")

    @rule(who=st.integers(0, 3), name=st.sampled_from(NAMES))
    def login(self, who: int, name: str) -> None:
        self._line(self._session(who), f"login {name}")

    @rule(who=st.integers(0, 3))
    def receive_everything(self, who: int) -> None:
        s = self._session(who)
        if s.account is not None:
            s.sent_id = self.chat.next_id - 1

    @rule(who=st.integers(0, 3))
    def disconnect(self, who: int) -> None:
        s = self._session(who)
        self.store.commit(self.chat.close(s, self.now).changes)
        self._replace(s)

    @rule(seconds=st.sampled_from([1.0, 31.0, 130.0, 700.0, 3700.0, 86400.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        for _ in range(1000):
            out = self.chat.tick(self.now)
            self._apply(self.sessions[0] if self.sessions else Session(0, "", self.now), out)
            if self.chat.next_wakeup() != self.now:
                break

    @invariant()
    def indexes_agree(self) -> None:
        chat = self.chat
        seen: set[int] = set()
        for key, log in chat.index.chats.items():
            ids = list(log.ids)
            assert ids == sorted(set(ids)), key
            assert all(chat.index.chat_of(i) == key for i in ids)
            assert all(self.store.messages[i].chat == key for i in ids)
            seen.update(ids)
        assert seen == set(chat.index.ids())
        assert set(self.store.messages) == seen
        for acct in chat.online.values():
            assert acct.sessions and all(s.account is acct for s in acct.sessions)


CoreFuzz.TestCase.settings = settings(
    max_examples=EXAMPLES,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestCoreFuzz = CoreFuzz.TestCase
