"""A store that cannot commit (a full disk) stalls replies; it never loses an OK'd message."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from chatd.core.outcome import Change
from chatd.server.daemon import Daemon
from chatd.store.base import StoreError
from chatd.store.memory import MemoryStore
from tests.helpers.server import Client, FakeClock, config_with


class FullDisk(MemoryStore):
    """The real memory store, except that the next `failures` commits raise."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0
        self.attempts = 0

    def commit(self, changes: Sequence[Change]) -> None:
        self.attempts += 1
        if self.failures:
            self.failures -= 1
            raise StoreError("disk full")
        super().commit(changes)


@pytest.mark.parametrize("synchronous", ["normal", "full"])  # inline and writer-thread commits
async def test_replies_wait_until_the_commit_succeeds(tmp_path: Path, synchronous: str) -> None:
    store = FullDisk()
    config = config_with(tmp_path, store__synchronous=synchronous)
    daemon = Daemon(config, clock=FakeClock(), store=store)
    await daemon.start()
    try:
        alice = await Client.connect(daemon.port)
        assert (await alice.cmd("login alice")).startswith("OK")
        bob = await Client.connect(daemon.port)
        assert (await bob.cmd("login bob")).startswith("OK")
        store.failures = 2
        attempts = store.attempts
        await alice.send("send_all kept\n")
        assert await alice.silent(0.5)  # no OK while the disk is full
        assert await bob.silent(0.01)  # and nobody sees the message either
        ok = await alice.line(timeout=5)
        assert ok.startswith("OK sent [")
        assert "<alice> kept" in await bob.line(timeout=5)
        assert store.attempts >= attempts + 3  # two failures, then the commit that held
        assert [m.text for m in store.messages.values()] == ["kept"]
    finally:
        await daemon.stop()
