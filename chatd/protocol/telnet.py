"""Telnet (RFC 854) as a line door needs it: commands out of the data, answers back.

`Telnet.strip(data)` returns the data bytes with every telnet command removed and
queues the answers in `out` for the connection to write:
- option negotiation, RFC 1143 style (answer only when a state changes, so two
  peers never loop): BINARY (RFC 856) is accepted both ways, every other option
  refused; `offer_binary()` asks for it first (the telnet door does at connect, the
  main port when a client shows it is telnet by its first IAC);
- DO TIMING-MARK (RFC 860) is answered WILL TIMING-MARK: Debian's telnet sends it
  after Ctrl-C and discards all output until the answer comes (marks arriving back to
  back share one answer, so a storm is not echoed);
- AYT gets a line (from a client that agreed to BINARY, i.e. a real telnet);
- IP, BRK, ABORT and SUSP (Ctrl-C and friends), EL and EC edit the line being
  typed. They stay in the data as two-byte markers, MARK + a letter, that
  the line framer applies (0xFF never survives as data: IAC IAC is dropped).
- An interrupt-like command right after a non-ASCII byte, before BINARY, is telnet
  mangling an 8-bit character (it strips the 8th bit looking for its control keys:
  0x83 of «у» becomes Ctrl-C, so IAC IP): marked MANGLED, and the framer refuses the
  line instead of delivering garbage.

Data runs are found with `bytes.find` and common storms (IAC NOP, IAC IAC, the same
negotiation repeated) are removed with C-speed substitutions, so a flood of IAC costs
about what the same bytes of text cost.
"""

from __future__ import annotations

import re

IAC = 0xFF
MARK = b"\xff"  # starts a line-edit marker in stripped data (0xFF is never data there)
KILL = b"K"  # IP, BRK, ABORT, SUSP, EL: the line typed so far is dropped
ERASE = b"E"  # EC: the last character typed is dropped
MANGLED = b"M"  # telnet replaced an 8-bit character by a command: refuse the line
SEEN = b"T"  # the client's first IAC was here: from this line on it speaks telnet

SE, NOP, DM, BRK, IP, AO, AYT, EC, EL, GA, SB = range(240, 251)
WILL, WONT, DO, DONT = 251, 252, 253, 254
EOF_, SUSP, ABORT = 236, 237, 238
BINARY, TIMING_MARK = 0, 6

_INTERRUPTS = frozenset({IP, BRK, ABORT, SUSP, AO, EOF_})
_EDITS = {IP: KILL, BRK: KILL, ABORT: KILL, SUSP: KILL, EL: KILL, EC: ERASE}
_SUPPORTED = frozenset({BINARY})
_MAX_SB = 1024  # a longer subnegotiation is abandoned: junk cannot make us deaf

# Two-byte commands that change nothing (and IAC IAC, an escaped 0xFF data byte that is
# never valid UTF-8): leftmost matching consumes IAC IAC pairs exactly as a parser does.
_NOISE = re.compile(rb"\xff[\xf1\xf2\xf9\xff]")
# The same negotiation repeated back to back: once is enough (answers are idempotent).
_REPEATS = re.compile(rb"(\xff[\xfb-\xfe][\x00-\xff])\1+")

# States of the parser between calls.
_DATA, _CMD, _OPT, _SB, _SB_IAC = range(5)

AYT_ANSWER = b"* yes, chatd is here\r\n"
_WILL_TM = bytes((IAC, WILL, TIMING_MARK))


class Telnet:
    """One connection's telnet state; sans-I/O (bytes in, data and answers out)."""

    __slots__ = ("_him", "_last", "_sb_len", "_state", "_us", "_verb", "out", "seen")

    def __init__(self) -> None:
        self._state = _DATA
        self._verb = 0
        self._sb_len = 0
        self._last = 0  # the last data byte seen (to tell mangling from a real Ctrl-C)
        self._us: dict[int, str] = {}  # option -> "yes" | "want" | "refused" (absent: no)
        self._him: dict[int, str] = {}
        self.out = bytearray()  # answers to write to the client
        self.seen = False  # the client has sent at least one IAC

    @property
    def binary(self) -> bool:
        """The client sends 8-bit data intact (it agreed to WILL BINARY)."""
        return self._him.get(BINARY) == "yes"

    def offer_binary(self) -> None:
        """Ask for BINARY both ways (RFC 856), unless already asked or agreed."""
        if BINARY not in self._us:
            self._us[BINARY] = "want"
            self.out += bytes((IAC, WILL, BINARY))
        if BINARY not in self._him:
            self._him[BINARY] = "want"
            self.out += bytes((IAC, DO, BINARY))

    def strip(self, data: bytes) -> bytes:
        if self._state == _DATA and IAC not in data:
            if data:
                self._last = data[-1]
            return data
        out = bytearray()
        if not self.seen:
            self.seen = True
            self.offer_binary()
            first = data.find(b"\xff")
            out += data[:first]
            if first:
                self._last = data[first - 1]
            out += MARK + SEEN
            data = data[first:]
        pos = self._carry(data, out)
        if pos < len(data):
            rest = data[pos:] if pos else data
            if rest.count(IAC) > 16:  # a storm: C-speed passes first
                rest = _REPEATS.sub(rb"\1", _NOISE.sub(b"", rest))
            self._scan(rest, 0, out)
        return bytes(out)

    def _carry(self, data: bytes, out: bytearray) -> int:
        """Finishes a command split across segments; returns where the rest starts."""
        if self._state == _DATA:
            return 0
        pos = 0
        while pos < len(data) and self._state != _DATA:
            pos = self._step(data, pos, out)
        return pos

    def _scan(self, data: bytes, pos: int, out: bytearray) -> None:
        n = len(data)
        while pos < n:
            if self._state == _DATA:
                i = data.find(b"\xff", pos)
                if i < 0:
                    out += data[pos:]
                    return
                out += data[pos:i]
                if i > pos:
                    self._last = data[i - 1]
                pos = i + 1
                self._state = _CMD
                continue
            pos = self._step(data, pos, out)

    def _step(self, data: bytes, pos: int, out: bytearray) -> int:
        """One byte of a command (or a data run inside a subnegotiation)."""
        state = self._state
        if state == _SB:
            i = data.find(b"\xff", pos)
            end = len(data) if i < 0 else i
            room = _MAX_SB - self._sb_len
            if end - pos > room:  # too long: what follows the limit is data again
                self._state = _DATA
                return pos + room
            self._sb_len += end - pos
            if i >= 0:
                self._state = _SB_IAC
                return i + 1
            return end
        b = data[pos]
        if state == _CMD:
            self._command(b, out)
        elif state == _OPT:
            self._state = _DATA
            self._option(self._verb, b)
        elif state == _SB_IAC:
            self._state = _DATA if b == SE else _SB
        else:  # _DATA: only reached from _carry when nothing is pending
            out.append(b)
        return pos + 1

    def _command(self, b: int, out: bytearray) -> None:
        self._state = _DATA
        if WILL <= b <= DONT:
            self._verb = b
            self._state = _OPT
        elif b == SB:
            self._sb_len = 0
            self._state = _SB
        elif b == AYT and self.binary:  # a real telnet (random junk agrees to nothing)
            self.out += AYT_ANSWER
        elif b in _INTERRUPTS and self._last >= 0x80 and not self.binary:
            out += MARK + MANGLED
        elif b in _EDITS:
            out += MARK + _EDITS[b]
        # NOP, DM, GA, AO, EOF, IAC IAC and unknown commands: nothing to do

    def _option(self, verb: int, opt: int) -> None:
        """RFC 1143, without the queue bits: answer only when a state changes."""
        if verb == DO and opt == TIMING_MARK:
            if not self.out.endswith(_WILL_TM):  # a storm of marks needs one answer
                self.out += _WILL_TM
            return
        mine = verb in (DO, DONT)  # DO/DONT are about what we do
        table = self._us if mine else self._him
        yes, no = (WILL, WONT) if mine else (DO, DONT)
        if verb in (WILL, DO):
            state = table.get(opt)
            if state in ("yes", "refused"):
                return  # nothing changes, so nothing is said (a storm gets one answer)
            if state == "want":
                table[opt] = "yes"  # the answer to our own request
            elif opt in _SUPPORTED:
                table[opt] = "yes"
                self.out += bytes((IAC, yes, opt))
            else:
                table[opt] = "refused"
                self.out += bytes((IAC, no, opt))
        else:  # WONT, DONT
            state = table.pop(opt, None)
            if state == "yes":
                self.out += bytes((IAC, no, opt))
