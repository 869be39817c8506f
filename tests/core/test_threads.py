"""Comments and threads in the core: where a comment goes, who may see it, and `thread`."""

from __future__ import annotations

from chatd.protocol.events import Ok, Push
from tests.helpers.core import Core, messages, room_with


def test_comment_on_general_goes_to_general_and_points_at_the_message() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    first = core.ok(alice, "send_all question?")["id"]
    out = core.run(bob, f"comment {first} answer!")
    reply = out.replies[0]
    assert isinstance(reply, Ok)
    assert reply.fields["reply_to"] == first and reply.fields["id"] == first + 1
    assert reply.fields["ts"] == "2027-01-15T08:00:00.000Z"
    [msg] = messages(core.received(out, alice))
    assert (msg.chat, msg.sender, msg.text, msg.reply_to) == ("#general", "bob", "answer!", first)
    assert core.received(out, bob) == []  # the sending session has its OK
    assert core.store.messages[msg.id].reply_to == first


def test_comments_on_comments_point_at_the_root() -> None:
    core = Core()
    alice = core.login("alice")
    root = core.ok(alice, "send_all root")["id"]
    c1 = core.ok(alice, f"comment {root} one")["id"]
    c2 = core.ok(alice, f"comment {c1} two")
    assert c2["reply_to"] == root
    thread = core.ok(alice, f"thread {c1}")  # a comment's thread is its root's
    assert thread["message"].message.id == root
    assert [p.message.text for p in thread["comments"]] == ["one", "two"]


def test_thread_lists_only_its_own_comments_oldest_first() -> None:
    core = Core()
    alice, bob = core.login("alice"), core.login("bob")
    a = core.ok(alice, "send_all a")["id"]
    b = core.ok(alice, "send_all b")["id"]
    core.ok(bob, f"comment {a} a1")
    core.ok(bob, f"comment {b} b1")
    core.ok(alice, "send_all unrelated")
    core.ok(alice, f"comment {a} a2")
    thread = core.ok(bob, f"thread {a}")
    assert isinstance(thread["message"], Push) and thread["message"].message.text == "a"
    assert [p.message.text for p in thread["comments"]] == ["a1", "a2"]
    lonely = core.ok(bob, "send_all lonely")["id"]
    assert core.ok(bob, f"thread {lonely}")["comments"] == []


def test_private_messages_are_invisible_to_outsiders() -> None:
    core = Core()
    alice, bob, carol = core.login("alice"), core.login("bob"), core.login("carol")
    secret = core.ok(alice, "send bob secret")["id"]
    missing = secret + 100
    assert core.err(carol, f"comment {secret} peek") == "no-such-message"
    assert core.err(carol, f"comment {missing} peek") == "no-such-message"
    # the same answer, word for word, for a message that exists and one that does not
    assert str(core.run(carol, f"thread {secret}").replies[0]).replace(str(secret), "N") == str(
        core.run(carol, f"thread {missing}").replies[0]
    ).replace(str(missing), "N")

    alice2 = core.login("alice")
    out = core.run(bob, f"comment {secret} got it")
    [to_alice] = [e for e in core.received(out, alice) if isinstance(e, Push)]
    assert to_alice.message.to == "alice" and to_alice.message.reply_to == secret
    assert to_alice.viewer == "alice"
    assert core.received(out, alice2) == [to_alice]
    assert core.received(out, carol) == []
    assert to_alice.message.chat == "@alice|bob"
    thread = core.ok(alice, f"thread {secret}")
    assert [p.message.text for p in thread["comments"]] == ["got it"]


def test_room_comments_stay_in_the_room() -> None:
    core = Core()
    alice, bob = room_with(core, "alice", "bob")
    carol = core.login("carol")
    post = core.ok(alice, "send #dev plan")["id"]
    assert core.err(carol, f"comment {post} me too") == "no-such-message"
    assert core.err(carol, f"thread {post}") == "no-such-message"
    out = core.run(bob, f"comment {post} agreed")
    [msg] = messages(core.received(out, alice))
    assert msg.chat == "#dev" and msg.reply_to == post
    assert core.received(out, carol) == []
    core.ok(alice, "room kick #dev bob")
    assert core.err(bob, f"comment {post} wait") == "no-such-message"


def test_comments_count_against_the_general_rate_limit() -> None:
    core = Core(limits__general_messages_per_window=2)
    alice, bob = core.login("alice"), core.login("bob")
    first = core.ok(alice, "send_all one")["id"]
    core.ok(alice, f"comment {first} two")
    assert core.err(alice, f"comment {first} three") == "rate-limited"
    assert core.err(alice, "send_all four") == "rate-limited"  # the comment counted
    assert core.ok(bob, f"comment {first} bob has his own window")["reply_to"] == first


def test_banned_users_cannot_comment() -> None:
    core = Core(moderation__strikes_to_ban=1)
    alice, bob = core.login("alice"), core.login("bob")
    first = core.ok(alice, "send_all hi")["id"]
    core.ok(alice, "ban bob")
    assert core.err(bob, f"comment {first} hey") == "banned"
    assert core.ok(bob, f"thread {first}")["comments"] == []  # reading stays allowed


def test_comments_survive_a_restart() -> None:
    core = Core()
    alice = core.login("alice")
    root = core.ok(alice, "send_all root")["id"]
    core.ok(alice, f"comment {root} kept")
    core.restart()
    alice = core.login("alice")
    thread = core.ok(alice, f"thread {root}")
    assert [p.message.text for p in thread["comments"]] == ["kept"]


def test_a_comment_whose_root_expired_stands_alone() -> None:
    core = Core()
    alice = core.login("alice")
    root = core.ok(alice, "send_all root")["id"]
    c1 = core.ok(alice, f"comment {root} orphan")["id"]
    core.chat.index.remove([root])  # as if the sweep had taken it
    core.chat.recent.remove([root])
    del core.store.messages[root]
    assert core.err(alice, f"thread {root}") == "no-such-message"
    assert core.ok(alice, f"thread {c1}")["message"].message.id == c1
    assert core.ok(alice, f"comment {c1} still")["reply_to"] == c1
