"""The bundled client given both nodes of a cluster (`--server node1 --server node2`):
when the writer it is connected to is SIGKILLed, it fails over to the other node by
itself, and shows every message sent meanwhile exactly once (its login there asks for
everything after the last message it showed, and a cluster's ids are one sequence)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from chatd.store import postgres as pg_store
from tests.helpers.nodes import listening, spawn_node, wait_for
from tests.helpers.server import Client, free_port
from tests.helpers.tty import Tty

pytest_plugins = ["tests.helpers.postgres"]

SECRET = "failover secret"


def node_config(tmp_path: Path, name: str, dsn: str, cluster_port: int) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(
        f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\n\n'
        f'[cluster]\nnode_id = "{name}"\nport = {cluster_port}\nsecret = "{SECRET}"\n'
    )
    return path


async def login(port: int, name: str) -> Client:
    c = await Client.connect(port)
    assert (await c.cmd(f"login {name}")).startswith("OK welcome")
    return c


async def test_the_client_fails_over_to_node2_when_the_writer_is_killed(
    pg_dsn: str, tmp_path: Path
) -> None:
    pg_store.migrate(pg_dsn)
    line1, line2, cluster1, cluster2 = (free_port() for _ in range(4))
    procs: list[subprocess.Popen[bytes]] = []
    alice: Tty | None = None
    try:
        procs.append(
            spawn_node(node_config(tmp_path, "node1", pg_dsn, cluster1), tmp_path / "n1", line1)
        )
        await wait_for(lambda: listening(cluster1), "node1 to be the writer")
        procs.append(
            spawn_node(node_config(tmp_path, "node2", pg_dsn, cluster2), tmp_path / "n2", line2)
        )
        await wait_for(lambda: listening(line2), "node2 to pass clients on")

        servers = ["--server", f"127.0.0.1:{line1}", "--server", f"127.0.0.1:{line2}"]
        alice = Tty([*servers, "--user", "alice", "--retry-delay", "0.05"], tmp_path / "state")
        await alice.expect(
            lambda s: s.find(f"logged in to 127.0.0.1:{line1} as alice") is not None,
            "alice on node1, the writer",
        )
        await alice.prompt()
        bob = await login(line2, "bob")  # passed on to node1
        assert (await bob.cmd("send alice before the kill")).startswith("OK sent")
        await alice.expect(lambda s: s.find("<bob> before the kill") is not None, "it live")

        procs[0].kill()
        procs[0].wait(10)
        assert await bob.closed()  # passed on to the dead writer: cut
        await alice.expect(lambda s: s.find("connection lost") is not None, "the drop")
        await wait_for(lambda: listening(cluster2), "node2 to take over")
        bob = await login(line2, "bob")
        sent = ["after the kill 1", "after the kill 2", "after the kill 3"]
        for text in sent:
            assert (await bob.cmd(f"send alice {text}")).startswith("OK sent")
        await alice.expect(
            lambda s: s.find(f"reconnected to 127.0.0.1:{line2} as alice") is not None,
            "alice on node2, named",
        )
        await alice.expect(lambda s: s.find(f"<bob> {sent[-1]}") is not None, "the last one")
        await bob.close()
        shown = alice.text()
        for text in ["before the kill", *sent]:
            assert shown.count(f"<bob> {text}") == 1, (text, shown)
        alice.type("/quit\r")
        assert await alice.exit_code() == 0
    finally:
        if alice is not None:
            alice.close()
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
