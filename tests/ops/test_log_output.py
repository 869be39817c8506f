"""The fast log outputs (issue 17): JSON lines built without structlog's chain, written
once per event-loop turn; the same text as structlog's JSONRenderer."""

from __future__ import annotations

import asyncio
import enum
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from chatd import logs


class Color(enum.StrEnum):
    RED = "r\u00e9d"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    logs.configure("warning", "console")  # as tests/conftest.py set it


@pytest.mark.parametrize(
    "fields",
    [
        {"user": "alice", "chat": "#general", "id": 7},
        {"text": 'quote " backslash \\ newline \n caf\u00e9 \u2603', "n": -3, "none": None},
        {"flag": True, "ratio": 1.5, "list": [1, "a"], "color": Color.RED, "obj": object},
        {},
    ],
)
def test_the_line_is_what_json_dumps_writes(fields: dict[str, Any]) -> None:
    assert logs.encode_json_line(fields) == json.dumps(fields, default=repr)


def test_lines_logged_in_one_loop_turn_are_written_together(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    seen: list[str] = []

    async def turn() -> None:  # message.sent is batched: tests/ops/test_logs_batched.py
        log.info("room.created", room="#a", owner="alice", id=1)
        log.info("room.created", room="#b", owner="alice", id=2)
        seen.append(out.getvalue())  # still in the turn: nothing written yet
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(out.getvalue())

    asyncio.run(turn())
    assert seen[0] == ""
    lines = [json.loads(line) for line in seen[1].splitlines()]
    assert [(e["event"], e["id"], e["level"]) for e in lines] == [
        ("room.created", 1, "info"),
        ("room.created", 2, "info"),
    ]
    assert all(e["timestamp"].endswith("Z") and len(e["timestamp"]) == 27 for e in lines)


def test_an_error_is_written_at_once_after_what_came_before(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    log = logs.get_logger("chatd.test")
    written: list[str] = []

    async def turn() -> None:
        log.info("message.sent", user="alice", chat="#general", id=1)
        try:
            raise RuntimeError("disk on fire")
        except RuntimeError:
            log.exception("timer.failed", timer="tick")
        written.append(out.getvalue())

    asyncio.run(turn())
    events = [json.loads(line) for line in written[0].splitlines()]
    assert [e["event"] for e in events] == ["message.sent", "timer.failed"]
    assert "RuntimeError: disk on fire" in events[1]["exception"]


def test_outside_a_loop_a_line_is_written_at_once(out: io.StringIO) -> None:
    logs.configure("info", "json", out)
    logs.get_logger("chatd.test").info("user.login", user="bob", new=False)
    assert json.loads(out.getvalue()) == {
        "user": "bob",
        "new": False,
        "event": "user.login",
        "level": "info",
        "timestamp": json.loads(out.getvalue())["timestamp"],
    }


def test_below_the_level_nothing_is_written(out: io.StringIO) -> None:
    logs.configure("warning", "json", out)
    logs.get_logger("chatd.test").info("message.sent", user="alice", chat="#general", id=1)
    logs.get_logger("chatd.test").warning("user.banned", user="bob")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["user.banned"]
