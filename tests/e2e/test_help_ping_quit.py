"""help, ping and quit over real TCP, in both modes."""

from __future__ import annotations

import json
import re

from tests.helpers.protocol import CORE_COMMANDS, err_code, jconnect, jlogin
from tests.helpers.server import Server


async def test_help_text(server: Server) -> None:
    c = await server.connect()  # works before login
    await c.send("help\n")
    lines = await c.reply()
    body = "\n".join(lines[:-1])
    for name in CORE_COMMANDS:
        assert re.search(rf"^  {name}\b", body, re.M), name
    await c.send("help send\n")
    one = await c.reply()
    assert len(one) == 2 and one[0].startswith("  send ") and "<text>" in one[0]
    await c.send("HELP Report\n")  # the alias shows ban's usage
    alias = await c.reply()
    assert alias[-1].startswith("OK") and "ban" in alias[0]


async def test_help_json(server: Server) -> None:
    c = await jconnect(server)
    o = await c.jcmd("help")
    assert o["type"] == "ok" and o["cmd"] == "help"
    assert isinstance(o["commands"], list)
    dumped = json.dumps(o["commands"])
    for name in CORE_COMMANDS:
        assert name in dumped
    one = await c.jcmd("help login")
    assert len(one["commands"]) == 1 and "login" in json.dumps(one["commands"])


async def test_help_unknown_topic_is_an_error(server: Server) -> None:
    c = await server.connect()
    # Reading: help for a command that does not exist is bad-args or unknown-command.
    assert err_code(await c.cmd("help frobnicate")) in ("bad-args", "unknown-command")
    assert err_code(await c.cmd("help a b")) == "bad-args"


async def test_ping_both_modes(server: Server) -> None:
    c = await server.connect()
    assert await c.cmd("ping") == "OK pong"
    c2 = await jconnect(server)
    assert await c2.jcmd("ping") == {"type": "ok", "cmd": "ping"}


async def test_quit_text_before_and_after_login(server: Server) -> None:
    c = await server.connect()
    assert await c.cmd("quit") == "OK bye"
    assert await c.closed()
    c = await server.login("alice")
    assert await c.cmd("QUIT") == "OK bye"
    assert await c.closed()
    other = await jlogin(server, "bob")
    assert (await other.jcmd("who"))["users"] == [{"name": "bob", "sessions": 1}]


async def test_quit_json(server: Server) -> None:
    c = await jlogin(server, "alice")
    assert await c.jcmd("quit") == {"type": "ok", "cmd": "quit"}
    assert await c.closed()


async def test_quit_answers_after_earlier_pipelined_replies(server: Server) -> None:
    c = await server.login("alice")
    await c.send("ping\nsend_all last words\nquit\nping\n")
    assert await c.line() == "OK pong"
    assert (await c.line()).startswith("OK")
    assert await c.line() == "OK bye"
    assert await c.closed()  # the ping after quit is never answered
