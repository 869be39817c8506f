"""Telnet as Debian's netkit telnet speaks it: the byte sequences it really sends."""

from __future__ import annotations

import time

from chatd.protocol.framing import FrameError, LineFramer
from chatd.protocol.telnet import (
    AYT,
    BINARY,
    DO,
    DONT,
    EC,
    EL,
    IAC,
    IP,
    MARK,
    SEEN,
    TIMING_MARK,
    WILL,
    WONT,
    Telnet,
)

OFFER = bytes((IAC, WILL, BINARY, IAC, DO, BINARY))
CTRL_C = bytes((IAC, IP, IAC, DO, TIMING_MARK))  # what telnet sends for Ctrl-C
WILL_TM = bytes((IAC, WILL, TIMING_MARK))


def frame(*chunks: bytes, hint: str = "") -> tuple[list[str | FrameError], bytes]:
    """Lines framed from `chunks`, and every answer the telnet side queued."""
    framer = LineFramer(4096, telnet_hint=hint)
    lines: list[str | FrameError] = []
    answers = b""
    for chunk in chunks:
        lines += framer.feed(chunk)
        answers += bytes(framer.telnet.out)
        framer.telnet.out.clear()
    return lines, answers


def test_a_client_that_never_speaks_telnet_gets_no_telnet_byte() -> None:
    lines, answers = frame("send_all привет\n".encode(), b"ping\r\n")
    assert lines == ["send_all привет", "ping"]
    assert answers == b""


def test_the_first_iac_starts_binary_negotiation_once() -> None:
    t = Telnet()
    assert t.strip(bytes((IAC, DO, 3)) + b"x") == MARK + SEEN + b"x"
    assert t.out == OFFER + bytes((IAC, WONT, 3))  # offer BINARY, refuse SGA
    t.out.clear()
    # telnet agrees: answers to our own requests, so nothing more is said (no loop)
    assert t.strip(bytes((IAC, DO, BINARY, IAC, WILL, BINARY))) == b""
    assert t.out == b"" and t.binary
    # asking again changes nothing, so it is not answered either
    t.strip(bytes((IAC, WILL, BINARY, IAC, DO, BINARY)))
    assert t.out == b""


def test_refusals_are_answered_once_per_change() -> None:
    t = Telnet()
    t.offer_binary()
    t.out.clear()
    t.strip(bytes((IAC, WILL, BINARY, IAC, DO, BINARY)))  # both agree: no answers
    assert t.out == b"" and t.binary
    t.strip(bytes((IAC, DONT, BINARY, IAC, WONT, BINARY)))
    assert t.out == bytes((IAC, WONT, BINARY, IAC, DONT, BINARY))
    assert not t.binary
    t.out.clear()
    t.strip(bytes((IAC, DO, 24)) * 3 + bytes((IAC, WILL, 31)) * 2)  # TTYPE, NAWS
    assert t.out == bytes((IAC, WONT, 24, IAC, DONT, 31))  # refused once each


def test_ctrl_c_is_answered_with_the_timing_mark_and_drops_the_typed_line() -> None:
    lines, answers = frame(b"login al", CTRL_C, b"ice\r\nping\r\n")
    assert lines == ["ice", "ping"]  # Ctrl-C dropped "login al" as a terminal would
    assert answers == OFFER + WILL_TM


def test_every_ctrl_c_is_answered_and_a_burst_of_them_once() -> None:
    _, answers = frame(CTRL_C, b"x\r\n", CTRL_C, CTRL_C + CTRL_C)
    assert answers.count(WILL_TM) == 3


def test_erase_character_and_erase_line() -> None:
    lines, _ = frame("pinж".encode() + bytes((IAC, EC)) + b"g\r\n")
    assert lines == ["ping"]  # EC drops a whole UTF-8 character
    lines, _ = frame(b"send_all oops" + bytes((IAC, EL)) + b"ping\r\n")
    assert lines == ["ping"]


def test_russian_mangled_by_telnet_is_refused_with_the_hint() -> None:
    # `send_all у меня` as netkit telnet sends it before BINARY: 0x83 of «у» becomes
    # Ctrl-C (IAC IP IAC DO TIMING-MARK), 0x8F of «я» becomes Ctrl-O (IAC AO ...).
    mangled = (
        b"send_all \xd1"
        + CTRL_C
        + b" \xd0\xbc\xd0\xb5\xd0\xbd\xd1"
        + bytes((IAC, 245, IAC, DO, TIMING_MARK))
        + b"\r\n"
    )
    lines, answers = frame(mangled, b"ping\r\n", hint="use: telnet 127.0.0.1 2323")
    assert isinstance(lines[0], FrameError)
    assert lines[0].code == "bad-encoding"
    assert "telnet 127.0.0.1 2323" in lines[0].message
    assert lines[1] == "ping"  # and the connection goes on
    assert answers.count(WILL_TM) == 1  # marks in one read share an answer


def test_a_mangled_character_that_telnet_dropped_still_names_telnet() -> None:
    # 0x85 of «х» is dropped outright: the line is not UTF-8 any more.
    lines, _ = frame(bytes((IAC, DO, 3)), "ok \xd1 ".encode("latin-1") + b"\r\n", hint="h")
    assert isinstance(lines[0], FrameError) and "telnet" in lines[0].message


def test_after_binary_russian_arrives_intact() -> None:
    t_lines, answers = frame(
        bytes((IAC, DO, BINARY, IAC, WILL, BINARY)),
        "send_all у меня всё хорошо\r\n".encode(),
    )
    assert t_lines == ["send_all у меня всё хорошо"]
    assert answers == OFFER  # it asked first; our own offer was its answer


def test_are_you_there_is_answered_for_a_real_telnet_only() -> None:
    t = Telnet()
    t.strip(bytes((IAC, AYT)))
    assert b"chatd" not in t.out  # junk that agreed to nothing gets no chatter
    t.out.clear()
    t.strip(bytes((IAC, WILL, BINARY, IAC, AYT)))
    assert b"chatd is here" in t.out


def test_commands_split_across_segments() -> None:
    data = b"pi" + CTRL_C + b"ping\r\n" + bytes((IAC, 250, 31, 0, 80, 0, 24, IAC, 240)) + b"x\n"
    whole, whole_answers = frame(data)
    split, split_answers = frame(*(data[i : i + 1] for i in range(len(data))))
    assert whole == split == ["ping", "x"]
    assert whole_answers == split_answers


def test_an_iac_storm_costs_about_what_text_costs() -> None:
    # 8 MB of IAC NOP, IAC IAC and one repeated negotiation: C-speed passes, not a
    # Python step per byte. Not a timing assertion: a generous bound that a per-byte
    # loop (seconds) would fail by far and the C passes (tens of ms) never approach.
    storm = (bytes((IAC, 241)) * 1000 + bytes((IAC, IAC)) * 1000 + bytes((IAC, DO, 3)) * 600) * 1000
    t = Telnet()
    started = time.process_time()
    out = b"".join(t.strip(storm[i : i + 65536]) for i in range(0, len(storm), 65536))
    elapsed = time.process_time() - started
    assert out.replace(MARK + SEEN, b"") == b""
    assert t.out == OFFER + bytes((IAC, WONT, 3))
    assert elapsed < 2.0, elapsed
