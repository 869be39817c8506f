"""The long-poll wake-up (server/http/wake.py): waiters at the same cursor share one
answer, yet each gets exactly their own view: a private message reads `@<the other>`
for each party and wakes nobody else; a poll that is not plain keep-alive (`Connection:
close`) and one with a notice waiting are answered on their own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from tests.helpers.http import client, connect, start_http
from tests.helpers.server import TIMEOUT, StartServer


def _poll(c: httpx.AsyncClient, since: int) -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(c.get("/events", params={"since": since, "timeout": 30}))


def _events(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    events: list[dict[str, Any]] = r.json()["events"]
    return events


async def test_shared_wake_up_gives_each_waiter_its_own_view(start_server: StartServer) -> None:
    server, base = await start_http(start_server, moderation__strikes_to_ban=1)
    tokens = {name: await connect(base, name) for name in ("alice", "bob", "carol", "erin")}
    nc_alice = await server.login("alice")
    dave = await server.login("dave")
    port = int(base.rsplit(":", 1)[1])
    async with (
        client(base, tokens["alice"]) as alice,
        client(base, tokens["bob"]) as bob,
        client(base, tokens["carol"]) as carol,
    ):
        polls = {"alice": _poll(alice, 0), "bob": _poll(bob, 0), "carol": _poll(carol, 0)}
        # erin waits on a connection that closes after its answer (not plain keep-alive).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"GET /events?since=0&timeout=30 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            f"Authorization: Bearer {tokens['erin']}\r\n\r\n".encode()
        )
        await asyncio.sleep(0.1)  # all parked
        assert not any(p.done() for p in polls.values())

        assert (await nc_alice.cmd("send bob psst")).startswith("OK sent")
        [to_alice] = _events(await asyncio.wait_for(polls["alice"], TIMEOUT))
        [to_bob] = _events(await asyncio.wait_for(polls["bob"], TIMEOUT))
        assert to_alice["id"] == to_bob["id"] and to_alice["text"] == to_bob["text"] == "psst"
        assert (to_alice["chat"], to_bob["chat"]) == ("@bob", "@alice")
        await asyncio.sleep(0.05)
        assert not polls["carol"].done()  # not hers

        await dave.cmd("ban carol spam")  # a notice for carol: answered on its own
        notice = _events(await asyncio.wait_for(polls["carol"], TIMEOUT))
        assert [(e["type"], e["event"]) for e in notice] == [
            ("notice", "warned"),
            ("notice", "banned"),
        ]

        polls = {
            "alice": _poll(alice, to_alice["id"]),
            "bob": _poll(bob, to_bob["id"]),
            "carol": _poll(carol, 0),
        }
        await asyncio.sleep(0.05)
        assert (await dave.cmd("send_all hi all")).startswith("OK sent")
        got = {name: _events(await asyncio.wait_for(p, TIMEOUT)) for name, p in polls.items()}
        assert [e["text"] for e in got["alice"]] == ["hi all"]
        assert got["alice"] == got["bob"]
        assert [e["text"] for e in got["carol"]] == ["hi all"]
        assert all(e["replay"] is False for e in got["alice"] + got["carol"])

        raw = await asyncio.wait_for(reader.read(), TIMEOUT)  # answered, then closed
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
        assert [e["text"] for e in json.loads(body)["events"]] == ["hi all"]
        writer.close()


async def test_a_request_pipelined_behind_a_parked_poll_is_answered_after_it(
    start_server: StartServer,
) -> None:
    server, base = await start_http(start_server)
    token = await connect(base, "alice")
    dave = await server.login("dave")
    port = int(base.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    auth = f"Authorization: Bearer {token}\r\n"
    writer.write(
        f"GET /events?since=0&timeout=30 HTTP/1.1\r\nHost: x\r\n{auth}\r\n"
        f"GET /status HTTP/1.1\r\nHost: x\r\n{auth}\r\n".encode()
    )
    await asyncio.sleep(0.1)  # the poll is parked, the second request waits behind it
    assert (await dave.cmd("send_all wake")).startswith("OK sent")
    data = b""
    while data.count(b"HTTP/1.1 200") < 2 or not data.rstrip().endswith(b"}"):
        data += await asyncio.wait_for(reader.read(65536), TIMEOUT)
    first, second = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert json.loads(first.partition(b"\r\n\r\n")[2])["events"][0]["text"] == "wake"
    assert json.loads(second.partition(b"\r\n\r\n")[2])["user"] == "alice"
    writer.close()
