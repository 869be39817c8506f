"""Private rooms in the core: membership, join links and approvals, ownership,
persistence (the core driven directly through tests.helpers.core.Core)."""

from __future__ import annotations

from chatd.core.model import Session
from chatd.core.outcome import Body, UploadTicket
from chatd.protocol.commands import Upload
from chatd.protocol.events import Ok, Push
from chatd.protocol.replies import AnyOk
from tests.helpers.core import Core, messages, notices, room_with

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
    assert out.replies == [AnyOk("room", "room", {"room": "#dev", "user": "bob"})]
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
    assert out.replies[0] == AnyOk("login", "login", {"user": "bob", "new": False, "unread": 1})
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
    assert out.replies == [AnyOk("join", "join", {"room": "#dev", "status": "pending"})]
    assert notices(core.received(out, alice), "join-request") == [{"room": "#dev", "user": "carol"}]
    assert core.received(out, bob) == []
    assert core.err(carol, "send #dev hi?") == "not-a-member"
    again = core.run(carol, f"join {link['link']}")
    assert isinstance(again.replies[0], Ok) and not again.pushes  # no second notice

    out = core.run(alice, "room approve #dev carol")
    assert out.replies == [AnyOk("room", "room", {"room": "#dev", "user": "carol"})]
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
    assert out.replies == [AnyOk("room", "room", {"room": "#dev", "user": "bob"})]
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
        AnyOk("room", "room", {"room": "#dev", "user": "bob", "members": ["alice", "carol"]})
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
    assert out.replies == [AnyOk("room", "room", {"room": "#dev", "members": ["carol", "bob"]})]
    assert notices(core.received(out, bob), "owner") == [{"room": "#dev", "user": "carol"}]
    # the pending request is now carol's to answer
    assert notices(core.received(out, carol), "join-request") == [{"room": "#dev", "user": "dave"}]
    assert core.store.rooms["#dev"].owner == "carol"
    assert core.err(alice, "send #dev bye") == "not-a-member"
    assert core.err(alice, "room leave #dev") == "not-a-member"
    core.ok(carol, "room approve #dev dave")
    core.ok(carol, "room kick #dev bob")


def test_last_member_leaving_deletes_the_room_and_its_messages() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    plans = core.ok(alice, "send #dev secret plans")["id"]
    ticket = core.chat.begin_upload(alice, Upload("#dev", "plan.txt", verb="upload"), core.now)
    assert isinstance(ticket, UploadTicket)
    drawing = core.chat.finish_upload(alice, ticket, Body(5, "cd" * 32), core.now)
    core.store.commit(drawing.changes)
    core.ok(alice, "room link #dev")
    core.ok(core.login("carol"), f"join {core.ok(alice, 'room link #dev')['link']}")
    core.ok(alice, "room leave #dev")
    assert core.ok(bob, "room leave #dev") == {"room": "#dev", "members": []}
    assert "#dev" not in core.chat.rooms and "#dev" not in core.chat.topics
    assert core.store.rooms == {} and core.store.members == {}
    assert core.store.links == {} and core.store.requests == {}
    assert not any(m.chat == "#dev" for m in core.store.messages.values())
    assert core.chat.index.chat_of(plans) is None and plans not in core.chat.recent
    assert core.chat.files.by_id == {} and core.store.files == {}  # their files went too
    assert core.chat.files.take_dead_bodies() == ["cd" * 32]
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
