"""A chatd daemon on PostgreSQL (`[store] backend = "postgres"`): two nc-like clients
exchange messages over real sockets, the daemon restarts and replays from PostgreSQL,
and a daemon killed with SIGKILL in a burst of pipelined sends keeps every
acknowledged message. (One node per database: live delivery across nodes is designed
in docs/cluster.md, not built.)"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chatd.store import postgres as pg_store
from tests.helpers.nodes import burst, listening, spawn_node, wait_for
from tests.helpers.server import Child, Client, StartServer, free_port

if TYPE_CHECKING:
    from tests.helpers.postgres import PostgresServer

pytest_plugins = ["tests.helpers.postgres"]

SpawnServer = Callable[..., Child]


def settings(dsn: str) -> dict[str, object]:
    return {"store__backend": "postgres", "store__dsn": dsn, "store__synchronous": "full"}


async def jlogin(port: int, name: str) -> tuple[Client, dict[str, Any], list[dict[str, Any]]]:
    c = await Client.connect(port)
    await c.send("mode json\n")
    assert (await c.obj())["mode"] == "json"
    await c.send(f"login {name}\n")
    ok = await c.obj()
    assert ok["type"] == "ok", ok
    return c, ok, [await c.obj() for _ in range(ok["unread"])]


async def test_two_clients_exchange_restart_and_replay(
    start_server: StartServer, pg_dsn: str
) -> None:
    pg_store.migrate(pg_dsn)
    server = await start_server(**settings(pg_dsn))
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    sent = await alice.jcmd("send bob hello bob")
    pushed = await bob.obj()
    assert (pushed["id"], pushed["text"], pushed["from"]) == (sent["id"], "hello bob", "alice")
    answer = await bob.jcmd("send_all hi all")
    assert (await alice.obj())["id"] == answer["id"] > sent["id"]
    assert (await bob.jcmd("quit"))["cmd"] == "quit"
    missed = [(await alice.jcmd(f"send bob later {i}"))["id"] for i in range(3)]
    await alice.close()
    await bob.close()

    server = await server.restart(**settings(pg_dsn))
    _, ok, replay = await jlogin(server.port, "bob")
    assert ok["new"] is False and ok["unread"] == 3
    assert [(m["id"], m["text"], m["replay"]) for m in replay] == [
        (i, f"later {n}", True) for n, i in enumerate(missed)
    ]
    carol, _, _ = await jlogin(server.port, "carol")
    history = await carol.jcmd("history #general 5")
    assert [m["text"] for m in history["messages"]] == ["hi all"]
    after = await carol.jcmd("send_all after the restart")
    assert after["id"] > max(missed)  # ids never come back


async def test_kill9_in_a_burst_of_pipelined_sends_keeps_every_acknowledged_message(
    spawn_server: SpawnServer, pg_dsn: str, tmp_path: Path
) -> None:
    pg_store.migrate(pg_dsn)
    config = tmp_path / "chatd.toml"
    config.write_text(f'[store]\nbackend = "postgres"\ndsn = "{pg_dsn}"\n')
    child = spawn_server("--config", str(config))
    bob, _, _ = await jlogin(child.port, "bob")
    assert (await bob.jcmd("quit"))["cmd"] == "quit"  # offline: everything is unread
    alices = [await Client.connect(child.port) for _ in range(3)]
    for n, c in enumerate(alices):
        assert (await c.cmd(f"login alice{n}")).startswith("OK welcome")
    acked = await burst(alices, "bob", 200, 100)  # kill in the middle of the OKs
    child.kill9()

    child2 = spawn_server("--config", str(config))
    _, ok, replay = await jlogin(child2.port, "bob")
    ids = [m["id"] for m in replay]
    assert ok["unread"] >= 300
    assert set(acked) <= set(ids)
    assert ids == sorted(ids) and len(ids) == len(set(ids))  # one order, each once


async def test_postgres_stopped_and_started_under_load(
    start_server: StartServer, pg_dsn: str, postgres: PostgresServer
) -> None:
    """Writes are refused with `unavailable` while PostgreSQL is away, reads still
    answer, nothing refused appears later, and the daemon recovers by itself."""
    pg_store.migrate(pg_dsn)
    server = await start_server(
        **settings(pg_dsn), store__commit_timeout_s=1.0, store__commit_retry_s=0.2
    )
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    assert (await alice.jcmd("send bob before"))["type"] == "ok"
    assert (await bob.obj())["text"] == "before"
    postgres.stop()
    try:
        await alice.send("".join(f"send bob while down {i}\n" for i in range(5)))
        replies = [await alice.obj(timeout=10) for _ in range(5)]
        assert [(r["type"], r["code"]) for r in replies] == [("error", "unavailable")] * 5
        assert (await alice.jcmd("ping"))["type"] == "ok"  # reads and pings still answer
        history = await alice.jcmd("history @bob 10")
        assert [m["text"] for m in history["messages"]] == ["before"]
    finally:
        postgres.start()
    deadline = asyncio.get_running_loop().time() + 15
    while True:  # back by itself: the store reconnects on the hub's probe or retry
        reply = await alice.jcmd("send bob after")
        if reply["type"] == "ok":
            break
        assert reply["code"] == "unavailable"
        assert asyncio.get_running_loop().time() < deadline, reply
        await asyncio.sleep(0.2)
    pushed = await bob.obj()
    assert (pushed["id"], pushed["text"]) == (reply["id"], "after")
    await alice.close()
    await bob.close()
    server = await server.restart(**settings(pg_dsn))
    carol = await server.login("bob", mode="json")
    history = await carol.jcmd("history @alice 10")
    assert [m["text"] for m in history["messages"]] == ["before", "after"]


async def test_files_rooms_and_comments_come_back_from_postgres(
    start_server: StartServer, pg_dsn: str
) -> None:
    pg_store.migrate(pg_dsn)
    server = await start_server(**settings(pg_dsn))
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    assert (await bob.jcmd("quit"))["cmd"] == "quit"
    data = os.urandom(3000)
    body = base64.b64encode(data).decode()
    await alice.send(f"upload @bob notes.bin\n{body}\n.\n")
    up = await alice.obj(10)
    assert up["type"] == "ok", up
    assert (await alice.jcmd("room create dev"))["type"] == "ok"
    assert (await alice.jcmd("room invite #dev bob"))["type"] == "ok"
    posted = await alice.jcmd("send #dev the plan")
    comment = await alice.jcmd(f"comment {posted['id']} step one")
    await alice.close()

    server = await server.restart(**settings(pg_dsn))
    bob, _, replay = await jlogin(server.port, "bob")
    by_id = {m["id"]: m for m in replay}
    assert by_id[up["id"]]["file"] == up["file"]
    assert by_id[posted["id"]]["chat"] == "#dev"
    assert by_id[comment["id"]]["reply_to"] == posted["id"]
    thread = await bob.jcmd(f"thread {posted['id']}")
    assert [m["text"] for m in thread["comments"]] == ["step one"]
    got = await bob.jcmd(f"download {up['file']['id']}")
    assert base64.b64decode(got["data"]) == data
    members = await bob.jcmd("room members #dev")
    assert sorted(members["members"]) == ["alice", "bob"]


async def test_a_standby_takes_over_a_node_killed_in_a_burst_and_has_every_ack(
    pg_dsn: str, tmp_path: Path
) -> None:
    """Two nodes on one database: node1 serves, node2 waits as a standby. node1 is
    SIGKILLed in the middle of pipelined sends from three clients; node2 takes over
    and has every acknowledged message once, in one order."""
    pg_store.migrate(pg_dsn)
    config = tmp_path / "chatd.toml"
    config.write_text(f'[store]\nbackend = "postgres"\ndsn = "{pg_dsn}"\n')
    ports = [free_port(), free_port()]
    nodes = [spawn_node(config, tmp_path / "data0", ports[0])]
    try:
        await wait_for(lambda: listening(ports[0]), "node1 to listen")
        nodes.append(spawn_node(config, tmp_path / "data1", ports[1]))  # after: a standby
        bob, _, _ = await jlogin(ports[0], "bob")
        assert (await bob.jcmd("quit"))["cmd"] == "quit"
        senders = [await Client.connect(ports[0]) for _ in range(3)]
        for n, c in enumerate(senders):
            assert (await c.cmd(f"login alice{n}")).startswith("OK welcome")
        assert not listening(ports[1])  # the standby opens no port
        acked = await burst(senders, "bob", 300, 100)
        nodes[0].kill()
        nodes[0].wait(10)
        killed = asyncio.get_running_loop().time()
        await wait_for(lambda: listening(ports[1]), "node2 to take over")
        takeover = asyncio.get_running_loop().time() - killed
        _, ok, replay = await jlogin(ports[1], "bob")
        ids = [m["id"] for m in replay]
        assert set(acked) <= set(ids) and ok["unread"] == len(ids) >= 300
        assert ids == sorted(ids) and len(ids) == len(set(ids))
        assert takeover < 10
    finally:
        for node in nodes:
            node.kill()
            node.wait(10)
