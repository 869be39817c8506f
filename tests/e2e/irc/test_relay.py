"""TAGMSG over real sockets: client-only tags (typing, reactions) reach the members of a
channel and the target nick that negotiated message-tags, with the sender's echo, and
nothing of them is stored (no history, no message id)."""

from __future__ import annotations

from tests.helpers.irc import TAGS, joined_client, start_irc
from tests.helpers.server import StartServer


async def test_tagmsg_reaches_message_tags_members_only_and_is_not_stored(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    alice = await joined_client(port, "alice", caps=TAGS)
    bob = await joined_client(port, "bob", caps=("message-tags",))
    carol = await joined_client(port, "carol")  # no caps
    dave = await joined_client(port, "dave", caps=("server-time",))
    erin = await joined_client(port, "erin", caps=("account-tag",))  # not message-tags
    nc = await server.login("nora")
    await alice.send(r"@+typing=active;+draft/react=a\:b;cat=dog TAGMSG #general")
    echo = (await alice.until("TAGMSG"))[-1]
    got = (await bob.until("TAGMSG"))[-1]
    assert got.params == ("#general",) and got.source == "alice!alice@chatd"
    assert got.tags["+typing"] == "active" and got.tags["+draft/react"] == "a;b"
    assert "cat" not in got.tags  # not a client-only tag: not relayed
    assert got.tags["account"] == "alice" and got.tags["time"].endswith("Z")
    assert echo.tags == got.tags  # the same msgid and time for everyone
    assert not got.tags["msgid"].isdigit()  # not a message id
    # The others' next line is the next message (no TAGMSG before it), whose id is 1:
    # the relay used no message id.
    await alice.send("PRIVMSG #general :after the typing")
    for other in (carol, dave, erin):
        line = await other.line()
        assert "PRIVMSG #general :after the typing" in line and "TAGMSG" not in line
    assert "[1] #general <alice> after the typing" in await nc.line()
    assert (await alice.until("PRIVMSG"))[-1].tags["msgid"] == "1"
    # Nothing stored: the history has the message alone, over IRC and over nc.
    await alice.send("CHATHISTORY LATEST #general * 10")
    batch = await alice.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    assert [m.command for m in batch[1:-1]] == ["PRIVMSG"]
    assert await nc.cmd("history #general") == "OK 1 message in #general"


async def test_tagmsg_to_a_nick_to_oneself_and_to_ones_other_sessions(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server)
    ann = await joined_client(port, "ann", caps=TAGS)
    ann2 = await joined_client(port, "ann", caps=("message-tags",))
    ben = await joined_client(port, "ben", caps=("message-tags",))
    await ann.send("@+draft/react=ok;+draft/reply=1 TAGMSG ben")
    got = (await ben.until("TAGMSG"))[-1]
    assert got.params == ("ben",) and got.source == "ann!ann@chatd"
    assert got.tags["+draft/react"] == "ok" and got.tags["+draft/reply"] == "1"
    mine = (await ann2.until("TAGMSG"))[-1]  # the sender's other session, in sync
    assert mine.params == ("ben",) and mine.tags == got.tags
    assert (await ann.until("TAGMSG"))[-1].tags == got.tags  # echo-message
    # To oneself with echo-message and a label: the echo labelled, the delivery not
    # (labeled-response), and one's other session gets it too.
    await ann.send("@label=s1;+typing=done TAGMSG ann")
    first, second = await ann.msg(), await ann.msg()
    assert [first.command, second.command] == ["TAGMSG", "TAGMSG"]
    assert first.tags["label"] == "s1" and "label" not in second.tags
    assert (await ann2.until("TAGMSG"))[-1].params == ("ann",)
    # Without client-only tags there is nothing to relay: ACK when labelled.
    await ann.send("@label=e1;cat=dog TAGMSG ben")
    ack = await ann.msg()
    assert ack.command == "ACK" and ack.tags["label"] == "e1"
    await ann.send("PRIVMSG ben :next")
    assert (await ben.msg()).command == "PRIVMSG"  # no empty TAGMSG came first


async def test_tagmsg_refusals_are_privmsgs_numerics(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    owner = await joined_client(port, "owner", caps=("message-tags",))
    owner2 = await joined_client(port, "owner", caps=("message-tags",))
    other = await joined_client(port, "other", caps=("message-tags", "labeled-response"))
    await owner.send("JOIN #den")
    await owner.until("366")
    assert (await owner2.until("JOIN"))[-1].params == ("#den",)  # the other session too
    await other.send("@label=x;+typing=active TAGMSG #den")
    err = (await other.until("404"))[-1]
    assert err.params[1] == "#den" and err.tags["label"] == "x"
    await other.send("@+typing=active TAGMSG #nowhere")
    assert (await other.until("403"))[-1].params[1] == "#nowhere"
    await other.send("@+typing=active TAGMSG nobody")
    assert (await other.until("401"))[-1].params[1] == "nobody"
    await other.send("TAGMSG")
    assert (await other.until("461"))[-1].params[1] == "TAGMSG"
    # A member's relay reaches the room's members (here the owner's other session).
    await owner.send("@+typing=active TAGMSG #DEN")
    got = (await owner2.until("TAGMSG"))[-1]
    assert got.params == ("#den",) and got.tags["+typing"] == "active"
