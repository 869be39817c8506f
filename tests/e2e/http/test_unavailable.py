"""A store that cannot commit (a full disk): `POST /send` is `503 unavailable` with
`Retry-After`, reads still answer, and sends work again once the store does."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatd.server.daemon import Daemon
from tests.helpers.http import client, connect, error_code
from tests.helpers.server import FakeClock, config_with, free_port
from tests.helpers.stores import FullDisk


async def test_a_full_disk_is_503_with_retry_after(tmp_path: Path) -> None:
    store = FullDisk()
    port = free_port()
    config = config_with(
        tmp_path, http__port=port, store__commit_timeout_s=0.3, store__commit_retry_s=0.1
    )
    daemon = Daemon(config, clock=FakeClock(), store=store)
    await daemon.start()
    base = f"http://127.0.0.1:{port}"
    try:
        token = await connect(base, "alice")
        async with client(base, token) as alice:
            store.full = True
            r = await alice.post("/send", json={"to": "#general", "text": "lost"})
            assert r.status_code == 503 and error_code(r) == "unavailable", r.text
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["retry_after"] == int(r.headers["retry-after"])
            assert (await alice.get("/status")).status_code == 200  # reads work
            store.full = False
            for _ in range(100):  # the server probes the store every commit_retry_s
                r = await alice.post("/send", json={"to": "#general", "text": "back"})
                if r.status_code != 503:
                    break
                await asyncio.sleep(0.05)
            assert r.status_code == 200, r.text
            page = (await alice.get("/events", params={"since": 0, "timeout": 0})).json()
            assert [e["text"] for e in page["events"]] == ["back"]
    finally:
        await daemon.stop()
