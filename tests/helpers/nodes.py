"""chatd nodes in child processes for the several-node tests (docs/cluster.md): started
without waiting for their port, since a standby opens none until it holds the
database's lease."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.helpers.server import ROOT


def spawn_node(config: Path, data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    """`run_server.py` with this config on this port, not waiting for it to listen (a
    standby listens only once it holds the database's lease)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_server.py"),
            "--config",
            str(config),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
        ],
        cwd=data_dir.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
