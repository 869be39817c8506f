"""The persistence interface: load the state once, then commit batches of changes.

`commit` is called from one thread at a time (the hub's writer thread, or the event loop
for inline commits), one batch at a time, and returns only when
the batch is durable; the server holds back every reply that depends on the batch
until then (group commit). Backends: sqlite (default), memory (tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chatd.core.outcome import Change
from chatd.core.snapshot import Snapshot, TokenRow


class StoreError(Exception):
    """The store cannot load or commit; the message says why."""


class Store(Protocol):
    def load(self) -> Snapshot: ...

    def commit(self, changes: Sequence[Change]) -> None: ...

    def load_tokens(self) -> tuple[TokenRow, ...]: ...

    def close(self) -> None: ...
