"""Invitations that need consent (`rooms.invite_consent`, issue 13 item 12) over real
sockets: the offer live and at login, accept, decline, expiry on the fake clock, a
restart in between, text mode, and the HTTP door's generic POST /command."""

from __future__ import annotations

from typing import Any

from tests.helpers.http import start_http, user
from tests.helpers.server import Client, Server, StartServer

WEEK = "2027-01-22T08:00:00.000Z"  # the fake clock's start + 7 days (rooms.invite_ttl_s)


async def next_notice(client: Client, event: str) -> dict[str, Any]:
    while True:
        o = await client.obj()
        if o["type"] == "notice" and o["event"] == event:
            return o


async def test_invite_accept_and_send_over_tcp(start_server: StartServer) -> None:
    server = await start_server(rooms__invite_consent=True)
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    bob2 = await server.login("bob", mode="json")
    await alice.jcmd("room create dev")
    assert (await alice.jcmd("send #dev welcome"))["type"] == "ok"

    assert await alice.jcmd("room invite #dev bob") == {
        "type": "ok",
        "cmd": "room",
        "room": "#dev",
        "user": "bob",
        "expires": WEEK,
        "status": "invited",
    }
    offer = {"type": "notice", "event": "invitation", "room": "#dev", "by": "alice"}
    for s in (bob, bob2):  # every session of the invitee
        assert await s.obj() == {**offer, "expires": WEEK}
    # an offer only: nothing of the room yet
    assert (await bob.jcmd("send #dev hi"))["code"] == "not-a-member"
    assert await bob.jcmd("rooms") == {
        "type": "ok",
        "cmd": "rooms",
        "rooms": [],
        "invites": [{"room": "#dev", "by": "alice", "expires": WEEK}],
    }
    assert (await alice.jcmd("room invite #dev bob"))["code"] == "bad-args"  # invited already

    assert await bob.jcmd("room accept #dev") == {
        "type": "ok",
        "cmd": "room",
        "room": "#dev",
        "members": ["alice", "bob"],
    }
    replay = await bob.obj()  # the room's latest, right after the OK
    assert (replay["text"], replay["replay"]) == ("welcome", True)
    assert (await next_notice(bob2, "joined"))["user"] == "bob"
    assert (await bob2.obj())["text"] == "welcome"
    assert await next_notice(alice, "joined") == {
        "type": "notice",
        "event": "joined",
        "room": "#dev",
        "user": "bob",
    }
    await bob.jcmd("send #dev thanks")
    got = await alice.obj()
    assert (got["chat"], got["from"], got["text"]) == ("#dev", "bob", "thanks")
    assert (await bob2.obj())["text"] == "thanks"
    assert (await alice.jcmd("room invite #dev bob"))["code"] == "bad-args"  # a member now


async def test_decline_tells_the_owner(start_server: StartServer) -> None:
    server = await start_server(rooms__invite_consent=True)
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    await alice.jcmd("room create dev")
    await alice.jcmd("room invite #dev bob")
    await next_notice(bob, "invitation")
    assert await bob.jcmd("room decline #dev") == {"type": "ok", "cmd": "room", "room": "#dev"}
    assert await alice.obj() == {
        "type": "notice",
        "event": "declined",
        "room": "#dev",
        "user": "bob",
    }
    assert (await bob.jcmd("room accept #dev"))["code"] == "bad-args"
    assert (await bob.jcmd("history #dev"))["code"] == "not-a-member"


async def test_an_invitation_expires(start_server: StartServer) -> None:
    server = await start_server(rooms__invite_consent=True, rooms__invite_ttl_s=3600)
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    await alice.jcmd("room create dev")
    await alice.jcmd("room invite #dev bob")
    await next_notice(bob, "invitation")
    server.clock.advance(3600)
    refused = await bob.jcmd("room accept #dev")
    assert refused["code"] == "bad-args" and "expired" in refused["message"]
    assert await bob.jcmd("rooms") == {"type": "ok", "cmd": "rooms", "rooms": []}
    assert (await alice.jcmd("room invite #dev bob"))["status"] == "invited"  # anew


async def test_a_pending_invitation_survives_a_restart(start_server: StartServer) -> None:
    server = await start_server(rooms__invite_consent=True)
    alice = await server.login("alice", mode="json")
    await alice.jcmd("room create dev")
    await alice.jcmd("send #dev kept")
    await server.login("bob", mode="json")  # the account exists; bob goes away
    assert (await alice.jcmd("room invite #dev bob"))["status"] == "invited"

    server = await server.restart(rooms__invite_consent=True)
    bob = await server.login("bob", mode="json")
    assert await bob.obj() == {
        "type": "notice",
        "event": "invitation",
        "room": "#dev",
        "by": "alice",
        "expires": WEEK,
    }
    alice = await server.login("alice", mode="json")
    assert (await bob.jcmd("room accept #dev"))["members"] == ["alice", "bob"]
    assert (await bob.obj())["text"] == "kept"
    assert (await next_notice(alice, "joined"))["user"] == "bob"
    await server.daemon.stop()


async def test_invitations_in_text_mode(start_server: StartServer) -> None:
    server = await start_server(rooms__invite_consent=True)
    alice = await server.login("alice")
    bob = await server.login("bob")
    assert await alice.cmd("room create dev") == "OK #dev"
    assert await alice.cmd("room invite #dev bob") == f"OK invited bob to #dev until {WEEK}"
    assert await bob.line() == (
        f"* alice invites you to #dev: room accept #dev or room decline #dev (until {WEEK})"
    )
    await bob.send("rooms\n")
    assert await bob.reply() == [
        f"  #dev (invited by alice until {WEEK}: room accept|decline #dev)",
        "OK 0 rooms, 1 invitation",
    ]
    assert await bob.cmd("room decline #dev") == "OK #dev"
    assert await alice.line() == "* bob declined the invitation to #dev"
    await alice.cmd("room invite #dev bob")
    await bob.line()
    assert await alice.cmd("room kick #dev bob") == "OK 1 member in #dev"
    assert await bob.line() == "* alice withdrew the invitation to #dev"
    await bob.send("room accept #dev\n")
    assert (await bob.line()).startswith("ERR bad-args you have no pending invitation to #dev")


async def test_the_default_adds_at_once(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    await alice.jcmd("room create dev")
    assert await alice.jcmd("room invite #dev bob") == {
        "type": "ok",
        "cmd": "room",
        "room": "#dev",
        "user": "bob",
    }
    assert await bob.obj() == {"type": "notice", "event": "invited", "room": "#dev", "by": "alice"}
    assert await bob.jcmd("rooms") == {
        "type": "ok",
        "cmd": "rooms",
        "rooms": [{"room": "#dev", "owner": "alice", "members": 2}],
    }


async def test_accept_over_http(start_server: StartServer) -> None:
    """The HTTP door needs no route of its own: the offer is an event, the answer a
    POST /command."""
    server, base = await start_http(start_server, rooms__invite_consent=True)
    alice = await server.login("alice", mode="json")
    await alice.jcmd("room create dev")
    async with await user(base, "bob") as bob:
        start = (await bob.get("/events", params={"timeout": 0})).json()["next"]
        await alice.jcmd("room invite #dev bob")
        events = (await bob.get("/events", params={"since": start, "timeout": 5})).json()
        assert events["events"] == [
            {
                "type": "notice",
                "event": "invitation",
                "room": "#dev",
                "by": "alice",
                "expires": WEEK,
            }
        ]
        r = await bob.post("/command", json={"line": "room accept #dev"})
        assert r.status_code == 200
        assert r.json() == {
            "type": "ok",
            "cmd": "room",
            "room": "#dev",
            "members": ["alice", "bob"],
        }
        r = await bob.post("/command", json={"line": "room accept #dev"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "bad-args"
    assert (await next_notice(alice, "joined"))["user"] == "bob"
