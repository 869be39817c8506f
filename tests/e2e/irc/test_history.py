"""Unread replay at registration, chathistory and read markers over IRC."""

from __future__ import annotations

from tests.helpers.irc import IrcClient, joined_client, start_irc
from tests.helpers.server import StartServer

ALL = ("server-time", "message-tags", "batch", "draft/chathistory", "draft/read-marker")


async def test_replay_after_reconnect_in_batches_then_nc_sees_nothing_again(
    start_server: StartServer,
) -> None:
    server, port = await start_irc(start_server)
    a = await joined_client(port, "ivy", caps=ALL)
    await a.send("QUIT")
    await a.until("ERROR")
    await a.close()
    nc = await server.login("jon")
    for text in ("one", "two"):
        await nc.cmd(f"send_all {text}")
    await nc.cmd("send ivy private")
    await nc.cmd("send_all three")
    b = await IrcClient.connect(port)
    await b.register("ivy", caps=ALL)
    got = await b.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    got += await b.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    got += await b.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))
    opens = [m.params[1:] for m in got if m.command == "BATCH" and m.params[0][0] == "+"]
    assert opens == [
        ("chathistory", "#general"),
        ("chathistory", "ivy"),
        ("chathistory", "#general"),
    ]
    texts = [m.params[1] for m in got if m.command == "PRIVMSG"]
    assert texts == ["one", "two", "private", "three"]
    assert all("time" in m.tags and "batch" in m.tags for m in got if m.command == "PRIVMSG")
    # the same cursor: ivy's nc session afterwards has nothing unread
    ivy_nc = await server.connect()
    assert (await ivy_nc.cmd("login ivy")).endswith("0 unread")


async def test_replay_without_caps_has_a_time_prefix(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    nc = await server.login("kim")
    a = await joined_client(port, "lee")
    await a.send("QUIT")
    await a.until("ERROR")
    await nc.cmd("send_all while you were away")
    b = await IrcClient.connect(port)
    await b.register("lee")
    got = await b.until("PRIVMSG")
    line = got[-1]
    assert line.tags == {}
    assert line.params[1].startswith("[") and line.params[1].endswith("] while you were away")
    assert got.index(line) > [m.command for m in got].index("366")  # after the JOIN burst


async def test_chathistory_and_markread(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    nc = await server.login("max")
    for i in range(1, 6):
        await nc.cmd(f"send_all m{i}")
        server.clock.advance(1)
    a = await joined_client(port, "nia", caps=ALL)
    # a new account gets the latest #general messages replayed; read them all first
    await a.until(lambda m: m.command == "BATCH" and m.params[0].startswith("-"))

    async def page(line: str) -> list[str]:
        await a.send(line)
        got = await a.until(
            lambda m: m.command in ("FAIL",) or (m.command == "BATCH" and m.params[0][0] == "-")
        )
        if got[-1].command == "FAIL":
            return ["FAIL " + got[-1].params[1]]
        return [m.params[1] for m in got if m.command == "PRIVMSG"]

    assert await page("CHATHISTORY LATEST #general * 2") == ["m4", "m5"]
    assert await page("CHATHISTORY BEFORE #general msgid=3 10") == ["m1", "m2"]
    assert await page("CHATHISTORY AFTER #general msgid=3 1") == ["m4"]
    assert await page("CHATHISTORY AROUND #general msgid=3 3") == ["m2", "m3", "m4"]
    assert await page("CHATHISTORY BETWEEN #general msgid=1 msgid=5 10") == ["m2", "m3", "m4"]
    assert await page("CHATHISTORY BETWEEN #general msgid=5 msgid=1 2") == ["m3", "m4"]
    assert await page("CHATHISTORY LATEST #secret * 5") == ["FAIL INVALID_TARGET"]
    await nc.cmd("send nia hi nia")
    await a.until("PRIVMSG")
    await a.send(
        "CHATHISTORY TARGETS timestamp=2020-01-01T00:00:00Z timestamp=2100-01-01T00:00:00Z 10"
    )
    got = await a.until(lambda m: m.command == "BATCH" and m.params[0][0] == "-")
    targets = [m.params[1] for m in got if m.command == "CHATHISTORY"]
    assert targets == ["#general", "max"]
    await a.send("MARKREAD #general")
    mark = (await a.until("MARKREAD"))[-1]
    assert mark.params[0] == "#general" and mark.params[1].startswith("timestamp=")


async def test_sessions_of_one_account_stay_in_sync(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    a1 = await joined_client(port, "pat")
    a2 = await joined_client(port, "pat")
    nc = await server.login("pat")
    other = await server.login("quinn")
    await a1.send("PRIVMSG quinn :from irc one")
    seen = (await a2.until("PRIVMSG"))[-1]  # the account's other IRC session
    assert seen.params == ("quinn", "from irc one") and seen.source is not None
    assert seen.source.startswith("pat!")
    assert "from irc one" in await nc.until(lambda s: "from irc one" in s)
    assert "@pat <pat> from irc one" in await other.until(lambda s: "from irc one" in s)
    await nc.cmd("send_all from nc")
    for c in (a1, a2):
        got = (await c.until("PRIVMSG"))[-1]
        assert got.params == ("#general", "from nc")


async def test_file_arrives_as_a_line_with_a_link(start_server: StartServer) -> None:
    from tests.helpers.server import free_port

    server, port = await start_irc(start_server, http__port=free_port())
    a = await joined_client(port, "rae")
    nc = await server.login("sid")
    await nc.send("upload rae notes.txt\naGVsbG8=\n.\n")
    ok = await nc.until(lambda s: s.startswith(("OK", "ERR")))
    assert ok.startswith("OK sent"), ok
    got = (await a.until("PRIVMSG"))[-1]
    http_port = server.daemon.config.http.port
    assert got.params[1].startswith("[file 1 notes.txt 5 bytes] http://127.0.0.1:")
    assert got.params[1].endswith(f":{http_port}/files/1")
