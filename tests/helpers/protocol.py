"""Line-protocol helpers for end-to-end tests: JSON-mode logins, accounts, error codes,
the patterns of timestamps and text-mode message lines."""

from __future__ import annotations

import re
from typing import Any

from tests.helpers.server import Client, Server

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
START_TS = "2027-01-15T08:00:00.000Z"  # FakeClock's start, 1_800_000_000
TEXT_MSG_RE = re.compile(r"^(\d\d):(\d\d):(\d\d) \[(\d+)\] (\S+) <([^>]+)> (.*)$")
CORE_COMMANDS = (
    "help",
    "mode",
    "ping",
    "login",
    "passwd",
    "send_all",
    "send",
    "ban",
    "who",
    "status",
    "history",
    "quit",
)
MESSAGE_KEYS = {"type", "id", "chat", "from", "text", "ts", "reply_to", "replay"}


async def jconnect(server: Server) -> Client:
    """A connection switched to JSON mode (the `mode json` reply is already JSON)."""
    c = await server.connect()
    await c.send("mode json\n")
    assert await c.obj() == {"type": "ok", "cmd": "mode", "mode": "json"}
    return c


async def jlogin_full(
    server: Server, name: str, password: str = ""
) -> tuple[Client, dict[str, Any], list[dict[str, Any]]]:
    """A JSON-mode login: the client, the login `ok` and the replayed messages after it."""
    c = await jconnect(server)
    await c.send(f"login {name} {password}".strip() + "\n")
    ok = await c.obj()
    assert ok["type"] == "ok" and ok["cmd"] == "login", ok
    replay = [await c.obj() for _ in range(ok["unread"])]
    return c, ok, replay


async def jlogin(server: Server, name: str, password: str = "") -> Client:
    c, _, _ = await jlogin_full(server, name, password)
    return c


async def register(server: Server, *names: str) -> None:
    """Creates accounts (no password) and logs them out again."""
    for name in names:
        c = await server.login(name)
        assert await c.cmd("quit") == "OK bye"
        assert await c.closed()


def err_code(line: str) -> str:
    """The code of a text-mode `ERR <code> <text>` line."""
    assert line.startswith("ERR "), line
    return line.split()[1]


async def raw_lines(c: Client, n: int) -> list[str]:
    return [await c.line() for _ in range(n)]


async def items(c: Client, command: str) -> list[str]:
    """Text mode: the two-space-indented items of a reply that must end in OK."""
    await c.send(command + "\n")
    lines = await c.reply()
    assert lines[-1].startswith("OK"), lines
    assert all(x.startswith("  ") for x in lines[:-1]), lines
    return [x[2:] for x in lines[:-1]]
