"""Abuse limits (issue 13, item 7): per-user rate limits on private and room messages,
room creation, invites, join links and join requests, and new accounts per address.
One fixed-window mechanism (chatd/core/flood.py RateWindow) serves them all."""

from __future__ import annotations

import time

from tests.helpers.server import Client, Server, StartServer


async def _burst(c: Client, lines: list[str]) -> list[str]:
    """Sends the lines in one write; their closing OK/ERR lines, in order."""
    await c.send("".join(x + "\n" for x in lines))
    return [(await c.reply())[-1] for _ in lines]


async def test_a_burst_of_500_room_messages_is_cut_at_the_limit(start_server: StartServer) -> None:
    server = await start_server(limits__room_messages_per_window=300, limits__room_window_s=300)
    flooder = await server.login("flooder")
    assert (await flooder.cmd("room create big")).startswith("OK")
    calm = await server.login("calm")
    started = time.perf_counter()
    got = await _burst(flooder, [f"send #big spam {i}" for i in range(500)])
    sent = [x for x in got if x.startswith("OK sent")]
    refused = [x for x in got if x.startswith("ERR rate-limited at most 300 messages to rooms")]
    assert len(sent) == 300 and len(refused) == 200, got[295:305]
    assert all(x.endswith("(retry in 300s)") for x in refused), refused[0]
    assert await calm.cmd("ping") == "OK pong"
    assert time.perf_counter() - started < 5
    # Other kinds are counted apart; the window ends and sending resumes.
    assert (await flooder.cmd("send calm hello")).startswith("OK sent")
    server.clock.advance(300)
    assert (await flooder.cmd("send #big back")).startswith("OK sent")


async def test_private_messages_comments_and_files_share_the_private_limit(
    start_server: StartServer,
) -> None:
    server = await start_server(limits__private_messages_per_window=3, limits__private_window_s=60)
    alice = await server.login("alice")
    await server.login("bob")
    assert (await alice.jcmd("mode json"))["mode"] == "json"
    first = await alice.jcmd("send bob one")
    assert (await alice.jcmd(f"comment {first['id']} two"))["type"] == "ok"
    assert (await alice.jcmd("send @bob three"))["type"] == "ok"
    for line in ("send bob four", f"comment {first['id']} five", "upload bob x.txt\naGk=\n."):
        err = await alice.jcmd(line)
        assert err["code"] == "rate-limited" and err["retry_after"] == 60, (line, err)
    assert (await alice.jcmd("send_all still fine"))["type"] == "ok"  # #general: its own
    server.clock.advance(60)
    assert (await alice.jcmd("send bob six"))["type"] == "ok"


async def _room_owner(server: Server) -> Client:
    owner = await server.login("owner")
    assert (await owner.jcmd("mode json"))["mode"] == "json"
    return owner


async def test_rooms_invites_links_and_join_requests_are_limited(
    start_server: StartServer,
) -> None:
    server = await start_server(
        limits__invites_per_window=2,
        limits__join_links_per_window=2,
        limits__join_requests_per_window=2,
    )
    owner = await _room_owner(server)
    for i in range(10):  # the default: 10 new rooms per hour
        assert (await owner.jcmd(f"room create r{i}"))["type"] == "ok"
    err = await owner.jcmd("room create r10")
    assert err["code"] == "rate-limited" and err["retry_after"] == 3600, err
    for name in ("u1", "u2", "u3"):
        await server.login(name)
    assert (await owner.jcmd("room invite #r0 u1"))["type"] == "ok"
    assert (await owner.jcmd("room invite #r0 u1"))["type"] == "ok"  # a member: not counted
    assert (await owner.jcmd("room invite #r0 u2"))["type"] == "ok"
    assert (await owner.jcmd("room invite #r0 u3"))["code"] == "rate-limited"
    links = [await owner.jcmd(f"room link #r{i}") for i in (1, 2, 3)]
    assert [x["type"] for x in links] == ["ok", "ok", "error"]
    assert links[2]["code"] == "rate-limited"
    asker = await server.login("asker")
    assert (await asker.jcmd("mode json"))["mode"] == "json"
    answers = [await asker.jcmd(f"join {links[i]['link']}") for i in (0, 1)]
    assert [x["type"] for x in answers] == ["ok", "ok"]
    assert (await asker.jcmd(f"join {links[0]['link']}"))["type"] == "ok"  # pending: not counted
    assert (await owner.jcmd("room create r11"))["code"] == "rate-limited"
    server.clock.advance(3600)
    assert (await owner.jcmd("room create r11"))["type"] == "ok"
    assert (await owner.jcmd("room invite #r0 u3"))["type"] == "ok"


async def test_new_accounts_per_address(start_server: StartServer) -> None:
    server = await start_server(limits__accounts_exempt_networks=[])  # loopback counts too
    for i in range(20):  # the default: 20 new accounts per address per hour
        c = await server.login(f"user{i}")
        await c.close()
    c = await server.connect()
    line = await c.cmd("login user20")
    assert line.startswith("ERR rate-limited at most 20 new accounts from one address"), line
    assert (await c.cmd("login user3")).startswith("OK welcome user3")  # existing: fine
    server.clock.advance(3600)
    assert (await (await server.connect()).cmd("login user20")).startswith("OK welcome")


async def test_loopback_is_exempt_from_the_account_limit_by_default(server: Server) -> None:
    for i in range(25):
        c = await server.login(f"local{i}")
        await c.close()
