"""GET /events: long-poll woken by an nc user, cursors without gaps or repeats, SSE with
Last-Event-ID and keep-alive comments, a read position shared with the line door."""

from __future__ import annotations

import asyncio

from tests.helpers.http import SseReader, client, connect, start_http, user
from tests.helpers.server import StartServer


async def test_long_poll_is_woken_by_an_nc_user(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    async with await user(base, "alice") as alice:
        first = (await alice.get("/events", params={"timeout": 0})).json()
        assert first["events"] == []
        poll = asyncio.create_task(
            alice.get("/events", params={"since": first["next"], "timeout": 30})
        )
        await asyncio.sleep(0.05)
        assert not poll.done()
        nc = await server.login("bob")
        assert (await nc.cmd("send_all wake up")).startswith("OK sent")
        r = await asyncio.wait_for(poll, 5)
        [msg] = r.json()["events"]
        assert msg["from"] == "bob" and msg["text"] == "wake up" and msg["replay"] is False
        assert r.json()["next"] == msg["id"]


async def test_cursor_pages_without_gaps_or_repeats(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    nc = await server.login("bob")
    async with await user(base, "alice") as alice:
        since = (await alice.get("/events", params={"timeout": 0})).json()["next"]
        for i in range(7):
            await nc.cmd(f"send_all n{i}")
        await nc.cmd("send alice private")
        seen: list[str] = []
        for _ in range(4):
            page = (await alice.get("/events", params={"since": since, "timeout": 0})).json()
            seen += [e["text"] for e in page["events"]]
            since = page["next"]
        assert seen == [f"n{i}" for i in range(7)] + ["private"]


async def test_read_position_is_shared_with_the_line_door(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    nc_bob = await server.login("bob")
    token = await connect(base, "alice")
    await nc_bob.cmd("send_all one")
    await nc_bob.cmd("send_all two")
    async with client(base, token) as alice:
        page = (await alice.get("/events", params={"timeout": 0})).json()
        assert [e["text"] for e in page["events"]] == ["one", "two"]
        await nc_bob.cmd("send_all three")
        # alice on nc: only what no session of hers has received is replayed.
        nc_alice = await server.connect()
        await nc_alice.send("login alice\n")
        ok = await nc_alice.line()
        assert ok.endswith("1 unread"), ok
        assert (await nc_alice.line()).endswith("<bob> three")
        # ... and the HTTP side starts after what nc received.
        page = (await alice.get("/events", params={"timeout": 0})).json()
        assert page["events"] == []


async def test_sse_stream_resume_and_keepalive(start_server: StartServer) -> None:
    server, base = await start_http(start_server, http__sse_keepalive_s=0.1)
    nc = await server.login("bob")
    token = await connect(base, "alice")
    async with client(base, token) as alice:
        headers = {"Accept": "text/event-stream"}
        async with alice.stream("GET", "/events", headers=headers, params={"since": 0}) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            sse = SseReader(r.aiter_lines())
            await nc.cmd("send_all s1")
            await nc.cmd("send_all s2")
            e1, e2 = await sse.next(), await sse.next()
            assert (e1.data["text"], e2.data["text"]) == ("s1", "s2")
            assert e1.id == str(e1.data["id"]) and e2.id == str(e2.data["id"])
            assert "keep-alive" in await sse.comment()  # idle: a comment every 0.1 s
        await nc.cmd("send_all s3")
        await nc.cmd("send_all s4")
        headers["Last-Event-ID"] = str(e1.data["id"])
        async with alice.stream("GET", "/events", headers=headers) as r:
            sse2 = SseReader(r.aiter_lines())
            got = [(await sse2.next()).data["text"] for _ in range(3)]
        assert got == ["s2", "s3", "s4"]


async def test_sse_carries_notices_without_ids(start_server: StartServer) -> None:
    server, base = await start_http(start_server, moderation__strikes_to_ban=1)
    nc = await server.login("bob")
    token = await connect(base, "alice")
    async with client(base, token) as alice:
        headers = {"Accept": "text/event-stream"}
        async with alice.stream("GET", "/events", headers=headers) as r:
            sse = SseReader(r.aiter_lines())
            await asyncio.sleep(0.05)
            await nc.cmd("ban alice spam")
            warned = await sse.next()
            assert warned.id is None and warned.data == {
                "type": "notice",
                "event": "warned",
                **{k: warned.data[k] for k in warned.data if k not in ("type", "event")},
            }
            assert (await sse.next()).data["event"] == "banned"


async def test_a_waiting_poll_times_out_empty_and_a_dropped_one_lets_go(
    start_server: StartServer,
) -> None:
    server, base = await start_http(start_server, http__session_idle_s=0.2)
    nc = await server.login("bob", mode="json")
    token = await connect(base, "alice")
    async with client(base, token) as alice:
        r = await alice.get("/events", params={"since": 0, "timeout": 0.1})
        assert r.json() == {"events": [], "next": 0}
    # A poll left waiting by a client that goes away:
    port = int(base.rsplit(":", 1)[1])
    _reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"GET /events?since=0&timeout=30 HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    await writer.drain()
    await asyncio.sleep(0.05)
    writer.close()
    for _ in range(200):  # the session is released: it logs out once idle
        who = await nc.jcmd("who")
        if all(u["name"] != "alice" for u in who["users"]):
            break
        await asyncio.sleep(0.01)
    assert all(u["name"] != "alice" for u in who["users"])


async def test_old_cursors_are_read_from_the_store(start_server: StartServer) -> None:
    # A recent window of ~1 message: older events come from the store, same answers.
    server, base = await start_http(start_server, chat__recent_bytes=1)
    nc = await server.login("bob")
    async with await user(base, "alice") as alice:
        since = (await alice.get("/events", params={"timeout": 0})).json()["next"]
        for i in range(6):
            await nc.cmd(f"send_all old{i}")
        page = (await alice.get("/events", params={"since": since, "timeout": 5})).json()
        assert [e["text"] for e in page["events"]] == [f"old{i}" for i in range(6)]
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(since)}
        async with alice.stream("GET", "/events", headers=headers) as r:
            sse = SseReader(r.aiter_lines())
            got = [(await sse.next()).data["text"] for _ in range(6)]
            assert got == [f"old{i}" for i in range(6)]
            await nc.cmd("send_all live")
            assert (await sse.next()).data["text"] == "live"
