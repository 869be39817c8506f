"""Moderation over real TCP with the FakeClock: reports and strikes, bans and their
notices, what a banned user can still do, admin commands."""

from __future__ import annotations

from typing import Any

from tests.helpers.protocol import TS_RE, err_code, jlogin, register
from tests.helpers.server import Server, StartServer


async def test_third_distinct_strike_bans_over_tcp(start_server: StartServer) -> None:
    server = await start_server()
    troll = await server.login("troll", mode="json")
    r1, r2, r3 = [await server.login(n) for n in ("r1", "r2", "r3")]
    assert await r1.cmd("report troll spam") == "OK troll has 1 strike"
    assert (await troll.obj()) == {
        "type": "notice",
        "event": "warned",
        "strikes": 1,
        "limit": 3,
    }
    assert await r1.cmd("report troll again") == "OK troll has 1 strike"  # same reporter
    assert await r2.cmd("ban troll") == "OK troll has 2 strikes"
    await troll.obj()
    third = await r3.cmd("ban troll")
    assert third.startswith("OK troll has 3 strikes, banned until ")
    warned, banned = await troll.obj(), await troll.obj()
    assert warned["event"] == "warned" and warned["strikes"] == 3
    assert banned["event"] == "banned" and banned["retry_after"] == 14400
    refused = await troll.jcmd("send_all let me speak")
    assert refused["code"] == "banned" and refused["retry_after"] == 14400
    assert (await troll.jcmd("history #general"))["type"] == "ok"  # still reads
    server.clock.advance(14400 - 10)
    assert (await troll.jcmd("send r1 please"))["retry_after"] == 10
    server.clock.advance(10)  # ban expiry
    assert (await troll.jcmd("send_all I am back"))["type"] == "ok"


async def test_ban_holds_across_reconnect_and_restart(start_server: StartServer) -> None:
    server = await start_server()
    await server.login("troll")
    for n in ("r1", "r2", "r3"):
        c = await server.login(n)
        assert (await c.cmd("report troll")).startswith("OK")
    server = await server.restart()
    again = await server.login("troll")
    assert (await again.cmd("send_all hi")).startswith("ERR banned ")


async def test_admin_commands_over_tcp(start_server: StartServer) -> None:
    server = await start_server(moderation__admins=["root"])
    c = await server.connect()
    assert (await c.cmd("login root pw")).startswith("OK welcome root")
    root = c
    t1 = await server.login("troll")
    t2 = await server.login("troll")
    bystander = await server.login("amy")
    assert (await bystander.cmd("kick troll")).startswith("ERR forbidden ")
    assert (await bystander.cmd("announce hi")).startswith("ERR forbidden ")
    assert (await bystander.cmd("unban troll")).startswith("ERR forbidden ")

    assert (await root.cmd("ban troll 30m flooding")).startswith("OK troll has 0 strikes, banned")
    for t in (t1, t2):
        assert (await t.line()).startswith("* you are banned from sending until ")
    assert (await t1.cmd("send_all x")).startswith("ERR banned ")
    assert await root.cmd("unban troll") == "OK troll"
    assert await t1.line() == "* your ban was lifted"
    assert await t2.line() == "* your ban was lifted"
    assert (await t1.cmd("send_all free")).startswith("OK sent")

    assert await root.cmd("announce back at noon") == "OK announced"
    for c in (t1, t2, bystander):
        line = await c.until(lambda x: x.startswith("* "))
        assert line == "* announcement from root: back at noon"

    assert await root.cmd("kick troll") == "OK troll"
    for t in (t1, t2):
        assert await t.until(lambda x: x.startswith("* you were kicked")) == (
            "* you were kicked by root"
        )
        assert await t.closed()
    assert await bystander.cmd("who") == "OK 2 users online"


async def test_three_distinct_reporters_ban_with_notices(server: Server) -> None:
    spam = await jlogin(server, "spammer")
    spam_text = await server.login("spammer")
    r1 = await jlogin(server, "r1")
    r2 = await server.login("r2")
    r3 = await jlogin(server, "r3")

    o = await r1.jcmd("ban spammer flooding")
    assert o == {"type": "ok", "cmd": "ban", "user": "spammer", "strikes": 1, "banned_until": None}
    n = await spam.obj()
    assert n["type"] == "notice" and n["event"] == "warned"
    assert (await spam_text.line()).startswith("* ")
    # the same reporter again: still one strike
    o = await r1.jcmd("report spammer again")
    assert o["cmd"] == "report" and o["strikes"] == 1 and o["banned_until"] is None
    assert (await r2.cmd("REPORT spammer")).startswith("OK")
    n = await spam.obj()
    assert n["type"] == "notice" and n["event"] == "warned"
    o = await r3.jcmd("ban spammer")
    assert o["strikes"] == 3 and o["banned_until"] == "2027-01-15T12:00:00.000Z"
    # warned, then banned with `until`
    events: list[dict[str, Any]] = []
    while len(events) < 2:
        x = await spam.obj()
        assert x["type"] == "notice"
        events.append(x)
    assert [e["event"] for e in events] == ["warned", "banned"]
    assert events[1]["until"] == "2027-01-15T12:00:00.000Z"
    lines = [await spam_text.line() for _ in range(3)]  # warned (r2), warned, banned
    assert all(x.startswith("* ") for x in lines)


async def test_banned_user_cannot_send_but_can_log_in_and_read(server: Server) -> None:
    await register(server, "r1", "r2", "r3")
    target = await jlogin(server, "target")
    for r in ("r1", "r2", "r3"):
        c = await server.login(r)
        assert (await c.cmd("ban target")).startswith("OK")
        await c.close()
    server.clock.advance(60)
    o = await target.jcmd("send_all hello")
    assert o["type"] == "error" and o["code"] == "banned" and o["cmd"] == "send_all"
    assert set(o) == {"type", "cmd", "code", "message", "retry_after"}
    assert 14340 - 1 <= o["retry_after"] <= 14340 + 1
    o = await target.jcmd("send r1 hello")
    assert o["code"] == "banned" and o["retry_after"] > 0
    o = await target.jcmd("send #general hello")
    assert o["code"] == "banned"
    t = await server.login("target")
    assert err_code(await t.cmd("send_all hi")) == "banned"
    assert err_code(await t.cmd("send r2 hi")) == "banned"
    # can still read: history, who, status, and live messages
    r1 = await jlogin(server, "r1")
    sent = await r1.jcmd("send_all still here")
    m = await target.obj()
    assert m["type"] == "message" and m["id"] == sent["id"]
    assert (await target.jcmd("history #general"))["type"] == "ok"
    assert (await target.jcmd("who"))["type"] == "ok"
    # the ban ends after ban_duration_s
    server.clock.advance(14400 - 60 + 1)
    assert (await target.jcmd("send_all I am back"))["type"] == "ok"
    assert (await t.cmd("send r1 hi")).startswith("OK")


async def test_cannot_report_yourself(server: Server) -> None:
    a = await jlogin(server, "alice")
    o = await a.jcmd("ban alice")
    # Reading: the contract names no code; bad-args or forbidden are both fine.
    assert o["type"] == "error" and o["code"] in ("bad-args", "forbidden")
    o = await a.jcmd("report ALICE")
    assert o["type"] == "error" and o["code"] in ("bad-args", "forbidden")
    b = await jlogin(server, "bob")
    assert (await b.jcmd("ban alice"))["strikes"] == 1  # no strike was counted


async def test_strikes_expire_after_the_strike_window(server: Server) -> None:
    await register(server, "target")
    for r in ("r1", "r2"):
        c = await jlogin(server, r)
        assert (await c.jcmd("ban target"))["strikes"] in (1, 2)
    server.clock.advance(86400 + 1)
    c = await jlogin(server, "r3")
    o = await c.jcmd("ban target")
    assert o["strikes"] == 1 and o["banned_until"] is None


async def test_admin_bans_at_once_unbans_and_kicks(start_server: StartServer) -> None:
    server = await start_server(moderation__admins=["root"])
    await register(server, "root")  # without a password root is not an admin
    c = await jlogin(server, "root")
    assert (await c.jcmd("unban bob"))["code"] in ("forbidden", "no-such-user")
    assert (await c.jcmd("passwd rootpw"))["type"] == "ok"
    root = await jlogin(server, "root", "rootpw")
    bob = await jlogin(server, "bob")
    o = await root.jcmd("ban bob")
    assert o["type"] == "ok" and o["banned_until"] is not None
    n = await bob.obj()
    assert n["type"] == "notice" and n["event"] == "banned" and TS_RE.match(n["until"])
    assert (await bob.jcmd("send_all hi"))["code"] == "banned"
    assert (await root.jcmd("unban bob")) == {"type": "ok", "cmd": "unban", "user": "bob"}
    assert (await bob.jcmd("send_all hi"))["type"] == "ok"
    assert (await root.jcmd("kick bob"))["type"] == "ok"
    assert await bob.closed()
    assert (await root.jcmd("stats"))["type"] == "ok"
