"""irssi and WeeChat themselves, in tmux, against the IRC door: each connects, is in
#general, exchanges messages with an nc user, quits, and on reconnect shows what it
missed (the unread replay)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.irc import start_irc
from tests.helpers.server import Server, StartServer
from tests.helpers.tmux import Terminal, need

pytestmark = pytest.mark.timeout(40)


async def _gone(server: Server, nick: str) -> None:
    """Waits until the client's QUIT has ended its session (else the next message
    would reach it live, not as replay)."""
    for _ in range(100):
        if nick not in server.daemon.chat.online:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{nick} is still online")


def _irssi(home: Path, port: int, nick: str) -> str:
    return f"irssi --home={home} --connect=127.0.0.1 --port={port} --nick={nick}"


def _weechat(home: Path, port: int, nick: str) -> str:
    setup = (
        f"/server add chatd 127.0.0.1/{port} -notls; /set irc.server.chatd.nicks {nick}; "
        "/connect chatd"
    )
    return f"weechat --dir {home} -r '{setup}'"


async def test_irssi(start_server: StartServer, tmp_path: Path) -> None:
    need("irssi")
    server, port = await start_irc(start_server)
    nc = await server.login("nora")
    term = await Terminal.start(_irssi(tmp_path / "irssi", port, "ivan"))
    try:
        await term.wait_for("Welcome to chatd, ivan")
        await term.type("/window 2")  # irssi opens #general in window 2
        await term.wait_for("has joined #general", redraw="C-l")
        assert await nc.cmd("send_all hi ivan, from nc") == "OK sent [1]"
        await term.wait_for("< nora> hi ivan, from nc", redraw="C-l")
        await term.type("hello nora, this is irssi")
        assert "<ivan> hello nora, this is irssi" in await nc.until(lambda s: "irssi" in s)
        await term.type("/quit")
        await _gone(server, "ivan")
        assert await nc.cmd("send_all you missed this") == "OK sent [3]"
        await term.kill()
        term = await Terminal.start(_irssi(tmp_path / "irssi", port, "ivan"))
        await term.wait_for("Welcome to chatd, ivan")
        await term.type("/window 2")
        screen = await term.wait_for("you missed this", redraw="C-l")
        assert screen.count("this is irssi") == 0  # what it sent is not replayed
        print(screen)  # the transcript, for the report (pytest -s)
    finally:
        await term.kill()


async def test_weechat(start_server: StartServer, tmp_path: Path) -> None:
    need("weechat")
    server, port = await start_irc(start_server)
    nc = await server.login("nick")
    term = await Terminal.start(_weechat(tmp_path / "wee", port, "wendy"))
    try:
        await term.wait_for("wendy (wendy@chatd) has joined #general")
        assert await nc.cmd("send_all hi wendy, from nc") == "OK sent [1]"
        await term.wait_for("hi wendy, from nc")
        await term.type("hello nick, this is weechat")
        assert "<wendy> hello nick, this is weechat" in await nc.until(lambda s: "weechat" in s)
        await term.type("/quit")
        await _gone(server, "wendy")
        assert await nc.cmd("send_all you missed this") == "OK sent [3]"
        await term.kill()
        term = await Terminal.start(_weechat(tmp_path / "wee", port, "wendy"))
        screen = await term.wait_for("you missed this")
        assert screen.count("this is weechat") == 1  # in the backlog, not replayed
        print(screen)
    finally:
        await term.kill()
