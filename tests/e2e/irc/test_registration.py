"""IRC registration: with and without CAP, PASS and SASL, nick collisions, PING/QUIT."""

from __future__ import annotations

import base64

from tests.helpers.irc import IrcClient, start_irc
from tests.helpers.server import StartServer


async def test_plain_registration_welcome_and_general(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    c = await IrcClient.connect(port)
    got = await c.register("alice")
    cmds = [m.command for m in got]
    assert cmds[:5] == ["001", "002", "003", "004", "005"]
    assert got[0].params[0] == "alice"
    assert cmds[-1] == "422"
    isupport = " ".join(" ".join(m.params[1:-1]) for m in got if m.command == "005")
    assert "CASEMAPPING=ascii" in isupport and "CHANTYPES=#" in isupport
    burst = await c.until("366")
    assert burst[0].command == "JOIN" and burst[0].params == ("#general",)
    assert burst[0].source is not None and burst[0].source.startswith("alice!")
    names = [m for m in burst if m.command == "353"]
    assert "alice" in names[0].params[-1].split()
    await c.send("PING :tok")
    pong = (await c.until("PONG"))[-1]
    assert pong.params[-1] == "tok"
    await c.send("QUIT :bye")
    err = (await c.until("ERROR"))[-1]
    assert "bye" in err.params[0]
    await c.close()


async def test_commands_before_registration_get_451(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    c = await IrcClient.connect(port)
    await c.send("JOIN #general")
    assert (await c.msg()).command == "451"
    await c.send("FOO bar")
    assert (await c.msg()).command == "421"
    await c.send("USER x")
    assert (await c.msg()).command == "461"
    await c.send("NICK bad!nick")
    assert (await c.msg()).command == "432"


async def test_cap_ls_302_values_req_nak_and_motd(start_server: StartServer) -> None:
    _, port = await start_irc(start_server, irc__motd="hello\nsecond line")
    c = await IrcClient.connect(port)
    await c.send("CAP LS 302")
    ls = await c.msg()
    caps = ls.params[-1].split()
    assert "sasl=PLAIN" in caps and "server-time" in caps and "draft/chathistory" in caps
    await c.send("CAP REQ :server-time bogus-cap")
    nak = await c.msg()
    assert nak.params[1] == "NAK"
    await c.send("NICK bob")
    await c.send("USER bob 0 * :Bob")
    assert await c.silent(0.2)  # registration waits for CAP END
    await c.send("CAP REQ :server-time message-tags")
    assert (await c.msg()).params[1] == "ACK"
    await c.send("CAP LIST")
    assert (await c.msg()).params[-1].split() == ["message-tags", "server-time"]
    await c.send("CAP END")
    got = await c.until("376")
    motd = [m.params[-1] for m in got if m.command == "372"]
    assert motd == ["- hello", "- second line"]


async def test_nick_of_account_with_password_is_433_then_pass_logs_in(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    nc = await server.login("carol", password="s3cret")
    c = await IrcClient.connect(port)
    got = await c.register("carol")
    assert got[-1].command == "433"
    assert got[-1].params[1] == "carol"
    # the client picks another nick: a new account
    await c.send("NICK carol_")
    got = await c.until(lambda m: m.command in ("001", "433"))
    assert got[-1].command == "001" and got[-1].params[0] == "carol_"
    # with the password it is carol herself, a second session next to nc
    d = await IrcClient.connect(port)
    got = await d.register("carol", password="s3cret")
    assert got[0].command == "001"
    e = await IrcClient.connect(port)
    got = await e.register("carol", password="wrong")
    assert got[-1].command == "464"
    await nc.close()


async def test_require_password_needs_pass_or_sasl(start_server: StartServer) -> None:
    _, port = await start_irc(start_server, auth__require_password=True)
    c = await IrcClient.connect(port)
    got = await c.register("dave")
    assert got[-1].command == "464"
    d = await IrcClient.connect(port)
    got = await d.register("dave", password="pw")
    assert got[0].command == "001"


async def test_sasl_plain(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    nc = await server.login("erin", password="pw1")
    c = await IrcClient.connect(port)
    got = await c.register("whatever", caps=("server-time",), sasl=("erin", "pw1"))
    welcome = next(m for m in got if m.command == "001")
    assert welcome.params[0] == "erin"  # the nick is the account
    bad = await IrcClient.connect(port)
    await bad.send("CAP REQ :sasl")
    await bad.msg()
    await bad.send("AUTHENTICATE PLAIN")
    assert (await bad.msg()).params == ("+",)
    blob = base64.b64encode(b"\0erin\0nope").decode()
    await bad.send(f"AUTHENTICATE {blob}")
    assert (await bad.msg()).command == "904"
    await nc.close()


async def test_quit_ends_the_session(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    c = await IrcClient.connect(port)
    await c.register("frank")
    await c.until("366")
    assert "frank" in server.daemon.chat.online
    await c.send("QUIT")
    await c.until("ERROR")
    assert await c.silent(1.0)
    assert "frank" not in server.daemon.chat.online


async def test_server_pings_an_idle_client_and_drops_a_silent_one(
    start_server: StartServer,
) -> None:
    _, port = await start_irc(start_server, irc__ping_interval_s=0.3)
    c = await IrcClient.connect(port)
    await c.register("gus")
    ping = (await c.until("PING", timeout=3))[-1]
    await c.send(f"PONG :{ping.params[0]}")
    again = (await c.until("PING", timeout=3))[-1]  # still connected: pinged again
    assert again.command == "PING"
    err = (await c.until("ERROR", timeout=3))[-1]  # this one went unanswered
    assert "Ping timeout" in err.params[0]


async def test_registration_timeout_and_shutdown_notice(start_server: StartServer) -> None:
    server, port = await start_irc(start_server, limits__login_timeout_s=0.3)
    idle = await IrcClient.connect(port)
    err = (await idle.until("ERROR", timeout=3))[-1]
    assert "no registration" in err.params[0]
    c = await IrcClient.connect(port)
    await c.register("hal")
    await c.until("366")
    await server.daemon.stop()
    note = (await c.until("NOTICE"))[-1]
    assert note.params == ("hal", "the server is shutting down")
    assert await c.silent(1.0)  # closed


async def test_connection_limit_per_address_counts_irc(start_server: StartServer) -> None:
    _, port = await start_irc(start_server, limits__max_connections_per_ip=1)
    first = await IrcClient.connect(port)
    await first.register("ida")
    second = await IrcClient.connect(port)
    err = await second.msg()
    assert err.command == "ERROR" and "too many connections" in err.params[0]
