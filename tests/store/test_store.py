"""The SQLite store: schema, group commit, and a faithful reload."""

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from chatd.core import outcome as o
from chatd.core.snapshot import Snapshot
from chatd.protocol.events import FileInfo, Message
from chatd.store.base import StoreError
from chatd.store.memory import MemoryStore
from chatd.store.sqlite import DB_NAME, MIGRATIONS, SqliteStore

CHANGES: list[o.Change] = [
    o.PutAccount("alice", "Alice", "scrypt$x", 1.0),
    o.PutAccount("bob", "bob", None, 2.0),
    o.SetCursor("alice", 3),
    o.SetCursor("alice", 2),  # cursors never move back
    o.PutFile(1, "ab" * 32, "cat.png", 10, "alice", 3.0),
    o.PutMessage(Message(1, "#general", "Alice", "hi", 3.0)),
    o.PutMessage(Message(2, "@alice|bob", "Alice", "psst", 4.0, to="bob")),
    o.PutMessage(
        Message(
            3, "#general", "bob", "", 5.0, reply_to=1, file=FileInfo(1, "cat.png", 10, "ab" * 32)
        )
    ),
    o.SetBan("bob", 99.0),
    o.SetStrikes("bob", (("alice", 5.0),)),
    o.PutRoom("#dev", "dev", "alice", 6.0),
    o.PutMember("#dev", "alice", 6.0),
    o.PutLink("tok", "#dev", 100.0),
    o.PutJoinRequest("#dev", "bob", 7.0),
    o.PutInvite("#dev", "bob", "alice", 7.0, 70.0),
    o.PutInvite("#dev", "carol", "alice", 7.0, 70.0),
    o.PutInvite("#dev", "carol", "alice", 7.5, 75.0),  # replaced
    o.PutInvite("#dev", "dave", "alice", 7.0, 70.0),
    o.DeleteInvite("#dev", "dave"),
    o.PutSchedule(4, "alice", 50.0, "send_all later", 7.0),
    o.PutMessage(Message(9, "#general", "Alice", "gone", 8.0)),
    o.DeleteMessages((9,)),
]


def snapshot_after(store: SqliteStore | MemoryStore) -> Snapshot:
    store.commit(CHANGES)
    return loaded(store)


def loaded(store: SqliteStore | MemoryStore) -> Snapshot:
    """`load()` with its message rows read into a tuple (SQLite hands a generator)."""
    snap = store.load()
    return replace(snap, messages=tuple(snap.messages))


def test_sqlite_reload_matches_memory(tmp_path: Path) -> None:
    sqlite = SqliteStore(tmp_path)
    snap = snapshot_after(sqlite)
    sqlite.close()
    reopened = loaded(SqliteStore(tmp_path))
    mem = snapshot_after(MemoryStore())
    assert reopened == snap
    assert sorted(reopened.accounts, key=lambda a: a.key) == sorted(
        mem.accounts, key=lambda a: a.key
    )
    assert reopened.messages == mem.messages
    assert (reopened.rooms, reopened.members, reopened.links, reopened.requests) == (
        mem.rooms,
        mem.members,
        mem.links,
        mem.requests,
    )
    assert reopened.schedules == mem.schedules
    invites = sorted(reopened.invites, key=lambda i: i.user)
    assert invites == sorted(mem.invites, key=lambda i: i.user)
    assert [(i.user, i.by, i.ts, i.expires) for i in invites] == [
        ("bob", "alice", 7.0, 70.0),
        ("carol", "alice", 7.5, 75.0),
    ]


def test_big_batches_reload_like_memory(tmp_path: Path) -> None:
    """Runs of hundreds of rows, plain and private messages interleaved (two INSERT
    statements), the same account written twice in one batch and a room replaced, come
    back as memory has them."""
    changes: list[o.Change] = [o.PutAccount(f"u{i}", f"U{i}", None, float(i)) for i in range(300)]
    changes.append(o.PutAccount("u7", "Seven", "scrypt$y", 7.0))  # same key, same batch
    changes += [o.PutAccount("u8", "Eight", None, 8.0), o.PutRoom("#a", "a", "u1", 1.0)]
    changes += [o.PutRoom("#a", "A", "u2", 2.0)]
    for i in range(1, 342):
        to = "u2" if i % 5 == 0 else None
        chat = "@u1|u2" if to else "#general"
        changes.append(o.PutMessage(Message(i, chat, "U1", f"m{i}", float(i), to=to)))
    sqlite, mem = SqliteStore(tmp_path), MemoryStore()
    sqlite.commit(changes)
    mem.commit(changes)
    sqlite.close()
    reopened, expected = SqliteStore(tmp_path).load(), mem.load()
    rows = list(reopened.messages)  # a generator over the rows: read once
    assert len(rows) == 341
    assert rows == list(expected.messages)
    assert reopened.next_id == 342
    by_key = {a.key: a for a in reopened.accounts}
    assert len(by_key) == 300
    assert (by_key["u7"].name, by_key["u7"].pw_hash) == ("Seven", "scrypt$y")
    assert by_key["u8"].name == "Eight"
    assert reopened.rooms == expected.rooms
    assert [r.name for r in reopened.rooms] == ["A"]


def test_ids_are_never_reused_after_deletion(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    snap = snapshot_after(store)
    assert snap.next_id == 10  # message 9 was deleted, its id stays taken
    assert snap.next_schedule_id == 5 and snap.next_file_id == 2
    assert snap.accounts[0].cursor == 3


def test_schema_is_versioned_in_wal_mode(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    db = sqlite3.connect(tmp_path / DB_NAME)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer"):
        SqliteStore(tmp_path)


def test_a_failed_batch_rolls_back_whole(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    store.commit([o.PutMessage(Message(1, "#general", "a", "one", 1.0))])
    store._db.execute(
        "CREATE TRIGGER no_two BEFORE INSERT ON messages WHEN NEW.id = 3 "
        "BEGIN SELECT RAISE(ABORT, 'boom'); END"
    )
    with pytest.raises(StoreError):
        store.commit(
            [
                o.PutMessage(Message(2, "#general", "a", "two", 2.0)),
                o.PutMessage(Message(3, "#general", "a", "three", 3.0)),
            ]
        )
    assert [m.id for m in store.load().messages] == [1]


def test_unwritable_data_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open"):
        SqliteStore(blocker / "data")


def test_a_version_1_database_is_migrated_in_place(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute(
        "INSERT INTO messages (id, chat, sender, text, ts) VALUES (7, '#general', 'a', 'old', 1.0)"
    )
    db.close()
    store = SqliteStore(tmp_path)
    assert store.schema_version == len(MIGRATIONS) == 5
    indexes = {r[0] for r in store._db.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert "messages_by_chat" not in indexes
    assert [m.id for m in store.load().messages] == [7]
    assert [m.text for m in store.read([7])] == ["old"]
    store.commit([o.PutInvite("#dev", "bob", "alice", 1.0, 2.0)])  # version 4's table
    assert [i.user for i in store.load().invites] == ["bob"]
