"""Accounts over real TCP: login and its fields, names, passwords and passwd, scrypt at
rest, the login timeout, and concurrent logins while a password is hashing."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.helpers.protocol import err_code, jconnect, jlogin, jlogin_full
from tests.helpers.server import Server, StartServer


async def test_login_text_and_json_fields(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice")).startswith("OK")
    _, ok, _ = await jlogin_full(server, "alice")
    assert ok == {"type": "ok", "cmd": "login", "user": "alice", "new": False, "unread": 0}
    _, ok, _ = await jlogin_full(server, "bob")
    assert ok == {"type": "ok", "cmd": "login", "user": "bob", "new": True, "unread": 0}


async def test_names_unique_case_insensitively_shown_as_first_registered(
    server: Server,
) -> None:
    alice = await jlogin(server, "Alice.B-2_x")
    _, ok, _ = await jlogin_full(server, "ALICE.b-2_X")
    assert ok["user"] == "Alice.B-2_x" and ok["new"] is False
    w = await alice.jcmd("who")
    assert w["users"] == [{"name": "Alice.B-2_x", "sessions": 2}]
    m = await alice.jcmd("send_all hi")
    assert m["type"] == "ok"
    assert (await alice.jcmd("history #general"))["messages"][0]["from"] == "Alice.B-2_x"


@pytest.mark.parametrize(
    "name",
    ["a" * 33, "bad!name", "héllo", "al ice\tx", "#room", "@bob", "a/b", "x:y"],
)
async def test_bad_names(server: Server, name: str) -> None:
    c = await server.connect()
    line = await c.cmd(f"login {name}")
    if " " in name or "\t" in name:
        assert err_code(line) in ("bad-name", "bad-args")
    else:
        assert err_code(line) == "bad-name"
    assert (await c.cmd("login ok_name")).startswith("OK welcome ok_name")


async def test_longest_and_shortest_names_are_fine(server: Server) -> None:
    keep = [await server.login("a" * 32), await server.login("b")]
    c = await jlogin(server, "c")
    names = {u["name"] for u in (await c.jcmd("who"))["users"]}
    assert names == {"a" * 32, "b", "c"}
    assert all([await k.cmd("ping") == "OK pong" for k in keep])


async def test_already_logged_in(server: Server) -> None:
    c = await server.login("alice")
    assert err_code(await c.cmd("login alice")) == "already-logged-in"
    assert err_code(await c.cmd("login bob")) == "already-logged-in"
    j = await jlogin(server, "carol")
    o = await j.jcmd("login carol")
    assert o["code"] == "already-logged-in" and o["cmd"] == "login"


async def test_login_with_password_and_bad_password(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice s3cret")).startswith("OK welcome alice")
    await c.close()
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "bad-password"
    assert err_code(await c.cmd("login alice wrong")) == "bad-password"
    assert err_code(await c.cmd("login Alice S3CRET")) == "bad-password"  # case matters
    assert (await c.cmd("login ALICE s3cret")).startswith("OK welcome alice")
    j = await jconnect(server)
    o = await j.jcmd("login alice nope")
    assert o["type"] == "error" and o["code"] == "bad-password" and o["cmd"] == "login"
    assert (await j.jcmd("login alice s3cret"))["type"] == "ok"


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_passwords_are_stored_as_scrypt_hashes(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice Plain-Text-Pw-1")).startswith("OK")
    assert (await c.cmd("passwd Other-Plain-Pw-2 Plain-Text-Pw-1")).startswith("OK")
    data = await asyncio.to_thread(_all_bytes, Path(server.data_dir))
    assert b"Plain-Text-Pw-1" not in data and b"Other-Plain-Pw-2" not in data
    assert b"scrypt" in data


async def test_require_password(start_server: StartServer) -> None:
    server = await start_server(auth__require_password=True)
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "bad-password"
    assert (await c.cmd("login alice pw")).startswith("OK welcome alice (new")
    j = await jconnect(server)
    o = await j.jcmd("login bob")
    assert o["type"] == "error" and o["code"] == "bad-password"

    # The greeting and help say so; the open default says "[password]".
    assert c.greeting.endswith("login <name> <password>"), c.greeting
    help_login = await j.jcmd("help login")
    assert help_login["commands"][0]["usage"] == "login <name> <password>", help_login
    plain = await (await start_server()).connect()
    assert plain.greeting.endswith("login <name> [password]"), plain.greeting


async def test_with_require_password_a_new_password_closes_the_other_sessions(
    start_server: StartServer,
) -> None:
    server = await start_server(auth__require_password=True)
    a1, a2 = await server.connect(), await server.connect()
    assert (await a1.cmd("login alice old")).startswith("OK welcome")
    assert (await a2.cmd("login alice old")).startswith("OK welcome")
    assert (await a1.cmd("passwd new old")).startswith("OK")
    assert "password was changed" in await a2.line()
    assert await a2.closed()
    assert (await a1.cmd("ping")) == "OK pong"  # the session that changed it stays
    again = await server.connect()
    assert err_code(await again.cmd("login alice old")) == "bad-password"
    assert (await again.cmd("login alice new")).startswith("OK welcome")


async def test_passwd_set_then_needed_then_changed(server: Server) -> None:
    c = await server.login("alice")
    assert (await c.cmd("passwd first")).startswith("OK")
    # From now on the account needs it.
    x = await server.connect()
    assert err_code(await x.cmd("login alice")) == "bad-password"
    assert (await x.cmd("login alice first")).startswith("OK welcome")
    # Changing needs the old one.
    assert err_code(await c.cmd("passwd second")) == "bad-password"
    assert err_code(await c.cmd("passwd second wrong")) == "bad-password"
    assert (await c.cmd("passwd second first")).startswith("OK")
    y = await server.connect()
    assert err_code(await y.cmd("login alice first")) == "bad-password"
    assert (await y.cmd("login alice second")).startswith("OK welcome")


async def test_passwd_json(server: Server) -> None:
    c = await jlogin(server, "alice")
    assert await c.jcmd("passwd pw1") == {"type": "ok", "cmd": "passwd"}
    o = await c.jcmd("passwd pw2 bad")
    assert o["type"] == "error" and o["code"] == "bad-password" and o["cmd"] == "passwd"
    assert await c.jcmd("passwd pw2 pw1") == {"type": "ok", "cmd": "passwd"}
    _, ok, _ = await jlogin_full(server, "alice", "pw2")
    assert ok["user"] == "alice"


async def test_login_timeout_closes_idle_connection(start_server: StartServer) -> None:
    server = await start_server(limits__login_timeout_s=0.3)
    c = await server.connect()
    j = await jconnect(server)
    logged = await server.login("alice")
    assert (await c.line(timeout=10)).startswith("* ")
    assert await c.closed()
    n = await j.obj(timeout=10)
    assert n["type"] == "notice" and n["event"] == "login-timeout"
    assert await j.closed()
    assert await logged.cmd("ping") == "OK pong"  # logged-in sessions stay


async def test_pipelined_second_login_while_the_first_is_hashing(server: Server) -> None:
    c = await jconnect(server)
    await c.send("login alice pw\nlogin alice pw\nlogin bob\nping\n")
    first, second, third, pong = [await c.obj() for _ in range(4)]
    assert first["type"] == "ok" and first["user"] == "alice"
    assert second["code"] == "already-logged-in" and third["code"] == "already-logged-in"
    assert pong == {"type": "ok", "cmd": "ping"}


async def test_two_connections_creating_one_account_at_once(server: Server) -> None:
    c1 = await jconnect(server)
    c2 = await jconnect(server)
    await asyncio.gather(c1.send("login carol pw-one\n"), c2.send("login Carol pw-two\n"))
    r1, r2 = await c1.obj(), await c2.obj()
    # exactly one created the account; the other needs that one's password
    oks = [r for r in (r1, r2) if r["type"] == "ok"]
    errs = [r for r in (r1, r2) if r["type"] == "error"]
    assert len(oks) == 1 and oks[0]["new"] is True
    assert len(errs) == 1 and errs[0]["code"] == "bad-password"
    winner = "pw-one" if r1["type"] == "ok" else "pw-two"
    _, ok, _ = await jlogin_full(server, "carol", winner)
    assert ok["new"] is False


async def test_your_own_messages_are_never_unread(server: Server) -> None:
    """Not after a quick quit (the OK may still be unsent), not in `status`."""
    alice = await server.login("alice")
    await alice.send("send_all one\nsend_all two\nquit\n")
    await alice.closed()
    bob = await server.login("bob")
    assert await bob.cmd("send_all three") == "OK sent [3]"
    again = await server.connect()
    assert await again.cmd("login alice") == "OK welcome alice, 1 unread"
    assert (await again.line()).endswith("<bob> three")
    await again.send("status\n")
    assert "  #general: 0 unread, last [3]" in await again.reply()
