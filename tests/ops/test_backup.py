"""Online backups against a WAL database that a thread keeps writing to throughout."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chatd.backup import BackupError, backup, backup_data_dir

WAIT_S = 10.0  # a guard against hanging, never a measured quantity


@dataclass(frozen=True)
class DataDir:
    root: Path
    db: Path
    files: Path


def make_db(path: Path, rows: int) -> None:
    """Two tables a writer updates in one transaction: a consistent copy has them agree."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, body BLOB NOT NULL)")
    db.execute("CREATE TABLE tally (n INTEGER NOT NULL)")
    db.execute("BEGIN")
    db.executemany("INSERT INTO items (body) VALUES (?)", ((os.urandom(900),) for _ in range(rows)))
    db.execute("INSERT INTO tally VALUES (?)", (rows,))
    db.execute("COMMIT")
    db.close()


def blob(files: Path, content: bytes) -> Path:
    """Stores content-addressed, sharded by the first two hex digits."""
    digest = hashlib.sha256(content).hexdigest()
    path = files / digest[:2] / digest
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> DataDir:
    root = tmp_path / "data"
    files = root / "files"
    files.mkdir(parents=True)
    make_db(root / "chatd.sqlite3", rows=2000)  # ~2 MB: hundreds of pages, many steps
    return DataDir(root, root / "chatd.sqlite3", files)


class Writer:
    """Commits one row plus the matching tally per transaction until stopped."""

    def __init__(self, db: Path) -> None:
        self._db = db
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self.commits = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            db = sqlite3.connect(self._db, isolation_level=None, timeout=WAIT_S)
            while not self._stop.is_set():
                db.execute("BEGIN IMMEDIATE")
                db.execute("INSERT INTO items (body) VALUES (?)", (os.urandom(200),))
                db.execute("UPDATE tally SET n = n + 1")
                db.execute("COMMIT")
                with self._cond:
                    self.commits += 1
                    self._cond.notify_all()
            db.close()
        except BaseException as e:
            self.error = e
            with self._cond:
                self._cond.notify_all()

    def wait_for(self, commits: int) -> None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self.commits >= commits or self.error, WAIT_S)
        assert self.error is None, self.error
        assert ok, f"the writer was stuck at {self.commits} commits"

    def __enter__(self) -> Writer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(WAIT_S)


def count(db_path: Path) -> tuple[int, int]:
    db = sqlite3.connect(f"{db_path.as_uri()}?mode=ro", uri=True)
    try:
        items = db.execute("SELECT count(*) FROM items").fetchone()[0]
        tally = db.execute("SELECT n FROM tally").fetchone()[0]
        return int(items), int(tally)
    finally:
        db.close()


def test_consistent_copy_while_a_writer_runs(data_dir: DataDir, tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    steps: list[tuple[int, int]] = []
    with Writer(data_dir.db) as writer:
        writer.wait_for(5)

        def progress(remaining: int, total: int) -> None:
            if not steps:
                # Mid-backup, the writer must keep committing: the backup's read
                # transaction must not block it.
                writer.wait_for(writer.commits + 5)
            steps.append((remaining, total))

        report = backup(data_dir.db, data_dir.files, dest, pages_per_step=16, progress=progress)
        writer.wait_for(writer.commits + 1)  # still writing after the backup
    assert writer.error is None

    assert len(steps) > 10
    remaining = [r for r, _ in steps]
    assert remaining == sorted(remaining, reverse=True)  # never restarted
    assert remaining[-1] == 0

    copy = dest / "chatd.sqlite3"
    assert report.database == copy
    assert report.database_bytes == copy.stat().st_size
    db = sqlite3.connect(copy)
    assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one standalone file
    db.close()
    items, tally = count(copy)
    assert items == tally  # a snapshot, not a mix of before and after a commit
    assert items >= 2005
    live_items, _ = count(data_dir.db)
    assert items < live_items  # the writer went on past the snapshot
    assert sorted(p.name for p in dest.iterdir()) == ["chatd.sqlite3", "files"]
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600


def test_files_are_copied_but_not_partial_ones(data_dir: DataDir, tmp_path: Path) -> None:
    blobs = [blob(data_dir.files, f"file {i}".encode() * (i + 1)) for i in range(20)]
    (blobs[0].parent / "incoming.tmp").write_bytes(b"half an upl")
    (data_dir.files / "zz").mkdir()
    (data_dir.files / "zz" / "upload.tmp").write_bytes(b"half")
    dest = tmp_path / "backup"
    report = backup(data_dir.db, data_dir.files, dest)

    copied = {p.relative_to(dest / "files") for p in (dest / "files").rglob("*") if p.is_file()}
    assert copied == {p.relative_to(data_dir.files) for p in blobs}
    for original in blobs:
        assert (dest / "files" / original.relative_to(data_dir.files)).read_bytes() == (
            original.read_bytes()
        )
    assert report.files_copied == 20
    assert report.files_skipped == 2
    assert report.files_bytes == sum(p.stat().st_size for p in blobs)


def test_restore_is_copying_back(data_dir: DataDir, tmp_path: Path) -> None:
    blob(data_dir.files, b"attachment")
    dest = tmp_path / "backup"
    backup_data_dir(data_dir.root, dest)
    expected = count(data_dir.db)

    restored = tmp_path / "restored"
    shutil.copytree(dest, restored)  # what the operations guide does with cp -a
    db = sqlite3.connect(restored / "chatd.sqlite3", isolation_level=None)
    assert db.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)  # as the daemon opens it
    db.execute("INSERT INTO items (body) VALUES (x'00')")
    db.close()
    assert count(restored / "chatd.sqlite3") == (expected[0] + 1, expected[1])
    assert sorted(p.name for p in (restored / "files").rglob("*") if p.is_file()) == [
        hashlib.sha256(b"attachment").hexdigest()
    ]


def test_empty_existing_dest_and_no_files_dir(data_dir: DataDir, tmp_path: Path) -> None:
    dest = tmp_path / "empty"
    dest.mkdir()
    shutil.rmtree(data_dir.files)  # a fresh server before any upload
    report = backup(data_dir.db, data_dir.files, dest)
    assert report.files_copied == 0
    assert (dest / "files").is_dir()
    assert count(dest / "chatd.sqlite3") == (2000, 2000)


def test_refuses_a_non_empty_dest(data_dir: DataDir, tmp_path: Path) -> None:
    dest = tmp_path / "old-backup"
    dest.mkdir()
    (dest / "chatd.sqlite3").write_bytes(b"precious")
    with pytest.raises(BackupError, match="not empty"):
        backup(data_dir.db, data_dir.files, dest)
    assert (dest / "chatd.sqlite3").read_bytes() == b"precious"

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(BackupError, match="not a directory"):
        backup(data_dir.db, data_dir.files, a_file)


def test_refuses_dest_inside_files(data_dir: DataDir) -> None:
    with pytest.raises(BackupError, match="copy itself"):
        backup(data_dir.db, data_dir.files, data_dir.files / "backup")


def test_missing_database(tmp_path: Path) -> None:
    dest = tmp_path / "backup"
    with pytest.raises(BackupError, match="no database"):
        backup(tmp_path / "chatd.sqlite3", tmp_path / "files", dest)
    assert not dest.exists()


def test_failure_leaves_nothing_behind(tmp_path: Path) -> None:
    not_a_db = tmp_path / "chatd.sqlite3"
    not_a_db.write_bytes(b"this is not an SQLite database" * 100)
    dest = tmp_path / "backup"
    with pytest.raises(BackupError, match="failed"):
        backup(not_a_db, tmp_path / "files", dest)
    assert not dest.exists()

    existing = tmp_path / "existing"
    existing.mkdir()
    with pytest.raises(BackupError):
        backup(not_a_db, tmp_path / "files", existing)
    assert list(existing.iterdir()) == []


@pytest.fixture(autouse=True)
def _no_leaked_threads() -> Iterator[None]:
    before = threading.active_count()
    yield
    assert threading.active_count() <= before
