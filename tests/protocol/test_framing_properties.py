"""Hostile input, as properties: any byte sequence, split anywhere, frames to the same
lines and errors as when it arrives whole, and neither framing nor parsing ever raises
anything but ParseError."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatd.protocol.commands import COMMANDS, Command, ParseError, parse
from chatd.protocol.framing import FrameError, LineFramer

MAX_LINE = 64  # small, so over-long lines (and their discarded tails) come up often

# Bytes with the interesting ones over-represented: LF, CR, telnet IAC and its verbs,
# controls, UTF-8 lead and continuation bytes, and the bytes of real commands.
_SPECIAL = [0x0A, 0x0D, 0xFF, 0xFB, 0xFD, 0xFA, 0xF0, 0x00, 0x09, 0x1B, 0xC3, 0xA9, 0xE2, 0x80]
_byte = st.one_of(st.sampled_from(_SPECIAL), st.integers(0, 255), st.sampled_from(b"ping \n"))
hostile_bytes = st.one_of(
    st.lists(_byte, max_size=400).map(bytes),
    st.binary(max_size=400),
    st.lists(
        st.sampled_from(
            [b"ping\n", b"login bob\r\n", b"x" * (MAX_LINE + 3), b"\xff\xfb\x01", b"\n", b"\r"]
        ),
        max_size=20,
    ).map(b"".join),
)


def feed_chunks(data: bytes, cuts: list[int]) -> list[str | FrameError]:
    framer = LineFramer(MAX_LINE)
    out: list[str | FrameError] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += framer.feed(data[start:cut])
        start = cut
    out += framer.feed(data[start:])
    return out


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=hostile_bytes, cuts=st.lists(st.integers(0, 400), max_size=30))
def test_any_split_frames_like_the_whole(data: bytes, cuts: list[int]) -> None:
    whole = LineFramer(MAX_LINE).feed(data)
    cuts = [c for c in cuts if c <= len(data)]
    assert feed_chunks(data, cuts) == whole


@settings(max_examples=200, deadline=None)
@given(data=hostile_bytes)
def test_byte_at_a_time_frames_like_the_whole(data: bytes) -> None:
    assert feed_chunks(data, list(range(len(data)))) == LineFramer(MAX_LINE).feed(data)


@settings(max_examples=300, deadline=None)
@given(data=hostile_bytes)
def test_framed_lines_are_clean(data: bytes) -> None:
    """What framing lets through: bounded, no LF, no control characters but TAB, not
    blank; errors are the two framing codes."""
    for item in LineFramer(MAX_LINE).feed(data):
        if isinstance(item, FrameError):
            assert item.code in ("line-too-long", "bad-encoding")
            continue
        assert item.strip()
        assert len(item.encode()) <= MAX_LINE
        assert not any(ord(ch) < 0x20 and ch != "\t" for ch in item)


def _parse_or_error(line: str) -> Command | tuple[str, str]:
    try:
        return parse(line)
    except ParseError as e:
        return (str(e.code), e.message)


_verbs = st.sampled_from([*COMMANDS, "report", "LOGIN", "Send_All", "nope"])
_words = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
command_lines = st.one_of(
    st.text(max_size=200),
    st.builds(
        lambda v, ws, sep: v + sep + sep.join(ws),
        _verbs,
        st.lists(st.one_of(_words, st.sampled_from(["#general", "@bob", "1", "before", "+1s"]))),
        st.sampled_from([" ", "\t", "  "]),
    ),
)


@settings(max_examples=500, deadline=None)
@given(line=command_lines)
def test_parse_never_raises_anything_but_parse_error(line: str) -> None:
    result = _parse_or_error(line)
    if isinstance(result, tuple):
        code, message = result
        assert code in ("unknown-command", "bad-args")
        assert message
    else:
        assert result.verb == result.verb.lower()


@settings(max_examples=300, deadline=None)
@given(data=hostile_bytes, cuts=st.lists(st.integers(0, 400), max_size=10))
def test_split_bytes_give_the_same_commands(data: bytes, cuts: list[int]) -> None:
    """The whole path from bytes to commands is split-invariant."""
    whole = [
        _parse_or_error(i) if isinstance(i, str) else i for i in LineFramer(MAX_LINE).feed(data)
    ]
    split = [
        _parse_or_error(i) if isinstance(i, str) else i
        for i in feed_chunks(data, [c for c in cuts if c <= len(data)])
    ]
    assert split == whole
