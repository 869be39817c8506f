"""DELETE /session ends everything its token opened: the token's session (its SSE
streams end, its parked long-polls are answered) and every WebSocket logged in with
`?token=` (closed with code 4401); the user's other tokens and sessions stay."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from tests.helpers.http import SseReader, client, connect, start_http, ws_obj
from tests.helpers.server import TIMEOUT, StartServer


def _ws_url(base: str, token: str) -> str:
    return base.replace("http://", "ws://") + "/ws?token=" + token


async def test_delete_session_closes_its_websockets_and_streams(
    start_server: StartServer,
) -> None:
    server, base = await start_http(start_server)
    nc = await server.login("bob", mode="json")
    token = await connect(base, "alice")
    other = await connect(base, "alice")
    async with (
        websockets.connect(_ws_url(base, token)) as ws,
        websockets.connect(_ws_url(base, other)) as ws_other,
        client(base, token) as alice,
        client(base, token) as alice_poll,
    ):
        assert (await ws_obj(ws))["cmd"] == "login"
        assert (await ws_obj(ws_other))["cmd"] == "login"
        await ws_other.send("who")
        who = await ws_obj(ws_other)  # each token's HTTP session and its WebSocket
        assert {"name": "alice", "sessions": 4} in who["users"]
        since = (await alice.get("/events", params={"timeout": 0})).json()["next"]
        poll = asyncio.create_task(
            alice_poll.get("/events", params={"since": since, "timeout": 30})
        )
        headers = {"Accept": "text/event-stream"}
        async with alice.stream("GET", "/events", headers=headers) as stream:
            sse = SseReader(stream.aiter_lines())
            await nc.send("send_all before\n")
            assert (await sse.next()).data["text"] == "before"
            assert (await ws_obj(ws))["text"] == "before"
            assert (await ws_obj(ws_other))["text"] == "before"
            [before] = (await asyncio.wait_for(poll, TIMEOUT)).json()["events"]
            poll = asyncio.create_task(
                alice_poll.get("/events", params={"since": before["id"], "timeout": 30})
            )
            await asyncio.sleep(0.05)  # parked
            async with client(base, token) as logout:
                r = await logout.delete("/session")
            assert (r.status_code, r.json()) == (200, {"ok": True})
            # The WebSocket of that token closes, saying why:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), TIMEOUT)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
            assert "revoked" in closed.value.rcvd.reason
            # ... the SSE stream ends, the parked long-poll is answered at once:
            with pytest.raises(EOFError):
                await sse.next()
            answered = await asyncio.wait_for(poll, TIMEOUT)
            assert answered.status_code == 200 and answered.json()["events"] == []
        # ... and the token is refused from now on, for a new socket too.
        assert (await alice.get("/status")).status_code == 401
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(_ws_url(base, token))
        assert refused.value.response.status_code == 401
        # The other token's session and WebSocket stay.
        await ws_other.send("who")
        who = await ws_obj(ws_other)
        assert {"name": "alice", "sessions": 2} in who["users"]
        await nc.send("send_all after\n")
        assert (await ws_obj(ws_other))["text"] == "after"
