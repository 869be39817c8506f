"""The persistence interface: load the state once, commit batches of changes, and read
message bodies back.

`commit` is called from one thread at a time (the hub's writer thread, or the event loop
for inline commits), one batch at a time, and returns only when
the batch is durable; the server holds back every reply that depends on the batch
until then (group commit). `read` is called from worker threads at any time, also
while a commit runs: the core keeps only an index of messages and the newest ones
(chatd/core/index.py), so history and replay read their text here.
`load(recent)` returns every message as a `MessageRow` (no text) and the newest
`recent` messages whole. Backends: sqlite (default), memory (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatd.core.outcome import Change
from chatd.core.snapshot import Snapshot, TokenRow
from chatd.protocol.events import Message


class StoreError(Exception):
    """The store cannot load or commit; the message says why."""


class LeaseLost(StoreError):
    """Another node writes to the database now (PostgreSQL's lease went to it while
    this one's connection was down): this node must stop serving, not wait."""


class Store(Protocol):
    def load(self, recent: int = 0) -> Snapshot: ...

    def commit(self, changes: Sequence[Change]) -> None: ...

    def read(self, ids: Sequence[int]) -> list[Message]:
        """The stored messages with these ids, in id order (gone ones left out)."""
        ...

    def load_tokens(self) -> tuple[TokenRow, ...]: ...

    def close(self) -> None: ...
