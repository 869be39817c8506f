"""The same random command sequence over the line protocol (JSON mode, nc) and over
POST /command on two identical servers gives the same replies, object for object."""

from __future__ import annotations

import random
from typing import Any

from tests.helpers.http import client, connect, start_http
from tests.helpers.server import Client, StartServer

SEED = 1414
STEPS = 200


def _commands(rng: random.Random, ids: list[int]) -> str:
    known = rng.choice(ids) if ids and rng.random() < 0.8 else rng.randint(1, 500)
    templates = [
        "who",
        "status",
        "ping",
        "help send",
        "help nonsense",
        "rooms",
        "scheduled",
        f"send_all hello {rng.randint(0, 99)}",
        f"send bob private {rng.randint(0, 99)}",
        "send @nobody hi",
        f"comment {known} a comment",
        f"thread {known}",
        f"history #general {rng.randint(1, 5)}",
        "history @bob 3",
        f"history #general 2 before {known}",
        "room create den",
        "room members #den",
        "room invite #den bob",
        "send #den room talk",
        "schedule +10m send_all later",
        f"cancel {rng.randint(1, 3)}",
        "ban",
        "frobnicate",
        "kick bob",
        "send_all",
    ]
    return rng.choice(templates)


def _http_reply(status: int, body: dict[str, Any], line: str) -> dict[str, Any]:
    """An HTTP answer in the line protocol's JSON shape, to compare them."""
    if status == 200:
        return body
    err = body["error"]
    obj: dict[str, Any] = {"type": "error", "code": err["code"], "message": err["message"]}
    if "retry_after" in err:
        obj["retry_after"] = err["retry_after"]
    return obj


def _line_reply(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["type"] == "error":
        obj = dict(obj)
        del obj["cmd"]  # the HTTP error shape has no cmd: the request says which
    return obj


async def test_line_protocol_and_post_command_agree(start_server: StartServer) -> None:
    line_server, _ = await start_http(start_server)
    _http_server, base = await start_http(start_server)
    # The same accounts on both: alice and bob, bob stays online over nc.
    nc_alice = await line_server.login("alice", mode="json")
    await line_server.login("bob", mode="json")
    await _http_server.login("bob", mode="json")
    token = await connect(base, "alice")
    rng = random.Random(SEED)
    ids: list[int] = []
    async with client(base, token) as alice:
        for _ in range(STEPS):
            line = _commands(rng, ids)
            want = _line_reply(await _jcmd(nc_alice, line))
            r = await alice.post("/command", json={"line": line})
            got = _http_reply(r.status_code, r.json(), line)
            assert got == want, line
            if want.get("type") == "ok" and isinstance(want.get("id"), int):
                ids.append(want["id"])
    assert len(ids) > 10


async def _jcmd(c: Client, line: str) -> dict[str, Any]:
    return await c.jcmd(line)
