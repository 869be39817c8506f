"""Parsing `when` for schedule: relative, HH:MM in a zone, ISO 8601."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatd.core.timespec import WhenError, parse_when, relative_seconds

# 2027-01-15 08:00:00 UTC, a Friday
NOW = datetime(2027, 1, 15, 8, 0, tzinfo=UTC).timestamp()
BERLIN = ZoneInfo("Europe/Berlin")


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: ZoneInfo | None = None
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz or UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("+30s", 30),
        ("+10m", 600),
        ("+2h", 7200),
        ("+1d", 86400),
        ("+1h30m", 5400),
        ("+1d2h3m4s", 93784),
        ("+90", 90),
        ("+2H", 7200),
    ],
)
def test_relative(text: str, seconds: int) -> None:
    assert parse_when(text, NOW, UTC) == NOW + seconds


@pytest.mark.parametrize("text", ["+", "+m", "+1x", "+30m1h", "+1.5h", "+-5m", "+ 5m", "+1h 2m"])
def test_bad_relative(text: str) -> None:
    with pytest.raises(WhenError):
        parse_when(text, NOW, UTC)


def test_absurd_relative_is_refused_not_overflowed() -> None:
    with pytest.raises(WhenError, match="too far"):
        relative_seconds("+9999999999999d")


def test_clock_time_later_today() -> None:
    assert parse_when("12:30", NOW, UTC) == at(2027, 1, 15, 12, 30)


def test_clock_time_already_past_is_tomorrow() -> None:
    assert parse_when("07:59", NOW, UTC) == at(2027, 1, 16, 7, 59)


def test_clock_time_now_exactly_is_tomorrow() -> None:
    assert parse_when("08:00", NOW, UTC) == at(2027, 1, 16, 8, 0)


def test_clock_time_with_seconds() -> None:
    assert parse_when("08:00:30", NOW, UTC) == NOW + 30


def test_clock_time_in_server_zone() -> None:
    # 08:00 UTC is 09:00 in Berlin (CET): 09:30 there is in 30 minutes
    assert parse_when("9:30", NOW, BERLIN) == NOW + 1800


def test_clock_time_across_dst_start_keeps_wall_time() -> None:
    # Berlin moves from CET to CEST on 2027-03-28 at 02:00
    before = at(2027, 3, 27, 12, 0, tz=BERLIN)
    assert parse_when("10:00", before, BERLIN) == at(2027, 3, 28, 10, 0, tz=BERLIN)
    assert parse_when("10:00", before, BERLIN) - before == 22 * 3600 - 3600


@pytest.mark.parametrize("text", ["24:00", "12:60", "7:5", "12:00:61"])
def test_bad_clock_time(text: str) -> None:
    with pytest.raises(WhenError):
        parse_when(text, NOW, UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2027-01-15T10:00:00Z", at(2027, 1, 15, 10)),
        ("2027-01-15T10:00:00.250Z", at(2027, 1, 15, 10) + 0.25),
        ("2027-01-15T10:00+02:00", at(2027, 1, 15, 8)),
        ("2027-01-15t10:00z", at(2027, 1, 15, 10)),
        ("2027-01-15T10:00", at(2027, 1, 15, 10)),
    ],
)
def test_iso(text: str, expected: float) -> None:
    assert parse_when(text, NOW, UTC) == expected


def test_iso_without_offset_is_server_wall_time() -> None:
    assert parse_when("2027-01-15T10:00", NOW, BERLIN) == at(2027, 1, 15, 9)


def test_past_times_are_returned_for_the_caller_to_refuse() -> None:
    assert parse_when("2020-01-01T00:00Z", NOW, UTC) < NOW


@pytest.mark.parametrize("text", ["tomorrow", "2027-13-01T00:00", "", "noon", "12h"])
def test_bad_iso(text: str) -> None:
    with pytest.raises(WhenError):
        parse_when(text, NOW, UTC)


@given(d=st.integers(0, 40), h=st.integers(0, 99), m=st.integers(0, 99), s=st.integers(0, 99))
def test_relative_parts_add_up(d: int, h: int, m: int, s: int) -> None:
    text = "+" + "".join(f"{n}{u}" for n, u in ((d, "d"), (h, "h"), (m, "m"), (s, "s")))
    assert relative_seconds(text) == d * 86400 + h * 3600 + m * 60 + s


@given(st.text(max_size=20))
def test_any_text_parses_or_raises_when_error(text: str) -> None:
    try:
        value = parse_when(text, NOW, BERLIN)
    except WhenError:
        return
    assert isinstance(value, float)
