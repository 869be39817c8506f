"""chatd nodes in child processes for the several-node tests (docs/cluster.md): started
without waiting for their port, since a standby opens none until it holds the
database's lease."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers.server import Client, launch


def spawn_node(config: Path, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`run_server.py` with this config on this port, not waiting for it to listen (a
    standby listens only once it holds the database's lease)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return launch(data_dir, port, "--config", str(config), output=subprocess.DEVNULL)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


async def wait_for(ok: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Until `ok()` (a node listening, a writer elected), at most `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not ok():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


#: The id in a text-mode `OK sent [id]` (or any OK naming a message).
OK_ID = re.compile(r"^OK .*\[(\d+)\]")


async def burst(senders: list[Client], to: str, n: int, first: int) -> list[int]:
    """Each text-mode sender pipelines `n` sends to `to`; returns the ids of the first
    `first` OKs of each (the rest are still in flight: the moment to kill a node)."""
    for i, c in enumerate(senders):
        await c.send("".join(f"send {to} s{i}-{k}\n" for k in range(n)))
    acked: list[int] = []
    for c in senders:
        for _ in range(first):
            m = OK_ID.match(await c.line())
            assert m
            acked.append(int(m.group(1)))
    return acked
