"""The sans-I/O decoder of an upload's data block (chatd/protocol/upload.py)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.protocol.events import Code
from chatd.protocol.framing import FrameError
from chatd.protocol.upload import CHUNK_CHARS, UploadDecoder


def lines_of(data: bytes, width: int = 76) -> list[str]:
    b64 = base64.b64encode(data).decode()
    return [b64[i : i + width] for i in range(0, len(b64), width)]


def decode(lines: list[str], limit: int = 1 << 20) -> tuple[UploadDecoder, bytes]:
    """Feeds lines one by one, taking output as the server does; then the `.`."""
    dec = UploadDecoder(limit)
    out = bytearray()
    for line in lines:
        assert dec.feed(line) is False
        if dec.buffered > 1000:
            out += dec.take()
    assert dec.feed(".") is True
    out += dec.take()
    return dec, bytes(out)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 57, 58, 1000, 100_000])
@pytest.mark.parametrize("width", [76, 4, 1, 7, 1001, 4096])
def test_round_trip_any_line_width(size: int, width: int) -> None:
    data = os.urandom(size)
    dec, out = decode(lines_of(data, width))
    assert dec.error is None and dec.done
    assert out == data
    assert dec.size == size
    assert dec.sha256 == hashlib.sha256(data).hexdigest()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(1, 200), min_size=1, max_size=50))
def test_any_split_of_the_base64_decodes_the_same(data: bytes, cuts: list[int]) -> None:
    b64 = base64.b64encode(data).decode()
    lines, i, k = [], 0, 0
    while i < len(b64):
        n = cuts[k % len(cuts)]
        lines.append(b64[i : i + n])
        i, k = i + n, k + 1
    dec, out = decode(lines)
    assert dec.error is None
    assert out == data and dec.sha256 == hashlib.sha256(data).hexdigest()


def test_feed_from_matches_feed_and_leaves_the_lines_after_the_dot() -> None:
    data = os.urandom(200_000)
    queue: deque[str | FrameError] = deque([*lines_of(data), ".", "ping", "who"])
    dec = UploadDecoder(1 << 20)
    assert dec.feed_from(queue) is True
    assert list(queue) == ["ping", "who"]
    assert dec.take() == data and dec.size == len(data)


def test_feed_from_without_the_dot_waits_for_more() -> None:
    queue: deque[str | FrameError] = deque(lines_of(b"hello world"))
    dec = UploadDecoder(100)
    assert dec.feed_from(queue) is False and not queue and not dec.done
    assert dec.feed_from(deque(["."])) is True
    assert dec.take() == b"hello world"


def test_decodes_incrementally_not_at_the_end() -> None:
    data = os.urandom(3 * CHUNK_CHARS)
    dec = UploadDecoder(1 << 22)
    for line in lines_of(data):
        dec.feed(line)
    # Most of it is decoded and hashed before the terminator arrives.
    assert dec.buffered >= len(data) - CHUNK_CHARS
    assert dec.size == dec.buffered


def test_exactly_the_limit_is_accepted() -> None:
    data = os.urandom(5000)
    dec, out = decode(lines_of(data), limit=5000)
    assert dec.error is None and out == data


def test_one_byte_over_the_limit_is_too_large_and_the_rest_is_skipped() -> None:
    data = os.urandom(5001)
    dec = UploadDecoder(5000, "too big for you")
    for line in lines_of(data):
        dec.feed(line)
    assert dec.take() == b""  # decoded on the way (as between socket reads): over
    assert dec.feed("garbage that is not base64 at all !!!") is False
    assert dec.feed(".") is True
    assert dec.error is not None
    assert dec.error.code is Code.TOO_LARGE and dec.error.message == "too big for you"
    assert dec.take() == b""


def test_stops_decoding_once_over_the_limit() -> None:
    dec = UploadDecoder(10)
    big = lines_of(os.urandom(CHUNK_CHARS))  # one full chunk: decoded on the way
    for line in big:
        dec.feed(line)
    assert dec.error is not None and dec.error.code is Code.TOO_LARGE
    size = dec.size
    for line in big:
        dec.feed(line)
    assert dec.size == size  # nothing more was decoded


@pytest.mark.parametrize(
    "lines",
    [
        ["!!!!"],
        ["QUJD", "R*VG"],
        ["QQ==QQ=="],  # data after padding, in one chunk
        ["QQ==", "QUJD"],  # data after padding, across lines
        ["A"],  # one character cannot be a byte
        ["QUJDRA==", "é"],  # not ASCII
    ],
)
def test_bad_base64_is_bad_args(lines: list[str]) -> None:
    dec = UploadDecoder(1000)
    for line in lines:
        dec.feed(line)
    dec.take()  # as the server does between socket reads
    assert dec.feed(".") is True
    assert dec.error is not None and dec.error.code is Code.BAD_ARGS


def test_padding_across_a_take_is_still_checked() -> None:
    dec = UploadDecoder(1000)
    dec.feed("QQ==")
    assert dec.take() == b"A"
    dec.feed("QUJD")
    dec.feed(".")
    assert dec.error is not None and dec.error.code is Code.BAD_ARGS


def test_missing_final_padding_and_surrounding_blanks_are_tolerated() -> None:
    dec, out = decode(["  QUJD ", "\tRA"])
    assert dec.error is None and out == b"ABCD"
    dec, out = decode(["QUJDRA=", "="])  # padding split over lines
    assert dec.error is None and out == b"ABCD"
    dec = UploadDecoder(10)
    assert dec.feed(" . ") is True


def test_a_frame_error_in_the_data_fails_the_upload_with_its_code() -> None:
    dec = UploadDecoder(1000)
    dec.feed("QUJD")
    dec.feed(FrameError(Code.LINE_TOO_LONG, "lines are limited to 4096 bytes"))
    dec.feed("QUJD")
    assert dec.feed(".") is True
    assert dec.error is not None and dec.error.code is Code.LINE_TOO_LONG


def test_refused_before_the_data_only_waits_for_the_dot() -> None:
    dec = UploadDecoder(0)
    dec.fail(Code.NO_SUCH_USER, "no user nobody")
    dec.fail(Code.BAD_ARGS, "second reason loses")
    for line in lines_of(os.urandom(1000)):
        assert dec.feed(line) is False
    assert dec.feed(".") is True
    assert dec.error is not None and dec.error.code is Code.NO_SUCH_USER
    assert dec.size == 0 and dec.take() == b""


def test_empty_data_is_an_empty_file() -> None:
    dec, out = decode([])
    assert dec.error is None and out == b"" and dec.size == 0
    assert dec.sha256 == hashlib.sha256(b"").hexdigest()


def test_feeding_after_the_end_is_a_bug() -> None:
    dec, _ = decode([])
    with pytest.raises(RuntimeError):
        dec.feed("QUJD")
