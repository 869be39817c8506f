"""send_all and send over real TCP: replies, pushes in both modes, ids, private chats."""

from __future__ import annotations

from tests.helpers.protocol import START_TS, TEXT_MSG_RE, TS_RE, jlogin
from tests.helpers.server import Server, StartServer


async def test_send_all_json_reply_and_push(start_server: StartServer) -> None:
    server = await start_server(server__timezone="UTC")
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    carol = await server.login("carol")
    o = await alice.jcmd("send_all  hello   world ")
    assert set(o) == {"type", "cmd", "id", "ts"}
    assert o["type"] == "ok" and o["cmd"] == "send_all" and isinstance(o["id"], int)
    assert TS_RE.match(o["ts"]) and o["ts"] == START_TS
    m = await bob.obj()
    assert m == {
        "type": "message",
        "id": o["id"],
        "chat": "#general",
        "from": "alice",
        "text": "hello   world",
        "ts": START_TS,
        "reply_to": None,
        "replay": False,
    }
    line = await carol.line()
    assert line == f"08:00:00 [{o['id']}] #general <alice> hello   world"
    assert await alice.silent()  # the sending session gets its OK, not the message


async def test_send_all_text(start_server: StartServer) -> None:
    server = await start_server(server__timezone="UTC")
    alice = await server.login("alice")
    bob = await server.login("bob")
    server.clock.advance(3 * 3600 + 25 * 60 + 7.25)
    ok = await alice.cmd("send_all good morning")
    assert ok.startswith("OK")
    m = TEXT_MSG_RE.match(await bob.line())
    assert m is not None
    assert m.group(1, 2, 3) == ("11", "25", "07")
    assert m.group(5, 6, 7) == ("#general", "alice", "good morning")
    assert m.group(4) in ok  # the OK names the id (reading: scripts want it)


async def test_message_ids_unique_and_increasing_across_chats(server: Server) -> None:
    alice = await jlogin(server, "alice")
    await jlogin(server, "bob")
    ids = []
    for i in range(6):
        cmd = "send_all x" if i % 2 else "send bob y"
        ids.append((await alice.jcmd(cmd))["id"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_send_private_to_user_and_at_user(start_server: StartServer) -> None:
    server = await start_server(server__timezone="UTC")
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    bob_text = await server.login("bob")
    carol = await jlogin(server, "carol")
    for target in ("bob", "@bob", "@BOB"):
        o = await alice.jcmd(f"send {target} psst {target}")
        assert o["type"] == "ok" and o["cmd"] == "send" and TS_RE.match(o["ts"])
        m = await bob.obj()
        assert m == {
            "type": "message",
            "id": o["id"],
            "chat": "@alice",
            "from": "alice",
            "to": "bob",
            "text": f"psst {target}",
            "ts": START_TS,
            "reply_to": None,
            "replay": False,
        }
        assert await bob_text.line() == f"08:00:00 [{o['id']}] @alice <alice> psst {target}"
    assert await carol.silent()
    assert await alice.silent()


async def test_send_to_general_by_name(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    o = await alice.jcmd("send #general to all")
    assert o["type"] == "ok"
    m = await bob.obj()
    assert m["chat"] == "#general" and m["text"] == "to all" and "to" not in m


async def test_send_to_self_reaches_own_other_sessions(server: Server) -> None:
    # Reading: a note to yourself is allowed and syncs to your other sessions.
    a1 = await jlogin(server, "alice")
    a2 = await jlogin(server, "alice")
    o = await a1.jcmd("send alice note to self")
    assert o["type"] == "ok"
    m = await a2.obj()
    assert m["text"] == "note to self" and m["chat"] == "@alice"
    assert await a1.silent()
