"""Stores for tests that need the disk to fail on demand."""

from __future__ import annotations

from collections.abc import Sequence

from chatd.core.outcome import Change
from chatd.store.base import StoreError
from chatd.store.memory import MemoryStore


class FullDisk(MemoryStore):
    """The real memory store, except that commits raise while `full` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.full = False

    def commit(self, changes: Sequence[Change]) -> None:
        if self.full:
            raise StoreError("database or disk is full")
        super().commit(changes)
