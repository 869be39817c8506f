"""User and room names: 1–32 of A–Z a–z 0–9 _ . -, unique case-insensitively."""

from __future__ import annotations

import re

_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,32}")
RESERVED_ROOMS = frozenset({"general"})


def valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def key(name: str) -> str:
    """The case-insensitive identity of a user or room name."""
    return name.lower()


def dm_key(a: str, b: str) -> str:
    """The chat key of the private chat between user keys a and b (order-free)."""
    return f"@{a}|{b}" if a <= b else f"@{b}|{a}"
