"""Message lifetime in the core: delivered messages go `delivered_ttl_s` after their last
delivery, undelivered ones at `max_age_s`; idle users do not pin `#general`; a moved
clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from chatd.config import Config
from chatd.core import retention
from chatd.core.model import Session
from chatd.core.outcome import Body, DeleteFile, DeleteMessages, Outcome, UploadTicket
from chatd.core.parts import Mark
from chatd.core.retention import due_frontier, note_frontier
from chatd.protocol.commands import Upload
from chatd.protocol.events import GENERAL, Ok
from tests.helpers.core import T0, Harness, error_code, first

TTL = 3600.0
SWEEP = 60.0
MAX_AGE = 7 * 86400.0

# Marks: when a chat's frontier was first seen -------------------------------------------


def test_marks_record_the_first_time_a_frontier_is_seen() -> None:
    marks: list[Mark] = []
    note_frontier(marks, 3, 100.0)
    note_frontier(marks, 3, 160.0)  # no progress: the earlier time stands
    note_frontier(marks, 5, 220.0)
    assert marks == [(3, 100.0), (5, 220.0)]
    assert due_frontier(marks, 100.0 + TTL - 1, TTL) == 0
    assert due_frontier(marks, 100.0 + TTL, TTL) == 3
    assert due_frontier(marks, 220.0 + TTL, TTL) == 5


def test_a_frontier_moving_back_keeps_the_time_of_the_prefix_it_still_covers() -> None:
    marks: list[Mark] = [(3, 100.0), (5, 200.0), (9, 300.0)]
    note_frontier(marks, 4, 400.0)  # someone with cursor 4 now counts again
    assert marks == [(3, 100.0), (4, 200.0)]  # 4 was delivered to all since 200
    note_frontier(marks, 2, 500.0)
    assert marks == [(2, 100.0)]
    note_frontier(marks, 6, 600.0)
    assert marks == [(2, 100.0), (6, 600.0)]


# The sweep in the core -------------------------------------------------------------------


def config(**retention_settings: float) -> Config:
    base = Config()
    return replace(base, retention=replace(base.retention, **retention_settings))


def deliver(*sessions: Session, upto: int) -> None:
    """What the hub does when the kernel took the bytes: the session has received."""
    for s in sessions:
        s.sent_id = max(s.sent_id, upto)


def tick(h: Harness, seconds: float) -> Outcome:
    h.now += seconds
    out = Outcome()
    while True:  # as the daemon does: again at once while a pass is unfinished
        step = h.chat.tick(h.now)
        out.changes += step.changes
        h.store.commit(step.changes)
        if h.chat.next_wakeup() != h.now:
            return out


def leave(h: Harness, s: Session) -> None:
    """A connection ended: the session's cursor is saved, as the server commits it."""
    h.store.commit(h.chat.close(s, h.now).changes)


def deleted(out: Outcome) -> list[int]:
    return [i for ch in out.changes if isinstance(ch, DeleteMessages) for i in ch.ids]


def history_ids(h: Harness, s: Session, chat: str) -> list[int]:
    ok = first(h.run(s, f"history {chat} 100"))
    assert isinstance(ok, Ok), ok
    return [p.message.id for p in ok.fields["messages"]]


def test_delivered_message_goes_an_hour_after_delivery_undelivered_stays() -> None:
    h = Harness()
    a, b = h.login("alice"), h.login("bob")
    h.run(a, "send_all one")  # id 1
    h.run(a, "send_all two")  # id 2
    deliver(a, upto=2)
    deliver(b, upto=1)  # bob has not received 2 yet
    assert deleted(tick(h, SWEEP)) == []  # first seen delivered to all now
    assert deleted(tick(h, TTL - SWEEP)) == []  # an hour after the message, not after delivery
    assert deleted(tick(h, SWEEP)) == [1]
    assert h.chat.index.chat_of(1) is None and 1 not in h.store.messages
    assert history_ids(h, a, GENERAL) == [2]
    deliver(b, upto=2)
    assert deleted(tick(h, SWEEP)) == []
    assert deleted(tick(h, TTL)) == [2]
    assert history_ids(h, a, GENERAL) == []


def test_undelivered_message_goes_at_max_age() -> None:
    h = Harness()
    a = h.login("alice")
    h.login("bob")  # and never receives anything
    h.run(a, "send_all hello")
    deliver(a, upto=1)
    assert deleted(tick(h, MAX_AGE - 1)) == []
    assert history_ids(h, a, GENERAL) == [1]
    assert deleted(tick(h, SWEEP)) == [1]  # the next sweep, past max age


def test_private_chat_recipients_are_the_two_parties() -> None:
    h = Harness()
    a, b = h.login("alice"), h.login("bob")
    c = h.login("carol")
    h.run(a, "send bob to bob")  # 1
    h.run(a, "send carol to carol")  # 2
    deliver(a, b, upto=2)  # carol never receives anything
    tick(h, SWEEP)
    assert deleted(tick(h, TTL)) == [1]
    assert history_ids(h, c, "@alice") == [2]


def test_room_recipients_are_its_members() -> None:
    h = Harness()
    a, b, c = h.login("alice"), h.login("bob"), h.login("carol")
    assert isinstance(first(h.run(a, "room create den")), Ok)
    assert isinstance(first(h.run(a, "room invite #den bob")), Ok)
    sent = first(h.run(a, "send #den in the den"))
    assert isinstance(sent, Ok)
    ident = sent.fields["id"]
    deliver(a, upto=ident)  # carol is not a member: she does not count
    tick(h, SWEEP)
    assert deleted(tick(h, TTL)) == []  # bob has not got it
    deliver(b, upto=ident)
    deliver(c, upto=0)
    tick(h, SWEEP)
    assert deleted(tick(h, TTL)) == [ident]


def test_a_user_who_never_comes_back_does_not_pin_general() -> None:
    h = Harness(config(general_recipient_idle_s=2 * 86400.0))
    ghost = h.login("ghost")
    leave(h, ghost)  # leaves; seen now
    h.now += 86400
    a = h.login("alice")
    h.run(a, "send_all anyone?")  # 1
    deliver(a, upto=1)
    tick(h, SWEEP)
    assert deleted(tick(h, TTL)) == []  # ghost was seen a day ago: still a recipient
    h.now += 86400 - TTL  # two days since ghost was seen
    out = tick(h, SWEEP)
    assert deleted(out) == []  # idle now: delivered to all from this sweep on
    assert deleted(tick(h, TTL)) == [1]


def test_a_returning_user_counts_again() -> None:
    h = Harness(config(general_recipient_idle_s=2 * 86400.0))
    ghost = h.login("ghost")
    leave(h, ghost)
    a = h.login("alice")
    h.now += 3 * 86400
    h.run(a, "send_all one")  # 1
    deliver(a, upto=1)
    tick(h, SWEEP)  # delivered to all (ghost idle)
    h.login("ghost")  # back, and not yet received 1
    h.now += TTL - 2 * SWEEP
    tick(h, SWEEP)  # the frontier moves back below 1
    assert deleted(tick(h, TTL)) == []
    assert history_ids(h, a, GENERAL) == [1]


def test_online_users_stay_seen_and_login_refreshes_last_seen() -> None:
    h = Harness(config(general_recipient_idle_s=3600.0))
    bob = h.login("bob")  # online and never receiving: always a recipient
    a = h.login("alice")
    h.run(a, "send_all one")
    deliver(a, upto=1)
    for _ in range(5):
        assert deleted(tick(h, TTL)) == []
    assert h.chat.accounts["bob"].last_seen == h.now
    leave(h, bob)
    h.now += 1000
    h.login("bob")
    assert h.chat.accounts["bob"].last_seen == h.now


def test_expired_messages_leave_history_replay_and_threads() -> None:
    h = Harness()
    a = h.login("alice")
    b = h.login("bob")
    h.run(a, "send_all root")  # 1
    h.run(b, "comment 1 a comment")  # 2
    leave(h, b)  # bob left having received nothing: both stay unread
    assert isinstance(first(h.run(a, "thread 1")), Ok)
    tick(h, MAX_AGE + SWEEP)
    assert h.chat.index.chat_of(1) is None and h.chat.index.chat_of(2) is None
    assert history_ids(h, a, GENERAL) == []
    assert error_code(h.run(a, "thread 1")) == "no-such-message"
    back = h.session()
    ok = first(h.run(back, "login bob"))
    assert isinstance(ok, Ok) and ok.fields["unread"] == 0


def test_sweep_works_in_small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retention, "SWEEP_DELETES_PER_TICK", 3)
    monkeypatch.setattr(retention, "SWEEP_CHATS_PER_TICK", 1)
    h = Harness()
    a, b = h.login("alice"), h.login("bob")
    for i in range(10):
        h.run(a, f"send_all m{i}")
    h.run(a, "send bob private")
    deliver(a, b, upto=11)
    tick(h, SWEEP)
    h.now += TTL
    batches = []
    for _ in range(10):
        out = h.chat.tick(h.now)
        h.store.commit(out.changes)
        batches.append(deleted(out))
        if h.chat.next_wakeup() != h.now:
            break
    assert all(len(b) <= 3 for b in batches)
    assert sorted(i for b in batches for i in b) == list(range(1, 12))
    assert h.chat.next_wakeup() == h.now + SWEEP  # the pass is over: back to the interval
    assert len(h.chat.index) == 0 and h.store.messages == {}


def test_files_are_told_which_messages_went() -> None:
    h = Harness()
    a = h.login("alice")
    h.run(a, "send_all one")
    ticket = h.chat.begin_upload(a, Upload("#general", "keep.txt", verb="upload"), h.now)
    assert isinstance(ticket, UploadTicket)
    h.store.commit(h.chat.finish_upload(a, ticket, Body(5, "ef" * 32), h.now).changes)
    deliver(a, upto=1)  # only the first message is delivered, so only it expires
    tick(h, SWEEP)
    assert deleted(tick(h, TTL)) == [1]
    assert [f.message_id for f in h.chat.files.by_id.values()] == [2]  # the file stays


def test_an_expiring_file_message_takes_its_file_along() -> None:
    h = Harness()
    a = h.login("alice")
    ticket = h.chat.begin_upload(a, Upload("#general", "notes.txt", verb="upload"), h.now)
    assert isinstance(ticket, UploadTicket)
    up = h.chat.finish_upload(a, ticket, Body(5, "ab" * 32), h.now)
    h.store.commit(up.changes)
    ok = first(up)
    assert isinstance(ok, Ok)
    deliver(a, upto=ok.fields["id"])
    tick(h, SWEEP)
    out = tick(h, TTL)
    assert deleted(out) == [ok.fields["id"]]
    assert any(isinstance(ch, DeleteFile) for ch in out.changes)
    assert h.chat.files.by_id == {} and h.store.files == {}
    assert h.chat.files.take_dead_bodies() == ["ab" * 32]


def test_last_seen_is_derived_at_start_up() -> None:
    h = Harness()
    a = h.login("alice")
    b = h.login("bob")
    h.now += 500
    h.run(a, "send_all one")  # 1, at T0 + 500
    deliver(b, upto=1)
    leave(h, b)  # saves bob's cursor 1
    h.now += 500
    h.run(a, "send_all two")  # 2, at T0 + 1000
    h.login("carol")  # created at T0 + 1000, cursor 2
    h2 = h.restart()
    seen = {k: acct.last_seen for k, acct in h2.chat.accounts.items()}
    assert seen == {"alice": T0 + 1000, "bob": T0 + 500, "carol": T0 + 1000}


def test_restart_keeps_undelivered_and_sweeps_delivered() -> None:
    h = Harness()
    a = h.login("alice")
    h.login("bob")
    h.run(a, "send_all one")
    h2 = h.restart()  # nobody online: alice's cursor 0 (never saved), bob's 0
    h2.now = h.now
    tick(h2, SWEEP)
    assert deleted(tick(h2, TTL)) == []
    assert h2.chat.index.chat_of(1) == GENERAL
