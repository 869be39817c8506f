"""Scheduled messages in the core: validation, firing on time, cancel, persistence, late
delivery."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from chatd.core import schedules
from chatd.core.outcome import DeleteSchedule, PutMessage
from chatd.protocol.commands import ParseError
from chatd.protocol.events import Notice, Push
from chatd.protocol.replies import AnyOk
from tests.helpers.core import Core, messages, notices, room_with

NOW_ISO = "2027-01-15T08:00:00.000Z"  # Core's start time


class LogRecorder:
    """Stands in for the module's structlog logger: keeps (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        def record(event: str, **fields: Any) -> None:
            self.events.append((level, event, fields))

        return record


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> LogRecorder:
    recorder = LogRecorder()
    monkeypatch.setattr(schedules, "log", recorder)
    return recorder


# Scheduling ---------------------------------------------------------------------------------


def test_schedule_replies_with_id_and_time() -> None:
    core = Core()
    alice = core.login("alice")
    assert core.ok(alice, "schedule +30s send_all hi") == {
        "schedule_id": 1,
        "at": "2027-01-15T08:00:30.000Z",
    }
    assert core.ok(alice, "schedule +1h30m send_all later")["at"] == "2027-01-15T09:30:00.000Z"
    assert core.ok(alice, "schedule 2027-01-16T00:00Z send_all midnight")["schedule_id"] == 3
    assert core.store.schedules[1].command == "send_all hi"
    assert core.chat.schedules_wakeup() == core.now + 30


def test_clock_times_use_the_server_time_zone() -> None:
    core = Core(server__timezone="Asia/Tokyo")  # 08:00 UTC is 17:00 in Tokyo
    alice = core.login("alice")
    assert core.ok(alice, "schedule 18:00 send_all evening")["at"] == "2027-01-15T09:00:00.000Z"
    assert core.ok(alice, "schedule 16:00 send_all tomorrow")["at"] == "2027-01-16T07:00:00.000Z"


@pytest.mark.parametrize(
    "when",
    ["+0s", "2020-01-01T00:00Z", "+31d", "2027-03-01T00:00Z", "soon", "+5x", "25:00"],
)
def test_past_far_and_unreadable_times_are_bad_args(when: str) -> None:
    core = Core()
    alice = core.login("alice")
    assert core.err(alice, f"schedule {when} send_all hi") == "bad-args"
    assert core.store.schedules == {}


def test_the_wrapped_command_is_checked_when_scheduled() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    carol = core.login("carol")
    secret = core.ok(alice, "send bob psst")["id"]
    assert core.err(alice, "schedule +1m send nobody hi") == "no-such-user"
    assert core.err(carol, "schedule +1m send #dev hi") == "not-a-member"
    assert core.err(carol, "schedule +1m send #nope hi") == "no-such-chat"
    assert core.err(carol, f"schedule +1m comment {secret} hm") == "no-such-message"
    with pytest.raises(ParseError, match="only send_all, send and comment"):
        core.run(carol, "schedule +1m ping")
    core.ok(bob, f"schedule +1m comment {secret} ok")
    core.ok(bob, "schedule +1m send #dev hi")
    core.ok(bob, "schedule +1m send alice hi")
    core.ok(bob, "schedule +1m send #general hi")


def test_per_user_cap() -> None:
    core = Core(schedule__max_pending_per_user=2)
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, "schedule +10m send_all a")
    core.ok(alice, "schedule +5m send_all b")
    out = core.run(alice, "schedule +1m send_all c")
    err = out.replies[0]
    assert str(getattr(err, "code", "")) == "rate-limited"
    assert getattr(err, "retry_after", None) == 300  # when the first of them goes
    core.ok(bob, "schedule +1m send_all bob is not capped by alice")
    core.ok(alice, "cancel 1")
    core.ok(alice, "schedule +1m send_all c")


def test_scheduling_into_a_ban_is_refused_but_after_it_is_fine() -> None:
    core = Core(moderation__strikes_to_ban=1, moderation__ban_duration_s=3600)
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, "ban bob")
    assert core.err(bob, "schedule +30m send_all hi") == "banned"
    assert core.ok(bob, "schedule +2h send_all back")["schedule_id"] == 1


# Listing and cancelling ----------------------------------------------------------------------


def test_scheduled_lists_own_pending_soonest_first() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, "schedule +2h send_all two")
    core.ok(bob, "schedule +1m send_all bob's")
    core.ok(alice, "schedule +1h send bob   one spaced")
    assert core.ok(alice, "scheduled")["scheduled"] == [
        {"schedule_id": 3, "at": "2027-01-15T09:00:00.000Z", "command": "send bob   one spaced"},
        {"schedule_id": 1, "at": "2027-01-15T10:00:00.000Z", "command": "send_all two"},
    ]
    assert core.ok(core.login("carol"), "scheduled")["scheduled"] == []


def test_cancel() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, "schedule +1m send_all never")
    assert core.err(bob, "cancel 1") == "no-such-schedule"  # someone else's
    assert core.err(alice, "cancel 7") == "no-such-schedule"
    out = core.run(alice, "cancel 1")
    assert out.replies == [AnyOk("cancel", "cancel", {"schedule_id": 1})]
    assert out.changes == [DeleteSchedule(1)]
    assert core.err(alice, "cancel 1") == "no-such-schedule"
    assert core.chat.schedules_wakeup() is None
    out = core.tick(120)
    assert out.broadcasts == [] and out.changes == []


# Firing -----------------------------------------------------------------------------------------


def test_fires_at_its_time_as_its_user(logs: LogRecorder) -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    alice2 = core.login("alice")
    core.ok(alice, "schedule +30s send_all good morning")
    assert core.tick(29.9).changes == []
    out = core.tick(0.1)
    [msg] = [m for m, _ in out.broadcasts]
    assert (msg.sender, msg.chat, msg.text, msg.ts) == (
        "alice",
        "#general",
        "good morning",
        core.now,
    )
    assert PutMessage(msg) in out.changes and DeleteSchedule(1) in out.changes
    assert messages(core.received(out, bob)) == [msg]
    for s in (alice, alice2):  # all of the sender's sessions: the notice, and the message
        got = core.received(out, s)
        assert notices(got, "scheduled-sent") == [{"schedule_id": 1, "id": msg.id}]
        assert messages(got) == [msg]
    assert core.store.schedules == {}
    assert core.err(alice, "cancel 1") == "no-such-schedule"  # already sent
    assert core.ok(alice, "scheduled")["scheduled"] == []
    [(level, event, fields)] = [
        e for e in logs.events if e[1].startswith("schedule.") and e[1] != "schedule.created"
    ]
    assert (level, event, fields["late_s"]) == ("info", "schedule.sent", 0.0)


def test_scheduled_private_message_and_comment() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    root = core.ok(bob, "send_all topic")["id"]
    core.ok(alice, "schedule +1m send bob see you")
    core.ok(alice, f"schedule +2m comment {root} agreed")
    out = core.tick(60)
    [dm] = [e for e in core.received(out, bob) if isinstance(e, Push)]
    assert (dm.message.text, dm.message.to, dm.viewer) == ("see you", "bob", "bob")
    mine = core.received(out, alice)
    assert isinstance(mine[0], Notice) and mine[0].event == "scheduled-sent"
    assert [m.text for m in messages(mine[1:])] == ["see you"]
    out = core.tick(60)
    [comment] = messages(core.received(out, bob))
    assert comment.reply_to == root and comment.sender == "alice"


def test_heap_order_and_many_due_at_once() -> None:
    core = Core()
    alice = core.login("alice")
    for when in ("+3m", "+1m", "+2m", "+4m"):
        core.ok(alice, f"schedule {when} send_all at {when}")
    core.ok(alice, "cancel 2")  # the +1m one
    assert core.chat.schedules_wakeup() == core.now + 120
    out = core.tick(200)
    assert [m.text for m, _ in out.broadcasts] == ["at +2m", "at +3m"]
    assert core.chat.schedules_wakeup() == core.now - 200 + 240


def test_dropped_when_banned_or_no_longer_a_member(logs: LogRecorder) -> None:
    core = Core(moderation__strikes_to_ban=1)
    alice, bob = room_with(core, "alice", "bob")
    core.ok(bob, "schedule +1m send #dev hi room")
    core.ok(bob, "schedule +2m send_all hi all")
    core.ok(alice, "room kick #dev bob")
    out = core.tick(60)
    assert out.broadcasts == []
    assert notices(core.received(out, bob), "scheduled-failed") == [
        {"schedule_id": 1, "reason": "not-a-member"}
    ]
    assert out.changes == [DeleteSchedule(1)]
    core.ok(alice, "ban bob")
    out = core.tick(60)
    assert notices(core.received(out, bob), "scheduled-failed") == [
        {"schedule_id": 2, "reason": "banned"}
    ]
    assert core.store.schedules == {}
    assert [e[2]["reason"] for e in logs.events if e[1] == "schedule.failed"] == [
        "not-a-member",
        "banned",
    ]


def test_restart_keeps_pending_schedules_and_ids() -> None:
    core = Core()
    alice = core.login("alice")
    core.ok(alice, "schedule +1m send_all one")
    core.ok(alice, "schedule +2m send_all two")
    core.ok(alice, "cancel 2")
    core.restart()
    alice = core.login("alice")
    assert [r["schedule_id"] for r in core.ok(alice, "scheduled")["scheduled"]] == [1]
    assert core.ok(alice, "schedule +5m send_all three")["schedule_id"] == 3
    out = core.tick(60)
    assert [m.text for m, _ in out.broadcasts] == ["one"]
    core.restart()
    assert [m.text for m, _ in core.tick(0).broadcasts] == []  # not sent twice
    assert [m.text for m, _ in core.tick(240).broadcasts] == ["three"]


def test_due_while_down_goes_out_at_the_first_tick_marked_late(logs: LogRecorder) -> None:
    core = Core()
    alice = core.login("alice")
    core.ok(alice, "schedule +1m send_all while you slept")
    core.restart()
    core.now += 3600
    out = core.tick()
    assert [m.text for m, _ in out.broadcasts] == ["while you slept"]
    [fields] = [e[2] for e in logs.events if e[1] == "schedule.late"]
    assert fields["late_s"] == 3540 and fields["schedule_id"] == 1
