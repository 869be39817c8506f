"""GET /ws: the JSON Lines protocol over a WebSocket (the `websockets` client library),
next to an nc user; login by first frame or by ?token=; ping and close handling."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import websockets

from tests.helpers.http import SseReader, client, connect, start_http, ws_obj
from tests.helpers.server import TIMEOUT, StartServer


def _ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/ws" + query


async def test_login_frame_and_chat_with_an_nc_user(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    nc = await server.login("carol", mode="json")
    async with websockets.connect(_ws_url(base)) as ws:
        await ws.send("login alice")
        ok = await ws_obj(ws)
        assert ok["type"] == "ok" and ok["cmd"] == "login" and ok["user"] == "alice"
        await ws.send("send_all hello from a browser")
        sent = await ws_obj(ws)
        assert sent["cmd"] == "send_all"
        pushed = await nc.obj()
        assert pushed["id"] == sent["id"] and pushed["text"] == "hello from a browser"
        await nc.send("send alice psst\n")
        msg = await ws_obj(ws)
        assert msg["type"] == "message" and msg["chat"] == "@carol" and msg["text"] == "psst"
        # Two commands in one text frame are two commands, answered in order.
        await ws.send("ping\nwho")
        assert (await ws_obj(ws))["cmd"] == "ping"
        assert (await ws_obj(ws))["cmd"] == "who"


async def test_token_login_ping_and_close(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    token = await connect(base, "alice")
    async with websockets.connect(_ws_url(base, f"?token={token}")) as ws:
        ok = await ws_obj(ws)
        assert ok["cmd"] == "login" and ok["user"] == "alice"
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, TIMEOUT)  # the server answers our ping frame
        await ws.send("quit")
        assert (await ws_obj(ws))["cmd"] == "quit"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1000


async def test_client_close_logs_the_session_out(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    token = await connect(base, "alice")
    ws = await websockets.connect(_ws_url(base))
    await ws.send("login bob")
    await ws_obj(ws)
    async with client(base, token) as alice:
        who = (await alice.post("/command", json={"line": "who"})).json()
        assert {"name": "bob", "sessions": 1} in who["users"]
        await ws.close()
        assert ws.close_code == 1000
        for _ in range(50):
            who = (await alice.post("/command", json={"line": "who"})).json()
            if all(u["name"] != "bob" for u in who["users"]):
                break
            await asyncio.sleep(0.01)
        assert all(u["name"] != "bob" for u in who["users"])


async def test_bad_token_binary_frames_and_oversized_messages(start_server: StartServer) -> None:
    _server, base = await start_http(start_server, limits__max_line_bytes=64)
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(_ws_url(base, "?token=forged"))
    assert refused.value.response.status_code == 401
    async with websockets.connect(_ws_url(base)) as ws:
        await ws.send(b"login alice")
        err = await ws_obj(ws)
        assert err["type"] == "error" and err["code"] == "bad-encoding"
        await ws.send("send_all " + "x" * 100)
        err = await ws_obj(ws)
        assert err["code"] == "line-too-long"
        await ws.send("send_all too soon")
        assert (await ws_obj(ws))["code"] == "not-logged-in"
    async with client(base) as anon:
        r = await anon.get("/ws")
        assert r.status_code == 400


async def test_shutdown_tells_websockets_and_sse_streams(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    token = await connect(base, "alice")
    async with websockets.connect(_ws_url(base)) as ws, client(base, token) as alice:
        await ws.send("login bob")
        await ws_obj(ws)
        headers = {"Accept": "text/event-stream"}
        async with alice.stream("GET", "/events", headers=headers) as r:
            sse = SseReader(r.aiter_lines())
            await alice_ready(alice)
            await server.daemon.stop()
            assert (await ws_obj(ws)) == {"type": "notice", "event": "shutdown"}
            assert (await sse.next()).data == {"type": "notice", "event": "shutdown"}
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)


async def alice_ready(alice: httpx.AsyncClient) -> None:
    """The SSE stream's session is logged in once another request with the token is."""
    assert (await alice.get("/status")).status_code == 200
