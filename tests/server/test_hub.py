"""The hub's byte slicing for recipients that must not get all of a batch: a sender
skips its own messages, a session that logged in mid-batch skips the earlier ones."""

from __future__ import annotations

import itertools

from chatd.server.hub import _without


def _blob(parts: list[bytes]) -> tuple[bytes, list[int]]:
    return b"".join(parts), list(itertools.accumulate(map(len, parts)))


PARTS = [b"a\n", b"bb\n", b"ccc\n", b"d\n", b"ee\n"]


def test_nothing_skipped_is_the_whole_blob() -> None:
    blob, ends = _blob(PARTS)
    assert _without(blob, ends, 0, ()) == blob


def test_own_items_are_cut_out_wherever_they_are() -> None:
    blob, ends = _blob(PARTS)
    assert _without(blob, ends, 0, [0]) == b"bb\nccc\nd\nee\n"
    assert _without(blob, ends, 0, [1, 3]) == b"a\nccc\nee\n"
    assert _without(blob, ends, 0, [3, 4]) == b"a\nbb\nccc\n"
    assert _without(blob, ends, 0, [1, 2]) == b"a\nd\nee\n"


def test_every_item_own_leaves_nothing() -> None:
    blob, ends = _blob(PARTS)
    assert _without(blob, ends, 0, range(5)) == b""


def test_late_session_starts_at_its_first_live_item() -> None:
    blob, ends = _blob(PARTS)
    assert _without(blob, ends, 2, ()) == b"ccc\nd\nee\n"
    assert _without(blob, ends, 5, ()) == b""


def test_late_sender_skips_both() -> None:
    blob, ends = _blob(PARTS)
    # Its own items before `first` are already excluded by the start.
    assert _without(blob, ends, 2, [0, 3]) == b"ccc\nee\n"
