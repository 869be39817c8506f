"""Every node takes clients (chatd/cluster/forward.py): nodes on one PostgreSQL, in
child processes, each with its own doors; the one holding the lease runs the chat and
the others pass their clients on to it. Users on different nodes chat live, every rule
holds across nodes, and when the writer is killed in a burst a standby takes over with
every acknowledged message, while the third node passes its clients on to the new
writer."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest

from chatd.cluster.forward import (
    Handoff,
    Preamble,
    PreambleError,
    door_addresses,
    parse_preamble,
    split_address,
)
from chatd.config import Config
from chatd.store import postgres as pg_store
from tests.helpers.nodes import OK_ID, burst, listening, wait_for
from tests.helpers.server import Client, free_port, launch

if TYPE_CHECKING:
    from tests.helpers.postgres import PostgresServer

pytest_plugins = ["tests.helpers.postgres"]

SENDS = 2000  # per sender, pipelined: the writer dies with many still in flight
SECRET = "s3cret words"


# The preamble: pure --------------------------------------------------------------------


def test_a_preamble_round_trips_with_a_secret_that_has_spaces() -> None:
    pre = Preamble("irc-tls", "2001:db8::7", 50123, SECRET)
    line = pre.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert parse_preamble(line[:-1]) == pre
    assert parse_preamble(Preamble("line", "10.0.0.9", 1).encode()[:-1]).secret == ""


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"GET / HTTP/1.1", "not a chatd preamble"),
        (b"CHATD-PASS 2 line 10.0.0.1 5 x", "not a chatd preamble"),
        (b"CHATD-PASS 1 smtp 10.0.0.1 5 x", "unknown door"),
        (b"CHATD-PASS 1 line alice 5 x", "not an address"),
        (b"CHATD-PASS 1 line 10.0.0.1 99999 x", "not a port"),
        (b"CHATD-PASS 1 line 10.0.0.1", "expected"),
        (b"CHATD-PASS 1 line \xff 5 x", "not ASCII"),
    ],
)
def test_a_bad_preamble_says_what_is_wrong(line: bytes, why: str) -> None:
    with pytest.raises(PreambleError, match=why):
        parse_preamble(line)


def test_door_addresses_are_the_open_doors_and_addresses_split() -> None:
    cfg = Config().with_overrides({"server.port": 8000, "irc.port": 6667, "http.host": "::1"})
    cfg = cfg.with_overrides({"http.port": 8080})
    assert door_addresses(cfg) == [
        ("line", "127.0.0.1", 8000),
        ("http", "::1", 8080),
        ("irc", "127.0.0.1", 6667),
    ]
    assert split_address("[::1]:7000") == ("::1", 7000)
    assert split_address("db.example:7000") == ("db.example", 7000)
    assert split_address("nonsense") is None


class Recorder(asyncio.Protocol):
    """A door's protocol that records what it was handed."""

    def __init__(self, seen: list[Any]) -> None:
        self.seen = seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.seen.append(transport.get_extra_info("peername"))
        self.seen.append(transport.get_extra_info("socket"))
        transport.write(b"hello\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.seen.append(data)


async def test_the_cluster_port_hands_a_connection_to_its_door_with_the_clients_address() -> None:
    seen: list[Any] = []
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: Handoff({"irc": lambda: Recorder(seen)}, SECRET), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        pre = Preamble("irc", "203.0.113.5", 4242, SECRET).encode()
        writer.write(pre + b"NICK alice\r\n")  # the first bytes ride with the preamble
        assert await asyncio.wait_for(reader.readline(), 5) == b"hello\n"
        writer.write(b"USER a 0 * :A\r\n")
        for _ in range(100):
            if len(seen) >= 4:
                break
            await asyncio.sleep(0.01)
        assert seen[:2] == [("203.0.113.5", 4242), None]  # no socket: acks stay off
        assert b"".join(seen[2:]) == b"NICK alice\r\nUSER a 0 * :A\r\n"
        writer.close()
        for bad in (
            Preamble("irc", "203.0.113.5", 1, "wrong").encode(),
            Preamble("http", "203.0.113.5", 1, SECRET).encode(),  # no such door here
            b"x" * 600,
        ):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(bad)
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed, nothing said
            writer.close()
        assert len(seen) == 4
    finally:
        server.close()


# Nodes on PostgreSQL ---------------------------------------------------------------------


@dataclass
class Node:
    name: str
    line: int
    cluster: int
    irc: int
    http: int
    config: Path
    data: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """The node in a child process, its output in its data directory's node.log."""
        self.data.mkdir(parents=True, exist_ok=True)
        with open(self.data / "node.log", "ab") as out:
            self.proc = launch(
                self.data, self.line, "--config", str(self.config), output=out.fileno()
            )

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@dataclass
class Cluster:
    nodes: list[Node]
    clients: list[Client] = field(default_factory=list)

    async def connect(self, node: int) -> Client:
        c = await Client.connect(self.nodes[node].line)
        self.clients.append(c)
        return c

    async def login(self, node: int, name: str, mode: str = "json") -> Client:
        """A logged-in client of that node, its login answer and replay read."""
        c = await self.connect(node)
        if mode == "text":
            assert (await c.cmd(f"login {name}")).startswith("OK welcome")
            return c
        await c.send("mode json\n")
        assert (await c.obj())["mode"] == "json"
        ok = await c.jcmd(f"login {name}")
        assert ok["type"] == "ok", ok
        for _ in range(ok["unread"]):
            await c.obj()
        return c


def node_config(
    tmp_path: Path, name: str, *, dsn: str, cluster: int, irc: int, http: int, **extra: str
) -> Path:
    path = tmp_path / f"{name}.toml"
    sections = [
        f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\n',
        f'[cluster]\nnode_id = "{name}"\nport = {cluster}\nsecret = "{SECRET}"\n',
        f"[irc]\nport = {irc}\n",
        f"[http]\nport = {http}\n",
        f'[files]\ndir = "{tmp_path / "files"}"\n',  # one directory for every node
        *extra.values(),
    ]
    path.write_text("\n".join(sections))
    return path


@pytest.fixture
async def cluster(
    pg_dsn: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[Cluster]:
    """Three nodes; node1 started first holds the lease, then node2 and node3."""
    pg_store.migrate(pg_dsn)
    extra: dict[str, str] = getattr(request, "param", {})
    nodes = []
    for i in (1, 2, 3):
        cluster_port, irc, http = free_port(), free_port(), free_port()
        name = f"node{i}"
        cfg = node_config(
            tmp_path, name, dsn=pg_dsn, cluster=cluster_port, irc=irc, http=http, **extra
        )
        nodes.append(Node(name, free_port(), cluster_port, irc, http, cfg, tmp_path / name))
    c = Cluster(nodes)
    try:
        nodes[0].start()
        await wait_for(lambda: listening(nodes[0].cluster), "node1 to be the writer")
        for node in nodes[1:]:
            node.start()
        for node in nodes[1:]:
            await wait_for(lambda node=node: listening(node.line), f"{node.name} to listen")  # type: ignore[misc]
        yield c
    finally:
        for client in c.clients:
            await client.close()
        for node in nodes:
            node.kill9()


async def test_users_on_three_nodes_chat_live_in_one_order(cluster: Cluster) -> None:
    alice = await cluster.login(0, "alice")
    bob = await cluster.login(1, "bob")
    carol = await cluster.login(2, "carol")
    assert not listening(cluster.nodes[1].cluster)  # only the writer takes passed-on clients
    sent = await bob.jcmd("send alice hello from node2")
    got = await alice.obj()
    assert (got["id"], got["from"], got["text"]) == (sent["id"], "bob", "hello from node2")
    users = (alice, bob, carol)
    for n, c in enumerate(users):
        await c.send(f"send_all from {n}\n")
    # Everyone gets the others' #general messages in id order (one order for the whole
    # chat), whatever node they are on, and their own as an OK.
    seen = []
    for c in users:
        pushed: list[int] = []
        own = 0
        while len(pushed) < 2 or not own:
            got = await c.obj()
            if got["type"] == "message":
                pushed.append(got["id"])
            elif got["type"] == "ok":
                own = got["id"]
        assert pushed == sorted(pushed)
        seen.append({own, *pushed})
    assert seen[0] == seen[1] == seen[2] and len(seen[0]) == 3
    who = await carol.jcmd("who")
    assert {u["name"] for u in who["users"]} == {"alice", "bob", "carol"}


async def test_one_user_on_two_nodes_and_irc_stays_in_sync(cluster: Cluster) -> None:
    a1 = await cluster.login(0, "alice")
    a2 = await cluster.login(1, "alice")
    bob = await cluster.login(2, "bob")
    status = await a2.jcmd("status")
    assert status["sessions"] == 2
    sent = await a2.jcmd("send bob from alice's second client")
    mirrored = await a1.obj()  # the sender's other session gets it: on the other node
    assert (mirrored["id"], mirrored["to"]) == (sent["id"], "bob")
    assert (await bob.obj())["id"] == sent["id"]
    # An IRC client on node3 is passed on too, and its PRIVMSG reaches both of alice's.
    reader, writer = await asyncio.open_connection("127.0.0.1", cluster.nodes[2].irc)
    writer.write(b"NICK dave\r\nUSER dave 0 * :Dave\r\n")
    await read_until(reader, b" 001 dave ")
    writer.write(b"PRIVMSG alice :hi from irc\r\n")
    for session in (a1, a2):
        got = await session.obj()
        assert (got["from"], got["text"]) == ("dave", "hi from irc")
    writer.close()


@pytest.mark.parametrize(
    "cluster", [{"limits": "[limits]\ngeneral_messages_per_window = 3\n"}], indirect=True
)
async def test_names_and_limits_are_decided_once_across_nodes(cluster: Cluster) -> None:
    # Two clients on two nodes create one name at the same moment: one account.
    first, second = await cluster.connect(1), await cluster.connect(2)
    await first.send("mode json\nlogin erin pw-one\n")
    await second.send("mode json\nlogin erin pw-two\n")
    answers = [await c.obj() for c in (first, first, second, second)]
    logins = [a for a in answers if a.get("cmd") == "login"]
    assert sorted(a["type"] for a in logins) == ["error", "ok"]
    assert next(a for a in logins if a["type"] == "error")["code"] == "bad-password"
    # The hourly #general limit counts sends on every node.
    on1, on2 = await cluster.login(0, "frank"), await cluster.login(1, "frank")
    assert (await on1.jcmd("send_all one"))["type"] == "ok"
    assert (await on2.jcmd("send_all two"))["type"] == "ok"
    assert (await on1.jcmd("send_all three"))["type"] == "ok"
    over = await on2.jcmd("send_all four")
    assert over["code"] == "rate-limited"


async def test_the_writer_killed_in_a_burst_a_standby_takes_over_with_every_ack(
    cluster: Cluster,
) -> None:
    node1, node2, node3 = cluster.nodes
    bob = await cluster.login(2, "bob")
    assert (await bob.jcmd("quit"))["cmd"] == "quit"
    senders = [await cluster.login(n % 3, f"sender{n}", mode="text") for n in range(3)]
    acked = await burst(senders, "bob", SENDS, 100)
    node1.kill9()  # in the middle of the burst
    for c in senders:  # every passed-on connection ends with the writer: its last OKs
        while True:
            try:
                line = await c.line()
            except (EOFError, ConnectionError):
                break
            m = OK_ID.match(line)
            if m:
                acked.append(int(m.group(1)))
    await wait_for(lambda: listening(node2.cluster) or listening(node3.cluster), "a new writer")
    # Whichever node took over, bob comes back through the other one.
    standby = 2 if listening(node2.cluster) else 1
    back = await cluster.connect(standby)
    await back.send("mode json\nlogin bob\n")
    assert (await back.obj())["mode"] == "json"
    ok = await back.obj()
    replay = [await back.obj() for _ in range(ok["unread"])]
    ids = [m["id"] for m in replay]
    assert set(acked) <= set(ids)
    assert ids == sorted(ids) and len(ids) == len(set(ids)) >= len(acked)


async def read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    got = b""
    while marker not in got:
        line = await asyncio.wait_for(reader.readline(), 10)
        assert line, f"closed before {marker!r}: {got!r}"
        got += line
    return got


async def test_postgres_restarted_under_the_nodes_they_carry_on(
    cluster: Cluster, postgres: PostgresServer
) -> None:
    """Under load: the writer refuses writes while PostgreSQL is down and recovers by
    itself, every OK it gave is stored; the standbys connect again and keep passing
    clients on, and one still takes over."""
    node1, node2, node3 = cluster.nodes
    alice = await cluster.login(0, "alice")
    bob = await cluster.login(1, "bob")
    carol = await cluster.login(2, "carol", mode="text")  # sends through a relay
    assert (await (await cluster.login(0, "dave")).jcmd("quit"))["cmd"] == "quit"
    running = asyncio.Event()
    load = asyncio.create_task(send_steadily(carol, "dave", 400, running))
    await running.wait()  # the first sends were acknowledged: restart under the load
    # Stopped off the loop (the load goes on meanwhile), started on the test's own
    # thread: the server dies with the thread that started it (PR_SET_PDEATHSIG).
    await asyncio.to_thread(postgres.stop)
    postgres.start()
    acked, refused = await load
    assert len(acked) + refused == 400 and acked  # an answer to every send, none lost
    for _ in range(100):  # `unavailable` until the writer has its lease back
        sent = await alice.jcmd("send bob after the restart")
        if sent.get("code") != "unavailable":
            break
        await asyncio.sleep(0.1)
    assert sent["type"] == "ok", sent  # committed once PostgreSQL was back
    assert (await bob.obj())["id"] == sent["id"]
    node1.kill9()
    assert await bob.closed()
    await wait_for(lambda: listening(node2.cluster) or listening(node3.cluster), "a new writer")
    other = 2 if listening(node2.cluster) else 1
    back = await cluster.connect(other)
    await back.send("mode json\nlogin bob\n")
    assert (await back.obj())["mode"] == "json"
    assert (await back.obj())["cmd"] == "login"
    assert (await back.jcmd("send alice still here"))["type"] == "ok"
    dave = await cluster.connect(other)
    await dave.send("mode json\nlogin dave\n")
    assert (await dave.obj())["mode"] == "json"
    ok = await dave.obj()
    replay = [(await dave.obj())["id"] for _ in range(ok["unread"])]
    assert set(acked) <= set(replay)  # every OK given around the restart is stored


async def send_steadily(
    client: Client, to: str, n: int, running: asyncio.Event
) -> tuple[list[int], int]:
    """`n` sends, ten in flight at a time; the ids acknowledged and how many refused
    (`ERR unavailable` while the store is away). `running` is set at the first OK."""
    acked: list[int] = []
    refused = 0
    for start in range(0, n, 10):
        await client.send("".join(f"send {to} m{i}\n" for i in range(start, start + 10)))
        for _ in range(10):
            line = await client.line(15)
            m = OK_ID.match(line)
            if m:
                acked.append(int(m.group(1)))
                running.set()
            else:
                assert line.startswith("ERR unavailable"), line
                refused += 1
    return acked, refused


async def test_a_writer_whose_lease_went_to_another_node_stops(
    cluster: Cluster, pg_dsn: str
) -> None:
    """PostgreSQL drops the writer's connection (here: terminated by an operator) and a
    standby takes the lease at once: the old writer's next commit finds it gone, so it
    cuts its clients off, acknowledges nothing more and exits with status 1."""
    node1, node2, node3 = cluster.nodes
    alice = await cluster.login(0, "alice", mode="text")
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE application_name LIKE 'chatd @% node1'"
        )
    await wait_for(lambda: listening(node2.cluster) or listening(node3.cluster), "a new writer")
    await alice.send("send_all lost with the lease\n")
    with pytest.raises(EOFError):
        line = await alice.line()
        assert not line.startswith("OK"), line  # nothing acknowledged
        await alice.line()
    assert node1.proc is not None
    assert node1.proc.wait(10) == 1
    back = await cluster.login(2 if listening(node2.cluster) else 1, "alice")
    history = await back.jcmd("history #general")
    assert [m["text"] for m in history["messages"]] == []


async def test_rooms_files_and_schedules_hold_across_nodes_and_a_takeover(
    cluster: Cluster,
) -> None:
    node1, node2, node3 = cluster.nodes
    olga = await cluster.login(0, "olga")  # on the writer
    gus = await cluster.login(1, "gus")  # on a relay
    tia = await cluster.login(2, "tia")  # on the other relay
    # A room, a join link from one node, the request from another, the approval.
    assert (await olga.jcmd("room create dev"))["type"] == "ok"
    link = (await olga.jcmd("room link #dev"))["link"]
    assert (await gus.jcmd(f"join {link}"))["status"] == "pending"
    asked = await olga.obj()
    assert (asked["type"], asked["event"]) == ("notice", "join-request")
    assert (await olga.jcmd("room approve #dev gus"))["type"] == "ok"
    posted = await olga.jcmd("send #dev welcome")
    got = await until_obj(gus, lambda o: o.get("id") == posted["id"])
    assert got["text"] == "welcome"
    # A file from a relay's client, in the one shared files directory.
    data = os.urandom(3000)
    await gus.send(f"upload #dev notes.bin\n{base64.b64encode(data).decode()}\n.\n")
    up = await gus.obj(10)
    assert up["type"] == "ok", up
    # A schedule from the third node fires once, on the writer, for everyone.
    assert (await tia.jcmd("schedule +1s send_all on time"))["type"] == "ok"
    fired = await until_obj(olga, lambda o: o.get("text") == "on time")
    assert fired["from"] == "tia"
    assert (await olga.jcmd("ping"))["cmd"] == "ping"  # no second copy before the pong
    node1.kill9()
    await wait_for(lambda: listening(node2.cluster) or listening(node3.cluster), "a new writer")
    back = await cluster.login(2 if listening(node2.cluster) else 1, "gus")
    members = await back.jcmd("room members #dev")
    assert sorted(members["members"]) == ["gus", "olga"]
    download = await back.jcmd(f"download {up['file']['id']}")
    assert base64.b64decode(download["data"]) == data
    history = await back.jcmd("history #general")
    assert [m["text"] for m in history["messages"]].count("on time") == 1


async def until_obj(client: Client, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first JSON object the client gets that satisfies `pred`."""
    while True:
        got = await client.obj()
        if pred(got):
            return got


async def test_http_on_a_relay_reaches_the_writer(cluster: Cluster) -> None:
    """POST /connect, POST /send and a long poll through node2's HTTP door."""
    alice = await cluster.login(0, "alice")
    http = cluster.nodes[1].http
    token = (await http_json(http, "POST", "/connect", {"name": "hana"}))["token"]
    sent = await http_json(http, "POST", "/send", {"to": "alice", "text": "over http"}, token)
    got = await alice.obj()
    assert (got["id"], got["from"], got["text"]) == (sent["id"], "hana", "over http")
    await alice.jcmd("send hana back to you")
    events = await http_json(http, "GET", "/events?since=0&timeout=5", None, token)
    assert [e.get("text") for e in events["events"]][-1] == "back to you"


async def http_json(
    port: int, method: str, path: str, body: dict[str, Any] | None, token: str = ""
) -> dict[str, Any]:
    """One HTTP/1.1 request with a JSON body; the JSON answer (asserting 200)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    data = json.dumps(body).encode() if body is not None else b""
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: chatd\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode()
        + data
    )
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw
    value = json.loads(payload)
    assert isinstance(value, dict)
    return value


@pytest.mark.parametrize(
    "cluster",
    [
        {
            "server": '[server]\nproxy_protocol_from = ["127.0.0.2/32"]\n',
            "limits": "[limits]\nmax_connections_per_ip = 1\n",
        }
    ],
    indirect=True,
)
async def test_a_relay_passes_on_the_address_a_balancer_named(cluster: Cluster) -> None:
    """A balancer (here: connections from 127.0.0.2) sends PROXY headers to node2; the
    writer counts each client by the address in it, not by the balancer's."""
    relay = cluster.nodes[1].line

    async def via_balancer(client_ip: str) -> Client:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", relay, local_addr=("127.0.0.2", 0)
        )
        writer.write(f"PROXY TCP4 {client_ip} 127.0.0.1 4000 {relay}\r\n".encode())
        c = Client(reader, writer)
        cluster.clients.append(c)
        return c

    first, second = await via_balancer("203.0.113.1"), await via_balancer("203.0.113.2")
    for c in (first, second):  # one balancer, one relay, two clients: both admitted
        assert (await c.line()).startswith("* chatd")
    third = await via_balancer("203.0.113.1")
    refused = await third.line()
    assert refused.startswith("ERR server-busy") and "203.0.113.1" in refused
