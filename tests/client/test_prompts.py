"""The client's name prompt and `/join #room`: mistakes a first user makes, said at once.

A name with a space would log in as its first word with the second as a password; a
`/join` of a room that does not exist (or is not yours) used to switch silently and fail
only at the first message. Both are checked here against a real in-process daemon.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from chatd.client import commands as c
from chatd.client.app import App, View
from chatd.client.connection import Endpoint
from chatd.client.main import _ask_name
from chatd.client.render import Theme
from chatd.client.session import LoginError, Session, name_problem
from chatd.protocol.events import GENERAL
from tests.helpers.server import ROOT, Server

WAIT_S = 10.0  # a guard against hanging, not a measured quantity


# The name prompt ------------------------------------------------------------------------


def test_name_problem_refuses_only_what_would_change_the_login_line() -> None:
    assert name_problem("alice") is None
    assert name_problem("a.b-c_9") is None
    assert name_problem("") == "a name is needed"
    for bad in ("alice secret", "alice\tsecret", "al ice"):
        problem = name_problem(bad)
        assert problem is not None and "one word" in problem, bad


def test_a_name_with_a_space_is_refused_and_asked_again() -> None:
    answers = iter(["alice secret", "  alice  "])
    asked: list[str] = []

    def ask(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    err = io.StringIO()
    assert _ask_name(True, ask, err) == "alice"
    assert asked == ["name: ", "name: "]
    assert "'alice secret' is not a name" in err.getvalue()


def test_the_name_prompt_gives_up_on_an_empty_answer_or_eof() -> None:
    err = io.StringIO()
    assert _ask_name(True, lambda _: "", err) is None
    assert "a name is needed" in err.getvalue()

    def eof(_: str) -> str:
        raise EOFError

    assert _ask_name(True, eof, io.StringIO()) is None
    assert _ask_name(False, lambda _: "alice", io.StringIO()) is None  # scripts: --user


async def test_a_session_refuses_a_name_with_a_space_before_connecting(server: Server) -> None:
    app = App(View(Theme(), "alice secret"), Recorder())
    session = Session(Endpoint(port=server.port), "alice secret", None, app, reconnect=False)
    with pytest.raises(LoginError) as e:
        await session.start()
    assert e.value.code == "bad-name" and "one word" in e.value.message
    # Nothing reached the server: alice is still a new name, without a password.
    bob = await server.connect()
    assert await bob.cmd("login alice") == "OK welcome alice (new account), 0 unread"


class Pty:
    """The client on a pseudo-terminal, read as raw bytes (the prompt is plain input())."""

    def __init__(self, args: Sequence[str], home: Path) -> None:
        master, slave = os.openpty()
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CHATD_PASSWORD")}
        env |= {"TERM": "dumb", "XDG_STATE_HOME": str(home), "INPUTRC": "/dev/null"}
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_client.py"), *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.raw = b""

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    async def expect(self, text: str, after: int = 0) -> int:
        """Waits (bounded) for text in the output after offset `after`; its end offset."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + WAIT_S
        while (at := self.raw.find(text.encode(), after)) < 0:
            if loop.time() > deadline:
                raise AssertionError(f"never saw {text!r} in {self.raw.decode(errors='replace')}")
            ready = asyncio.Event()
            loop.add_reader(self.master, ready.set)
            try:
                await asyncio.wait_for(ready.wait(), deadline - loop.time())
            except TimeoutError:
                continue
            finally:
                loop.remove_reader(self.master)
            try:
                self.raw += os.read(self.master, 65536)
            except OSError:  # EIO: the client exited
                raise AssertionError(f"exited before {text!r}: {self.raw!r}") from None
        return at + len(text)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)
        os.close(self.master)


@pytest.fixture
def pty(tmp_path: Path) -> Iterator[list[Pty]]:
    started: list[Pty] = []
    yield started
    for p in started:
        p.close()


async def test_the_terminal_name_prompt_refuses_a_space(
    server: Server, pty: list[Pty], tmp_path: Path
) -> None:
    client = Pty(["--port", str(server.port)], tmp_path)
    pty.append(client)
    at = await client.expect("name: ")
    client.type("alice secret\r")
    at = await client.expect("is not a name", at)
    at = await client.expect("name: ", at)  # asked again, nothing sent
    client.type("alice\r")
    await client.expect("logged in as alice (new account)", at)
    # alice has no password: the second word was never sent as one.
    other = await server.connect()
    assert await other.cmd("login alice") == "OK welcome alice, 0 unread"


async def test_a_user_option_with_a_space_exits_2(server: Server) -> None:
    run = await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            str(ROOT / "run_client.py"),
            *("--port", str(server.port), "--user", "alice secret", "--command", "who"),
        ],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert run.returncode == 2
    assert "is not a name" in run.stderr and "[bad-name]" in run.stderr


# /join #room ------------------------------------------------------------------------------


class Recorder:
    """An Output that keeps what the client shows and what it reports as problems."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.problems: list[str] = []

    def show(self, lines: Sequence[str]) -> None:
        self.shown += lines

    def problem(self, lines: Sequence[str]) -> None:
        self.problems += lines

    def ask_secret(self, prompt: str) -> str | None:
        return None


async def _client(server: Server, name: str) -> tuple[App, Recorder]:
    out = Recorder()
    app = App(View(Theme(), name), out)
    session = Session(Endpoint(port=server.port), name, None, app, reconnect=False)
    app.session = session
    await session.start()
    return app, out


async def test_join_of_a_room_that_does_not_exist_says_so_and_stays(server: Server) -> None:
    app, out = await _client(server, "alice")
    assert not await app.run(c.translate("/join #nope", GENERAL))
    assert app.view.chat == GENERAL
    assert out.problems == ["error: no room #nope [no-such-chat]"]
    assert not [line for line in out.shown if "now talking" in line]


async def test_join_of_someone_elses_room_says_so_then_works_once_invited(
    server: Server,
) -> None:
    bob = await server.login("bob")
    assert await bob.cmd("room create Dev") == "OK #dev"
    app, out = await _client(server, "alice")

    assert not await app.run(c.translate("/join #dev", GENERAL))
    assert app.view.chat == GENERAL
    assert out.problems == ["error: you are not a member of #dev [not-a-member]"]
    assert any("join link" in line for line in out.shown)

    assert await bob.cmd("room invite #dev alice") == "OK #dev alice"
    assert await app.run(c.translate("/join #DEV", GENERAL))
    assert app.view.chat == "#dev"  # the room's key, as the server spells it
    assert out.shown[-1] == "* now talking in #dev"
    assert await app.run(c.translate("hello dev", app.view.chat))
    assert "#dev <alice> hello dev" in await bob.until(lambda line: "hello dev" in line)

    assert await app.run(c.translate("/join #general", app.view.chat))
    assert app.view.chat == GENERAL


async def test_a_scripted_join_of_a_missing_room_fails_the_script(server: Server) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run_client.py"),
        "--port",
        str(server.port),
        "--user",
        "alice",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if k != "CHATD_PASSWORD"} | {"NO_COLOR": "1"},
        start_new_session=True,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"/join #nope\nstill here\n"), WAIT_S)
    assert proc.returncode == 1
    assert "error: no room #nope [no-such-chat]" in err.decode()
    # The next line still went to #general, where the client stayed.
    assert "#general <alice> still here" in out.decode()
