"""`[http] tls_port`: the same door over HTTPS with the [tls] certificate."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import trustme

from tests.helpers.server import StartServer, free_port


async def test_https_serves_the_same_door(start_server: StartServer, tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(cert_file)
    cert.private_key_pem.write_to_path(key_file)
    port = free_port()
    server = await start_server(
        http__tls_port=port, tls__cert=str(cert_file), tls__key=str(key_file)
    )
    assert server.daemon.door_port("http-tls") == port
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=ctx) as c:
        r = await c.post("/connect", json={"name": "alice"})
        assert r.status_code == 200
        token = r.json()["token"]
        r = await c.get("/status", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200 and r.json()["user"] == "alice"
