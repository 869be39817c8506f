"""who, status and history over real TCP, in both modes."""

from __future__ import annotations

from tests.helpers.protocol import MESSAGE_KEYS, TEXT_MSG_RE, items, jconnect, jlogin, register
from tests.helpers.server import Server


async def test_who_both_modes(server: Server) -> None:
    alice = await jlogin(server, "alice")
    alice2 = await jlogin(server, "alice")
    bob = await server.login("bob")
    await register(server, "carol")  # offline users are not listed
    w = await alice.jcmd("who")
    assert w["type"] == "ok" and w["cmd"] == "who"
    assert sorted(w["users"], key=lambda u: u["name"]) == [
        {"name": "alice", "sessions": 2},
        {"name": "bob", "sessions": 1},
    ]
    await bob.send("who\n")
    lines = await bob.reply()
    assert lines[-1].startswith("OK")
    assert len(lines) == 3
    assert any("alice" in x and "2" in x for x in lines[:-1])
    assert (await alice.jcmd("who #general"))["type"] == "ok"
    assert await alice2.jcmd("ping") == {"type": "ok", "cmd": "ping"}


async def test_status_before_and_after_login(server: Server) -> None:
    c = await jconnect(server)
    server.clock.advance(100)
    s = await c.jcmd("status")
    assert set(s) == {"type", "cmd", "server"}
    assert isinstance(s["server"]["version"], str)
    assert s["server"]["uptime_s"] >= 100
    assert s["server"]["online"] == 0
    await c.jcmd("login alice")
    bob = await jlogin(server, "bob")
    await bob.jcmd("send_all hi")
    sent = await bob.jcmd("send alice hey")
    s = await c.jcmd("status")
    assert s["server"]["online"] == 2
    assert s["user"] == "alice" and s["sessions"] == 1
    chats = {x["chat"]: x for x in s["chats"]}
    assert chats["#general"]["unread"] == 0 and chats["#general"]["last_id"] == sent["id"] - 1
    assert chats["@bob"] == {"chat": "@bob", "unread": 0, "last_id": sent["id"]}
    t = await server.connect()
    await t.send("status\n")
    lines = await t.reply()
    assert lines[-1].startswith("OK") and len(lines) >= 2


async def test_history_both_modes(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    ids = [(await alice.jcmd(f"send_all m{i}"))["id"] for i in range(12)]
    pm = [(await alice.jcmd(f"send bob p{i}"))["id"] for i in range(3)]
    h = await alice.jcmd("history #general")
    assert h["type"] == "ok" and h["cmd"] == "history" and h["chat"] == "#general"
    assert [m["id"] for m in h["messages"]] == ids  # oldest first, default 20
    assert set(h["messages"][0]) == MESSAGE_KEYS
    h = await alice.jcmd("history #general 5")
    assert [m["text"] for m in h["messages"]] == [f"m{i}" for i in range(7, 12)]
    h = await alice.jcmd(f"history #general 3 before {ids[5]}")
    assert [m["id"] for m in h["messages"]] == ids[2:5]
    h = await alice.jcmd(f"history #general before {ids[2]}")
    assert [m["id"] for m in h["messages"]] == ids[:2]
    h = await bob.jcmd("history @alice")
    assert h["chat"] == "@alice" and [m["id"] for m in h["messages"]] == pm
    assert all(m["chat"] == "@alice" and m["to"] == "bob" for m in h["messages"])
    h = await alice.jcmd("history bob 2")
    assert h["chat"] == "@bob" and [m["id"] for m in h["messages"]] == pm[1:]
    t = await server.login("carol")
    await t.send("history #general 4\n")
    lines = await t.reply()
    assert lines[-1].startswith("OK") and len(lines) == 5
    for i, line in enumerate(lines[:-1]):
        m = TEXT_MSG_RE.match(line.removeprefix("  "))
        assert m is not None and line.startswith("  ")
        assert m.group(4, 5, 6, 7) == (str(ids[8 + i]), "#general", "alice", f"m{8 + i}")
    # carol cannot read alice and bob's private chat; her @alice chat is empty
    assert await items(t, "history @alice") == []


async def test_history_default_is_20(server: Server) -> None:
    alice = await jlogin(server, "alice")
    ids = []
    for i in range(20):
        ids.append((await alice.jcmd(f"send_all m{i}"))["id"])
    server.clock.advance(3601)  # the #general window resets
    for i in range(5):
        ids.append((await alice.jcmd(f"send_all n{i}"))["id"])
    h = await alice.jcmd("history #general")
    assert [m["id"] for m in h["messages"]] == ids[-20:]
