"""File bodies on disk, content-addressed: `<root>/<sha256[:2]>/<sha256>`.

A body is written to `<root>/tmp/<random>.tmp`, fsynced, read back and hashed, and
only then renamed to its address (or dropped, if that address already holds the same
content: the same file sent twice is stored once). The rename is atomic, so a body at
its address is always complete; a crash leaves at worst a temp file or an unreferenced
body, which `sweep_orphans` removes at the next start. File names never reach the
disk: they are metadata in the store.

Everything here blocks: the server runs it on its file thread (see uploads.py), never
on the event loop, except `sweep_orphans` at start-up before listening.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from chatd import logs

log = logs.get_logger("chatd.blobs")

TMP = "tmp"
_READ_CHUNK = 1 << 20
_HEX = frozenset("0123456789abcdef")


class BodyError(Exception):
    """A body on disk does not match its metadata."""


class BodyMissing(BodyError):
    """A body is not on disk (its last message expired meanwhile)."""


def _is_sha256(name: str) -> bool:
    return len(name) == 64 and set(name) <= _HEX


def _fsync_dir(path: Path) -> None:
    """Makes a rename or unlink in `path` durable (a no-op where dirs cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def hash_file(path: Path) -> tuple[int, str]:
    """Size and hex SHA-256 of a file, read in chunks (hashlib releases the GIL)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


class BlobStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.tmp = self.root / TMP
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _is_sha256(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.root / sha256[:2] / sha256

    def temp(self) -> TempBody:
        """A new temp body (the file is created by its first write or commit)."""
        return TempBody(self, self.tmp / f"{secrets.token_hex(12)}.tmp")

    def read(self, sha256: str, size: int) -> bytes:
        """The whole body, checked against its size and hash."""
        try:
            data = self.path(sha256).read_bytes()
        except FileNotFoundError as e:
            raise BodyMissing(f"body {sha256} is missing") from e
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise BodyError(f"body {sha256} does not match its metadata")
        return data

    def delete(self, sha256: str) -> bool:
        """Removes a body; False if it was not there."""
        path = self.path(sha256)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def sweep_orphans(self, in_use: Callable[[str], bool]) -> tuple[int, int]:
        """Start-up: removes every temp file and every body no file row names.
        Returns (temp files, bodies) removed."""
        temps = bodies = 0
        for p in self.tmp.iterdir():
            p.unlink(missing_ok=True)
            temps += 1
        for sub in self.root.iterdir():
            if sub.name == TMP or not sub.is_dir():
                continue
            for p in sub.iterdir():
                if not (_is_sha256(p.name) and in_use(p.name)):
                    p.unlink(missing_ok=True)
                    bodies += 1
        return temps, bodies


class TempBody:
    """One upload's body being written. Its methods run on the file thread, in order."""

    def __init__(self, store: BlobStore, path: Path) -> None:
        self._store = store
        self.path = path
        self._f: BinaryIO | None = None

    def _open(self) -> BinaryIO:
        if self._f is None:
            self._f = open(self.path, "xb")  # noqa: SIM115 - closed by commit/discard
        return self._f

    def write(self, data: bytes) -> None:
        self._open().write(data)

    def commit(self, size: int, sha256: str) -> bool:
        """Makes the body durable at its address; True if it is new, False if the same
        content was already stored. Raises BodyError if what is on disk is not what
        was decoded (and then removes the temp file)."""
        f = self._open()
        try:
            f.flush()
            os.fsync(f.fileno())
        finally:
            f.close()
        try:
            got = hash_file(self.path)
            if got != (size, sha256):
                raise BodyError(f"wrote {got}, expected {(size, sha256)}")
            target = self._store.path(sha256)
            if target.exists():
                return False
            if not target.parent.exists():
                target.parent.mkdir()
                _fsync_dir(self._store.root)
            os.replace(self.path, target)
            _fsync_dir(target.parent)
            return True
        finally:
            self.path.unlink(missing_ok=True)

    def discard(self) -> None:
        """Drops an unfinished body (connection cut, refused data)."""
        if self._f is not None:
            self._f.close()
        self.path.unlink(missing_ok=True)
