"""A message's client-only tags and kind (IRC) in every store: committed alone and in
batches, they come back whole from `load`'s newest messages and from `read` after a
reopen, and a database made before they existed is migrated with its messages intact."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from chatd.core import outcome as o
from chatd.protocol.events import NOTICE_KIND, FileInfo, Message
from chatd.store import postgres
from chatd.store.memory import MemoryStore
from chatd.store.postgres import PostgresStore
from chatd.store.sqlite import DB_NAME, MIGRATIONS, SqliteStore

pytest_plugins = ["tests.helpers.postgres"]

FILE = FileInfo(1, "cat.png", 10, "ab" * 32)
TAGS = r"+draft/react=\:)\s\\;+example;+draft/persist"

#: What each store must give back: plain, tagged, a notice, both, on every message shape.
MESSAGES = [
    Message(1, "#general", "alice", "plain", 1.0),
    Message(2, "#general", "alice", "tagged", 2.0, tags=TAGS),
    Message(3, "@alice|bob", "alice", "note", 3.0, to="bob", kind=NOTICE_KIND),
    Message(4, "#general", "bob", "re", 4.0, reply_to=2, tags="+a=1", kind=NOTICE_KIND),
    Message(5, "#general", "bob", "", 5.0, file=FILE, tags="+b"),
]


def commit_all(store: SqliteStore | MemoryStore | PostgresStore) -> None:
    """The file, then one message alone (a store's one-message path), then the rest in
    one batch (its path for runs of messages)."""
    store.commit([o.PutFile(1, "ab" * 32, "cat.png", 10, "alice", 0.5)])
    store.commit([o.PutMessage(MESSAGES[1])])
    store.commit([o.PutMessage(m) for m in MESSAGES if m.id != 2])


def test_memory_and_sqlite_give_them_back_after_a_reopen(tmp_path: Path) -> None:
    mem, lite = MemoryStore(), SqliteStore(tmp_path)
    for store in (mem, lite):
        commit_all(store)
    assert lite.read([5, 4, 3, 2, 1]) == mem.read([1, 2, 3, 4, 5]) == MESSAGES
    lite.close()
    reopened = SqliteStore(tmp_path)
    assert reopened.load(recent=5).recent == tuple(MESSAGES) == mem.load(recent=5).recent
    assert reopened.read([2, 3, 4]) == MESSAGES[1:4]
    assert [m.id for m in reopened.load().messages] == [1, 2, 3, 4, 5]
    reopened.close()


def test_sqlite_stores_null_for_an_ordinary_message(tmp_path: Path) -> None:
    lite = SqliteStore(tmp_path)
    commit_all(lite)
    rows = lite._db.execute("SELECT id, tags, kind FROM messages ORDER BY id").fetchall()
    assert rows == [
        (1, None, None),
        (2, TAGS, None),
        (3, None, "notice"),
        (4, "+a=1", "notice"),
        (5, "+b", None),
    ]
    lite.close()


def test_a_version_4_database_is_migrated_and_its_messages_read_as_before(
    tmp_path: Path,
) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    for version in range(4):
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("PRAGMA user_version = 4")
    db.execute(
        "INSERT INTO messages (id, chat, sender, text, ts, recipient) "
        "VALUES (7, '@a|b', 'a', 'old', 1.0, 'b')"
    )
    db.close()
    store = SqliteStore(tmp_path)
    assert store.schema_version == len(MIGRATIONS) == 5
    old = Message(7, "@a|b", "a", "old", 1.0, to="b")
    assert store.read([7]) == [old] and store.load(recent=1).recent == (old,)
    new = Message(8, "#general", "a", "new", 2.0, tags="+x=y", kind=NOTICE_KIND)
    store.commit([o.PutMessage(new)])
    assert store.read([7, 8]) == [old, new]
    store.close()


def test_postgres_gives_them_back_like_memory(pg_dsn: str) -> None:
    postgres.migrate(pg_dsn)
    store = PostgresStore(pg_dsn)
    commit_all(store)
    assert store.read([1, 2, 3, 4, 5]) == MESSAGES
    store.close()
    reopened = PostgresStore(pg_dsn)
    mem = MemoryStore()
    commit_all(mem)
    assert reopened.load(recent=5).recent == tuple(MESSAGES) == mem.load(recent=5).recent
    assert reopened.read([4, 2]) == [MESSAGES[1], MESSAGES[3]]
    with reopened._reader().cursor() as cur:
        cur.execute("SELECT tags, kind FROM messages WHERE id = 1")
        assert cur.fetchone() == (None, None)  # an ordinary message: NULLs
    reopened.close()


@pytest.mark.parametrize("size", [2, 40])
def test_postgres_batches_of_messages_keep_them(pg_dsn: str, size: int) -> None:
    """A batch's messages go in one INSERT over column arrays (two of them new)."""
    postgres.migrate(pg_dsn)
    store = PostgresStore(pg_dsn)
    batch = [
        Message(i, "#general", "a", f"m{i}", float(i), tags=f"+n={i}" if i % 2 else "")
        for i in range(1, size + 1)
    ]
    store.commit([o.PutMessage(m) for m in batch])
    assert store.read([m.id for m in batch]) == batch
    store.close()
