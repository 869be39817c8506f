"""Text and JSON output modes over real TCP: switching, and the shape of every line."""

from __future__ import annotations

import json

from tests.helpers.protocol import CORE_COMMANDS, err_code, jlogin
from tests.helpers.server import Server


async def test_mode_switch_reply_comes_in_the_new_mode(server: Server) -> None:
    # Reading: the reply to `mode X` is already written in mode X.
    c = await server.connect()
    await c.send("mode json\n")
    assert json.loads(await c.line()) == {"type": "ok", "cmd": "mode", "mode": "json"}
    assert await c.jcmd("ping") == {"type": "ok", "cmd": "ping"}
    await c.send("mode text\n")
    assert (await c.line()).startswith("OK")
    assert await c.cmd("ping") == "OK pong"


async def test_mode_bad_args(server: Server) -> None:
    c = await server.connect()
    assert err_code(await c.cmd("mode xml")) == "bad-args"
    assert err_code(await c.cmd("mode")) == "bad-args"
    assert await c.cmd("ping") == "OK pong"  # still text


async def test_json_mode_every_line_is_one_json_object(server: Server) -> None:
    bob = await jlogin(server, "bob")
    alice = await server.login("alice")
    assert (await alice.cmd("send_all hi")).startswith("OK")
    assert (await alice.cmd("send bob psst")).startswith("OK")
    await bob.send("help\nwho\nstatus\nhistory #general\nfrob\nsend_all\nping\n")
    lines = []
    while True:
        line = await bob.line()
        o = json.loads(line)  # every line is JSON
        assert isinstance(o, dict) and o["type"] in ("ok", "error", "message", "notice")
        lines.append(o)
        if o.get("cmd") == "ping":
            break
    assert [o["type"] for o in lines[:2]] == ["message", "message"]
    assert [o.get("cmd") for o in lines[2:]] == [
        "help",
        "who",
        "status",
        "history",
        "frob",
        "send_all",
        "ping",
    ]


async def test_text_replies_with_items_are_indented_then_ok(server: Server) -> None:
    c = await server.login("alice")
    for command in ("help", "who", "status", "history #general"):
        await c.send(command + "\n")
        lines = await c.reply()
        assert lines[-1].startswith("OK")
        assert all(line.startswith("  ") for line in lines[:-1]), (command, lines)
    await c.send("help\n")
    items = (await c.reply())[:-1]
    assert len(items) >= len(CORE_COMMANDS)
