"""Every error code of the contract over real TCP in both modes, the #general rate limit,
the per-user session limit and server-busy (issue 2, shared/PROTOCOL.md)."""

from __future__ import annotations

import pytest

from tests.helpers.protocol import err_code, jconnect, jlogin, register
from tests.helpers.server import Client, Server, StartServer

# Every error code -------------------------------------------------------------------

# (command, expected code, logged in as alice?) — bob and carol exist, offline.
ERROR_CASES: list[tuple[str, str, bool]] = [
    ("frobnicate", "unknown-command", False),
    ("frobnicate now", "unknown-command", True),
    ("sendall hi", "unknown-command", True),
    ("login", "bad-args", False),
    ("login a b c", "bad-args", False),
    ("mode", "bad-args", False),
    ("mode yaml", "bad-args", False),
    ("help a b", "bad-args", False),
    ("send_all", "bad-args", True),
    ("send_all    ", "bad-args", True),
    ("send", "bad-args", True),
    ("send bob", "bad-args", True),
    ("ban", "bad-args", True),
    ("report", "bad-args", True),
    ("passwd", "bad-args", True),
    ("passwd a b c", "bad-args", True),
    ("who a b", "bad-args", True),
    ("history", "bad-args", True),
    ("history #general x", "bad-args", True),
    ("history #general 5 before", "bad-args", True),
    ("history #general 5 after 3", "bad-args", True),
    ("history #general -3", "bad-args", True),
    ("quit now", "bad-args", False),
    ("passwd secret", "not-logged-in", False),
    ("send_all hi", "not-logged-in", False),
    ("send bob hi", "not-logged-in", False),
    ("ban bob", "not-logged-in", False),
    ("report bob", "not-logged-in", False),
    ("who", "not-logged-in", False),
    ("history #general", "not-logged-in", False),
    ("login alice", "already-logged-in", True),
    ("login bad!name", "bad-name", False),
    ("login " + "n" * 33, "bad-name", False),
    ("login bob pw", "bad-password", False),  # bob has a password (set up below)
    ("login bob", "bad-password", False),
    ("send nobody hi", "no-such-user", True),
    ("send @nobody hi", "no-such-user", True),
    ("ban nobody", "no-such-user", True),
    ("report @nobody", "no-such-user", True),
    ("history @nobody", "no-such-user", True),
    ("history nobody", "no-such-user", True),
    ("send #nowhere hi", "no-such-chat", True),
    ("history #nowhere", "no-such-chat", True),
    ("who #nowhere", "no-such-chat", True),
    ("unban carol", "forbidden", True),
    ("kick carol", "forbidden", True),
    ("announce hello", "forbidden", True),
    ("stats", "forbidden", True),
]


def usage_name(command: str) -> str:
    verb = command.split(maxsplit=1)[0].lower()
    return {"report": "ban"}.get(verb, verb)


@pytest.mark.parametrize("mode", ["text", "json"])
@pytest.mark.parametrize(("command", "code", "logged_in"), ERROR_CASES)
async def test_error_codes(
    server: Server, mode: str, command: str, code: str, logged_in: bool
) -> None:
    if code == "bad-password":  # scrypt is slow on purpose: only where it matters
        c = await server.connect()
        assert (await c.cmd("login bob bobpw")).startswith("OK")
        assert await c.cmd("quit") == "OK bye"
    else:
        await register(server, "bob")
    await register(server, "carol")
    c = await server.login("alice") if logged_in else await server.connect()
    if mode == "json":
        await c.send("mode json\n")
        assert (await c.obj())["type"] == "ok"
        o = await c.jcmd(command)
        assert o["type"] == "error", o
        assert o["code"] == code, o
        assert o["cmd"] == command.split(maxsplit=1)[0].lower()
        assert isinstance(o["message"], str) and o["message"]
        assert set(o) == {"type", "cmd", "code", "message"}
        if code == "bad-args":
            assert usage_name(command) in o["message"]  # the usage is in the text
        assert await c.jcmd("ping") == {"type": "ok", "cmd": "ping"}
    else:
        line = await c.cmd(command)
        assert err_code(line) == code, line
        assert len(line.split(None, 2)) == 3  # a human text follows the code
        if code == "bad-args":
            assert usage_name(command) in line
        assert await c.cmd("ping") == "OK pong"


async def test_rate_limited_general(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await server.login("bob")
    for i in range(20):
        assert (await alice.jcmd(f"send_all m{i}"))["type"] == "ok"
    server.clock.advance(600)
    o = await alice.jcmd("send_all one too many")
    assert o["type"] == "error" and o["code"] == "rate-limited" and o["cmd"] == "send_all"
    assert set(o) == {"type", "cmd", "code", "message", "retry_after"}
    assert 3000 - 1 <= o["retry_after"] <= 3000 + 1
    assert (await alice.jcmd("send #general still no"))["code"] == "rate-limited"
    t = await server.login("alice")
    assert err_code(await t.cmd("send_all text mode too")) == "rate-limited"
    # private messages are not limited, and other users are not affected
    assert (await alice.jcmd("send bob private is fine"))["type"] == "ok"
    assert (await bob.cmd("send_all bob can")).startswith("OK")
    # the window resets at its end
    server.clock.advance(3000)
    assert (await alice.jcmd("send_all new window"))["type"] == "ok"


async def test_too_many_sessions(start_server: StartServer) -> None:
    server = await start_server(chat__max_sessions_per_user=2)
    s1 = await server.login("alice")
    s2 = await jlogin(server, "alice")
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "too-many-sessions"
    j = await jconnect(server)
    o = await j.jcmd("login ALICE")
    assert o["type"] == "error" and o["code"] == "too-many-sessions"
    assert await s1.cmd("quit") == "OK bye"
    assert await s1.closed()
    # a freed slot can be taken; the refused connection is still usable
    assert (await c.cmd("login alice")).startswith("OK welcome alice")
    assert (await s2.jcmd("who"))["users"] == [{"name": "alice", "sessions": 2}]


async def test_default_session_limit_is_8(server: Server) -> None:
    sessions = [await server.login("alice") for _ in range(7)]
    last = await jlogin(server, "alice")
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "too-many-sessions"
    assert (await last.jcmd("who"))["users"] == [{"name": "alice", "sessions": 8}]
    assert all([await x.cmd("ping") == "OK pong" for x in sessions])


async def test_server_busy_when_full(start_server: StartServer) -> None:
    server = await start_server(limits__max_connections=2)
    a = await server.connect()
    b = await server.connect()
    c = await Client.connect(server.port, greet=False)
    line = await c.line()
    # Reading: a refused connection gets `ERR server-busy …` instead of the greeting.
    assert err_code(line) == "server-busy"
    assert await c.closed()
    assert await a.cmd("ping") == "OK pong"
    assert await b.cmd("quit") == "OK bye"
    assert await b.closed()
    d = await server.connect()
    assert d.greeting.startswith("* ")


async def test_server_busy_per_ip(start_server: StartServer) -> None:
    server = await start_server(limits__max_connections_per_ip=1)
    a = await server.login("alice")
    c = await Client.connect(server.port, greet=False)
    assert err_code(await c.line()) == "server-busy"
    assert await c.closed()
    assert await a.cmd("ping") == "OK pong"
