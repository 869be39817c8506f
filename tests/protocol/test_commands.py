"""parse(): one line to a typed command, or a ParseError quoting the usage."""

import pytest

from chatd.protocol import commands as c
from chatd.protocol.events import Code


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("help", c.Help(None, verb="help")),
        ("HELP Send", c.Help("send", verb="help")),
        ("mode JSON", c.SetMode("json", verb="mode")),
        ("ping", c.Ping(verb="ping")),
        ("login alice", c.Login("alice", None, verb="login")),
        ("Login alice s3cret", c.Login("alice", "s3cret", verb="login")),
        ("login alice after 42", c.Login("alice", None, 42, verb="login")),
        ("login alice pw AFTER 7", c.Login("alice", "pw", 7, verb="login")),
        ("login alice after", c.Login("alice", "after", verb="login")),  # a password
        ("passwd new old", c.Passwd("new", "old", verb="passwd")),
        ("send_all  hello   world ", c.SendAll("hello   world", verb="send_all")),
        ("send @bob hi there", c.Send("@bob", "hi there", verb="send")),
        ("report bob spam", c.Ban("bob", "spam", verb="report")),
        ("ban bob", c.Ban("bob", "", verb="ban")),
        ("who #room", c.Who("#room", verb="who")),
        ("status", c.Status(verb="status")),
        ("history #general", c.History("#general", None, None, verb="history")),
        ("history @bob 5 before 42", c.History("@bob", 5, 42, verb="history")),
        ("history bob before 7", c.History("bob", None, 7, verb="history")),
        ("comment 12 nice", c.Comment(12, "nice", verb="comment")),
        ("thread 12", c.Thread(12, verb="thread")),
        ("cancel 3", c.Cancel(3, verb="cancel")),
        ("upload bob cat.png", c.Upload("bob", "cat.png", verb="upload")),
        ("download 4", c.Download(4, verb="download")),
        ("room create dev", c.Room("create", "dev", None, verb="room")),
        ("room invite #dev bob", c.Room("invite", "#dev", "bob", verb="room")),
        ("rooms", c.Rooms(verb="rooms")),
        ("join abc", c.Join("abc", verb="join")),
        ("unban bob", c.Unban("bob", verb="unban")),
        ("announce back soon", c.Announce("back soon", verb="announce")),
        ("quit", c.Quit(verb="quit")),
        ("send_all\thi", c.SendAll("hi", verb="send_all")),
    ],
)
def test_parses(line: str, expected: c.Command) -> None:
    assert c.parse(line) == expected


def test_schedule_wraps_a_send() -> None:
    cmd = c.parse("schedule +10m send bob later")
    assert isinstance(cmd, c.Schedule)
    assert cmd.when == "+10m"
    assert cmd.inner == c.Send("bob", "later", verb="send")
    assert cmd.inner_line == "send bob later"


@pytest.mark.parametrize(
    "line",
    [
        "login",
        "login a b c",
        "send bob",
        "send_all",
        "send_all   ",
        "mode xml",
        "history",
        "history #general 0",
        "history #general x",
        "history #general 5 after 3",
        "comment x hi",
        "comment 3",
        "thread",
        "ping now",
        "room explode #x",
        "room invite #x",
        "schedule +1m quit",
        "schedule +1m",
    ],
)
def test_bad_arguments_quote_the_usage(line: str) -> None:
    with pytest.raises(c.ParseError) as e:
        c.parse(line)
    assert e.value.code is Code.BAD_ARGS
    spec = c.lookup(line.split(maxsplit=1)[0])
    assert spec is not None and spec.usage in e.value.message
    assert e.value.cmd == line.split(maxsplit=1)[0].lower()


def test_unknown_command() -> None:
    with pytest.raises(c.ParseError) as e:
        c.parse("Dance now")
    assert e.value.code is Code.UNKNOWN_COMMAND and e.value.cmd == "dance"


def test_every_command_has_a_usage_and_a_summary() -> None:
    for spec in c.COMMANDS.values():
        assert spec.usage.split()[0] == spec.name
        assert spec.summary


def test_schedule_cannot_nest_schedules() -> None:
    with pytest.raises(c.ParseError) as e:
        c.parse("schedule +1m " * 600 + "send_all x")
    assert e.value.code is Code.BAD_ARGS
