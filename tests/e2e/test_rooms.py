"""Private rooms over real TCP: the whole life cycle, links, offline owners, text mode."""

from __future__ import annotations

from typing import Any

from tests.helpers.server import Client, Server


async def next_notice(client: Client, event: str) -> dict[str, Any]:
    while True:
        o = await client.obj()
        if o["type"] == "notice" and o["event"] == event:
            return o


async def test_room_life_cycle_over_tcp(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    carol = await server.login("carol", mode="json")

    assert await alice.jcmd("room create dev") == {"type": "ok", "cmd": "room", "room": "#dev"}
    sent = await alice.jcmd("send #dev welcome")
    assert sent["type"] == "ok"

    # a direct invite: bob is told and gets the room's latest messages
    assert (await alice.jcmd("room invite #dev bob"))["user"] == "bob"
    assert await bob.obj() == {"type": "notice", "event": "invited", "room": "#dev", "by": "alice"}
    replay = await bob.obj()
    assert replay["text"] == "welcome" and replay["replay"] is True

    # a non-member sees nothing and can probe nothing
    probe = await carol.jcmd("history #dev")
    assert probe["type"] == "error" and probe["code"] == "not-a-member"
    assert (await carol.jcmd("send #dev hi"))["code"] == "not-a-member"
    assert (await carol.jcmd("send #nope hi"))["code"] == "no-such-chat"

    # live messages go to members only
    await bob.jcmd("send #dev hi alice")
    got = await alice.obj()
    assert (got["chat"], got["from"], got["text"]) == ("#dev", "bob", "hi alice")
    assert await carol.silent()

    # a join link, a request, a denial, then another request and an approval
    link = await alice.jcmd("room link #dev")
    assert link["room"] == "#dev" and link["expires"].endswith("Z")
    assert await carol.jcmd(f"join {link['link']}") == {
        "type": "ok",
        "cmd": "join",
        "room": "#dev",
        "status": "pending",
    }
    assert (await next_notice(alice, "join-request"))["user"] == "carol"
    await alice.jcmd("room deny #dev carol")
    assert (await next_notice(carol, "denied"))["room"] == "#dev"
    await carol.jcmd(f"join {link['link']}")
    await next_notice(alice, "join-request")
    assert (await alice.jcmd("room approve #dev carol"))["user"] == "carol"
    assert (await next_notice(carol, "joined"))["user"] == "carol"
    assert [(await carol.obj())["text"] for _ in range(2)] == ["welcome", "hi alice"]
    assert (await next_notice(bob, "joined"))["user"] == "carol"

    who = await carol.jcmd("who #dev")
    assert [u["name"] for u in who["users"]] == ["alice", "bob", "carol"]
    rooms = await carol.jcmd("rooms")
    assert rooms["rooms"] == [{"room": "#dev", "owner": "alice", "members": 3}]

    # kick and leave
    kicked = await alice.jcmd("room kick #dev carol")
    assert kicked["members"] == ["alice", "bob"]
    assert (await next_notice(carol, "removed"))["by"] == "alice"
    assert (await carol.jcmd("history #dev"))["code"] == "not-a-member"
    left = await alice.jcmd("room leave #dev")
    assert left == {"type": "ok", "cmd": "room", "room": "#dev", "members": ["bob"]}
    assert (await next_notice(bob, "owner"))["user"] == "bob"
    assert (await bob.jcmd("room members #dev"))["members"] == ["bob"]


async def test_expired_and_revoked_links_over_tcp(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    await alice.jcmd("room create dev")
    expired = (await alice.jcmd("room link #dev"))["link"]
    server.clock.advance(24 * 3600)
    refused = await bob.jcmd(f"join {expired}")
    assert refused["type"] == "error" and refused["code"] == "no-such-chat"
    revoked = (await alice.jcmd("room link #dev"))["link"]
    assert (await alice.jcmd("room unlink #dev")) == {"type": "ok", "cmd": "room", "room": "#dev"}
    assert (await bob.jcmd(f"join {revoked}"))["code"] == "no-such-chat"
    assert await alice.silent()  # no join-request ever reached the owner


async def test_request_to_an_offline_owner_arrives_at_login(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    await alice.jcmd("room create dev")
    link = (await alice.jcmd("room link #dev"))["link"]
    await alice.close()
    bob = await server.login("bob", mode="json")
    assert (await bob.jcmd(f"join {link}"))["status"] == "pending"

    server = await server.restart()  # and it is stored
    alice = await server.login("alice", mode="json")
    assert await alice.obj() == {
        "type": "notice",
        "event": "join-request",
        "room": "#dev",
        "user": "bob",
    }
    await alice.jcmd("room approve #dev bob")
    bob = await server.login("bob", mode="json")
    assert (await bob.jcmd("rooms"))["rooms"][0]["room"] == "#dev"
    await bob.jcmd("send #dev thanks")
    assert (await alice.obj())["text"] == "thanks"


async def test_rooms_in_text_mode(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    assert await alice.cmd("room create dev") == "OK #dev"
    assert await alice.cmd("room invite #dev bob") == "OK #dev bob"
    assert await bob.line() == "* alice added you to #dev"
    await alice.send("room members #dev\n")
    assert await alice.reply() == ["  alice", "  bob", "OK 2 members in #dev"]
    await bob.send("who #dev\n")
    assert (await bob.reply())[-1] == "OK 2 users in #dev"
    assert (await alice.cmd("room link #dev")).startswith("OK link ")
    assert (await bob.cmd("send #dev hi")).startswith("OK sent [")
    assert "#dev <bob> hi" in await alice.line()
