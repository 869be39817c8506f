"""Renderer: one event to text or JSON bytes."""

import json
from datetime import UTC

from chatd.protocol.events import Code, Error, FileInfo, Message, Mode, Push
from chatd.protocol.notices import AnyNotice
from chatd.protocol.render import Renderer
from chatd.protocol.replies import AnyOk
from chatd.protocol.timefmt import rfc3339

R = Renderer(UTC)
TS = 1_800_000_001.123
DM = Message(7, "@alice|bob", "alice", "hi", TS, to="bob")


def test_rfc3339_has_milliseconds_and_z() -> None:
    assert rfc3339(TS) == "2027-01-15T08:00:01.123Z"


def test_message_json_has_every_field() -> None:
    m = Message(5, "#general", "alice", "hello", TS)
    obj = json.loads(R.render(Push(m), Mode.JSON))
    assert obj == {
        "type": "message",
        "id": 5,
        "chat": "#general",
        "from": "alice",
        "text": "hello",
        "ts": "2027-01-15T08:00:01.123Z",
        "reply_to": None,
        "replay": False,
    }


def test_private_chat_reads_as_the_other_party() -> None:
    for_bob = json.loads(R.render(Push(DM, "bob"), Mode.JSON))
    for_alice = json.loads(R.render(Push(DM, "alice"), Mode.JSON))
    assert (for_bob["chat"], for_bob["to"]) == ("@alice", "bob")
    assert (for_alice["chat"], for_alice["to"]) == ("@bob", "bob")


def test_message_text_line() -> None:
    m = Message(9, "#general", "alice", "hi all", TS, reply_to=5)
    assert R.render(Push(m), Mode.TEXT) == b"08:00:01 [9] #general <alice> (re [5]) hi all\n"


def test_file_message() -> None:
    m = Message(9, "#general", "alice", "", TS, file=FileInfo(3, "cat.png", 10, "ab"))
    assert json.loads(R.json(Push(m)))["file"] == {
        "id": 3,
        "name": "cat.png",
        "size": 10,
        "sha256": "ab",
    }
    assert b"[file 3 cat.png 10 bytes]" in R.text(Push(m))


def test_ok_and_error_in_both_modes() -> None:
    ok = AnyOk("send_all", "send_all", {"id": 4, "ts": "t"})
    assert json.loads(R.json(ok)) == {"type": "ok", "cmd": "send_all", "id": 4, "ts": "t"}
    assert R.text(ok) == b"OK sent [4]\n"
    err = Error(Code.RATE_LIMITED, "slow down", "send_all", 12)
    assert json.loads(R.json(err)) == {
        "type": "error",
        "cmd": "send_all",
        "code": "rate-limited",
        "message": "slow down",
        "retry_after": 12,
    }
    assert R.text(err).startswith(b"ERR rate-limited slow down")


def test_items_come_before_the_closing_ok() -> None:
    who = AnyOk(
        "who", "who", {"users": [{"name": "a", "sessions": 1}, {"name": "b", "sessions": 2}]}
    )
    assert R.text(who) == b"  a (1 session)\n  b (2 sessions)\nOK 2 users online\n"


def test_history_embeds_message_objects() -> None:
    hist = AnyOk("history", "history", {"chat": "@alice", "messages": [Push(DM, "bob")]})
    obj = json.loads(R.json(hist))
    assert obj["messages"][0]["chat"] == "@alice"
    assert R.text(hist).endswith(b"OK 1 message in @alice\n")


def test_notices() -> None:
    n = AnyNotice("banned", {"until": "2027-01-15T12:00:00.000Z", "retry_after": 3600})
    assert R.text(n).startswith(b"* you are banned from sending until 2027")
    assert json.loads(R.json(n)) == {
        "type": "notice",
        "event": "banned",
        "until": "2027-01-15T12:00:00.000Z",
        "retry_after": 3600,
    }
    assert R.text(AnyNotice("odd", {"x": 1})) == b"* odd x=1\n"
