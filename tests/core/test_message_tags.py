"""A message's client-only tags and kind (IRC's `+tags` on PRIVMSG, and NOTICE): the
core keeps them on the Message it stores, broadcasts, pushes and reads back, for every
way a message is sent, and leaves ordinary messages without them."""

from __future__ import annotations

from chatd.core.model import Session
from chatd.core.outcome import Outcome, PutMessage
from chatd.protocol import commands as c
from chatd.protocol import replies as r
from chatd.protocol.events import MAX_CLIENT_TAGS, NOTICE_KIND, Error, Message, Push
from tests.helpers.core import Core

TAGS = r"+draft/react=\:);+example"


def send(core: Core, s: Session, cmd: c.Command) -> Outcome:
    out = core.chat.handle(s, cmd, core.now)
    core.commit(out)
    return out


def stored(out: Outcome) -> Message:
    (change,) = [ch for ch in out.changes if isinstance(ch, PutMessage)]
    return change.message


def test_send_all_keeps_tags_and_kind_on_the_stored_and_broadcast_message() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    out = send(core, alice, c.SendAll("hi", TAGS, NOTICE_KIND, verb="send_all"))
    msg = stored(out)
    assert (msg.text, msg.tags, msg.kind) == ("hi", TAGS, NOTICE_KIND)
    assert out.broadcasts == [(msg, alice)]
    assert core.chat.recent.get(msg.id) == msg
    plain = stored(send(core, bob, c.SendAll("plain", verb="send_all")))
    assert (plain.tags, plain.kind) == ("", "")


def test_send_to_general_a_room_and_a_user_keep_them() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    core.ok(alice, "room create #den")
    core.ok(alice, "room invite #den bob")
    general = stored(send(core, alice, c.Send("#General", "g", TAGS, verb="send")))
    assert (general.chat, general.tags, general.kind) == ("#general", TAGS, "")
    room = stored(send(core, alice, c.Send("#den", "r", "+a=1", NOTICE_KIND, verb="send")))
    assert (room.chat, room.tags, room.kind) == ("#den", "+a=1", NOTICE_KIND)
    out = send(core, alice, c.Send("bob", "p", TAGS, NOTICE_KIND, verb="send"))
    private = stored(out)
    assert (private.to, private.tags, private.kind) == ("bob", TAGS, NOTICE_KIND)
    assert (Push(private, "bob"), (bob,)) in out.pushes


def test_a_comment_keeps_them_besides_its_reply_to() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    root = stored(send(core, alice, c.SendAll("root", verb="send_all")))
    comment = stored(send(core, bob, c.Comment(root.id, "re", TAGS, NOTICE_KIND, verb="comment")))
    assert (comment.reply_to, comment.tags, comment.kind) == (root.id, TAGS, NOTICE_KIND)


def test_they_come_back_from_the_store_after_a_restart() -> None:
    core = Core(chat__recent_bytes=1)  # nothing held whole: history reads the store
    alice = core.login("alice")
    msg = stored(send(core, alice, c.SendAll("kept", TAGS, NOTICE_KIND, verb="send_all")))
    core.restart()
    assert len(core.chat.recent) == 0
    alice = core.login("alice")
    page = core.run(alice, "history #general").replies[0]
    assert isinstance(page, r.HistoryOk)
    (push,) = page.messages
    assert push.message == msg and (push.message.tags, push.message.kind) == (TAGS, NOTICE_KIND)


def test_client_tags_over_the_irc_limit_are_refused() -> None:
    core = Core()
    alice = core.login("alice")
    next_id = core.chat.next_id
    big = "+x=" + "a" * (MAX_CLIENT_TAGS - 2)
    out = send(core, alice, c.SendAll("hi", big, verb="send_all"))
    err = out.replies[0]
    assert isinstance(err, Error) and str(err.code) == "too-large"
    assert out.changes == [] and core.chat.next_id == next_id
    fits = "+x=" + "a" * (MAX_CLIENT_TAGS - 3)
    assert stored(send(core, alice, c.SendAll("hi", fits, verb="send_all"))).tags == fits
