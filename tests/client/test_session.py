"""The client's session layer in-process, against real daemons: reply matching, login
announcements before the replay, reconnect with backoff, and upload framing against a
server that reads refused data lines as commands."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatd.client.connection import ConnectError, Connection, ConnectionLost, Endpoint, Obj
from chatd.client.session import LoginError, Session
from tests.helpers.server import Client, Server, free_port
from tests.helpers.session_events import WAIT_S, Recorder


async def test_login_is_announced_before_its_replay(server: Server) -> None:
    alice = await server.login("alice")
    await alice.close()
    bob = await server.login("bob")
    for text in ("one", "two"):
        assert (await bob.cmd(f"send alice {text}")).startswith("OK sent")
    rec = Recorder()
    session = Session(Endpoint(port=server.port), "alice", None, rec)
    await session.start()
    await rec.until(lambda e: e[:3] == ("push", "message", "two"))
    assert rec.events == [
        ("login", False, 2),
        ("push", "message", "one", True),
        ("push", "message", "two", True),
    ]
    reply = await session.request("who")
    assert [u["name"] for u in reply["users"]] == ["alice", "bob"]
    await session.close()
    with pytest.raises(ConnectionLost):
        await session.request("who")


async def test_a_password_is_asked_for_and_refusals_are_login_errors(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice pw")).startswith("OK")
    await c.close()
    rec = Recorder(passwords=["wrong", "pw"])
    session = Session(Endpoint(port=server.port), "alice", None, rec)
    await session.start()
    assert [e for e in rec.events if e[0] == "ask"] == [("ask", False), ("ask", True)]
    assert session.password == "pw"  # kept for logging in again after a reconnect
    await session.close()
    with pytest.raises(LoginError) as info:
        await Session(Endpoint(port=server.port), "alice", None, Recorder()).start()
    assert info.value.code == "bad-password"
    with pytest.raises(ConnectError, match="connection refused"):
        await Session(Endpoint(port=free_port()), "alice", None, Recorder()).start()


async def test_a_dropped_connection_reconnects_and_replays_what_was_missed(
    server: Server,
) -> None:
    port = server.port
    rec = Recorder()
    session = Session(Endpoint(port=port), "alice", None, rec, retry_base=0.01)
    await session.start()
    supervisor = asyncio.create_task(session.run())

    # Down; meanwhile a message is stored by a daemon on another port; then back up on
    # the same port and data.
    interim = await server.restart()
    await rec.until(lambda e: e[0] == "offline")
    bob = await Client.connect(interim.port)
    assert (await bob.cmd("login bob")).startswith("OK")
    assert (await bob.cmd("send alice missed you")).startswith("OK sent")
    await bob.close()
    back = await interim.restart(server__port=port)
    try:
        await rec.until(lambda e: e[:3] == ("push", "message", "missed you"))
        retries = [e[1] for e in rec.events if e[0] == "retry"]
        assert retries[0] == 0.01
        assert all(b == pytest.approx(min(2 * a, 0.3)) for a, b in itertools.pairwise(retries))
        logins = [e for e in rec.events if e[0] == "login"]
        assert logins == [("login", False, 0), ("login", True, 1)]
        assert ("push", "message", "missed you", True) in rec.events
        assert session.connected
        assert (await session.request("ping"))["type"] == "ok"
    finally:
        await session.close()
        await supervisor
        await back.daemon.stop()


async def test_without_reconnect_a_drop_ends_run(server: Server) -> None:
    rec = Recorder()
    session = Session(Endpoint(port=server.port), "alice", None, rec, reconnect=False)
    await session.start()
    supervisor = asyncio.create_task(session.run())
    await server.daemon.stop()
    with pytest.raises(ConnectionLost):
        await asyncio.wait_for(supervisor, WAIT_S)
    assert ("offline",) in rec.events
    assert not session.connected


@pytest.fixture
async def literal_server() -> AsyncIterator[int]:
    """A server that answers every line as a command (as chatd did before uploads): an
    `upload` it refuses leaves its data lines to be answered one by one."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* literal\n")
        while raw := await reader.readline():
            verb = raw.decode().strip().split(" ")[0]
            if verb == "quit":
                break
            if verb in ("mode", "login", "ping"):
                obj: dict[str, Any] = {"type": "ok", "cmd": verb, "user": "a", "unread": 0}
            else:
                obj = {"type": "error", "cmd": verb, "code": "unknown-command", "message": verb}
            writer.write(json.dumps(obj).encode() + b"\n")
            await writer.drain()
        writer.close()

    srv = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield srv.sockets[0].getsockname()[1]
    srv.close()


async def test_an_upload_refused_up_front_keeps_replies_in_step(literal_server: int) -> None:
    pushed: list[Obj] = []
    conn = await Connection.open(Endpoint(port=literal_server), pushed.append)
    assert (await conn.request("mode json"))["type"] == "ok"
    result, after = await asyncio.gather(
        conn.upload("upload #general a.bin", ["QUJD" * 19] * 5),
        conn.request("ping"),
    )
    assert result["cmd"] == "upload" and result["code"] == "unknown-command"
    assert after == {"type": "ok", "cmd": "ping", "user": "a", "unread": 0}
    assert pushed == []  # the data lines' errors were not mistaken for anything else
    await conn.close()


async def test_a_reconnect_asks_for_everything_after_the_last_message_shown(
    server: Server,
) -> None:
    """The server counts a message as received once any session of the user got it;
    the client that dropped did not see it, and says so with `login … after <id>`."""
    rec = Recorder()
    session = Session(Endpoint(port=server.port), "alice", None, rec, retry_base=0.01)
    await session.start()
    supervisor = asyncio.create_task(session.run())
    bob = await server.login("bob")
    try:
        assert (await bob.cmd("send alice first")).startswith("OK sent")
        await rec.until(lambda e: e[:3] == ("push", "message", "first"))
        seen = session.last_seen
        assert seen > 0
        # Drop the client's connection from the server's side, and while it is away let
        # another session of alice's receive the next message.
        other = await server.login("alice")
        newest = max(c.peer.id for c in server.line_connections() if c.peer is not None)
        for conn in server.line_connections():
            peer = conn.peer
            if peer is None or peer.transport is None or peer.account is None:
                continue
            if peer.account.name == "alice" and peer.id != newest:
                peer.transport.abort()
        await rec.until(lambda e: e[0] == "offline")
        assert (await bob.cmd("send alice second")).startswith("OK sent")
        assert "second" in await other.line()
        await rec.until(lambda e: e[:3] == ("push", "message", "second"))
        logins = [e for e in rec.events if e[0] == "login"]
        assert logins[-1] == ("login", True, 1)  # without `after`: 0 (the other got it)
        assert ("push", "message", "second", True) in rec.events
    finally:
        await session.close()
        await supervisor
