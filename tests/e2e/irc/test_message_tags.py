"""A PRIVMSG's client-only tags and a NOTICE over real sockets: the tags travel with the
stored message (live to message-tags clients only, in the sender's echo, in CHATHISTORY
and the unread replay after a restart), and a NOTICE arrives, echoes and replays as
NOTICE; nc sees both as ordinary messages."""

from __future__ import annotations

from tests.helpers.irc import TAGS, IrcClient, joined_client, start_irc
from tests.helpers.server import StartServer, free_port

ECHO = ("echo-message", "batch", "labeled-response")


async def test_privmsg_tags_reach_message_tags_clients_and_the_echo_only(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    alice = await joined_client(port, "alice", caps=TAGS)
    bob = await joined_client(port, "bob", caps=("message-tags",))
    carol = await joined_client(port, "carol")  # no caps
    dave = await joined_client(port, "dave", caps=("server-time",))
    erin = await joined_client(port, "erin", caps=("account-tag",))  # not message-tags
    nc = await server.login("nora")
    await alice.send(r"@label=l1;+draft/react=a\:b;+example;cat=dog PRIVMSG #general :hello")
    echo = (await alice.until("PRIVMSG"))[-1]
    assert echo.tags["label"] == "l1" and echo.tags["msgid"] == "1"
    assert echo.tags["+draft/react"] == "a;b" and echo.tags["+example"] == ""
    assert "cat" not in echo.tags  # not a client-only tag: not kept
    got = (await bob.until("PRIVMSG"))[-1]
    assert got.params == ("#general", "hello") and got.source == "alice!alice@chatd"
    assert {k: v for k, v in got.tags.items() if k != "label"} == {
        k: v for k, v in echo.tags.items() if k != "label"
    }
    assert "label" not in got.tags
    assert await carol.line() == ":alice!alice@chatd PRIVMSG #general :hello"
    assert "+" not in (await dave.line()).split(" ", 1)[0]
    assert (await erin.until("PRIVMSG"))[-1].tags == {"account": "alice"}
    assert "[1] #general <alice> hello" in await nc.line()
    # Privately: the recipient and the sender's echo, the same msgid.
    await alice.send("@+example=v PRIVMSG bob :psst")
    echo = (await alice.until("PRIVMSG"))[-1]
    got = (await bob.until("PRIVMSG"))[-1]
    assert got.params == echo.params == ("bob", "psst")
    assert got.tags["+example"] == echo.tags["+example"] == "v"
    assert got.tags["msgid"] == echo.tags["msgid"] == "2"
    # A comment (+draft/reply) keeps its other tags too.
    await bob.send("@+draft/reply=1;+draft/react=ok PRIVMSG #general :re")
    got = (await alice.until("PRIVMSG"))[-1]
    assert got.tags["+draft/reply"] == "1" and got.tags["+draft/react"] == "ok"


async def test_notice_is_echoed_and_delivered_as_notice(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    foo = await joined_client(port, "foo", caps=ECHO)
    bar = await joined_client(port, "bar", caps=ECHO)
    nc = await server.login("nora")
    await foo.send("@label=12345 NOTICE bar :hi")
    echo = await foo.msg()
    assert (echo.command, echo.params, echo.tags) == ("NOTICE", ("bar", "hi"), {"label": "12345"})
    got = await bar.msg()
    assert got.command == "NOTICE" and got.params == ("bar", "hi") and got.tags == {}
    await foo.send("NOTICE #general :to all")
    assert (await foo.msg()).command == "NOTICE"  # the echo, unlabelled
    got = (await bar.until("NOTICE"))[-1]
    assert got.params == ("#general", "to all") and got.source == "foo!foo@chatd"
    assert "[2] #general <foo> to all" in await nc.line()  # a message to nc
    # A PRIVMSG is still a PRIVMSG.
    await foo.send("PRIVMSG bar :plain")
    assert (await bar.until(lambda m: m.params[-1] == "plain"))[-1].command == "PRIVMSG"


async def test_history_and_replay_after_a_restart_keep_tags_and_notices(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    await (await joined_client(port, "bob")).close()  # bob's account, then he is away
    alice = await joined_client(port, "alice", caps=TAGS)
    await alice.send(r"@+draft/react=\:)\s!;+draft/persist PRIVMSG bob :first")
    await alice.until("PRIVMSG")
    await alice.send("@+example=n NOTICE bob :second")
    await alice.until("NOTICE")
    await alice.send("@+example=g PRIVMSG #general :third")
    await alice.until("PRIVMSG")
    await alice.close()
    # Nothing held whole after the restart: history and replay read the store.
    server = await server.restart(irc__port=free_port(), chat__recent_bytes=1)
    try:
        port = server.daemon.door_port("irc")
        assert len(server.daemon.chat.recent) == 0
        bob = await IrcClient.connect(port)
        await bob.register("bob", caps=TAGS)
        # bob never saw them: the unread replay has all three, tagged, in batches.
        got = await bob.until(lambda m: m.params[-1:] == ("third",))
        replayed = [m for m in got if m.command in ("PRIVMSG", "NOTICE")]
        assert [(m.command, m.params[-1]) for m in replayed] == [
            ("PRIVMSG", "first"),
            ("NOTICE", "second"),
            ("PRIVMSG", "third"),
        ]
        assert replayed[0].tags["+draft/react"] == ";) !"
        assert replayed[0].tags["+draft/persist"] == ""
        assert replayed[1].tags["+example"] == "n" and replayed[2].tags["+example"] == "g"
        alice = await joined_client(port, "alice", caps=TAGS)
        await alice.send("CHATHISTORY LATEST bob * 10")
        batch = await alice.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
        history = batch[1:-1]
        assert [(m.command, m.params[-1], m.tags["msgid"]) for m in history] == [
            ("PRIVMSG", "first", "1"),
            ("NOTICE", "second", "2"),
        ]
        assert history[0].tags["+draft/react"] == ";) !" and history[1].tags["+example"] == "n"
        # Without message-tags the history has no client tag, a NOTICE is still one.
        plain = await joined_client(port, "alice", caps=("batch", "server-time"))
        await plain.send("CHATHISTORY LATEST bob * 10")
        batch = await plain.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
        assert [(m.command, set(m.tags)) for m in batch[1:-1]] == [
            ("PRIVMSG", {"batch", "time"}),
            ("NOTICE", {"batch", "time"}),
        ]
    finally:
        await server.daemon.stop()


async def test_client_tags_up_to_the_limit_are_kept_and_beyond_it_refused(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server)
    ann = await joined_client(port, "ann", caps=TAGS)
    ben = await joined_client(port, "ben", caps=("message-tags",))
    value = "a" * (4094 - len("+x="))  # 4094 bytes of client tag data: the most allowed
    await ann.send(f"@+x={value} PRIVMSG ben :big")
    got = (await ben.until("PRIVMSG"))[-1]
    assert got.tags["+x"] == value and got.tags["msgid"] == "1"
    assert (await ann.until("PRIVMSG"))[-1].tags["+x"] == value  # the echo
    await ann.send(f"@+x={value}b PRIVMSG ben :too big")
    assert (await ann.msg()).command == "417"
    await ann.send("PRIVMSG ben :after")
    got = (await ben.until("PRIVMSG"))[-1]
    assert got.params == ("ben", "after") and got.tags["msgid"] == "2"  # nothing stored between
