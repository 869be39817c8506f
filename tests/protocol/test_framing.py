"""LineFramer: bytes in, lines or FrameErrors out, in order, whatever the segmentation."""

from chatd.protocol.events import Code
from chatd.protocol.framing import FrameError, LineFramer


def feed_all(framer: LineFramer, *chunks: bytes) -> list[str | FrameError]:
    out: list[str | FrameError] = []
    for chunk in chunks:
        out += framer.feed(chunk)
    return out


def test_lf_and_crlf_lines() -> None:
    assert LineFramer(100).feed(b"ping\r\nhelp\nwho\r\n") == ["ping", "help", "who"]


def test_half_line_waits_for_its_end() -> None:
    f = LineFramer(100)
    assert f.feed(b"send_all hel") == []
    assert f.pending == 12
    assert f.feed(b"lo\n") == ["send_all hello"]


def test_byte_by_byte_equals_whole() -> None:
    data = "login bob\r\nsend_all héllo wörld\nping\n".encode()
    f = LineFramer(100)
    assert feed_all(f, *[data[i : i + 1] for i in range(len(data))]) == LineFramer(100).feed(data)


def test_empty_and_blank_lines_are_ignored() -> None:
    assert LineFramer(100).feed(b"\n\r\n   \n\t\nping\n") == ["ping"]


def test_control_characters_removed_but_tab_kept() -> None:
    assert LineFramer(100).feed(b"send_all a\x07b\x1b[31mc\td\n") == ["send_all ab[31mc\td"]


def test_telnet_negotiation_is_stripped() -> None:
    iac_will_echo = b"\xff\xfb\x01"
    subneg = b"\xff\xfa\x18\x01\xff\xf0"
    line = iac_will_echo + b"pi" + subneg + b"ng\r\n"
    assert LineFramer(100).feed(line) == ["ping"]


def test_telnet_sequence_split_across_segments() -> None:
    f = LineFramer(100)
    assert feed_all(f, b"pi\xff", b"\xfd", b"\x03ng\n") == ["ping"]


def test_too_long_line_reports_once_and_discards_to_lf() -> None:
    f = LineFramer(10)
    out = feed_all(f, b"x" * 25, b"y" * 25, b"z\nping\n")
    assert len(out) == 2
    assert isinstance(out[0], FrameError) and out[0].code is Code.LINE_TOO_LONG
    assert out[1] == "ping"


def test_limit_is_inclusive_and_cr_not_counted() -> None:
    assert LineFramer(4).feed(b"ping\r\n") == ["ping"]
    out = LineFramer(4).feed(b"pings\n")
    assert isinstance(out[0], FrameError)


def test_complete_long_line_in_one_segment() -> None:
    out = LineFramer(10).feed(b"a" * 11 + b"\nping\n")
    assert isinstance(out[0], FrameError) and out[1] == "ping"


def test_bad_utf8_is_an_error_and_the_stream_goes_on() -> None:
    out = LineFramer(100).feed(b"send_all \xc3\x28\nping\n")
    assert isinstance(out[0], FrameError) and out[0].code is Code.BAD_ENCODING
    assert out[1] == "ping"
