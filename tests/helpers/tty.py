"""The interactive client in a pseudo-terminal, read back from an emulated screen.

`Screen` is just enough VT100 to see what a person would: text, cursor, erase, scroll
(readline's output is cursor motion, not lines). `Tty` runs run_client.py with the pty
as its controlling terminal. Every wait is bounded and asserts on what the screen
shows, never on how long something took.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from collections.abc import Callable
from pathlib import Path

from tests.helpers.server import ROOT

_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
WAIT_S = 10.0  # a guard against hanging, not a measured quantity
PROMPT = "#general> "


class Screen:
    """A minimal terminal: printable text, CR/LF/BS/TAB, autowrap, and the CSI sequences
    readline and the client use (cursor moves, erase line/screen, insert/delete chars);
    colours and private modes are ignored."""

    def __init__(self, rows: int = 24, cols: int = 100) -> None:
        self.rows, self.cols = rows, cols
        self.grid = [[" "] * cols for _ in range(rows)]
        self.r = self.c = 0
        self._wrap = False
        self._esc = ""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def feed(self, data: bytes) -> None:
        for ch in self._decoder.decode(data):
            self._char(ch)

    def line(self, row: int) -> str:
        return "".join(self.grid[row]).rstrip()

    @property
    def cursor_line(self) -> str:
        return self.line(self.r)

    def lines(self) -> list[str]:
        return [self.line(i) for i in range(self.rows)]

    def find(self, text: str) -> int | None:
        """The last row containing text."""
        rows = [i for i, line in enumerate(self.lines()) if text in line]
        return rows[-1] if rows else None

    def dump(self) -> str:
        body = "\n".join(f"{i:2}|{line}" for i, line in enumerate(self.lines()))
        return f"{body}\ncursor at row {self.r}, column {self.c}"

    def _char(self, ch: str) -> None:
        if self._esc:
            self._escape(ch)
        elif ch == "\x1b":
            self._esc = ch
        elif ch == "\r":
            self.c, self._wrap = 0, False
        elif ch == "\n":
            self._lf()
        elif ch == "\b":
            self.c, self._wrap = max(0, self.c - 1), False
        elif ch == "\t":
            self.c = min(self.cols - 1, (self.c // 8 + 1) * 8)
        elif ch >= " ":
            if self._wrap:
                self.c, self._wrap = 0, False
                self._lf()
            self.grid[self.r][self.c] = ch
            if self.c == self.cols - 1:
                self._wrap = True
            else:
                self.c += 1

    def _lf(self) -> None:
        self._wrap = False
        if self.r == self.rows - 1:
            self.grid.pop(0)
            self.grid.append([" "] * self.cols)
        else:
            self.r += 1

    def _escape(self, ch: str) -> None:
        self._esc += ch
        seq = self._esc
        if len(seq) == 2:
            if ch in "[]()#%":
                return
            self._esc = ""  # ESC =, ESC >, ESC 7, …
        elif seq[1] == "]":
            if ch == "\x07" or seq.endswith("\x1b\\"):
                self._esc = ""
        elif seq[1] in "()#%":
            self._esc = ""
        elif "@" <= ch <= "~":
            self._esc = ""
            self._csi(seq[2:-1], ch)

    def _csi(self, params: str, final: str) -> None:
        if params[:1] in ("?", ">", "="):
            return
        nums = [int(p) if p.isdigit() else 0 for p in params.split(";")] if params else [0]
        n = nums[0] or 1
        row = self.grid[self.r]
        self._wrap = False
        if final == "A":
            self.r = max(0, self.r - n)
        elif final == "B":
            self.r = min(self.rows - 1, self.r + n)
        elif final == "C":
            self.c = min(self.cols - 1, self.c + n)
        elif final == "D":
            self.c = max(0, self.c - n)
        elif final == "G":
            self.c = min(self.cols - 1, n - 1)
        elif final in "Hf":
            self.r = min(self.rows - 1, n - 1)
            self.c = min(self.cols - 1, (nums[1] if len(nums) > 1 and nums[1] else 1) - 1)
        elif final == "K":
            lo, hi = {0: (self.c, self.cols), 1: (0, self.c + 1)}.get(nums[0], (0, self.cols))
            row[lo:hi] = [" "] * (hi - lo)
        elif final == "J":
            if nums[0] == 0:
                row[self.c :] = [" "] * (self.cols - self.c)
                for i in range(self.r + 1, self.rows):
                    self.grid[i] = [" "] * self.cols
            elif nums[0] == 2:
                self.grid = [[" "] * self.cols for _ in range(self.rows)]
        elif final == "P":
            del row[self.c : self.c + n]
            row.extend([" "] * (self.cols - len(row)))
        elif final == "@":
            row[self.c : self.c] = [" "] * n
            del row[self.cols :]
        elif final == "X":
            row[self.c : self.c + n] = [" "] * min(n, self.cols - self.c)


# Run in the child, which start_new_session made a session leader without a terminal:
# take the pty as the controlling terminal (so Ctrl-C is a SIGINT and getpass can open
# /dev/tty), then become the client. A wrapper, because preexec_fn is unsafe in a
# process with threads (the in-process daemon has some).
CTTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Tty:
    """run_client.py (with `args`) on a new pseudo-terminal; its output feeds `screen`
    and is kept whole in `raw`. Call `close()` when done."""

    def __init__(self, args: list[str], home: Path, rows: int = 24, cols: int = 100) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CHATD_PASSWORD")}
        env |= {"TERM": "xterm", "XDG_STATE_HOME": str(home), "INPUTRC": "/dev/null"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CTTY, str(ROOT / "run_client.py"), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.home = home
        self.screen = Screen(rows, cols)
        self.raw = b""
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(master, self._readable)
        self._open = True

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed its side
            data = b""
        if not data:
            self._loop.remove_reader(self.master)
            self._open = False
        self.raw += data
        self.screen.feed(data)
        self._changed.set()

    def text(self) -> str:
        """Everything the client wrote, without colours and cursor moves: to count
        how many times something was shown (the screen keeps only the last rows)."""
        return _CSI.sub("", self.raw.decode(errors="replace"))

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def expect(self, pred: Callable[[Screen], bool], what: str) -> None:
        """Waits (bounded) until the screen satisfies pred."""
        deadline = self._loop.time() + WAIT_S
        while not pred(self.screen):
            left = deadline - self._loop.time()
            if left <= 0 or (not self._open and not pred(self.screen)):
                raise AssertionError(f"screen never showed {what}:\n{self.screen.dump()}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), left)

    async def prompt(self, text: str = "", prompt: str = PROMPT) -> None:
        """Waits for the prompt row to read prompt + text, the cursor at its end."""
        want = prompt + text
        await self.expect(lambda s: s.cursor_line == want.rstrip() and s.c == len(want), repr(want))

    async def exit_code(self) -> int:
        return await asyncio.to_thread(self.proc.wait, WAIT_S)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)
        if self._open:
            self._loop.remove_reader(self.master)
        os.close(self.master)
