"""Online backup of a data directory: the SQLite database and the uploaded files.

Safe while the daemon runs. The database is copied with SQLite's online backup API from
one read transaction: in WAL mode that snapshot never blocks the daemon's writer, and it
keeps the copy from restarting each time the writer commits (which, under steady traffic,
could otherwise go on forever). The copy is then switched to a self-contained rollback
journal file and verified with `PRAGMA integrity_check`.

Files are copied after the database, so every blob the copied database refers to is
already on disk (blobs are content-addressed and written under `*.tmp` names, then
renamed: anything not ending in `.tmp` is complete). Restoring is copying the backup
directory back as the data directory; see docs/operations.md.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from chatd import logs

_log = logs.get_logger("chatd.backup")

DB_NAME = "chatd.sqlite3"
FILES_NAME = "files"
PARTIAL_SUFFIX = ".partial"  # `.<dest name>.partial`: the copy being made, beside dest
PAGES_PER_STEP = 1024  # 4 MiB at SQLite's default page size: progress without chatter


class BackupError(Exception):
    """The backup cannot be made or did not verify; the message says why."""


@dataclass(frozen=True, slots=True)
class BackupReport:
    """What `backup` wrote, for the CLI to print and the log to record."""

    dest: Path
    database: Path
    database_bytes: int
    files_copied: int
    files_bytes: int
    files_skipped: int  # `*.tmp` files being written, and files deleted mid-copy
    seconds: float


def backup(
    db_path: Path,
    files_dir: Path,
    dest: Path,
    *,
    pages_per_step: int = PAGES_PER_STEP,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """Copies the database and the files into `dest` (must be absent or empty), laid out
    like a data directory: `dest/chatd.sqlite3` and `dest/files/...`.

    Atomic: the copy is made in `.<dest name>.partial` beside `dest`, fsynced, and renamed
    to `dest`, so `dest` is complete or absent, even if the backup is killed; the next
    backup removes a killed one's partial copy. `progress(remaining_pages, total_pages)`
    is called after each step. Blocking: from asyncio run it with `asyncio.to_thread`. On
    failure the partial copy is removed and BackupError is raised.
    """
    started = time.monotonic()
    db_path, files_dir, dest = Path(db_path), Path(files_dir), Path(dest)
    if not db_path.is_file():
        raise BackupError(f"no database at {db_path}")
    _check_dest(dest, files_dir)
    with _backup_lock(dest.parent):
        _check_dest(dest, files_dir)  # again: a backup that held the lock may have made it
        partial = dest.with_name(f".{dest.name}{PARTIAL_SUFFIX}")
        if partial.exists() or partial.is_symlink():  # a killed backup's; nobody writes it now
            _log.warning("backup_stale_partial_removed", path=str(partial))
            _remove(partial)
        try:
            partial.mkdir(mode=0o700)  # chat history is private
            db_copy = partial / DB_NAME
            _backup_database(db_path, db_copy, pages_per_step, progress)
            copied, copied_bytes, skipped = _copy_files(files_dir, partial / FILES_NAME)
            _fsync_dir(partial)
            # rename(2) is atomic and may replace an empty directory: `dest` is absent or
            # empty until this moment, and complete after it.
            os.rename(partial, dest)
            _fsync_dir(dest.parent)
        except OSError as e:
            _remove(partial)
            raise BackupError(f"backup into {dest} failed: {e}") from e
        except BaseException:
            _remove(partial)
            raise
    db_copy = dest / DB_NAME
    report = BackupReport(
        dest=dest,
        database=db_copy,
        database_bytes=db_copy.stat().st_size,
        files_copied=copied,
        files_bytes=copied_bytes,
        files_skipped=skipped,
        seconds=time.monotonic() - started,
    )
    _log.info(
        "backup_done",
        dest=str(dest),
        database_bytes=report.database_bytes,
        files_copied=copied,
        files_bytes=copied_bytes,
        files_skipped=skipped,
        seconds=round(report.seconds, 3),
    )
    return report


def backup_data_dir(
    data_dir: Path,
    dest: Path,
    *,
    pages_per_step: int = PAGES_PER_STEP,
    progress: Callable[[int, int], None] | None = None,
) -> BackupReport:
    """`backup` of a whole data directory (`chatd.sqlite3` and `files/`), for the CLI."""
    data_dir = Path(data_dir)
    return backup(
        data_dir / DB_NAME,
        data_dir / FILES_NAME,
        dest,
        pages_per_step=pages_per_step,
        progress=progress,
    )


def _check_dest(dest: Path, files_dir: Path) -> None:
    """`dest` must be absent or an empty directory, outside the files it copies; its
    parent is created (private) if missing."""
    resolved = dest.resolve()
    if resolved == files_dir.resolve() or files_dir.resolve() in resolved.parents:
        raise BackupError(f"{dest} is inside {files_dir}; the backup would copy itself")
    if dest.exists() or dest.is_symlink():
        if not dest.is_dir() or dest.is_symlink():
            raise BackupError(f"{dest} exists and is not a directory")
        if any(dest.iterdir()):
            raise BackupError(f"{dest} is not empty; refusing to overwrite a backup")
        return
    try:
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise BackupError(f"cannot create {dest.parent}: {e.strerror}") from e


@contextlib.contextmanager
def _backup_lock(parent: Path) -> Iterator[None]:
    """One backup at a time per destination directory: an flock on the parent directory
    itself (nothing to leave behind; the kernel drops it when a backup is killed)."""
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BackupError(f"another backup into {parent} is running") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _backup_database(
    src_path: Path,
    dst_path: Path,
    pages_per_step: int,
    progress: Callable[[int, int], None] | None,
) -> None:
    tmp_path = dst_path.with_name(dst_path.name + ".tmp")
    # Read-only: a backup must never write to the live database (as root, SQLite gives
    # any -wal/-shm it has to create the database file's owner, so the daemon keeps access).
    uri = f"{src_path.resolve().as_uri()}?mode=ro"
    try:
        src = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise BackupError(f"cannot open {src_path}: {e}") from e
    try:
        # Created empty first so the copy is private (0600) whatever the umask.
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        dst = sqlite3.connect(tmp_path, isolation_level=None)
        try:
            src.execute("BEGIN")
            src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # pins the snapshot

            def step(_status: int, remaining: int, total: int) -> None:
                if progress is not None:
                    progress(remaining, total)

            src.backup(dst, pages=pages_per_step, progress=step)
            src.execute("COMMIT")
            # The copy inherits WAL mode; a rollback journal makes it one standalone file.
            dst.execute("PRAGMA journal_mode=DELETE")
            result = dst.execute("PRAGMA integrity_check").fetchall()
            if result != [("ok",)]:
                problems = "; ".join(str(row[0]) for row in result[:5])
                raise BackupError(f"the database copy failed its integrity check: {problems}")
        finally:
            dst.close()
    except sqlite3.Error as e:
        raise BackupError(f"backing up {src_path} failed: {e}") from e
    finally:
        src.close()
    _fsync(tmp_path)
    tmp_path.rename(dst_path)


def _copy_files(src_dir: Path, dst_dir: Path) -> tuple[int, int, int]:
    """Copies complete files, keeping the tree; returns (copied, bytes, skipped)."""
    copied = copied_bytes = skipped = 0
    dst_dir.mkdir(mode=0o700)
    if not src_dir.is_dir():
        return 0, 0, 0  # no uploads yet
    for root, dirs, names in os.walk(src_dir):
        dirs.sort()
        rel = Path(root).relative_to(src_dir)
        target_dir = dst_dir / rel
        target_dir.mkdir(mode=0o700, exist_ok=True)
        for name in sorted(names):
            src = Path(root) / name
            if name.endswith(".tmp") or not src.is_file() or src.is_symlink():
                skipped += 1
                continue
            target = target_dir / name
            partial = target_dir / (name + ".tmp")
            try:
                shutil.copy2(src, partial)  # keeps the blob's mode and mtime
            except FileNotFoundError:
                partial.unlink(missing_ok=True)
                skipped += 1  # deleted by retention after the listing; not in the copy
                continue
            _fsync(partial)
            partial.rename(target)
            copied += 1
            copied_bytes += target.stat().st_size
        _fsync_dir(target_dir)
    return copied, copied_bytes, skipped


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    # A renamed file is durable only once its directory entry is.
    _fsync(path)


def _remove(path: Path) -> None:
    """Removes a partial copy (a directory, or whatever a stranger left at its name)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
