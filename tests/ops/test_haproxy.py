"""contrib/haproxy/chatd.cfg through Debian's haproxy, in front of two chatd nodes on one
PostgreSQL: both are in, clients reach either on the line, TLS, HTTP and IRC ports and
chat with each other (the node that is not the writer passes its clients on to the one
that is: docs/cluster.md); when the writer is killed with SIGKILL the health checks
take it out, the other node takes over, and a client reconnecting through haproxy gets
its replay from PostgreSQL.

The shipped file is used as it is, with its addresses and ports rewritten to this
machine's free ones and node3 left out."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatd.store import postgres
from tests.helpers.nodes import listening, spawn_node
from tests.helpers.server import ROOT, Client, free_port
from tests.helpers.tls import Certificate, certificate

pytest_plugins = ["tests.helpers.postgres"]

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
SHIPPED = ROOT / "contrib" / "haproxy" / "chatd.cfg"
DEADLINE_S = 20.0


@dataclass
class Node:
    name: str
    line: int
    http: int
    irc: int
    tls: int
    cluster: int
    config: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self, data_dir: Path) -> None:
        self.proc = spawn_node(self.config, data_dir, self.line)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_until(what: str, ok: Callable[[], bool], timeout: float = DEADLINE_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def rewritten(nodes: list[Node], fronts: dict[str, int], spare: int) -> str:
    """The shipped config on this machine's ports: node1/node2 are ours, node3 goes."""
    text = SHIPPED.read_text()
    for door, port in fronts.items():
        text = text.replace(f"bind :{door}\n", f"bind 127.0.0.1:{port}\n")
    for i, node in enumerate(nodes, start=1):
        ports = {"8000": node.line, "8080": node.http, "6667": node.irc, "8443": node.tls}
        for shipped in ("8000", "8080", "6667", "8443", "2323"):
            target = ports.get(shipped, spare)
            text = text.replace(f"10.0.0.{i}:{shipped} ", f"127.0.0.1:{target} ")
    return "\n".join(line for line in text.splitlines() if "node3" not in line) + "\n"


def servers_state(sock: Path, backend: str) -> dict[str, int]:
    """`show servers state`: each server's operational state (0 down, 2 up)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(sock))
        s.sendall(f"show servers state {backend}\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    states = {}
    for line in data.decode().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[1] == backend:
            states[parts[3]] = int(parts[5])
    return states


def states(sock: Path, backend: str, **expected: int) -> Callable[[], bool]:
    return lambda: servers_state(sock, backend) == expected


@pytest.fixture
def cluster(
    pg_dsn: str, tmp_path: Path
) -> Iterator[tuple[list[Node], dict[str, int], Path, Certificate]]:
    if not Path(HAPROXY).exists():
        pytest.skip("haproxy is not installed (apt-get install haproxy; CI installs it)")
    postgres.migrate(pg_dsn)
    cert = certificate(tmp_path)
    nodes = []
    for name in ("node1", "node2"):
        config = tmp_path / f"{name}.toml"
        line, http, irc, tls, cluster_port = (free_port() for _ in range(5))
        node = Node(name, line, http, irc, tls, cluster_port, config)
        config.write_text(
            f'[store]\nbackend = "postgres"\ndsn = "{pg_dsn}"\n'
            '[server]\nproxy_protocol_from = ["127.0.0.0/8"]\n'
            f'[cluster]\nnode_id = "{name}"\nport = {node.cluster}\n'
            "[limits]\nmax_connections_per_ip = 1000\n"
            f"[http]\nport = {node.http}\nmax_connections_per_ip = 1000\n"
            f"[irc]\nport = {node.irc}\n"
            f'[tls]\nport = {node.tls}\ncert = "{cert.cert}"\nkey = "{cert.key}"\n'
        )
        nodes.append(node)
    fronts = {door: free_port() for door in ("8000", "8443", "2323", "8080", "6667")}
    sock = tmp_path / "haproxy.sock"
    (tmp_path / "global.cfg").write_text(
        f"global\n    maxconn 2000\n    stats socket {sock} mode 600 level admin\n"
    )
    (tmp_path / "chatd.cfg").write_text(rewritten(nodes, fronts, free_port()))
    haproxy = subprocess.Popen(
        [HAPROXY, "-db", "-f", str(tmp_path / "global.cfg"), "-f", str(tmp_path / "chatd.cfg")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        nodes[0].start(tmp_path / "data1")
        wait_until("node1 to listen", lambda: listening(nodes[0].line))
        nodes[1].start(tmp_path / "data2")  # not the writer: passes its clients on
        wait_until("haproxy to listen", lambda: listening(fronts["8000"]))
        yield nodes, fronts, sock, cert
    finally:
        for node in nodes:
            node.kill9()
        haproxy.terminate()
        try:
            haproxy.wait(10)
        except subprocess.TimeoutExpired:
            haproxy.kill()
            haproxy.wait(10)


async def connect_through(port: int) -> Client:
    """A line client through haproxy, retrying while no node is up (haproxy then
    closes the connection at once)."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        try:
            c = await Client.connect(port)
            if c.greeting.startswith("* chatd"):
                return c
        except (EOFError, OSError, TimeoutError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError("no node answered through haproxy")
        await asyncio.sleep(0.1)


async def jlogin(port: int, name: str) -> tuple[Client, dict[str, object], list[dict[str, object]]]:
    c = await connect_through(port)
    await c.send("mode json\n")
    assert (await c.obj())["mode"] == "json"
    ok = await c.jcmd(f"login {name}")
    assert ok["type"] == "ok", ok
    unread = ok["unread"]
    assert isinstance(unread, int)
    return c, ok, [await c.obj() for _ in range(unread)]


async def test_both_nodes_serve_and_a_killed_writer_is_replaced(
    cluster: tuple[list[Node], dict[str, int], Path, Certificate],
) -> None:
    nodes, fronts, sock, cert = cluster
    line = fronts["8000"]
    # Both nodes answer the checks: node2 passes them on to node1, the writer.
    for backend in ("chatd_line", "chatd_http"):  # the HTTP door has checks of its own
        wait_until(f"{backend}: both nodes up", states(sock, backend, node1=2, node2=2))
    alice, _, _ = await jlogin(line, "alice")
    bob, _, _ = await jlogin(line, "bob")
    sent = await alice.jcmd("send bob through haproxy")
    assert (await bob.obj())["text"] == "through haproxy"
    # Straight to node2 (not the writer) works as well as through the balancer (with
    # the PROXY header HAProxy would send: 127.0.0.1 is the balancer's address here).
    r, w = await asyncio.open_connection("127.0.0.1", nodes[1].line)
    w.write(b"PROXY TCP4 192.0.2.4 127.0.0.1 5000 8000\r\n")
    dave = Client(r, w)
    assert (await dave.line()).startswith("* chatd")
    assert (await dave.cmd("login dave")).startswith("OK welcome")
    assert (await alice.jcmd("send dave on the other node"))["type"] == "ok"
    assert (await dave.until(lambda s: "on the other node" in s)).endswith("on the other node")
    await dave.close()
    assert (await bob.jcmd("quit"))["cmd"] == "quit"
    missed = [(await alice.jcmd(f"send bob while away {i}"))["id"] for i in range(3)]
    assert all(isinstance(i, int) and i > sent["id"] for i in missed)

    # The other doors reach the node through haproxy too.
    r, w = await asyncio.open_connection("127.0.0.1", fronts["6667"])
    w.write(b"NICK carol\r\nUSER carol 0 * :Carol\r\n")
    welcome = await asyncio.wait_for(r.readuntil(b" 001 "), DEADLINE_S)
    assert welcome.endswith(b" 001 ")
    w.close()
    r, w = await asyncio.open_connection(
        "127.0.0.1", fronts["8443"], ssl=cert.client, server_hostname="127.0.0.1"
    )
    assert (await asyncio.wait_for(r.readline(), DEADLINE_S)).startswith(b"* chatd")  # TLS
    w.close()
    r, w = await asyncio.open_connection("127.0.0.1", fronts["8080"])
    w.write(b"GET /openapi.json HTTP/1.1\r\nHost: chatd\r\nConnection: close\r\n\r\n")
    assert (await asyncio.wait_for(r.readline(), DEADLINE_S)).startswith(b"HTTP/1.1 200")
    w.close()

    nodes[0].kill9()  # node1, the writer, dies with alice connected
    assert await alice.closed()
    wait_until("node1 out and node2 in", states(sock, "chatd_line", node1=0, node2=2))
    _, ok, replay = await jlogin(line, "bob")
    assert ok["unread"] == 3
    assert [(m["id"], m["text"], m["replay"]) for m in replay] == [
        (i, f"while away {n}", True) for n, i in enumerate(missed)
    ]
    alice2, _, _ = await jlogin(line, "alice")
    after = await alice2.jcmd("send bob on node2")
    assert after["id"] > max(missed)
