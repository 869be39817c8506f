"""chatd nodes in child processes for the several-node tests (docs/cluster.md): started
without waiting for their port, since a standby opens none until it holds the
database's lease."""

from __future__ import annotations

import asyncio
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

from tests.helpers.server import launch


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
