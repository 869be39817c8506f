"""The JSON line encoder's fast path (issue 17) writes what json.dumps writes, for the
values login events carry (booleans) and every value it hands to the encoder."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

from chatd import logs


class Level(enum.IntEnum):
    HIGH = 3


@pytest.mark.parametrize(
    "fields",
    [
        {"session": 7, "peer": "127.0.0.1", "telnet": False},
        {"user": "alice", "new": True, "unread": 0},
        {"ms": 12.5, "ratio": -0.0, "big": 1e300, "small": 5e-324, "third": 1 / 3},
        {"nan": float("nan")},
        {"inf": float("inf"), "ninf": float("-inf")},
        {"level": Level.HIGH, "flag": True},
        {"error": None, "telnet": True, "text": 'caf\u00e9 \u2603 "q" \\ \n'},
    ],
)
def test_the_fast_path_writes_what_json_dumps_writes(fields: dict[str, Any]) -> None:
    assert logs.encode_json_line(fields) == json.dumps(fields, default=repr)


@pytest.mark.parametrize(
    "fields",
    [
        {"session": 7, "peer": "127.0.0.1", "telnet": False},
        {},
        {"by": ["r1", "r2"], "user": "bob"},
        {"level": 3, "user": "bob"},
        {"text": 'caf\u00e9 "q"', "n": None},
    ],
)
def test_an_events_line_is_its_fields_then_event_level_and_time(fields: dict[str, Any]) -> None:
    stamp = "2026-11-30T03:00:00.000001Z"
    line = logs.event_json_line(fields, "session.opened", "info", stamp)
    expected = {**fields, "event": "session.opened", "level": "info", "timestamp": stamp}
    assert line == json.dumps(expected, default=repr)
    assert "event" not in fields and "timestamp" not in fields  # the caller's dict as it was
