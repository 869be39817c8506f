"""Files: reading one for upload, checking and saving a download, reporting progress.

Plain functions over paths and bytes, so the tests need no server. A download is
checked against the size and sha256 the server announced before anything is written,
and a name chosen by the sender never escapes the target directory or overwrites a
file unless the user named that file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatd.client.connection import upload_chunks
from chatd.client.render import format_size

PROGRESS_FROM_BYTES = 1024 * 1024  # files smaller than this just go


class FileProblem(Exception):
    """A file that cannot be sent or saved; the text is for a person."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    name: str
    size: int
    chunks: list[str]

    @property
    def encoded_bytes(self) -> int:
        return sum(len(c) + 1 for c in self.chunks)


def wire_name(path: Path) -> str:
    """The file's name as one protocol word: no directories, no whitespace."""
    name = re.sub(r"\s+", "_", path.name.strip()) or "file"
    return name


def read_upload(path: str) -> Outgoing:
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except IsADirectoryError:
        raise FileProblem(f"{path} is a directory") from None
    except OSError as e:
        raise FileProblem(f"cannot read {path}: {e.strerror or e}") from None
    b64 = base64.b64encode(data).decode("ascii")
    return Outgoing(wire_name(p), len(data), upload_chunks(b64))


def safe_name(name: str) -> str:
    """A sender's file name reduced to one harmless path component."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    name = re.sub(r"[\x00-\x1f]", "", name)
    return name or "download"


def destination(dest: str | None, name: str, cwd: Path) -> tuple[Path, bool]:
    """Where to save, and whether an existing file there may be replaced (only when the
    user named the file itself; a derived name gets ` (1)`, ` (2)`… instead)."""
    if dest is not None:
        p = Path(dest).expanduser()
        p = p if p.is_absolute() else cwd / p
        if not p.is_dir():
            return p, True
        return p / safe_name(name), False
    return cwd / safe_name(name), False


def unique(path: Path) -> Path:
    if not path.exists():
        return path
    stem, suffix = path.stem, path.suffix
    n = 1
    while True:
        candidate = path.with_name(f"{stem} ({n}){suffix}")
        if not candidate.exists():
            return candidate
        n += 1


def save_download(reply: Mapping[str, Any], dest: str | None, cwd: Path) -> tuple[Path, int]:
    """Checks a `download` reply and writes the file; returns where and how big."""
    info = reply.get("file")
    if not isinstance(info, Mapping):
        raise FileProblem("the server's reply has no file description")
    try:
        data = base64.b64decode(str(reply.get("data", "")), validate=True)
    except (binascii.Error, ValueError):
        raise FileProblem("the server sent data that is not base64") from None
    size, sha = info.get("size"), info.get("sha256")
    if isinstance(size, int) and len(data) != size:
        raise FileProblem(f"got {len(data)} bytes, expected {size}")
    if isinstance(sha, str) and hashlib.sha256(data).hexdigest() != sha.lower():
        raise FileProblem("checksum mismatch: the file arrived damaged")
    path, replace = destination(dest, str(info.get("name", "download")), cwd)
    if not replace:
        path = unique(path)
    try:
        path.write_bytes(data)
    except OSError as e:
        raise FileProblem(f"cannot write {path}: {e.strerror or e}") from None
    return path, len(data)


class Progress:
    """Reports a transfer at every 10 % (or every MiB when the total is unknown). `total`
    counts what moves on the wire (base64), `shown` is the file size people know."""

    def __init__(
        self,
        label: str,
        total: int | None,
        report: Callable[[str], None],
        shown: int | None = None,
    ) -> None:
        self._label = label
        self._total = total
        self._shown = format_size(shown if shown is not None else total or 0)
        self._report = report
        self._step = 1  # the next tenth to report, when the total is known
        self._next_bytes = PROGRESS_FROM_BYTES

    def __call__(self, done: int) -> None:
        total = self._total
        if total:
            while self._step <= 10 and done * 10 >= self._step * total:
                self._report(f"{self._label}: {self._step * 10}% of {self._shown}")
                self._step += 1
        elif done >= self._next_bytes:
            self._report(f"{self._label}: {format_size(done)} so far")
            self._next_bytes = done + PROGRESS_FROM_BYTES

    def finish(self) -> None:
        """The transfer is complete (a reply's last bytes end the line, unseen here)."""
        if self._total:
            self(self._total)

    @staticmethod
    def wanted(size: int | None) -> bool:
        return size is not None and size > PROGRESS_FROM_BYTES
