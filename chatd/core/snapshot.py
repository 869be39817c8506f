"""The durable state as the store hands it back at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from chatd.protocol.events import Message


@dataclass(frozen=True, slots=True)
class AccountRow:
    key: str
    name: str
    pw_hash: str | None
    created: float
    cursor: int = 0
    banned_until: float = 0.0
    strikes: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    accounts: tuple[AccountRow, ...] = ()
    messages: tuple[Message, ...] = ()  # oldest first
    next_id: int = 1
