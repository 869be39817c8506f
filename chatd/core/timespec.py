"""When a scheduled message is due: `+30s`/`+1h30m`, `HH:MM` or an ISO 8601 date-time.

Pure: the current time and the server's time zone come in as arguments, so the same
text always gives the same instant in tests. A zone of None means the system's.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, tzinfo

_RELATIVE = re.compile(r"\+(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", re.IGNORECASE)
_SECONDS = re.compile(r"\+(\d+)")
_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}))?")
_MAX_DIGITS = 9  # a relative part beyond this is past any horizon; keeps ints small

USAGE = (
    "when is +30s, +10m, +2h, +1d (or combined, +1h30m), HH:MM, "
    "or an ISO 8601 date-time such as 2026-11-26T12:00 or 2026-11-26T12:00:00Z"
)


class WhenError(ValueError):
    """Text that is not a time this module understands; the message says why."""


def parse_when(text: str, now: float, tz: tzinfo | None) -> float:
    """The Unix time `text` means at `now`; raises WhenError. Past times are returned
    as such: whether they are allowed is the caller's rule."""
    text = text.strip()
    if text.startswith("+"):
        return now + relative_seconds(text)
    m = _CLOCK.fullmatch(text)
    if m:
        return next_clock_time(int(m[1]), int(m[2]), int(m[3] or 0), now, tz)
    return iso_time(text, tz)


def relative_seconds(text: str) -> float:
    """`+1d2h30m15s` (units in that order, each optional) or `+90` (seconds)."""
    m = _RELATIVE.fullmatch(text) or _SECONDS.fullmatch(text)
    if m is None or not any(m.groups()):
        raise WhenError(f"bad relative time {text!r}; {USAGE}")
    if any(g is not None and len(g) > _MAX_DIGITS for g in m.groups()):
        raise WhenError(f"relative time {text!r} is too far away")
    if len(m.groups()) == 1:
        return float(m[1])
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    return float(days * 86400 + hours * 3600 + minutes * 60 + seconds)


def next_clock_time(hour: int, minute: int, second: int, now: float, tz: tzinfo | None) -> float:
    """The first moment strictly after `now` when the wall clock in `tz` reads the time.

    Built from the local date, so a day with a DST change still hits the wall time."""
    if hour > 23 or minute > 59 or second > 59:
        raise WhenError(f"no such time of day {hour:02d}:{minute:02d}; {USAGE}")
    wall = time(hour, minute, second)
    today = _local(now, tz).date()
    for day in (today, today + timedelta(days=1), today + timedelta(days=2)):
        at = _instant(day, wall, tz)
        if at > now:
            return at
    raise WhenError("no such time of day")  # pragma: no cover - a day always has it


def iso_time(text: str, tz: tzinfo | None) -> float:
    """An ISO 8601 date-time; without an offset it is wall time in `tz`."""
    try:
        dt = datetime.fromisoformat(text.upper().replace("Z", "+00:00"))
    except ValueError:
        raise WhenError(f"bad time {text!r}; {USAGE}") from None
    try:
        if dt.tzinfo is None:
            return _instant(dt.date(), dt.time(), tz)
        return dt.timestamp()
    except (ValueError, OverflowError, OSError):
        # A date at the edge of the calendar (0001-01-01 in a zone east of UTC, 9999-12-31
        # west of it) has no Unix time the platform can compute: refused, not a crash.
        raise WhenError(f"time {text!r} is out of range; {USAGE}") from None


def _local(now: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(now, tz)


def _instant(day: date, wall: time, tz: tzinfo | None) -> float:
    """Wall time on a day in `tz` (None: the system's zone) as Unix time."""
    return datetime.combine(day, wall, tzinfo=tz).timestamp()
