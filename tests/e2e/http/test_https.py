"""`[http] tls_port`: the same door over HTTPS with the [tls] certificate."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.helpers.server import StartServer, free_port
from tests.helpers.tls import certificate


async def test_https_serves_the_same_door(start_server: StartServer, tmp_path: Path) -> None:
    tls = certificate(tmp_path)
    port = free_port()
    server = await start_server(http__tls_port=port, **tls.settings())
    assert server.daemon.door_port("http-tls") == port
    ctx = tls.client
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=ctx) as c:
        r = await c.post("/connect", json={"name": "alice"})
        assert r.status_code == 200
        token = r.json()["token"]
        r = await c.get("/status", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["user"] == "alice"
