"""The WAL is copied back by the store's checkpointer thread, not inside commits."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from chatd.core.outcome import DeleteMessages, PutMessage
from chatd.protocol.events import GENERAL, Message
from chatd.store.sqlite import SqliteStore


def _wal_frames(path: Path) -> tuple[int, int]:
    """(frames in the WAL, frames copied back), read from a connection of our own."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        row = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    finally:
        db.close()
    return int(row[1]), int(row[2])


def test_commits_do_not_checkpoint_the_checkpointer_does(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, synchronous="normal")
    try:
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for i in range(1, 301):
            store.commit([PutMessage(Message(i, GENERAL, "ann", f"hello {i}", float(i)))])
        assert store.checkpointer.commits == 300
        deadline = time.monotonic() + 5
        while store.checkpointer.copied < 300 and time.monotonic() < deadline:
            time.sleep(0.01)  # waits for the real thread's pass (within ~1 s), bounded
        assert store.checkpointer.copied == 300
        assert store.checkpointer.failures == 0
        frames, copied = _wal_frames(store.path)
        assert frames > 0 and copied == frames
    finally:
        store.close()
    assert not store.path.with_name(store.path.name + "-wal").exists()


def test_a_wal_the_checkpointer_cannot_finish_starts_over(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path, synchronous="normal")
    store.checkpointer.close()  # no background passes: only the commit's own
    try:
        for i in range(1, 11):
            store.commit([PutMessage(Message(i, GENERAL, "ann", f"m{i}", float(i)))])
        store.checkpointer.behind = True  # as after a pass over RESTART_FRAMES
        store.commit([PutMessage(Message(11, GENERAL, "ann", "m11", 11.0))])
        assert store.checkpointer.behind is False
        store.commit([PutMessage(Message(12, GENERAL, "ann", "m12", 12.0))])
        frames, _ = _wal_frames(store.path)
        assert frames <= 4  # commit 12 alone: the WAL started over after commit 11's pass
    finally:
        store.close()
    reopened = SqliteStore(tmp_path, synchronous="normal")
    try:
        assert [m.id for m in reopened.load().messages] == list(range(1, 13))
    finally:
        reopened.close()


def test_without_a_pass_the_wal_keeps_growing(tmp_path: Path) -> None:
    """The control for the test above: commits alone never copy the WAL back."""
    store = SqliteStore(tmp_path, synchronous="normal")
    store.checkpointer.close()
    try:
        for i in range(1, 13):
            store.commit([PutMessage(Message(i, GENERAL, "ann", f"m{i}", float(i)))])
        frames, _ = _wal_frames(store.path)
        assert frames > 12
    finally:
        store.close()


def test_the_newest_message_deleted_later_keeps_its_id_taken(tmp_path: Path) -> None:
    """meta's next_id is written only with deletions (the highest stored id covers the
    rest), so deleting the newest message in a later commit must write it."""
    store = SqliteStore(tmp_path, synchronous="normal")
    try:
        store.load()
        for i in range(1, 4):
            store.commit([PutMessage(Message(i, GENERAL, "ann", f"m{i}", float(i)))])
        store.commit([DeleteMessages((3, 2))])
    finally:
        store.close()
    reopened = SqliteStore(tmp_path, synchronous="normal")
    try:
        snapshot = reopened.load()
        assert [m.id for m in snapshot.messages] == [1]
        assert snapshot.next_id == 4
    finally:
        reopened.close()
