"""POST /files (raw body, also chunked and with Expect: 100-continue) and GET /files/<id>
streamed back with its headers; the web client's static files; GET /openapi.json."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import chatd
from tests.helpers.http import client, error_code, start_http, user
from tests.helpers.server import StartServer

STATIC = Path(chatd.__file__).parent / "web" / "static"


async def test_upload_and_download_round_trip(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    data = os.urandom(300_000)
    async with await user(base, "alice") as alice, await user(base, "bob") as bob:
        r = await alice.post(
            "/files",
            params={"to": "bob", "name": "report ü.bin"},
            content=data,
            headers={"Expect": "100-continue"},
        )
        assert r.status_code == 200, r.text
        up = r.json()
        f = up["file"]
        assert f["size"] == len(data) and f["sha256"] == hashlib.sha256(data).hexdigest()
        assert f["name"] == "report_ü.bin" and isinstance(up["id"], int)
        assert set(up) == {"id", "file"}
        r = await bob.get(f"/files/{f['id']}")
        assert r.status_code == 200 and r.content == data
        assert r.headers["content-type"] == "application/octet-stream"
        assert r.headers["etag"] == f'"{f["sha256"]}"'
        assert r.headers["content-security-policy"] == "sandbox"
        assert "filename*=UTF-8''report_%C3%BC.bin" in r.headers["content-disposition"]
        r = await bob.get(f"/files/{f['id']}", headers={"If-None-Match": f'"{f["sha256"]}"'})
        assert r.status_code == 304 and r.content == b""
        assert "content-length" not in r.headers and r.headers["etag"] == f'"{f["sha256"]}"'
        r = await bob.head(f"/files/{f['id']}")
        assert r.status_code == 200 and r.headers["content-length"] == str(len(data))
        # The file message reached bob's events like any other.
        events = (await bob.get("/events", params={"since": 0, "timeout": 0})).json()
        assert events["events"][-1]["file"] == f
    async with await user(base, "carol") as carol:
        r = await carol.get(f"/files/{f['id']}")
        assert (r.status_code, error_code(r)) == (404, "no-such-message")
    assert server.daemon.ctx.files.blobs.path(f["sha256"]).exists()


async def test_chunked_upload_and_limits(start_server: StartServer) -> None:
    _server, base = await start_http(start_server, files__max_bytes=100_000)

    async def body(total: int) -> AsyncIterator[bytes]:
        for _ in range(total // 10_000):
            yield b"x" * 10_000

    async with await user(base, "alice") as alice:
        r = await alice.post(
            "/files", params={"to": "#general", "name": "a.txt"}, content=body(50_000)
        )
        assert r.status_code == 200 and r.json()["file"]["size"] == 50_000
        r = await alice.post(
            "/files", params={"to": "#general", "name": "b.txt"}, content=body(200_000)
        )
        assert (r.status_code, error_code(r)) == (413, "too-large")
        r = await alice.post(
            "/files", params={"to": "#general", "name": "c.txt"}, content=b"y" * 100_001
        )
        assert (r.status_code, error_code(r)) == (413, "too-large")
        r = await alice.post("/files", params={"to": "@nobody", "name": "d.txt"}, content=b"z")
        assert (r.status_code, error_code(r)) == (404, "no-such-user")
        r = await alice.post("/files", params={"to": "#general"}, content=b"z")
        assert (r.status_code, error_code(r)) == (400, "bad-args")
        r = await alice.get("/files/999")
        assert (r.status_code, error_code(r)) == (404, "no-such-message")
        r = await alice.get("/files/abc")
        assert r.status_code == 404
    async with client(base) as anon:
        r = await anon.post("/files", params={"to": "#general", "name": "e.txt"}, content=b"z")
        assert (r.status_code, error_code(r)) == (401, "not-logged-in")


async def test_static_files(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    async with client(base) as anon:
        r = await anon.get("/")
        assert r.status_code == 200 and r.headers["content-type"] == "text/html; charset=utf-8"
        assert r.content == (STATIC / "index.html").read_bytes()
        etag = r.headers["etag"]
        r = await anon.get("/", headers={"If-None-Match": etag})
        assert r.status_code == 304 and r.content == b""
        assert "content-length" not in r.headers and r.headers["etag"] == etag
        r = await anon.get("/ping-after-304")  # the keep-alive connection still works
        assert r.status_code == 404
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
        for path in sorted(STATIC.iterdir()):
            if path.suffix in types:
                r = await anon.get(f"/static/{path.name}")
                assert r.status_code == 200 and r.content == path.read_bytes()
                assert r.headers["content-type"] == types[path.suffix]
        r = await anon.head("/")
        assert r.status_code == 200 and r.content == b""
        assert r.headers["content-length"] == str((STATIC / "index.html").stat().st_size)
        for bad in ("/static/..%2f..%2fpyproject.toml", "/static/.hidden", "/static/nope.js"):
            r = await anon.get(bad)
            assert r.status_code == 404, bad
