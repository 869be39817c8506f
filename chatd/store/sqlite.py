"""SQLite store: one embedded file in data_dir, WAL mode, versioned schema.

Each `commit` is one transaction for a whole batch of changes (group commit); with
`synchronous=full` it ends in one fsync of the WAL, so an acknowledged message survives
kill -9 and power loss alike. The schema version lives in `PRAGMA user_version`;
MIGRATIONS[i] upgrades version i to i+1, inside the same transaction as the bump.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

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
from chatd.store.base import StoreError

DB_NAME = "chatd.sqlite3"

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE accounts (
        key TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        pw_hash TEXT,
        created REAL NOT NULL,
        cursor INTEGER NOT NULL DEFAULT 0,
        banned_until REAL NOT NULL DEFAULT 0,
        strikes TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        chat TEXT NOT NULL,
        sender TEXT NOT NULL,
        text TEXT NOT NULL,
        ts REAL NOT NULL,
        reply_to INTEGER,
        recipient TEXT
    );
    CREATE INDEX messages_by_chat ON messages (chat, id);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('next_id', 1);
    """,
)

# One statement per change type, and how a change becomes its parameters.
_WRITES: dict[type, tuple[str, Callable[[Any], Sequence[Any]]]] = {
    PutAccount: (
        "INSERT INTO accounts (key, name, pw_hash, created) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET name = excluded.name, pw_hash = excluded.pw_hash",
        lambda c: (c.key, c.name, c.pw_hash, c.created),
    ),
    PutMessage: (
        "INSERT OR REPLACE INTO messages (id, chat, sender, text, ts, reply_to, recipient) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        lambda c: (
            c.message.id,
            c.message.chat,
            c.message.sender,
            c.message.text,
            c.message.ts,
            c.message.reply_to,
            c.message.to,
        ),
    ),
    SetCursor: (
        "UPDATE accounts SET cursor = max(cursor, ?) WHERE key = ?",
        lambda c: (c.cursor, c.user),
    ),
    SetBan: ("UPDATE accounts SET banned_until = ? WHERE key = ?", lambda c: (c.until, c.user)),
    SetStrikes: (
        "UPDATE accounts SET strikes = ? WHERE key = ?",
        lambda c: (json.dumps(c.strikes), c.user),
    ),
}


class SqliteStore:
    """The default store. Built and loaded on the loop thread, then committed to from
    the single writer thread only."""

    def __init__(self, data_dir: str | Path, *, synchronous: str = "full") -> None:
        self.path = Path(data_dir) / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._migrate()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open {self.path}: {e}") from e

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema version {version}, newer than this chatd "
                f"({len(MIGRATIONS)}); upgrade chatd"
            )
        for i in range(version, len(MIGRATIONS)):
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version = {i + 1}")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def load(self) -> Snapshot:
        db = self._db
        accounts = tuple(
            AccountRow(key, name, pw, created, cursor, banned, _strikes(strikes))
            for key, name, pw, created, cursor, banned, strikes in db.execute(
                "SELECT key, name, pw_hash, created, cursor, banned_until, strikes FROM accounts"
            )
        )
        messages = tuple(
            Message(i, chat, sender, text, ts, reply_to, to)
            for i, chat, sender, text, ts, reply_to, to in db.execute(
                "SELECT id, chat, sender, text, ts, reply_to, recipient FROM messages ORDER BY id"
            )
        )
        (next_id,) = db.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()
        if messages:
            next_id = max(next_id, messages[-1].id + 1)
        return Snapshot(accounts, messages, next_id)

    def commit(self, changes: Sequence[Change]) -> None:
        """One transaction for the whole batch; runs of one change type go through
        executemany. Raises StoreError and rolls back if anything fails."""
        db = self._db
        try:
            db.execute("BEGIN")
            top = 0
            run: list[Sequence[Any]] = []
            kind: type | None = None
            for ch in changes:
                if isinstance(ch, DeleteMessages):
                    self._flush(kind, run)
                    kind, run = None, []
                    db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ch.ids])
                    continue
                if type(ch) is not kind:
                    self._flush(kind, run)
                    kind, run = type(ch), []
                run.append(_WRITES[type(ch)][1](ch))
                if isinstance(ch, PutMessage) and ch.message.id > top:
                    top = ch.message.id
            self._flush(kind, run)
            if top:
                db.execute(
                    "UPDATE meta SET value = max(value, ?) WHERE key = 'next_id'", (top + 1,)
                )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"commit failed: {e}") from e

    def _flush(self, kind: type | None, rows: list[Sequence[Any]]) -> None:
        if kind is not None and rows:
            self._db.executemany(_WRITES[kind][0], rows)

    def close(self) -> None:
        self._db.close()


def _strikes(raw: str) -> tuple[tuple[str, float], ...]:
    return tuple((str(r), float(t)) for r, t in json.loads(raw))
