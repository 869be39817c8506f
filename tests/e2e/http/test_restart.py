"""kill -9 and restart: an SSE client resumes with Last-Event-ID and its token (tokens
are durable), and a long-poll client with its cursor, and each gets exactly what it
missed, nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.helpers.http import SseReader, client, connect
from tests.helpers.server import Child, Client, free_port


async def _nc_login(port: int, name: str) -> Client:
    nc = await Client.connect(port)
    assert (await nc.cmd(f"login {name}")).startswith("OK welcome")
    return nc


async def test_sse_resumes_across_kill_9(
    spawn_server: Callable[..., Child], tmp_path: Path
) -> None:
    http_port = free_port()
    config = tmp_path / "chatd.toml"
    config.write_text(f"[http]\nport = {http_port}\n")
    base = f"http://127.0.0.1:{http_port}"
    child = spawn_server("--config", str(config))
    for _ in range(100):  # the HTTP door opens right after the line door
        try:
            token = await connect(base, "alice")
            break
        except OSError:
            await asyncio.sleep(0.05)
    bob = await _nc_login(child.port, "bob")
    headers = {"Accept": "text/event-stream"}
    async with (
        client(base, token) as alice,
        alice.stream("GET", "/events", headers=headers) as r,
    ):
        sse = SseReader(r.aiter_lines())
        for text in ("m1", "m2", "m3"):
            assert (await bob.cmd(f"send_all {text}")).startswith("OK sent")
        first = await sse.next()
        assert first.data["text"] == "m1"
        child.kill9()
    await bob.close()

    child = spawn_server("--config", str(config), data_dir=child.data_dir, port=child.port)
    bob = await _nc_login(child.port, "bob")
    for text in ("m4", "m5"):
        assert (await bob.cmd(f"send_all {text}")).startswith("OK sent")
    headers["Last-Event-ID"] = str(first.id)
    async with client(base, token) as alice:
        assert (await alice.get("/status")).status_code == 200  # the token survived
        async with alice.stream("GET", "/events", headers=headers) as r:
            sse = SseReader(r.aiter_lines())
            got = [(await sse.next()).data for _ in range(4)]
    assert [e["text"] for e in got] == ["m2", "m3", "m4", "m5"]
    ids = [e["id"] for e in got]
    assert ids == sorted(set(ids)) and ids[0] > int(first.id or 0)
    # A long-poll client with the same cursor gets the same, then nothing twice.
    async with client(base, token) as poller:
        params = {"since": str(first.id), "timeout": "0"}
        page = (await poller.get("/events", params=params)).json()
        assert [e["id"] for e in page["events"]] == ids and page["next"] == ids[-1]
        params["since"] = str(page["next"])
        assert (await poller.get("/events", params=params)).json()["events"] == []
    await bob.close()
