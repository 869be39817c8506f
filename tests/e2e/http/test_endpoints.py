"""Every endpoint of HTTP.md over a real socket with httpx, and every error status."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatd.core.chat import HANDLERS
from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.protocol import commands as c
from tests.helpers.http import client, connect, error_code, start_http, user
from tests.helpers.server import StartServer


async def test_connect_send_events_status(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    async with client(base) as anon:
        r = await anon.post("/connect", json={"name": "alice", "password": "pw1"})
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"token", "user", "new", "unread"}
        assert body["user"] == "alice" and body["new"] is True and body["unread"] == 0
    async with client(base, body["token"]) as alice:
        r = await alice.post("/send", json={"to": "#general", "text": "hello http"})
        assert r.status_code == 200
        sent = r.json()
        assert set(sent) == {"id", "ts"} and sent["ts"].endswith("Z")
        r = await alice.get("/events", params={"since": 0, "timeout": 0})
        assert r.status_code == 200
        events = r.json()
        assert events["next"] == sent["id"]
        [msg] = events["events"]
        assert msg["type"] == "message" and msg["text"] == "hello http"
        assert msg["from"] == "alice" and msg["chat"] == "#general"
        r = await alice.get("/status")
        status = r.json()
        assert status["user"] == "alice" and status["server"]["online"] >= 1
        assert "type" not in status and "cmd" not in status
        assert {"chat": "#general", "unread": 0, "last_id": sent["id"]} in status["chats"]


async def test_command_runs_any_line_command(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    async with await user(base, "alice") as alice:
        r = await alice.post("/command", json={"line": "room create den"})
        assert r.status_code == 200
        assert r.json() == {"type": "ok", "cmd": "room", "room": "#den"}
        r = await alice.post("/command", json={"line": "who"})
        assert r.json()["users"] == [{"name": "alice", "sessions": 1}]
        r = await alice.post("/command", json={"line": "frobnicate"})
        assert (r.status_code, error_code(r)) == (400, "unknown-command")
        r = await alice.post("/command", json={"line": "history #nowhere"})
        assert (r.status_code, error_code(r)) == (404, "no-such-chat")
        r = await alice.post("/command", json={"line": "thread 999"})
        assert (r.status_code, error_code(r)) == (404, "no-such-message")
        r = await alice.post("/command", json={"line": "cancel 5"})
        assert (r.status_code, error_code(r)) == (404, "no-such-schedule")
        r = await alice.post("/command", json={"line": "stats"})
        assert (r.status_code, error_code(r)) == (403, "forbidden")
        r = await alice.post("/command", json={"line": "login bob"})
        assert (r.status_code, error_code(r)) == (409, "already-logged-in")
        r = await alice.post("/command", json={"line": "upload bob x.txt"})
        assert (r.status_code, error_code(r)) == (400, "bad-args")


async def test_error_statuses_of_send(start_server: StartServer) -> None:
    _server, base = await start_http(start_server, limits__general_messages_per_window=1)
    async with await user(base, "alice") as alice, await user(base, "bob") as bob:
        r = await alice.post("/send", json={"to": "@nobody", "text": "hi"})
        assert (r.status_code, error_code(r)) == (404, "no-such-user")
        await bob.post("/command", json={"line": "room create den"})
        r = await alice.post("/send", json={"to": "#den", "text": "hi"})
        assert (r.status_code, error_code(r)) == (403, "not-a-member")
        assert (await alice.post("/send", json={"to": "#general", "text": "1"})).status_code == 200
        r = await alice.post("/send", json={"to": "#general", "text": "2"})
        assert (r.status_code, error_code(r)) == (429, "rate-limited")
        assert int(r.headers["Retry-After"]) >= 1
        assert r.json()["error"]["retry_after"] >= 1
        r = await alice.post("/send", content=b"{not json")
        assert (r.status_code, error_code(r)) == (400, "bad-args")
        r = await alice.post("/send", content=b"\xff\xfe")
        assert (r.status_code, error_code(r)) == (400, "bad-encoding")
        r = await alice.post("/send", json=["a"])
        assert (r.status_code, error_code(r)) == (400, "bad-args")
        r = await alice.post("/send", json={"to": "#general"})
        assert (r.status_code, error_code(r)) == (400, "bad-args")
        r = await alice.post("/send", json={"to": "bob", "text": "x" * 70000})
        assert (r.status_code, error_code(r)) == (413, "too-large")


async def test_banned_user_gets_403_with_retry_after(start_server: StartServer) -> None:
    _server, base = await start_http(start_server, moderation__strikes_to_ban=1)
    async with await user(base, "alice") as alice, await user(base, "bob") as bob:
        assert (await bob.post("/command", json={"line": "ban alice spam"})).status_code == 200
        r = await alice.post("/send", json={"to": "#general", "text": "hi"})
        assert (r.status_code, error_code(r)) == (403, "banned")
        assert int(r.headers["Retry-After"]) > 0
        r = await alice.get("/events", params={"since": 0, "timeout": 0})
        notices = [e["event"] for e in r.json()["events"] if e["type"] == "notice"]
        assert notices == ["warned", "banned"]


async def test_connect_errors(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    await connect(base, "alice", "secret")
    async with client(base) as anon:
        r = await anon.post("/connect", json={"name": "alice", "password": "wrong"})
        assert (r.status_code, error_code(r)) == (401, "bad-password")
        r = await anon.post("/connect", json={"name": "alice"})
        assert (r.status_code, error_code(r)) == (401, "bad-password")
        r = await anon.post("/connect", json={"name": "no way!"})
        assert (r.status_code, error_code(r)) == (400, "bad-name")
        r = await anon.post("/connect", json={"name": "x" * 40})
        assert (r.status_code, error_code(r)) == (400, "bad-name")
        r = await anon.post("/connect", content=b'{"name": ')
        assert (r.status_code, error_code(r)) == (400, "bad-args")


async def test_missing_unknown_and_revoked_tokens(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    token = await connect(base, "alice")
    async with client(base) as anon:
        for method, path in (("GET", "/status"), ("POST", "/send"), ("GET", "/events")):
            r = await anon.request(method, path)
            assert (r.status_code, error_code(r)) == (401, "not-logged-in"), path
    async with client(base, "forged") as forged:
        r = await forged.get("/status")
        assert (r.status_code, error_code(r)) == (401, "not-logged-in")
    async with client(base, token) as alice:
        assert (await alice.get("/status")).status_code == 200
        r = await alice.delete("/session")
        assert (r.status_code, r.json()) == (200, {"ok": True})
        r = await alice.get("/status")
        assert (r.status_code, error_code(r)) == (401, "not-logged-in")


async def test_password_change_revokes_tokens(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    old = await connect(base, "alice", "first")
    other = await connect(base, "alice", "first")
    async with client(base, old) as alice:
        r = await alice.post("/command", json={"line": "passwd second first"})
        assert r.status_code == 200
        r = await alice.get("/status")
        assert (r.status_code, error_code(r)) == (401, "not-logged-in")
    async with client(base, other) as alice2:
        assert (await alice2.get("/status")).status_code == 401
    fresh = await connect(base, "alice", "second")
    async with client(base, fresh) as alice3:
        assert (await alice3.get("/status")).status_code == 200


async def test_tokens_survive_a_restart(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    token = await connect(base, "alice", "pw")
    revoked = await connect(base, "alice", "pw")
    async with client(base, revoked) as c:
        assert (await c.delete("/session")).status_code == 200
    port = server.daemon.door_port("http")
    server = await server.restart(http__port=port)
    async with client(base, token) as alice:
        r = await alice.get("/status")
        assert r.status_code == 200 and r.json()["user"] == "alice"
    async with client(base, revoked) as c:
        assert (await c.get("/status")).status_code == 401


async def test_idempotency_key_sends_once(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    async with await user(base, "alice") as alice:
        headers = {"Idempotency-Key": "retry-1"}
        body = {"to": "#general", "text": "only once"}
        first, again = await asyncio.gather(
            alice.post("/send", json=body, headers=headers),
            alice.post("/send", json=body, headers=headers),
        )
        third = await alice.post("/send", json=body, headers=headers)
        assert first.json() == again.json() == third.json()
        other = await alice.post("/send", json=body, headers={"Idempotency-Key": "retry-2"})
        assert other.json()["id"] > first.json()["id"]
        r = await alice.get("/events", params={"since": 0, "timeout": 0})
        assert [e["text"] for e in r.json()["events"]] == ["only once", "only once"]


async def test_idempotency_keys_per_user_refusals_and_restart(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    headers = {"Idempotency-Key": "k"}
    token = await connect(base, "alice")
    async with client(base, token) as alice, await user(base, "bob") as bob:
        mine = await alice.post("/send", json={"to": "#general", "text": "a"}, headers=headers)
        theirs = await bob.post("/send", json={"to": "#general", "text": "b"}, headers=headers)
        assert theirs.json()["id"] > mine.json()["id"]  # the same key, another user
        # A refused send keeps no key: the retry is sent for real.
        to_carol = {"to": "@carol", "text": "hi carol"}
        r = await alice.post("/send", json=to_carol, headers={"Idempotency-Key": "c"})
        assert (r.status_code, error_code(r)) == (404, "no-such-user")
        await connect(base, "carol")
        r = await alice.post("/send", json=to_carol, headers={"Idempotency-Key": "c"})
        assert r.status_code == 200 and r.json()["id"] > theirs.json()["id"]
    # Keys live in memory only (docs/http.md): after a restart the retry sends again.
    port = server.daemon.door_port("http")
    await server.restart(http__port=port)
    async with client(base, token) as alice:
        again = await alice.post("/send", json={"to": "#general", "text": "a"}, headers=headers)
        assert again.status_code == 200 and again.json()["id"] > r.json()["id"]


async def test_unknown_path_and_wrong_method(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    async with client(base) as anon:
        r = await anon.get("/nope")
        assert (r.status_code, error_code(r)) == (404, "not-found")
        r = await anon.post("/status")
        assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
        r = await anon.get("/connect")
        assert r.status_code == 405 and r.headers["Allow"] == "POST"
        r = await anon.put("/files/1")
        assert r.status_code == 405 and "GET" in r.headers["Allow"]


async def test_reply_to_sends_a_comment(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    async with await user(base, "alice") as alice:
        first = (await alice.post("/send", json={"to": "#general", "text": "q?"})).json()
        r = await alice.post(
            "/send", json={"to": "#general", "text": "a!", "reply_to": first["id"]}
        )
        assert r.status_code == 200
        events = (await alice.get("/events", params={"since": first["id"], "timeout": 0})).json()
        [comment] = events["events"]
        assert comment["reply_to"] == first["id"] and comment["text"] == "a!"


async def test_a_crashing_command_is_500_and_nothing_else_breaks(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(chat: Any, s: Session, cmd: c.Who, now: float) -> Outcome:
        raise RuntimeError("a bug")

    spec, _ = HANDLERS[c.Who]
    monkeypatch.setitem(HANDLERS, c.Who, (spec, broken))  # a fault injected
    _server, base = await start_http(start_server)
    async with await user(base, "alice") as alice:
        r = await alice.post("/command", json={"line": "who"})
        assert (r.status_code, error_code(r)) == (500, "internal")
        r = await alice.post("/send", json={"to": "#general", "text": "still here"})
        assert r.status_code == 200


async def test_a_token_session_logs_out_when_idle_and_back_in(start_server: StartServer) -> None:
    server, base = await start_http(start_server, http__session_idle_s=0.2)
    nc = await server.login("bob", mode="json")

    async def online() -> list[str]:
        who = await nc.jcmd("who")
        return [u["name"] for u in who["users"]]

    async with await user(base, "alice") as alice:
        assert "alice" in await online()
        for _ in range(200):  # the session logs out 0.2 s after its last request
            if "alice" not in await online():
                break
            await asyncio.sleep(0.01)
        assert "alice" not in await online()
        assert (await alice.get("/status")).status_code == 200  # the token still works
        assert "alice" in await online()
