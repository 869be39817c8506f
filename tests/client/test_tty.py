"""The interactive client through a pseudo-terminal (tests/helpers/tty.py), read back
from an emulated screen: what a person would see."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.helpers.server import Child, Client, Server, free_port
from tests.helpers.tty import PROMPT, WAIT_S, Screen, Tty


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
