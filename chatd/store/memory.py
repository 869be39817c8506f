"""A store that keeps the durable state in dicts: for unit tests and throwaway servers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from chatd.core.outcome import (
    Change,
    DeleteMessages,
    PutAccount,
    PutMessage,
    SetBan,
    SetCursor,
    SetStrikes,
)
from chatd.core.snapshot import AccountRow, Snapshot
from chatd.protocol.events import Message


class MemoryStore:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountRow] = {}
        self.messages: dict[int, Message] = {}
        self.next_id = 1
        self.commits = 0

    def load(self) -> Snapshot:
        return Snapshot(
            accounts=tuple(self.accounts.values()),
            messages=tuple(self.messages[i] for i in sorted(self.messages)),
            next_id=self.next_id,
        )

    def commit(self, changes: Sequence[Change]) -> None:
        self.commits += 1
        for ch in changes:
            if isinstance(ch, PutAccount):
                old = self.accounts.get(ch.key)
                row = AccountRow(ch.key, ch.name, ch.pw_hash, ch.created)
                self.accounts[ch.key] = (
                    replace(old, name=ch.name, pw_hash=ch.pw_hash) if old else row
                )
            elif isinstance(ch, PutMessage):
                self.messages[ch.message.id] = ch.message
                self.next_id = max(self.next_id, ch.message.id + 1)
            elif isinstance(ch, DeleteMessages):
                for i in ch.ids:
                    self.messages.pop(i, None)
            elif isinstance(ch, SetCursor):
                self._update(ch.user, cursor=ch.cursor)
            elif isinstance(ch, SetBan):
                self._update(ch.user, banned_until=ch.until)
            elif isinstance(ch, SetStrikes):
                self._update(ch.user, strikes=ch.strikes)

    def _update(self, user: str, **values: object) -> None:
        row = self.accounts.get(user)
        if row is not None:
            self.accounts[user] = replace(row, **values)  # type: ignore[arg-type]

    def close(self) -> None:
        pass
