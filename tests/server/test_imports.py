"""The server's modules import one way: nothing imports the daemon, which wires them
all (docs/architecture.md), and the core never imports the server or asyncio."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2] / "chatd"


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def test_no_server_module_imports_the_daemon() -> None:
    for path in (ROOT / "server").rglob("*.py"):
        if path.name != "daemon.py":
            assert "chatd.server.daemon" not in imported(path), path


def test_the_core_and_protocol_stay_free_of_io() -> None:
    for layer in ("core", "protocol"):
        for path in (ROOT / layer).rglob("*.py"):
            names = imported(path)
            assert not any(n.startswith("chatd.server") for n in names), path
            assert not names & {"asyncio", "socket", "sqlite3"}, path
