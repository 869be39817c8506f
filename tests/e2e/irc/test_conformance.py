"""IRC replies irctest checks (docs/irc.md, Conformance): labelled responses and
batches, the account-tag-only tag set, client-set read markers, MODE numerics, WHOIS
and WHOX accounts, SASL after registration, join-link keys."""

from __future__ import annotations

import base64

from chatd.protocol.irc import IrcMessage
from tests.helpers.irc import IrcClient, joined_client, start_irc
from tests.helpers.server import StartServer

LABELS = ("labeled-response", "batch")


def _batch_end(m: IrcMessage) -> bool:
    return m.command == "BATCH" and m.params[0].startswith("-")


async def test_labelled_join_of_several_channels_is_one_batch(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "amy", caps=LABELS)
    await a.send("@label=j1 JOIN #one,#two,nochan")
    got = await a.until(_batch_end)
    start, inner, end = got[0], got[1:-1], got[-1]
    assert start.command == "BATCH" and start.params[1] == "labeled-response"
    assert start.tags == {"label": "j1"}
    ref = start.params[0][1:]
    assert end.params == (f"-{ref}",)
    assert all(m.tags.get("batch") == ref and "label" not in m.tags for m in inner)
    assert [m.params[0] for m in inner if m.command == "JOIN"] == ["#one", "#two"]
    assert [m.command for m in inner].count("366") == 2
    assert inner[-1].command == "403" and inner[-1].params[1] == "nochan"
    # one channel: one batch of its own, and a PART of two the same way
    await a.send("@label=p2 PART #one,#general")
    got = await a.until(_batch_end)
    assert got[0].tags == {"label": "p2"}
    assert [m.command for m in got[1:-1]] == ["PART", "FAIL"]


async def test_labelled_pong_acks_and_message_to_self(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "bea", caps=(*LABELS, "echo-message"))
    await a.send("@label=x1 PONG :whatever")
    ack = await a.msg()
    assert ack.command == "ACK" and ack.tags == {"label": "x1"}
    await a.send("@label=x2 PRIVMSG bea :note to self")
    echo, delivery = await a.msg(), await a.msg()
    assert echo.command == delivery.command == "PRIVMSG"
    assert echo.tags == {"label": "x2"} and delivery.tags == {}
    assert echo.params == delivery.params == ("bea", "note to self")


async def test_account_tag_alone_gets_only_the_account_tag(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    only = await joined_client(port, "acc", caps=("account-tag",))
    timed = await joined_client(port, "tim", caps=("account-tag", "server-time"))
    full = await joined_client(port, "ful", caps=("message-tags",))
    sender = await joined_client(port, "snd")
    await sender.send("PRIVMSG #general :hello")
    assert (await only.until("PRIVMSG"))[-1].tags == {"account": "snd"}
    assert set((await timed.until("PRIVMSG"))[-1].tags) == {"account", "time"}
    assert set((await full.until("PRIVMSG"))[-1].tags) == {"account", "time", "msgid"}
    # a room invite: INVITE and JOIN carry the inviter's and the invitee's account
    await sender.send("JOIN #den")
    await sender.until("366")
    await sender.send("INVITE acc #den")
    invite = (await only.until("INVITE"))[-1]
    assert invite.tags == {"account": "snd"} and invite.params == ("acc", "#den")
    join = await only.msg()
    assert join.command == "JOIN" and join.tags == {"account": "acc"}


async def test_client_set_read_marker_only_moves_forward_and_reaches_other_clients(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    await (await server.login("dee", password="pw")).close()
    await (await server.login("eve")).close()
    caps = ("draft/read-marker",)
    one = await joined_client(port, "dee", caps=caps, password="pw")
    two = await joined_client(port, "dee", caps=caps, password="pw")
    await one.send("JOIN #notes")
    burst = await one.until("366")
    assert next(m for m in burst if m.command == "MARKREAD").params == ("#notes", "*")
    await one.send("MARKREAD #notes timestamp=2019-06-01T12:00:00.000Z")
    mark = ("#notes", "timestamp=2019-06-01T12:00:00.000Z")
    assert (await one.until("MARKREAD"))[-1].params == mark
    assert (await two.until("MARKREAD"))[-1].params == mark  # the other session learns it
    await one.send("MARKREAD #notes timestamp=2019-01-01T00:00:00.000Z")  # older: kept
    assert (await one.until("MARKREAD"))[-1].params == mark
    await one.send("MARKREAD #notes")
    assert (await one.until("MARKREAD"))[-1].params == mark
    await one.send("MARKREAD #notes *")
    fail = (await one.until("FAIL"))[-1]
    assert fail.params[:2] == ("MARKREAD", "INVALID_PARAMS")
    # a private chat's marker, and the marker after a reconnect, from the JOIN burst
    await one.send("MARKREAD eve timestamp=2023-07-04T00:00:00.000Z")
    assert (await one.until("MARKREAD"))[-1].params == ("eve", "timestamp=2023-07-04T00:00:00.000Z")
    await one.close()
    await two.close()
    again = await IrcClient.connect(port)
    await again.register("dee", caps=caps, password="pw")
    burst = await again.until(lambda m: m.command == "366" and m.params[1] == "#notes")
    assert [m.params for m in burst if m.command == "MARKREAD"][-1] == mark


async def test_mode_changes_get_irc_numerics(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    owner = await joined_client(port, "own")
    guest = await joined_client(port, "gst")
    out = await joined_client(port, "out")
    await owner.send("JOIN #club")
    await owner.until("366")
    await owner.send("INVITE gst #club")
    await owner.until("JOIN")
    await owner.send("MODE #club +ii")  # already set: confirmed to the owner alone
    confirmed = await owner.msg()
    assert confirmed.command == "MODE" and confirmed.params == ("#club", "+i")
    await owner.send("MODE #club +o nobody")
    assert (await owner.msg()).params[1:3] == ("nobody", "No such nick")
    await owner.send("MODE #club +o out")
    assert (await owner.msg()).command == "441"
    await owner.send("MODE #club +x")
    unknown = await owner.msg()
    assert unknown.command == "472" and unknown.params[1] == "x"
    await owner.send("MODE #club -i")
    assert (await owner.until("482"))[-1].params[1] == "#club"
    await guest.until("JOIN")
    await guest.send("MODE #club +t")
    assert (await guest.until("482"))[-1].params[2] == "You're not channel operator"
    await owner.send("MODE own +i")
    await owner.send("MODE own")
    assert (await owner.msg()).command == "221"  # the +i was no change
    await owner.send("MODE nobody")
    assert (await owner.msg()).command == "401"
    await out.close()


async def test_whois_and_whox_show_an_account_only_with_a_password(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    await (await server.login("reg", password="pw")).close()
    others = [await joined_client(port, "reg", password="pw"), await joined_client(port, "anon")]
    asker = await joined_client(port, "ask")
    await asker.send("WHOIS reg")
    assert "330" in [m.command for m in await asker.until("318")]
    await asker.send("WHOIS anon")
    assert "330" not in [m.command for m in await asker.until("318")]
    await asker.send("WHO anon %na")
    assert (await asker.until("354"))[-1].params[1:] == ("anon", "0")
    await asker.send("WHO reg %na")
    assert (await asker.until("354"))[-1].params[1:] == ("reg", "reg")
    for c in others:
        await c.close()


async def test_sasl_after_registration_and_overlong_blobs(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    await (await server.login("sal", password="pw")).close()
    a = await joined_client(port, "sal", password="pw", caps=("sasl",))
    await a.send("AUTHENTICATE PLAIN")
    assert (await a.msg()).command == "462"
    b = await IrcClient.connect(port)
    await b.send("CAP LS 302")
    await b.until("CAP")
    await b.send("CAP REQ sasl")
    await b.until("CAP")
    await b.send("AUTHENTICATE PLAIN")
    await b.until("AUTHENTICATE")
    chunk = base64.b64encode(b"x" * 300).decode()  # 400 characters: more follows
    for _ in range(6):
        await b.send(f"AUTHENTICATE {chunk}")
    assert (await b.msg()).command == "904"


async def test_join_with_a_wrong_link_is_bad_key(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    owner = await joined_client(port, "own")
    await owner.send("JOIN #priv")
    await owner.until("366")
    other = await joined_client(port, "oth")
    await other.send("JOIN #priv not-a-link")
    assert (await other.until("475"))[-1].params[1] == "#priv"
    await other.send("JOIN #priv")
    assert (await other.until("473"))[-1].params[1] == "#priv"


async def test_invite_and_kick_refusals_in_irc_order(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    owner = await joined_client(port, "own")
    member = await joined_client(port, "mem")
    outsider = await joined_client(port, "out")
    await owner.send("JOIN #club")
    await owner.until("366")
    await owner.send("INVITE mem #club")
    await owner.until("JOIN")
    await member.until("JOIN")
    checks = [
        (owner, "INVITE nobody #club", "401"),
        (owner, "INVITE mem #club", "443"),
        (outsider, "INVITE mem #club", "442"),
        (owner, "INVITE mem #nochan", "403"),
        (owner, "KICK #club out", "441"),
        (member, "KICK #club own", "482"),
        (owner, "KICK #nochan mem", "403"),
    ]
    for client, line, numeric in checks:
        await client.send(line)
        assert (await client.msg()).command == numeric, line


async def test_rooms_are_secret_outsiders_cannot_send_list_filters(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server)
    owner = await joined_client(port, "own")
    await owner.send("JOIN #den")
    names = [m for m in await owner.until("366") if m.command == "353"]
    assert names[0].params[1:] == ("@", "#den", "@own")  # `@`: a secret channel
    await owner.send("NAMES #general")
    assert (await owner.until("353"))[-1].params[1] == "="
    await owner.send("LIST #den,#nope")
    listing = await owner.until("323")
    assert [m.params[1] for m in listing if m.command == "322"] == ["#den"]
    outsider = await joined_client(port, "out")
    await outsider.send("PRIVMSG #den :let me in")
    refused = await outsider.msg()
    assert refused.command == "404" and refused.params[:2] == ("out", "#den")
    await outsider.send("PING x")
    assert (await outsider.msg()).command == "PONG"


async def test_too_much_client_tag_data_is_417_and_not_relayed(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "big", caps=("message-tags",))
    b = await joined_client(port, "rcv", caps=("message-tags",))
    await a.send("@+x=" + "a" * 4096 + " PRIVMSG #general :hi")
    assert (await a.msg()).command == "417"
    await a.send("@+x=" + "a" * 4000 + " PRIVMSG #general :fits")
    assert (await b.until("PRIVMSG"))[-1].params[1] == "fits"


async def test_lusers_counts_the_most_users_and_unregistered(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "lu1")
    b = await joined_client(port, "lu2")
    pending = await IrcClient.connect(port)
    await pending.send("NICK half")
    await b.send("QUIT")
    await b.until("ERROR")
    await a.send("LUSERS")
    got = {m.command: m.params for m in await a.until("266")}
    assert got["265"][1:3] == ("1", "2") and got["253"][1] == "1"
    await pending.close()


async def test_whowas_remembers_closed_connections_newest_first(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    asker = await joined_client(port, "ask")
    for ident in ("first", "second"):
        c = await IrcClient.connect(port)
        await c.send("NICK gone")
        await c.send(f"USER {ident} 0 * :Real {ident}")
        await c.until("366")
        await c.send("QUIT")
        await c.until("ERROR")
        await c.close()
    await asker.send("WHOWAS gone")
    got = await asker.until("369")
    users = [m.params[2:] for m in got if m.command == "314"]
    assert users == [("second", "chatd", "*", "Real second"), ("first", "chatd", "*", "Real first")]
    await asker.send("WHOWAS gone 1")
    assert len([m for m in await asker.until("369") if m.command == "314"]) == 1
    await asker.send("WHOWAS never")
    assert [m.command for m in await asker.until("369")] == ["406", "369"]
