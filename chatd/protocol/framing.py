"""Bytes to lines: LF framing, telnet commands, line limits and UTF-8 decoding.

`LineFramer.feed` takes whatever the socket produced (half a line, ten lines, a telnet
negotiation split across segments) and returns complete results in order: a decoded
line, or a `FrameError` standing where the bad line stood. It never raises on input.
Telnet's answers (chatd.protocol.telnet) wait in `framer.telnet.out` for the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatd.protocol.events import Code
from chatd.protocol.telnet import ERASE, KILL, MANGLED, MARK, SEEN, Telnet

# Control characters C0 except TAB are removed from every line (telnet, pasted junk).
_C0_TABLE = {c: None for c in range(0x20) if c != 0x09}


@dataclass(frozen=True, slots=True)
class FrameError:
    """A line that could not become a command; the connection stays usable."""

    code: Code
    message: str


class LineFramer:
    """Splits a byte stream into decoded lines, enforcing `max_line_bytes`."""

    __slots__ = ("_buf", "_discarding", "_max", "_spoke_telnet", "hint", "telnet")

    def __init__(self, max_line_bytes: int, *, telnet_hint: str = "") -> None:
        """`telnet_hint` ends the error for a line that telnet mangled (where to
        connect instead, e.g. the telnet door)."""
        self._max = max_line_bytes
        self._buf = b""
        self._discarding = False
        self.hint = telnet_hint
        self.telnet = Telnet()
        self._spoke_telnet = False  # a line so far carried the client's first IAC

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
        data = self.telnet.strip(data)
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
        if MARK in raw:  # rare: telnet line editing, or a line telnet mangled
            if MARK + SEEN in raw:
                self._spoke_telnet = True
            edited = _edit(raw)
            if edited is None:
                return self._mangled()
            raw = edited
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            if self._spoke_telnet:
                return self._mangled()
            return FrameError(Code.BAD_ENCODING, "the line is not valid UTF-8")
        if not text.isprintable():  # rare: only then can there be C0 characters to drop
            text = text.translate(_C0_TABLE)
        if not text or text.isspace():
            return None
        return text

    def _mangled(self) -> FrameError:
        hint = f"; {self.hint}" if self.hint else ""
        return FrameError(
            Code.BAD_ENCODING,
            "your telnet changed the 8-bit characters of this line, so it was not sent; "
            f"now that binary mode is on, type it again{hint}",
        )


def _edit(raw: bytes) -> bytes | None:
    """Applies telnet's line-edit markers (Ctrl-C, EL, EC); None if the line was
    mangled by telnet."""
    parts = raw.split(MARK)
    line = bytearray(parts[0])
    for part in parts[1:]:
        kind, rest = part[:1], part[1:]
        if kind == MANGLED:
            return None
        if kind == KILL:
            line.clear()
        elif kind == ERASE:
            while line and line[-1] & 0xC0 == 0x80:  # UTF-8 continuation bytes
                line.pop()
            if line:
                line.pop()
        line += rest
    return bytes(line)


def _too_long(limit: int) -> FrameError:
    return FrameError(Code.LINE_TOO_LONG, f"lines are limited to {limit} bytes")
