"""Private rooms: membership, join links and approvals, ownership, persistence.

Unit tests drive the core directly (`Core` below, shared with the thread and schedule
tests); the end-to-end tests run the whole life cycle over TCP.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import pytest

from chatd.config import Config
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.protocol.commands import parse
from chatd.protocol.events import Error, Event, Message, Notice, Ok, Push
from chatd.store.memory import MemoryStore
from tests.helpers.server import Client, Server

# The core, driven directly -----------------------------------------------------------


class Core:
    """A Chat over a MemoryStore with a movable clock; every outcome is committed, so
    `restart()` sees what a restarted server would."""

    def __init__(self, **settings: object) -> None:
        overrides = {k.replace("__", "."): v for k, v in settings.items()}
        self.config = Config().with_overrides(overrides)
        self.store = MemoryStore()
        self.now = 1_800_000_000.0
        self.chat = Chat(self.config, self.store.load(), started=self.now)
        self._ids = itertools.count(1)

    def login(self, name: str) -> Session:
        s = Session(next(self._ids), "test", self.now)
        self.ok(s, f"login {name}")
        return s

    def run(self, s: Session, line: str) -> Outcome:
        out = self.chat.handle(s, parse(line), self.now)
        while out.deferred is not None:
            out = out.deferred.resume(out.deferred.work(), self.now)
        self.store.commit(out.changes)
        return out

    def ok(self, s: Session, line: str) -> Mapping[str, Any]:
        out = self.run(s, line)
        reply = out.replies[0]
        assert isinstance(reply, Ok), reply
        return reply.fields

    def err(self, s: Session, line: str) -> str:
        reply = self.run(s, line).replies[0]
        assert isinstance(reply, Error), reply
        return str(reply.code)

    def tick(self, seconds: float = 0.0) -> Outcome:
        self.now += seconds
        out = self.chat.tick(self.now)
        self.store.commit(out.changes)
        return out

    def restart(self) -> None:
        self.chat = Chat(self.config, self.store.load(), started=self.now)

    def received(self, out: Outcome, s: Session) -> list[Event]:
        """What the outcome writes to `s` besides its own replies: pushes naming it, and
        broadcasts of the chats whose topic it is subscribed to (not its own sends)."""
        got: list[Event] = [e for e, sessions in out.pushes if s in sessions]
        for msg, sender in out.broadcasts:
            if sender is not s and s in self.chat.topics.get(msg.chat, ()):
                got.append(Push(msg))
        return got


def notices(events: list[Event], name: str) -> list[Mapping[str, Any]]:
    return [e.fields for e in events if isinstance(e, Notice) and e.event == name]


def messages(events: list[Event]) -> list[Message]:
    return [e.message for e in events if isinstance(e, Push)]


def room_with(core: Core, owner: str, *members: str) -> list[Session]:
    """Logs in everyone, creates #dev owned by the first and invites the rest."""
    sessions = [core.login(owner), *(core.login(m) for m in members)]
    core.ok(sessions[0], "room create dev")
    for m in members:
        core.ok(sessions[0], f"room invite #dev {m}")
    return sessions


# Creating ---------------------------------------------------------------------------


def test_create_makes_the_creator_owner_and_member() -> None:
    core = Core()
    alice = core.login("alice")
    assert core.ok(alice, "room create Dev") == {"room": "#dev"}
    assert core.ok(alice, "rooms")["rooms"] == [{"room": "#dev", "owner": "alice", "members": 1}]
    assert alice in core.chat.topics["#dev"]
    assert core.store.members.keys() == {("#dev", "alice")}
    assert core.store.rooms["#dev"].owner == "alice"


def test_room_names_follow_user_name_rules_and_general_is_reserved() -> None:
    core = Core()
    alice = core.login("alice")
    for bad in ("general", "#General", "no/slash", "x" * 33, "#"):
        assert core.err(alice, f"room create {bad}") == "bad-name", bad
    core.ok(alice, "room create #ops")
    bob = core.login("bob")
    assert core.err(bob, "room create OPS") == "bad-name"
    assert "taken" in str(core.run(bob, "room create ops").replies[0])


# Inviting and sending ------------------------------------------------------------------


def test_invite_is_for_the_owner_and_tells_the_invitee() -> None:
    core = Core(chat__history_on_join=2)
    alice, bob, carol = core.login("alice"), core.login("bob"), core.login("carol")
    assert core.ok(carol, "rooms")["rooms"] == []
    core.ok(alice, "room create dev")
    for text in ("one", "two", "three"):
        core.ok(alice, f"send #dev {text}")
    out = core.run(alice, "room invite #dev bob")
    assert out.replies == [Ok("room", "room", {"room": "#dev", "user": "bob"})]
    got = core.received(out, bob)
    assert notices(got, "invited") == [{"room": "#dev", "by": "alice"}]
    assert [m.text for m in messages(got)] == ["two", "three"]
    assert all(isinstance(e, Push) and e.replay for e in got[1:])
    assert bob in core.chat.topics["#dev"]
    assert core.err(bob, "room invite #dev carol") == "forbidden"
    assert core.err(alice, "room invite #dev nobody") == "no-such-user"
    assert core.err(alice, "room invite #nope carol") == "no-such-chat"


def test_inviting_a_member_again_changes_nothing() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    out = core.run(alice, "room invite #dev bob")
    assert isinstance(out.replies[0], Ok)
    assert not out.changes and not out.pushes
    assert core.chat.topics["#dev"] == {alice, bob}


def test_room_messages_reach_members_only() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    carol = core.login("carol")
    out = core.run(bob, "send #dev hello team")
    assert [m.text for m in messages(core.received(out, alice))] == ["hello team"]
    assert core.received(out, carol) == []
    assert core.chat.topics["#dev"] == {alice, bob}
    assert core.err(carol, "send #dev let me in") == "not-a-member"
    assert core.err(carol, "history #dev") == "not-a-member"
    assert core.err(carol, "who #dev") == "not-a-member"
    assert core.err(carol, "room members #dev") == "not-a-member"
    assert core.err(carol, "send #nope hi") == "no-such-chat"
    history = core.ok(alice, "history #dev")
    assert [p.message.text for p in history["messages"]] == ["hello team"]


def test_who_and_members_list_every_member_in_joining_order() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    core.now += 1
    carol = core.login("carol")
    core.ok(alice, "room invite #dev carol")
    core.chat.close(carol, core.now)
    who = core.ok(bob, "who #dev")
    assert who["room"] == "#dev"
    assert who["users"] == [
        {"name": "alice", "sessions": 1},
        {"name": "bob", "sessions": 1},
        {"name": "carol", "sessions": 0},
    ]
    assert core.ok(bob, "room members #dev")["members"] == ["alice", "bob", "carol"]


def test_unread_replay_at_login_covers_rooms() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    core.chat.close(bob, core.now)
    core.ok(alice, "send #dev while you were out")
    bob = Session(99, "test", core.now)
    out = core.run(bob, "login bob")
    assert out.replies[0] == Ok("login", "login", {"user": "bob", "new": False, "unread": 1})
    assert [m.text for m in messages(out.replies)] == ["while you were out"]


# Join links -----------------------------------------------------------------------------


def test_join_link_request_and_approval() -> None:
    core = Core(chat__history_on_join=5)
    alice, bob = room_with(core, "alice", "bob")
    core.ok(alice, "send #dev before carol")
    carol = core.login("carol")
    link = core.ok(alice, "room link #dev")
    assert link["room"] == "#dev" and len(link["link"]) >= 20
    assert link["expires"] == "2027-01-16T08:00:00.000Z"  # 24 h
    assert core.err(bob, "room link #dev") == "forbidden"

    out = core.run(carol, f"join {link['link']}")
    assert out.replies == [Ok("join", "join", {"room": "#dev", "status": "pending"})]
    assert notices(core.received(out, alice), "join-request") == [{"room": "#dev", "user": "carol"}]
    assert core.received(out, bob) == []
    assert core.err(carol, "send #dev hi?") == "not-a-member"
    again = core.run(carol, f"join {link['link']}")
    assert isinstance(again.replies[0], Ok) and not again.pushes  # no second notice

    out = core.run(alice, "room approve #dev carol")
    assert out.replies == [Ok("room", "room", {"room": "#dev", "user": "carol"})]
    got = core.received(out, carol)
    assert notices(got, "joined") == [{"room": "#dev", "user": "carol"}]
    assert [m.text for m in messages(got)] == ["before carol"]
    assert notices(core.received(out, bob), "joined") == [{"room": "#dev", "user": "carol"}]
    assert core.store.requests == {}
    core.ok(carol, "send #dev thanks")
    assert core.err(carol, f"join {link['link']}") == "bad-args"  # already a member
    assert core.err(alice, "room approve #dev carol") == "bad-args"  # nothing pending


def test_denied_request() -> None:
    core = Core()
    (alice,) = room_with(core, "alice")
    bob = core.login("bob")
    link = core.ok(alice, "room link #dev")["link"]
    core.ok(bob, f"join {link}")
    assert core.err(bob, "room deny #dev bob") == "forbidden"
    out = core.run(alice, "room deny #dev bob")
    assert out.replies == [Ok("room", "room", {"room": "#dev", "user": "bob"})]
    assert notices(core.received(out, bob), "denied") == [{"room": "#dev"}]
    assert core.err(bob, "history #dev") == "not-a-member"
    assert core.store.requests == {}


def test_expired_and_revoked_links() -> None:
    core = Core(rooms__link_ttl_s=60)
    (alice,) = room_with(core, "alice")
    bob = core.login("bob")
    old = core.ok(alice, "room link #dev")["link"]
    core.now += 60
    assert core.err(bob, f"join {old}") == "no-such-chat"
    fresh = core.ok(alice, "room link #dev")["link"]
    assert old not in core.store.links  # expired links are pruned with the next one
    other = core.ok(alice, "room link #dev")["link"]
    assert core.ok(alice, "room unlink #dev") == {"room": "#dev"}
    assert core.store.links == {}
    for token in (fresh, other, "not-a-token"):
        assert core.err(bob, f"join {token}") == "no-such-chat"
    assert core.chat.rooms["#dev"].requests == {}


def test_join_request_waits_for_an_offline_owner() -> None:
    core = Core()
    (alice,) = room_with(core, "alice")
    link = core.ok(alice, "room link #dev")["link"]
    core.chat.close(alice, core.now)
    bob = core.login("bob")
    out = core.run(bob, f"join {link}")
    assert not out.pushes
    alice = Session(50, "test", core.now)
    login = core.run(alice, "login alice")
    assert notices(login.replies, "join-request") == [{"room": "#dev", "user": "bob"}]
    core.ok(alice, "room approve #dev bob")
    again = core.run(Session(51, "test", core.now), "login alice")
    assert notices(again.replies, "join-request") == []


# Leaving, kicking, ownership --------------------------------------------------------------


def test_kick() -> None:
    core = Core()
    alice, bob, carol = room_with(core, "alice", "bob", "carol")
    assert core.err(bob, "room kick #dev carol") == "forbidden"
    assert core.err(alice, "room kick #dev alice") == "bad-args"
    out = core.run(alice, "room kick #dev bob")
    assert out.replies == [
        Ok("room", "room", {"room": "#dev", "user": "bob", "members": ["alice", "carol"]})
    ]
    assert notices(core.received(out, bob), "removed") == [{"room": "#dev", "by": "alice"}]
    assert notices(core.received(out, carol), "left") == [{"room": "#dev", "user": "bob"}]
    assert bob not in core.chat.topics["#dev"]
    assert core.err(bob, "send #dev still here?") == "not-a-member"
    assert core.err(alice, "room kick #dev bob") == "not-a-member"
    assert core.ok(bob, "rooms")["rooms"] == []


def test_owner_leaving_hands_the_room_to_the_longest_member() -> None:
    core = Core()
    alice = core.login("alice")
    core.ok(alice, "room create dev")
    core.now += 1
    carol = core.login("carol")
    core.ok(alice, "room invite #dev carol")
    core.now += 1
    bob = core.login("bob")
    core.ok(alice, "room invite #dev bob")
    dave = core.login("dave")
    link = core.ok(alice, "room link #dev")["link"]
    core.ok(dave, f"join {link}")

    out = core.run(alice, "room leave #dev")
    assert out.replies == [Ok("room", "room", {"room": "#dev", "members": ["carol", "bob"]})]
    assert notices(core.received(out, bob), "owner") == [{"room": "#dev", "user": "carol"}]
    # the pending request is now carol's to answer
    assert notices(core.received(out, carol), "join-request") == [{"room": "#dev", "user": "dave"}]
    assert core.store.rooms["#dev"].owner == "carol"
    assert core.err(alice, "send #dev bye") == "not-a-member"
    assert core.err(alice, "room leave #dev") == "not-a-member"
    core.ok(carol, "room approve #dev dave")
    core.ok(carol, "room kick #dev bob")


def test_last_member_leaving_deletes_the_room_and_its_messages(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    core = Core()
    forgotten: list[int] = []
    monkeypatch.setattr(core.chat, "forget_files", lambda ids, out: forgotten.extend(ids))
    alice, bob = room_with(core, "alice", "bob")
    plans = core.ok(alice, "send #dev secret plans")["id"]
    core.ok(alice, "room link #dev")
    core.ok(core.login("carol"), f"join {core.ok(alice, 'room link #dev')['link']}")
    core.ok(alice, "room leave #dev")
    assert core.ok(bob, "room leave #dev") == {"room": "#dev", "members": []}
    assert "#dev" not in core.chat.rooms and "#dev" not in core.chat.topics
    assert core.store.rooms == {} and core.store.members == {}
    assert core.store.links == {} and core.store.requests == {}
    assert not any(m.chat == "#dev" for m in core.store.messages.values())
    assert plans not in core.chat.messages
    assert forgotten == [plans]  # and their files with them
    # a new room of the same name starts empty
    carol = core.login("carol")
    core.ok(carol, "room create dev")
    assert core.ok(carol, "history #dev")["messages"] == []


def test_rooms_survive_a_restart() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    core.ok(alice, "send #dev kept")
    link = core.ok(alice, "room link #dev")["link"]
    core.ok(core.login("carol"), f"join {link}")
    core.restart()
    alice, bob, dave = core.login("alice"), core.login("bob"), core.login("dave")
    assert core.ok(bob, "rooms")["rooms"] == [{"room": "#dev", "owner": "alice", "members": 2}]
    assert core.chat.topics["#dev"] == {alice, bob}
    assert [p.message.text for p in core.ok(bob, "history #dev")["messages"]] == ["kept"]
    assert core.ok(dave, f"join {link}")["status"] == "pending"
    core.ok(alice, "room approve #dev carol")
    assert core.ok(alice, "room members #dev")["members"] == ["alice", "bob", "carol"]


# End to end ------------------------------------------------------------------------------


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
