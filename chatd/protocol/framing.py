"""Bytes to lines: LF framing, telnet IAC stripping, line limits and UTF-8 decoding.

`LineFramer.feed` takes whatever the socket produced (half a line, ten lines, a telnet
negotiation split across segments) and returns complete results in order: a decoded
line, or a `FrameError` standing where the bad line stood. It never raises on input.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatd.protocol.events import Code

IAC = 0xFF
_SB, _SE = 0xFA, 0xF0
_WILL, _DONT = 0xFB, 0xFE

# Control characters C0 except TAB are removed from every line (telnet, pasted junk).
_C0_TABLE = {c: None for c in range(0x20) if c != 0x09}


@dataclass(frozen=True, slots=True)
class FrameError:
    """A line that could not become a command; the connection stays usable."""

    code: Code
    message: str


class _Telnet:
    """Strips telnet commands (IAC …) from a byte stream, across segment boundaries.

    A subnegotiation (IAC SB … IAC SE) longer than `max_sb` bytes is abandoned, so
    binary junk that happens to contain IAC SB cannot make the connection deaf."""

    __slots__ = ("_max_sb", "_sb_len", "_state")

    # States: 0 data, 1 after IAC, 2 after IAC WILL/WONT/DO/DONT, 3 in SB, 4 IAC in SB.
    def __init__(self, max_sb: int = 1024) -> None:
        self._state = 0
        self._sb_len = 0
        self._max_sb = max_sb

    def strip(self, data: bytes) -> bytes:
        if self._state == 0 and IAC not in data:
            return data
        out = bytearray()
        state = self._state
        for b in data:
            if state == 0:
                if b == IAC:
                    state = 1
                else:
                    out.append(b)
            elif state == 1:
                if b == IAC:  # escaped 0xFF data byte; never valid UTF-8, so drop it
                    state = 0
                elif _WILL <= b <= _DONT:
                    state = 2
                elif b == _SB:
                    state = 3
                    self._sb_len = 0
                else:
                    state = 0
            elif state == 2:
                state = 0
            elif state == 3:
                if b == IAC:
                    state = 4
                else:
                    self._sb_len += 1
                    if self._sb_len > self._max_sb:
                        state = 0
                        out.append(b)
            else:  # state 4
                state = 0 if b == _SE else 3
        self._state = state
        return bytes(out)


class LineFramer:
    """Splits a byte stream into decoded lines, enforcing `max_line_bytes`."""

    __slots__ = ("_buf", "_discarding", "_max", "_telnet")

    def __init__(self, max_line_bytes: int) -> None:
        self._max = max_line_bytes
        self._buf = b""
        self._discarding = False
        self._telnet = _Telnet()

    @property
    def max_line_bytes(self) -> int:
        return self._max

    @max_line_bytes.setter
    def max_line_bytes(self, value: int) -> None:
        self._max = value

    @property
    def pending(self) -> int:
        """Bytes of an unfinished line held back."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[str | FrameError]:
        data = self._telnet.strip(data)
        if self._buf:
            data = self._buf + data
        parts = data.split(b"\n")
        self._buf = parts.pop()
        out: list[str | FrameError] = []
        for raw in parts:
            if self._discarding:
                self._discarding = False
                continue
            item = self._line(raw)
            if item is not None:
                out.append(item)
        if len(self._buf) > self._max + 1:  # +1: a CR may still precede the LF
            if not self._discarding:
                out.append(_too_long(self._max))
            self._discarding = True
            self._buf = b""
        return out

    def _line(self, raw: bytes) -> str | FrameError | None:
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if len(raw) > self._max:
            return _too_long(self._max)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return FrameError(Code.BAD_ENCODING, "the line is not valid UTF-8")
        if not text.isprintable():  # rare: only then can there be C0 characters to drop
            text = text.translate(_C0_TABLE)
        if not text or text.isspace():
            return None
        return text


def _too_long(limit: int) -> FrameError:
    return FrameError(Code.LINE_TOO_LONG, f"lines are limited to {limit} bytes")
