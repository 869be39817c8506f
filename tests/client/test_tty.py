"""The interactive client through a pseudo-terminal, read back from an emulated screen.

`Screen` is just enough VT100 to see what a person would: text, cursor, erase, scroll
(readline's output is cursor motion, not lines). Every wait is bounded and asserts on
what the screen shows, never on how long something took.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.helpers.server import ROOT, Child, Client, Server, free_port

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


def test_screen_emulates_what_readline_sends() -> None:
    s = Screen(rows=3, cols=10)
    s.feed(b"ab\x1b[31mc\x1b[0md\b\b\x1b[@X\r\n")
    assert s.line(0) == "abXcd"
    s.feed(b"0123456789wrap")  # autowrap at the last column
    assert s.lines()[1:] == ["0123456789", "wrap"]
    s.feed(b"\n")  # scrolls
    assert s.line(0) == "0123456789" and (s.r, s.c) == (2, 4)
    s.feed(b"\x1b[2A\r\x1b[J\x1b[?2004hnew")
    assert s.lines() == ["new", "", ""]
    s.feed(b"\x08\x08\x1b[P")
    assert s.cursor_line == "nw" and s.c == 1


# A client in a pseudo-terminal --------------------------------------------------------


# Run in the child, which start_new_session made a session leader without a terminal:
# take the pty as the controlling terminal (so Ctrl-C is a SIGINT and getpass can open
# /dev/tty), then become the client. A wrapper, because preexec_fn is unsafe in a
# process with threads (the in-process daemon has some).
CTTY = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class Tty:
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


@pytest.fixture
def tty(tmp_path: Path) -> Iterator[Callable[..., Tty]]:
    started: list[Tty] = []

    def start(*args: str) -> Tty:
        t = Tty(list(args), tmp_path / "state")
        started.append(t)
        return t

    yield start
    for t in started:
        t.close()


async def test_live_lines_keep_the_half_typed_line_and_cursor(
    server: Server, tty: Callable[..., Tty]
) -> None:
    bob = await server.login("bob")
    alice = tty("--port", str(server.port), "--user", "alice")
    await alice.prompt()
    alice.type("hello world")
    await alice.prompt("hello world")
    alice.type("\x1b[D" * 5)  # cursor left, to just before "world"
    await alice.expect(lambda s: s.c == len(PROMPT + "hello "), "the cursor moved left")

    assert (await bob.cmd("send_all while you type")).startswith("OK sent")
    # The message shows, and the half line is back below it, the cursor where it was.
    await alice.expect(
        lambda s: (
            s.find("<bob> while you type") is not None
            and s.cursor_line == PROMPT + "hello world"
            and s.c == len(PROMPT + "hello ")
        ),
        "bob's message above the intact half line",
    )
    s = alice.screen
    row = s.find("<bob> while you type")
    assert row == s.r - 1
    assert "hello" not in s.line(row) and s.line(row).endswith("#general <bob> while you type")

    alice.type("big ")  # typed at the restored cursor position
    await alice.expect(
        lambda s: s.cursor_line == PROMPT + "hello big world" and s.c == len(PROMPT + "hello big "),
        "the insertion",
    )
    alice.type("\r")
    assert "<alice> hello big world" in await bob.line()
    await alice.expect(lambda s: s.find("<alice> hello big world") is not None, "the echo")
    await alice.prompt()
    # The typed line itself was replaced by the message with its id, not left twice.
    assert PROMPT + "hello big world" not in alice.screen.lines()
    assert "#general <alice> hello big world" in alice.screen.lines()[alice.screen.r - 1]

    long = " ".join(f"word{i}" for i in range(30))  # wraps over two rows: both erased
    alice.type(long + "\r")
    assert long in await bob.line()
    await alice.expect(lambda s: s.find("word29") is not None and s.c == len(PROMPT), "echo")
    await alice.prompt()
    assert not [line for line in alice.screen.lines() if line.startswith(PROMPT + "word0")]


async def test_ctrl_c_completion_query_history_and_ctrl_d(
    server: Server, tty: Callable[..., Tty], tmp_path: Path
) -> None:
    bob = await server.login("bob")
    alice = tty("--port", str(server.port), "--user", "alice")
    await alice.prompt()
    alice.type("junk")
    await alice.prompt("junk")
    alice.type("\x03")  # Ctrl-C clears the line
    await alice.prompt()

    alice.type("/wh\t")
    await alice.prompt("/who ")
    alice.type("\r")
    await alice.expect(lambda s: s.find("bob (1 session)") is not None, "the who list")

    alice.type("/query b\t")  # bob is known from `who`
    await alice.prompt("/query bob ")
    alice.type("\r")
    await alice.prompt(prompt="@bob> ")
    alice.type("psst\r")
    assert "@alice <alice> psst" in await bob.line()
    await alice.prompt(prompt="@bob> ")
    alice.type("\x1b[A")  # history: the last line comes back
    await alice.prompt("psst", prompt="@bob> ")
    alice.type("\x03")  # clear it (the tty discards input typed after a Ctrl-C, so wait)
    await alice.prompt(prompt="@bob> ")
    alice.type("\x04")  # Ctrl-D on the empty line exits
    assert await alice.exit_code() == 0
    history = (tmp_path / "state" / "chatd" / "history").read_text()
    assert "psst" in history and "/query bob" in history and "junk" not in history


def _shows_prompt(prompt: str, s: Screen) -> bool:
    return s.cursor_line == prompt


async def test_passwords_are_asked_without_echo(server: Server, tty: Callable[..., Tty]) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice s3cret")).startswith("OK welcome")
    await c.close()

    quitter = tty("--port", str(server.port), "--user", "alice")
    await quitter.expect(lambda s: s.find("password for alice:") is not None, "a prompt")
    quitter.type("\x03")  # Ctrl-C cancels the prompt, and so the login
    assert await quitter.exit_code() == 2
    await quitter.expect(lambda s: s.find("[bad-password]") is not None, "why it stopped")

    alice = tty("--port", str(server.port), "--user", "alice")
    await alice.expect(lambda s: s.find("password for alice:") is not None, "a prompt")
    alice.type("s3cret\r")
    await alice.expect(lambda s: s.find("logged in as alice") is not None, "the login")
    await alice.prompt()
    alice.type("/passwd\r")  # asked at the live prompt: readline steps aside and back
    for prompt, answer in [
        ("current password (Enter if none):", "s3cret"),
        ("new password:", "n3w-pw"),
        ("new password again:", "n3w-pw"),
    ]:
        await alice.expect(partial(_shows_prompt, prompt), repr(prompt))
        alice.type(answer + "\r")
    await alice.expect(lambda s: s.find("* password changed") is not None, "the change")
    await alice.prompt()
    assert b"s3cret" not in alice.raw and b"n3w-pw" not in alice.raw
    alice.type("/quit\r")
    assert await alice.exit_code() == 0
    c = await server.connect()
    assert (await c.cmd("login alice n3w-pw")).startswith("OK welcome")
    history = (Path(alice.home) / "chatd" / "history").read_text()
    assert "n3w-pw" not in history and "/passwd" in history


async def test_reconnects_after_the_server_is_killed_and_shows_what_was_missed(
    spawn_server: Callable[..., Child], tty: Callable[..., Tty]
) -> None:
    first = spawn_server()
    alice = tty("--port", str(first.port), "--user", "alice", "--retry-delay", "0.05")
    await alice.prompt()
    first.kill9()
    await alice.expect(lambda s: s.find("connection lost") is not None, "the drop")
    await alice.prompt(prompt="(offline) " + PROMPT)

    # While alice is away, bob writes to her. (The message is stored by an interim server
    # on another port, so it is certain to be missed rather than delivered live.)
    interim = spawn_server(data_dir=first.data_dir, port=free_port())
    bob = await Client.connect(interim.port)
    assert (await bob.cmd("login bob")).startswith("OK")
    assert (await bob.cmd("send alice while you were away")).startswith("OK sent")
    await bob.close()
    interim.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(interim.proc.wait, WAIT_S) == 0

    spawn_server(data_dir=first.data_dir, port=first.port)
    await alice.expect(lambda s: s.find("reconnected as alice") is not None, "the new login")
    await alice.expect(lambda s: s.find("while you were away") is not None, "the missed one")
    row = alice.screen.find("while you were away")
    assert row is not None
    assert alice.screen.line(row).startswith("[unread]")
    assert "@bob <bob> while you were away" in alice.screen.line(row)
    await alice.prompt()
    alice.type("/quit\r")
    assert await alice.exit_code() == 0
