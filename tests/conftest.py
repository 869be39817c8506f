"""Fixtures: a real daemon on a free port with a movable clock (tests/helpers/server.py
has the clients and helpers they use)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from chatd import logs
from chatd.server.daemon import Daemon
from tests.helpers.server import (
    TIMEOUT,
    Child,
    FakeClock,
    Server,
    StartServer,
    config_with,
    spawn,
)

logs.configure("warning", "console")


@pytest.fixture
async def start_server(tmp_path: Path) -> AsyncIterator[StartServer]:
    started: list[Daemon] = []

    async def start(**settings: object) -> Server:
        clock = FakeClock()
        data_dir = tmp_path / f"data{len(started)}"
        daemon = Daemon(config_with(data_dir, **settings), clock=clock)
        await daemon.start()
        started.append(daemon)
        return Server(daemon, clock, data_dir)

    yield start
    for daemon in started:
        await daemon.stop()


@pytest.fixture
async def server(start_server: StartServer) -> Server:
    """A daemon with default settings."""
    return await start_server()


@pytest.fixture
def spawn_server(tmp_path: Path) -> Iterator[Callable[..., Child]]:
    children: list[Child] = []

    def start(*args: str, data_dir: Path | None = None, port: int | None = None) -> Child:
        child = spawn(data_dir or tmp_path / "data", *args, port=port)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(TIMEOUT)
