"""IRC users chatting with each other and with nc users: channels, private messages,
rooms as channels, the service nick, IRC errors for chatd's refusals."""

from __future__ import annotations

from tests.helpers.irc import joined_client, start_irc
from tests.helpers.server import StartServer


async def test_irc_and_nc_users_chat_in_general_and_privately(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    irc = await joined_client(port, "alice")
    nc = await server.login("bob")
    assert await nc.cmd("send_all hello from nc") == "OK sent [1]"
    got = (await irc.until("PRIVMSG"))[-1]
    assert got.params == ("#general", "hello from nc")
    assert got.source == "bob!bob@chatd"
    await irc.send("PRIVMSG #general :hi bob")
    line = await nc.until(lambda s: "hi bob" in s)
    assert "#general <alice> hi bob" in line
    await irc.send("PRIVMSG bob :just you")
    line = await nc.until(lambda s: "just you" in s)
    assert "@alice <alice> just you" in line
    assert await nc.cmd("send alice back at you") == "OK sent [4]"
    got = (await irc.until("PRIVMSG"))[-1]
    assert got.params == ("alice", "back at you") and got.source == "bob!bob@chatd"


async def test_two_irc_users_private_and_unknown_nick(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "ann")
    b = await joined_client(port, "ben")
    await a.send("PRIVMSG ben :psst")
    got = (await b.until("PRIVMSG"))[-1]
    assert got.params == ("ben", "psst") and got.source == "ann!ann@chatd"
    await a.send("PRIVMSG nobody :hello?")
    err = (await a.until("401"))[-1]
    assert err.params[1] == "nobody"
    await a.send("PRIVMSG #nosuchroom :x")
    assert (await a.until("403"))[-1].params[1] == "#nosuchroom"
    await a.send("PRIVMSG")
    assert (await a.until("411"))[-1].command == "411"
    await a.send("PRIVMSG ben")
    assert (await a.until("412"))[-1].command == "412"
    await a.send("NOTICE nobody :notices get no errors")
    await a.send("PING x")
    assert (await a.msg()).command == "PONG"


async def test_echo_message_server_time_and_labels(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    caps = ("echo-message", "server-time", "message-tags", "labeled-response", "batch")
    a = await joined_client(port, "amy", caps=caps)
    b = await joined_client(port, "bo", caps=("server-time",))
    await a.send("@label=abc PRIVMSG #general :tagged")
    echo = (await a.until("PRIVMSG"))[-1]
    assert echo.tags["label"] == "abc"
    assert echo.tags["msgid"] == "1" and echo.tags["account"] == "amy"
    assert echo.tags["time"].endswith("Z")
    other = (await b.until("PRIVMSG"))[-1]
    assert other.tags == {"time": echo.tags["time"]}  # server-time only
    await a.send("@label=p1 PING x")
    pong = await a.msg()
    assert pong.command == "PONG" and pong.tags["label"] == "p1"
    await a.send("@label=n1 NAMES #general")
    start = await a.msg()
    assert start.command == "BATCH" and start.params[1] == "labeled-response"
    got = await a.until("BATCH")
    assert got[-1].params[0] == "-" + start.params[0][1:]
    assert [m.command for m in got[:-1]] == ["353", "366"]
    await a.send("@label=t1 TAGMSG #general")
    ack = await a.msg()
    assert ack.command == "ACK" and ack.tags["label"] == "t1"


async def test_rooms_are_channels_join_part_names_who_invite_kick(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "owner")
    b = await joined_client(port, "guest")
    await a.send("JOIN #club")  # creates the room: its owner is op
    got = await a.until("366")
    assert got[0].command == "JOIN" and got[0].params == ("#club",)
    assert "@owner" in got[1].params[-1].split()
    await b.send("JOIN #club")  # private room: needs an invite
    assert (await b.until("473"))[-1].params[1] == "#club"
    await b.send("KICK #club owner")
    assert (await b.until(lambda m: m.command in ("482", "442")))[-1].command in ("482", "442")
    await a.send("INVITE guest #club")
    assert (await a.until("341"))[-1].params[1:] == ("guest", "#club")
    inv = await b.until("JOIN")
    assert inv[-1].params == ("#club",) and inv[-1].source is not None
    assert inv[-1].source.startswith("guest!")
    joined = (await a.until("JOIN"))[-1]
    assert joined.source is not None and joined.source.startswith("guest!")
    await b.send("PRIVMSG #club :thanks")
    got_msg = (await a.until("PRIVMSG"))[-1]
    assert got_msg.params == ("#club", "thanks")
    await a.send("WHO #club")
    who = await a.until("315")
    nicks = {m.params[5] for m in who if m.command == "352"}
    assert nicks == {"owner", "guest"}
    await a.send("WHO #club %tnf,42")
    whox = await a.until("315")
    assert whox[0].command == "354" and whox[0].params[1] == "42"
    await a.send("MODE #club")
    assert (await a.until("324"))[-1].params[2] == "+inst"  # rooms are invite-only and secret
    await a.send("MODE #club b")
    assert (await a.until("368"))[-1].command == "368"
    await a.send("TOPIC #club :new topic")
    assert (await a.until("482"))[-1].command == "482"
    await a.send("KICK #club guest :bye")
    assert (await a.until("KICK"))[-1].params == ("#club", "guest", "bye")
    kicked = (await b.until("KICK"))[-1]
    assert kicked.params[:2] == ("#club", "guest")
    await b.send("PART #club")
    assert (await b.until("442"))[-1].params[1] == "#club"
    await a.send("PART #club :done")
    assert (await a.until("PART"))[-1].params == ("#club", "done")
    await a.send("LIST")
    listing = await a.until("323")
    assert [m.params[1] for m in listing if m.command == "322"] == ["#general"]


async def test_service_nick_runs_line_commands(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    a = await joined_client(port, "sam")
    await a.send("PRIVMSG chatd :schedule +10m hello later")
    note = (await a.until("NOTICE"))[-1]
    assert note.source == "chatd!chatd@chatd"
    assert note.params[1].startswith("OK scheduled 1 at")
    await a.send("PRIVMSG chatd :scheduled")
    got = await a.until(lambda m: m.command == "NOTICE" and m.params[1].startswith("OK"))
    assert "send_all hello later" in got[0].params[1]
    server.clock.advance(601)
    server.daemon.tick()
    msg = (await a.until("PRIVMSG"))[-1]
    assert msg.params == ("#general", "hello later")
    await a.send("PRIVMSG chatd :mode json")
    note = (await a.until("NOTICE"))[-1]
    assert "not available over IRC" in note.params[1]
    await a.send("PRIVMSG chatd :stats")
    note = (await a.until("NOTICE"))[-1]
    assert note.params[1].startswith("ERR forbidden")


async def test_rate_limit_and_ban_are_irc_errors(start_server: StartServer) -> None:
    server, port = await start_irc(
        start_server, limits__general_messages_per_window=2, moderation__strikes_to_ban=1
    )
    a = await joined_client(port, "spammer")
    for i in range(2):
        await a.send(f"PRIVMSG #general :m{i}")
    await a.send("PRIVMSG #general :one too many")
    err = (await a.until("404"))[-1]
    assert err.params[1] == "#general" and "retry in" in err.params[2]
    nc = await server.login("judge")
    assert (await nc.cmd("report spammer")).startswith("OK spammer has 1 strike")
    note = (await a.until(lambda m: m.command == "NOTICE" and "banned" in m.params[1]))[-1]
    assert note.params[0] == "spammer"
    await a.send("PRIVMSG judge :let me out")
    err = (await a.until("404"))[-1]
    assert "banned" in err.params[2]


async def test_flood_guard_slows_an_irc_client(start_server: StartServer) -> None:
    _, port = await start_irc(start_server, limits__flood_burst=5, limits__flood_rate_per_s=50)
    a = await joined_client(port, "fast")
    await a.send("\r\n".join(f"PING n{i}" for i in range(30)))
    pongs = [(await a.msg()).params[-1] for _ in range(30)]
    assert pongs == [f"n{i}" for i in range(30)]  # all answered, in order, just later


async def test_away_is_seen_by_others(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "nap")
    b = await joined_client(port, "pal")
    await a.send("AWAY :lunch")
    assert (await a.until("306"))[-1].command == "306"
    await b.send("PRIVMSG nap :there?")
    away = (await b.until("301"))[-1]
    assert away.params[1:] == ("nap", "lunch")
    await b.send("WHOIS nap")
    whois = await b.until("318")
    assert [m.params[-1] for m in whois if m.command == "301"] == ["lunch"]
    await a.send("AWAY")
    assert (await a.until("305"))[-1].command == "305"
    await b.send("TIME")
    assert (await b.until("391"))[-1].params[1] == "chatd"


async def test_message_to_oneself_is_delivered_and_markread_answers(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server)
    a = await joined_client(port, "solo", caps=("draft/read-marker",))
    await a.send("PRIVMSG solo :note to self")
    got = (await a.until("PRIVMSG"))[-1]
    assert got.params == ("solo", "note to self")
    await a.send("MARKREAD #nowhere")
    assert (await a.until("MARKREAD"))[-1].params == ("#nowhere", "*")
    await a.send("MARKREAD #general *")
    fail = (await a.until("FAIL"))[-1]
    assert fail.params[:2] == ("MARKREAD", "INVALID_PARAMS")


async def test_with_invite_consent_an_invite_is_an_offer_that_join_accepts(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server, rooms__invite_consent=True)
    a = await joined_client(port, "owner")
    b = await joined_client(port, "guest")
    await a.send("JOIN #club")
    await a.until("366")
    await a.send("INVITE guest #club")
    assert (await a.until("341"))[-1].params[1:] == ("guest", "#club")
    offer = (await b.until("INVITE"))[-1]  # an offer: no JOIN until the guest says so
    assert offer.params == ("guest", "#club") and str(offer.source).startswith("owner!")
    await a.send("PING :mark")
    assert not any(m.command == "JOIN" for m in await a.until("PONG"))
    await b.send("JOIN #club")  # accepting the offer
    names = await b.until("366")
    assert names[0].command == "JOIN" and names[0].params == ("#club",)
    joined = (await a.until("JOIN"))[-1]
    assert str(joined.source).startswith("guest!")
    await b.send("PRIVMSG #club :thanks")
    assert (await a.until("PRIVMSG"))[-1].params == ("#club", "thanks")
