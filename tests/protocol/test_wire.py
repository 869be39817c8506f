"""JSON objects back into typed values: every kind the core builds survives the trip
through the JSON renderer unchanged."""

from __future__ import annotations

import json

import pytest

from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.events import Code, Error, Event, FileInfo, Message, Mode, Push
from chatd.protocol.render import Renderer
from chatd.protocol.wire import REPLIES, WireError, event_from_json

T = 1_800_000_000.123
MSG = Message(5, "#general", "alice", "hi", T)
FILE = FileInfo(3, "a.txt", 10, "ab" * 32)

SAMPLES: list[Event] = [
    r.HelpOk("help", (r.CommandRow("ping", "ping", "keep-alive"),)),
    r.ModeOk("mode", "json"),
    r.PingOk("ping"),
    r.QuitOk("quit"),
    r.StatusOk("status", r.ServerRow("0.1.0", 5, 2)),
    r.StatusOk("status", r.ServerRow("0.1.0", 5, 2), "bob", 1, (r.ChatRow("#general", 0, 5),)),
    r.LoginOk("login", "bob", False, 3),
    r.PasswdOk("passwd"),
    r.SendAllOk("send_all", 6, T),
    r.SentOk("send", 7, T),
    r.CommentOk("comment", 8, T, 5),
    r.WhoOk("who", (r.UserRow("bob", 2),)),
    r.WhoOk("who", (r.UserRow("bob", 2),), "#dev"),
    r.HistoryOk("history", "#general", (Push(MSG, None, True),)),
    r.ThreadOk("thread", Push(MSG), ()),
    r.BanOk("report", "troll", 1, None),
    r.BanOk("ban", "troll", 3, T + 3600),
    r.UnbanOk("unban", "troll"),
    r.KickOk("kick", "troll"),
    r.AnnounceOk("announce"),
    r.StatsOk("stats", {"accounts": 3.0}),
    r.ScheduleOk("schedule", 1, T + 60),
    r.ScheduledOk("scheduled", (r.ScheduledRow(1, T + 60, "send_all hi"),)),
    r.CancelOk("cancel", 1),
    r.UploadOk("upload", 9, T, FILE),
    r.DownloadOk("download", FILE),
    r.RoomOk("room", "#dev"),
    r.RoomOk("room", "#dev", "bob", ("alice", "bob")),
    r.RoomOk("room", "#dev", link="tok", expires=T + 86400),
    r.RoomsOk("rooms", (r.RoomRow("#dev", "alice", 2),)),
    r.JoinOk("join", "#dev", "pending"),
    n.Warned(1, 3),
    n.Banned(T, 14400, "strikes"),
    n.Unbanned(),
    n.Kicked("root"),
    n.Announce("root", "hello"),
    n.Shutdown(),
    n.SlowConsumer(123),
    n.LoginTimeout("60"),
    n.Invited("#dev", "alice"),
    n.JoinRequest("#dev", "carol"),
    n.Joined("#dev", "carol"),
    n.Left("#dev", "carol"),
    n.Denied("#dev"),
    n.Removed("#dev", "alice"),
    n.Owner("#dev", "bob"),
    n.ScheduledSent(1, 6),
    n.ScheduledFailed(1, "banned"),
    Error(Code.RATE_LIMITED, "slow down", "send_all", 30),
]


def wire(event: Event) -> dict[str, object]:
    value = json.loads(Renderer().render(event, Mode.JSON))
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_kind_survives_the_round_trip(event: Event) -> None:
    back = event_from_json(wire(event))
    assert type(back) is type(event)
    assert wire(back) == wire(event)


def test_every_reply_kind_has_a_sample() -> None:
    sampled = {type(e) for e in SAMPLES}
    assert set(REPLIES.values()) <= sampled


def test_an_alias_decodes_to_its_command_and_unknown_kinds_are_kept() -> None:
    back = event_from_json(
        {"type": "ok", "cmd": "report", "user": "t", "strikes": 1, "banned_until": None}
    )
    assert isinstance(back, r.BanOk) and back.cmd == "report"
    newer = event_from_json({"type": "ok", "cmd": "frob", "x": 1})
    assert isinstance(newer, r.AnyOk) and newer.fields == {"x": 1}
    odd = event_from_json({"type": "notice", "event": "new-thing", "y": 2})
    assert isinstance(odd, n.AnyNotice) and odd.event == "new-thing"


def test_a_broken_object_is_an_error_not_a_guess() -> None:
    with pytest.raises(WireError):
        event_from_json({"type": "ok", "cmd": "login", "user": "bob"})
    with pytest.raises(WireError):
        event_from_json({"type": "ok", "cmd": "schedule", "schedule_id": 1, "at": "soon"})
