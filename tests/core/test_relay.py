"""The core's relay (IRC's TAGMSG): who gets client-only tags, what refuses them, and
that nothing of it is stored or counted as a message."""

from __future__ import annotations

import pytest

from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.protocol import commands as c
from chatd.protocol.events import Error, Mode
from chatd.protocol.relay import Relayed, RelayOk
from tests.helpers.core import Core

TAGS = (("+typing", "active"),)


def relay(core: Core, s: Session, target: str) -> Outcome:
    out = core.chat.handle(s, c.Relay(target, TAGS, "t1-1", verb="tagmsg"), core.now)
    core.commit(out)
    return out


def login(core: Core, name: str, mode: Mode = Mode.IRC_TAGS) -> Session:
    s = core.login(name)
    s.mode = mode
    return s


def relayed_to(out: Outcome) -> set[int]:
    """Ids of the sessions the relay was pushed to."""
    return {s.id for e, sessions in out.pushes if isinstance(e, Relayed) for s in sessions}


def code(out: Outcome) -> str:
    err = out.replies[0]
    assert isinstance(err, Error), err
    return str(err.code)


def test_a_channel_relay_reaches_the_members_that_carry_tags_and_stores_nothing() -> None:
    core = Core()
    alice, alice2, bob = login(core, "alice"), login(core, "alice"), login(core, "bob")
    text, plain = login(core, "carol", Mode.TEXT), login(core, "dave", Mode.IRC_TIME)
    next_id = core.chat.next_id
    out = relay(core, alice, "#general")
    ok = out.replies[0]
    assert isinstance(ok, RelayOk) and ok.fields["target"] == "#general"
    assert ok.fields["ref"] == "t1-1"
    assert relayed_to(out) == {alice2.id, bob.id}  # not the sender, not text or IRC_TIME
    assert text.id not in relayed_to(out) and plain.id not in relayed_to(out)
    ((event, _),) = out.pushes
    assert event == Relayed("alice", "#general", TAGS, core.now, "t1-1")
    assert out.changes == [] and out.broadcasts == [] and out.acked == 0
    assert core.chat.next_id == next_id  # no message id used
    assert core.ok(bob, "history #general")["messages"] == []


def test_private_relays_go_to_the_other_user_and_the_senders_other_sessions() -> None:
    core = Core()
    alice, alice2 = login(core, "alice"), login(core, "alice")
    bob, bob_text = login(core, "bob"), login(core, "bob", Mode.TEXT)
    out = relay(core, alice, "Bob")
    assert relayed_to(out) == {bob.id, alice2.id}
    assert bob_text.id not in relayed_to(out)
    ((event, _),) = out.pushes
    assert isinstance(event, Relayed) and (event.sender, event.target) == ("alice", "bob")
    assert relayed_to(relay(core, alice, "alice")) == {alice2.id}  # to oneself


def test_rooms_need_membership_and_unknown_targets_are_refused() -> None:
    core = Core()
    owner, owner2, other = login(core, "owner"), login(core, "owner"), login(core, "other")
    core.ok(owner, "room create den")
    assert relayed_to(relay(core, owner, "#Den")) == {owner2.id}
    assert code(relay(core, other, "#den")) == "not-a-member"
    assert code(relay(core, other, "#nowhere")) == "no-such-chat"
    assert code(relay(core, other, "nobody")) == "no-such-user"


def test_banned_and_rate_limited_senders_are_refused_but_relays_use_no_window() -> None:
    core = Core(limits__general_messages_per_window=1)
    alice, bob = login(core, "alice"), login(core, "bob")
    relay(core, alice, "#general")  # does not count as a message
    core.ok(alice, "send_all the one message of the window")
    refused = relay(core, alice, "#general").replies[0]
    assert isinstance(refused, Error) and refused.code == "rate-limited"
    assert refused.retry_after is not None
    assert core.chat.accounts["bob"].sessions == [bob]
    core.chat.accounts["bob"].banned_until = core.now + 60
    assert code(relay(core, bob, "alice")) == "banned"


def test_no_text_line_is_a_relay() -> None:
    with pytest.raises(c.ParseError) as e:
        c.parse("relay #general")
    assert e.value.code == "unknown-command"
