"""Timestamps on the wire: RFC 3339 UTC with milliseconds (PROTOCOL.md)."""

from __future__ import annotations

import functools
from datetime import UTC, datetime


@functools.lru_cache(maxsize=4)
def _utc_second(second: int) -> str:
    return f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}"


def rfc3339(ts: float) -> str:
    """Unix seconds as RFC 3339 UTC with milliseconds: 2026-11-26T12:00:01.123Z.

    Formatting a datetime costs more than the rest of a message's rendering, and a busy
    server sends dozens of messages per millisecond, so both parts are cached."""
    return _utc_ms(round(ts * 1000))


@functools.lru_cache(maxsize=64)
def _utc_ms(ms: int) -> str:
    return f"{_utc_second(ms // 1000)}.{ms % 1000:03d}Z"
