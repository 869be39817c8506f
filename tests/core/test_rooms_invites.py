"""Invitations that need consent (issue 13 item 12, `rooms.invite_consent`): an invite
is a pending offer the invitee accepts or declines; bounded, expiring, stored. The
default (off) stays the protocol's direct add. The core driven through Core."""

from __future__ import annotations

from chatd.core.model import Session
from chatd.protocol.events import Push
from chatd.protocol.replies import AnyOk
from tests.helpers.core import Core, first, messages, notices

WEEK = "2027-01-22T08:00:00.000Z"  # T0 + rooms.invite_ttl_s (7 days)


def consent(**settings: object) -> Core:
    return Core(rooms__invite_consent=True, **settings)


def owner_of_dev(core: Core, owner: str = "alice") -> Session:
    s = core.login(owner)
    core.ok(s, "room create dev")
    return s


# The default: direct add, nothing else changes ----------------------------------------------


def test_by_default_an_invite_adds_the_member_and_rooms_lists_no_invitations() -> None:
    core = Core()
    alice, bob = owner_of_dev(core), core.login("bob")
    out = core.run(alice, "room invite #dev bob")
    assert out.replies == [AnyOk("room", "room", {"room": "#dev", "user": "bob"})]
    assert notices(core.received(out, bob), "invited") == [{"room": "#dev", "by": "alice"}]
    assert core.ok(bob, "rooms") == {"rooms": [{"room": "#dev", "owner": "alice", "members": 2}]}
    assert core.store.invites == {} and core.chat.invitations == {}
    assert core.err(bob, "room accept #dev") == "bad-args"  # nothing to accept


# An offer, accepted --------------------------------------------------------------------------


def test_an_invite_is_an_offer_the_invitee_accepts() -> None:
    core = consent(chat__history_on_join=2)
    alice = owner_of_dev(core)
    for text in ("one", "two", "three"):
        core.ok(alice, f"send #dev {text}")
    bob, bob2 = core.login("bob"), core.login("bob")
    out = core.run(alice, "room invite #dev bob")
    assert out.replies == [
        AnyOk(
            "room",
            "room",
            {"room": "#dev", "user": "bob", "expires": WEEK, "status": "invited"},
        )
    ]
    offer = {"room": "#dev", "by": "alice", "expires": WEEK}
    assert notices(core.received(out, bob), "invitation") == [offer]
    assert notices(core.received(out, bob2), "invitation") == [offer]
    assert notices(core.received(out, bob), "invited") == []  # not a member yet
    # nothing of the room until they accept
    assert "#dev" not in core.chat.accounts["bob"].rooms and bob not in core.chat.topics["#dev"]
    assert core.err(bob, "send #dev hi") == "not-a-member"
    assert core.err(bob, "history #dev") == "not-a-member"
    assert core.ok(alice, "room members #dev")["members"] == ["alice"]
    assert core.ok(bob, "rooms") == {
        "rooms": [],
        "invites": [{"room": "#dev", "by": "alice", "expires": WEEK}],
    }
    assert list(core.store.invites) == [("#dev", "bob")]

    out = core.run(bob, "room accept #dev")
    assert out.replies[0] == AnyOk("room", "room", {"room": "#dev", "members": ["alice", "bob"]})
    assert notices(core.received(out, alice), "joined") == [{"room": "#dev", "user": "bob"}]
    assert notices(core.received(out, bob2), "joined") == [{"room": "#dev", "user": "bob"}]
    # the accepting session too gets the room's latest, as a login would
    for s in (bob, bob2):
        got = core.received(out, s)
        assert [m.text for m in messages(got)] == ["two", "three"]
        assert all(e.replay for e in got if isinstance(e, Push))
    assert core.chat.topics["#dev"] == {alice, bob, bob2}
    assert core.store.invites == {} and core.chat.invitations == {}
    assert ("#dev", "bob") in core.store.members
    assert core.ok(bob, "rooms") == {"rooms": [{"room": "#dev", "owner": "alice", "members": 2}]}
    sent = core.run(bob, "send #dev thanks")
    assert [m.text for m in messages(core.received(sent, alice))] == ["thanks"]
    assert core.err(bob, "room accept #dev") == "bad-args"  # answered already


def test_declining_drops_the_offer_and_tells_the_owner() -> None:
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    core.ok(alice, "room invite #dev bob")
    out = core.run(bob, "room decline #dev")
    assert out.replies == [AnyOk("room", "room", {"room": "#dev"})]
    assert notices(core.received(out, alice), "declined") == [{"room": "#dev", "user": "bob"}]
    assert core.store.invites == {} and core.chat.rooms["#dev"].invites == {}
    assert core.err(bob, "room accept #dev") == "bad-args"
    assert core.err(bob, "room decline #dev") == "bad-args"
    assert core.err(bob, "send #dev hi") == "not-a-member"
    # declined is not banned: the owner may ask again
    assert core.ok(alice, "room invite #dev bob")["status"] == "invited"


# Refusals -------------------------------------------------------------------------------------


def test_invite_refusals_are_clear() -> None:
    core = consent()
    alice, bob, carol = owner_of_dev(core), core.login("bob"), core.login("carol")
    core.ok(alice, "room invite #dev bob")
    assert core.err(alice, "room invite #dev bob") == "bad-args"  # already invited
    assert "already invited" in str(core.run(alice, "room invite #dev bob").replies[0])
    assert core.err(alice, "room invite #dev alice") == "bad-args"  # a member
    core.ok(bob, "room accept #dev")
    assert "already a member" in str(core.run(alice, "room invite #dev bob").replies[0])
    assert core.err(bob, "room invite #dev carol") == "forbidden"  # not the owner
    assert core.err(alice, "room invite #dev nobody") == "no-such-user"
    assert core.err(alice, "room invite #nope carol") == "no-such-chat"
    assert core.err(carol, "room accept #nope") == "no-such-chat"
    assert core.err(carol, "room accept #dev") == "bad-args"
    assert core.err(carol, "room decline #dev") == "bad-args"
    assert core.store.invites == {}


def test_a_banned_owner_cannot_invite() -> None:
    core = consent()
    alice = owner_of_dev(core)
    core.login("bob")
    core.chat.accounts["alice"].banned_until = core.now + 60
    assert core.err(alice, "room invite #dev bob") == "banned"
    assert core.store.invites == {}


def test_a_banned_invitee_may_answer_but_not_send() -> None:
    """Joining is not sending: the ban still holds in the room."""
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    core.ok(alice, "room invite #dev bob")
    core.chat.accounts["bob"].banned_until = core.now + 60
    core.ok(bob, "room accept #dev")
    assert core.err(bob, "send #dev hi") == "banned"


# Expiry, bounds, rate ----------------------------------------------------------------------


def test_invitations_expire() -> None:
    core = consent(rooms__invite_ttl_s=60)
    alice, bob, carol = owner_of_dev(core), core.login("bob"), core.login("carol")
    core.ok(alice, "room invite #dev bob")
    core.ok(alice, "room invite #dev carol")
    core.now += 59
    assert core.ok(bob, "rooms")["invites"][0]["room"] == "#dev"
    core.now += 1
    assert core.ok(bob, "rooms") == {"rooms": []}
    assert "expired" in str(core.run(bob, "room accept #dev").replies[0])
    assert core.err(carol, "room decline #dev") == "bad-args"
    login = core.run(Session(70, "test", core.now), "login bob")
    assert notices(login.replies, "invitation") == []
    # an expired offer can be made again; the room's other expired ones go with it
    again = core.ok(alice, "room invite #dev bob")
    assert again["expires"] == "2027-01-15T08:02:00.000Z"
    assert list(core.store.invites) == [("#dev", "bob")]
    assert set(core.chat.rooms["#dev"].invites) == {"bob"}
    assert core.chat.invitations == {"bob": {"#dev"}}
    core.ok(bob, "room accept #dev")


def test_pending_invitations_are_bounded_per_room_and_per_user() -> None:
    core = consent(rooms__max_invites_per_room=2, rooms__max_invites_per_user=1)
    alice = owner_of_dev(core)
    bob, carol = core.login("bob"), core.login("carol")
    core.login("dave")
    core.ok(alice, "room invite #dev bob")
    core.ok(alice, "room invite #dev carol")
    assert core.err(alice, "room invite #dev dave") == "too-large"
    core.ok(carol, "room decline #dev")  # an answer frees a place
    core.ok(alice, "room invite #dev dave")
    # bob already has the one invitation a user may have waiting
    erin = core.login("erin")
    core.ok(erin, "room create ops")
    assert "bob has 1 pending" in str(core.run(erin, "room invite #ops bob").replies[0])
    core.ok(bob, "room accept #dev")
    core.ok(erin, "room invite #ops bob")
    assert len(core.store.invites) == 2  # dave to #dev, bob to #ops


def test_expired_invitations_do_not_count_against_the_bounds() -> None:
    core = consent(rooms__max_invites_per_room=1, rooms__invite_ttl_s=60)
    alice = owner_of_dev(core)
    core.login("bob")
    core.login("carol")
    core.ok(alice, "room invite #dev bob")
    assert core.err(alice, "room invite #dev carol") == "too-large"
    core.now += 60
    core.ok(alice, "room invite #dev carol")
    assert list(core.store.invites) == [("#dev", "carol")]


def test_invites_are_rate_limited_and_refusals_do_not_count() -> None:
    core = consent(limits__invites_per_window=2, limits__invites_window_s=3600)
    alice = owner_of_dev(core)
    for name in ("bob", "carol", "dave"):
        core.login(name)
    core.ok(alice, "room invite #dev bob")
    assert core.err(alice, "room invite #dev bob") == "bad-args"  # refused: not counted
    core.ok(alice, "room invite #dev carol")
    assert core.err(alice, "room invite #dev dave") == "rate-limited"
    assert set(core.store.invites) == {("#dev", "bob"), ("#dev", "carol")}


# Offline invitees, restarts ------------------------------------------------------------------


def test_an_offline_invitee_sees_the_offer_at_login_and_it_survives_a_restart() -> None:
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    core.chat.close(bob, core.now)
    out = core.run(alice, "room invite #dev bob")
    assert not out.pushes  # nobody online to tell
    core.ok(alice, "send #dev welcome")
    core.restart()
    core.now += 10
    bob = Session(80, "test", core.now)
    login = core.run(bob, "login bob")
    offer = {"room": "#dev", "by": "alice", "expires": WEEK}
    assert notices(login.replies, "invitation") == [offer]
    assert first(login) == AnyOk("login", "login", {"user": "bob", "new": False, "unread": 0})
    alice = core.login("alice")
    out = core.run(bob, "room accept #dev")
    assert notices(core.received(out, alice), "joined") == [{"room": "#dev", "user": "bob"}]
    assert [m.text for m in messages(core.received(out, bob))] == ["welcome"]
    core.restart()
    assert core.chat.rooms["#dev"].invites == {} and core.chat.invitations == {}
    assert core.ok(core.login("bob"), "rooms")["rooms"][0]["members"] == 2


def test_several_invitations_at_login_oldest_first() -> None:
    core = consent()
    alice, carol = owner_of_dev(core), core.login("carol")
    core.ok(carol, "room create ops")
    core.login("bob")
    core.ok(carol, "room invite #ops bob")
    core.now += 1
    core.ok(alice, "room invite #dev bob")
    login = core.run(Session(90, "test", core.now), "login bob")
    assert [n["room"] for n in notices(login.replies, "invitation")] == ["#ops", "#dev"]


# How an offer ends otherwise ----------------------------------------------------------------


def test_the_owner_withdraws_an_invitation_with_kick() -> None:
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    core.ok(alice, "room invite #dev bob")
    out = core.run(alice, "room kick #dev bob")
    assert out.replies == [
        AnyOk("room", "room", {"room": "#dev", "user": "bob", "members": ["alice"]})
    ]
    assert notices(core.received(out, bob), "uninvited") == [{"room": "#dev", "by": "alice"}]
    assert core.store.invites == {} and core.chat.invitations == {}
    assert core.err(bob, "room accept #dev") == "bad-args"
    assert core.err(alice, "room kick #dev bob") == "not-a-member"


def test_deleting_the_room_drops_its_invitations() -> None:
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    core.ok(alice, "room invite #dev bob")
    core.ok(alice, "room leave #dev")  # the last member: the room goes
    assert core.store.invites == {} and core.chat.invitations == {}
    assert core.err(bob, "room accept #dev") == "no-such-chat"
    assert core.ok(bob, "rooms") == {"rooms": []}
    core.ok(bob, "room create dev")  # a new room of that name owes bob nothing
    assert core.chat.rooms["#dev"].invites == {}


def test_an_offer_outlives_a_hand_over_and_the_new_owner_hears_the_answer() -> None:
    core = consent()
    alice, carol = owner_of_dev(core), core.login("carol")
    core.ok(alice, "room invite #dev carol")
    core.ok(carol, "room accept #dev")
    bob = core.login("bob")
    core.ok(alice, "room invite #dev bob")
    core.ok(alice, "room leave #dev")  # carol owns #dev now
    out = core.run(bob, "room decline #dev")
    assert notices(core.received(out, carol), "declined") == [{"room": "#dev", "user": "bob"}]
    assert core.received(out, alice) == []


def test_inviting_someone_who_asked_to_join_adds_them() -> None:
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    link = core.ok(alice, "room link #dev")["link"]
    core.ok(bob, f"join {link}")
    out = core.run(alice, "room invite #dev bob")
    assert out.replies == [
        AnyOk("room", "room", {"room": "#dev", "user": "bob", "status": "added"})
    ]
    assert notices(core.received(out, bob), "joined") == [{"room": "#dev", "user": "bob"}]
    assert core.store.requests == {} and core.store.invites == {}
    core.ok(bob, "send #dev in")


def test_joining_otherwise_clears_the_offer() -> None:
    """An invitee admitted through a join link, or by a direct invite once consent is
    turned off, no longer has an invitation waiting."""
    core = consent()
    alice, bob = owner_of_dev(core), core.login("bob")
    core.login("carol")
    core.ok(alice, "room invite #dev bob")
    core.ok(alice, "room invite #dev carol")
    core.ok(bob, f"join {core.ok(alice, 'room link #dev')['link']}")
    core.ok(alice, "room approve #dev bob")
    assert list(core.store.invites) == [("#dev", "carol")]
    core.config = core.chat.config = core.config.with_overrides({"rooms.invite_consent": False})
    assert core.ok(alice, "room invite #dev carol") == {"room": "#dev", "user": "carol"}
    assert core.store.invites == {} and core.chat.invitations == {}
    assert core.ok(alice, "room members #dev")["members"] == ["alice", "bob", "carol"]
