"""User and room names: 1–32 of A–Z a–z 0–9 _ . -, unique case-insensitively."""

from __future__ import annotations

import functools
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


# Confusable names (Ergo's skeleton rule, after Unicode TR39, cut down to what our ASCII
# names can hold): characters that look alike in common fonts map to one, before and
# after case folding, then letter pairs that read as one letter. Two names with the
# same skeleton are one name to a reader: `aIice` (capital i) is `alice`, `r00t` is
# `root`, `rnallory` is `mallory`.
_LOOKALIKE = str.maketrans({"I": "l", "1": "l", "0": "o", "O": "o"})
_PAIRS = (("rn", "m"), ("vv", "w"), ("cl", "d"))


def skeleton(name: str) -> str:
    """What a name looks like as written: names with equal skeletons are confusable."""
    folded = name.translate(_LOOKALIKE).lower()
    for pair, single in _PAIRS:
        folded = folded.replace(pair, single)
    return folded


@functools.lru_cache(maxsize=4096)
def looks(name: str) -> frozenset[str]:
    """A name's skeletons as written and in lower case: names are one account in any
    case, so `ADMIN` (whose capital I reads as l) must still look like `admin`."""
    return frozenset((skeleton(name), skeleton(name.lower())))
