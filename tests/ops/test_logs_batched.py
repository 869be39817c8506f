"""Batched log events (issue 17): the `message.sent` calls of one event-loop turn are one
line (one journal entry) with a count and a list per field, so info logging costs a
fraction of a message's handling; a turn with one call writes the line it always did."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from chatd import logs
from tests.helpers.journald import FakeJournald, decode_native


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(logs, "WRITE_INTERVAL_S", 0.0)  # a write per turn, unless a test says
    yield
    logs.configure("warning", "console")  # as tests/conftest.py set it


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


def in_one_turn(*steps: Callable[[], None]) -> None:
    """Runs `steps` in one loop turn, then lets the turn end."""

    async def turn() -> None:
        for step in steps:
            step()
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    asyncio.run(turn())


def lines_of(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_the_calls_of_one_turn_are_one_line_with_a_list_per_field(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    in_one_turn(
        lambda: log.info("message.sent", user="alice", chat="#general", id=7),
        lambda: log.info("message.sent", user="bob", chat="@alice", id=8),
        lambda: log.info("message.sent", user="alice", chat="#general", id=9),
    )
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert event == {
        "count": 3,
        "user": ["alice", "bob", "alice"],
        "chat": ["#general", "@alice", "#general"],
        "id": [7, 8, 9],
        "event": "message.sent",
        "level": "info",
        "timestamp": event["timestamp"],
    }
    assert event["timestamp"].endswith("Z") and len(event["timestamp"]) == 27
    assert line == json.dumps(event)  # the same layout as every other line


def test_a_field_only_some_calls_have_is_null_in_the_others(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    in_one_turn(
        lambda: log.info("message.sent", user="alice", chat="#general", id=1),
        lambda: log.info("message.sent", user="bob", chat="#general", id=2, reply_to=1),
    )
    (event,) = lines_of(out)
    assert (event["count"], event["id"], event["reply_to"]) == (2, [1, 2], [None, 1])


def test_one_call_in_a_turn_is_the_plain_line(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    in_one_turn(lambda: log.info("message.sent", user="alice", chat="#general", id=1))
    in_one_turn(lambda: log.info("message.sent", user="bob", chat="#general", id=2))
    events = lines_of(out)
    assert [(e["user"], e["id"], "count" in e) for e in events] == [
        ("alice", 1, False),
        ("bob", 2, False),
    ]


def test_the_batch_keeps_the_place_of_its_first_call(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    in_one_turn(
        lambda: log.info("room.created", room="#a"),
        lambda: log.info("message.sent", user="alice", chat="#general", id=1),
        lambda: log.info("session.closed", session=3),
        lambda: log.info("message.sent", user="alice", chat="#general", id=2),
    )
    assert [(e["event"], e.get("id")) for e in lines_of(out)] == [
        ("room.created", None),
        ("message.sent", [1, 2]),
        ("session.closed", None),
    ]


def test_an_error_writes_the_batch_so_far_first(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    in_one_turn(
        lambda: log.info("message.sent", user="alice", chat="#general", id=1),
        lambda: log.error("commit.failed", batch=4),
        lambda: log.info("message.sent", user="alice", chat="#general", id=2),
    )
    assert [(e["event"], e.get("id")) for e in lines_of(out)] == [
        ("message.sent", 1),
        ("commit.failed", None),
        ("message.sent", 2),
    ]


def test_a_batch_still_held_is_written_when_the_output_changes(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")

    async def turn() -> None:
        log.info("message.sent", user="alice", chat="#general", id=1)
        log.info("message.sent", user="alice", chat="#general", id=2)
        logs.configure("warning", "console")  # as at exit: what is held is written

    asyncio.run(turn())
    assert [e["id"] for e in lines_of(out)] == [[1, 2]]


def test_below_the_level_nothing_is_held(out: io.StringIO) -> None:
    logs.configure("warning", "json", out)
    log = logs.get_logger("chatd.test")
    in_one_turn(lambda: log.info("message.sent", user="alice", chat="#general", id=1))
    assert out.getvalue() == ""


def test_the_journal_gets_one_entry_per_batch_with_repeated_fields(tmp_path: Path) -> None:
    journald = FakeJournald(tmp_path / "journal.socket")
    with open(tmp_path / "stdout", "w+", encoding="utf-8") as stdout:
        st = os.fstat(stdout.fileno())
        logs.configure(
            "info",
            "auto",
            stream=stdout,
            environ={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"},
            journal_socket=str(journald.path),
        )
        log = logs.get_logger("chatd.test")
        try:
            in_one_turn(
                lambda: log.info("message.sent", user="alice", chat="#general", id=7),
                lambda: log.info("room.created", room="#a", owner="carol"),
                lambda: log.info("message.sent", user="bob", chat="#general", id=8),
                lambda: log.info("message.sent", user="alice", chat="#general", id=9),
            )
            first, second, third = (decode_native(journald.receive()) for _ in range(3))
            assert not journald.pending()
        finally:
            journald.close()
        assert_nothing_on(stdout)
    fields: dict[str, list[str]] = {}
    for key, value in first:
        fields.setdefault(key, []).append(value.decode())
    assert fields["CHATD_EVENT"] == ["message.sent"]  # held until the next other event
    assert (fields["CHATD_ID"], fields["CHATD_USER"]) == (["7"], ["alice"])
    assert "CHATD_COUNT" not in fields
    assert dict(second)["CHATD_EVENT"] == b"room.created"
    fields = {}
    for key, value in third:
        fields.setdefault(key, []).append(value.decode())
    assert fields["PRIORITY"] == ["6"] and fields["CHATD_COUNT"] == ["2"]
    assert fields["CHATD_USER"] == ["bob", "alice"]  # each distinct value once
    assert fields["CHATD_CHAT"] == ["#general"]
    assert fields["CHATD_ID"] == ["8", "9"]
    (message,) = fields["MESSAGE"]
    assert json.loads(message)["id"] == [8, 9]


def assert_nothing_on(stream: TextIO) -> None:
    stream.seek(0)
    assert stream.read() == ""


def test_connection_and_login_events_stay_a_line_each(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")

    def storm() -> None:
        for i in range(3):
            log.info("session.opened", session=i, peer="::1", telnet=False)
            log.info("user.login", user=f"u{i}", session=i, new=True)

    in_one_turn(storm)
    assert [(e["event"], e["session"], e.get("telnet")) for e in lines_of(out)] == [
        ("session.opened", 0, False),
        ("user.login", 0, None),
        ("session.opened", 1, False),
        ("user.login", 1, None),
        ("session.opened", 2, False),
        ("user.login", 2, None),
    ]


def test_a_busy_loop_writes_the_lines_of_its_turns_together(
    out: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logs, "WRITE_INTERVAL_S", 3600.0)
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    written: list[str] = []

    async def turns() -> None:
        for ident in (1, 2, 3):
            log.info("message.sent", user="alice", chat="#general", id=ident)
            log.info("message.sent", user="bob", chat="#general", id=ident * 10)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            written.append(out.getvalue())
        logs.configure("warning", "console")  # as at exit: what is held is written

    asyncio.run(turns())
    assert json.loads(written[0])["id"] == [1, 10]  # after a quiet spell: at the turn's end
    assert written[1] == written[2] == written[0]  # within the interval: held
    # still a line per turn, written together
    assert [e["id"] for e in lines_of(out)] == [[1, 10], [2, 20], [3, 30]]
