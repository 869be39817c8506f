"""GET /openapi.json is OpenAPI 3.1 and describes what the endpoints really answer:
each real response below is checked against the schema the document gives for it."""

from __future__ import annotations

from tests.helpers.http import client, connect, start_http
from tests.helpers.openapi import check, response_schema
from tests.helpers.server import StartServer


async def test_real_responses_match_the_document(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    async with client(base) as anon:
        r = await anon.get("/openapi.json")
        assert r.status_code == 200
        doc = r.json()
    assert doc["openapi"].startswith("3.1")
    token = await connect(base, "alice")
    bob = await server.login("bob")
    await bob.cmd("send_all hello")
    seen: set[tuple[str, str, int]] = set()

    async with client(base, token) as alice:

        async def call(method: str, path: str, doc_path: str | None = None, **kw: object) -> None:
            r = await alice.request(method, path, **kw)  # type: ignore[arg-type]
            key = (doc_path or path.split("?", 1)[0], method, r.status_code)
            check(r.json(), response_schema(doc, *key), doc, f"{method} {path} {r.status_code}")
            seen.add(key)

        async with client(base) as anon:
            for body in ({"name": "carol"}, {"name": "bad name!"}):
                r = await anon.post("/connect", json=body)
                check(r.json(), response_schema(doc, "/connect", "POST", r.status_code), doc)
                seen.add(("/connect", "POST", r.status_code))
        await call("GET", "/status")
        await call("POST", "/send", json={"to": "#general", "text": "hi"})
        await call("POST", "/send", json={"to": "@nobody", "text": "hi"})
        await call("POST", "/command", json={"line": "who"})
        await call("POST", "/command", json={"line": "frob"})
        await call("GET", "/events?since=0&timeout=0")
        await call("POST", "/files?to=bob&name=a.txt", content=b"data")
        await call("GET", "/files/99", doc_path="/files/{id}")
        await call("DELETE", "/session")
        await call("GET", "/status")  # revoked: 401
    assert {("/status", "GET", 200), ("/status", "GET", 401), ("/connect", "POST", 400)} <= seen
    assert len(seen) >= 12
