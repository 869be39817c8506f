"""Files: who may upload to whom, the file message, downloads, quotas, expiry (issue 6).

The core never sees a byte of a file. An upload is two calls: `begin_upload` when the
`upload` line arrives (target, ban, rate limit, the size the data may reach), and
`finish_upload` once the server has decoded, hashed and stored the body; it checks
everything again (the upload took time: a ban, a kick from the room or another upload
filling the quota may have happened meanwhile) and only then creates the message. A
file is one row per upload (its own id, name and owner) and one message; bodies are
shared by content (`sha256`), so the server keeps a body while any row names it.

Quota: each user may keep `files.quota_bytes` (0: no quota) of uploaded files at once,
counted per upload (the same file sent twice counts twice), freed when the messages
carrying them expire.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chatd.core.model import Account, Session
from chatd.core.names import dm_key
from chatd.core.outcome import Change, DeleteFile, Outcome, PutFile, PutMessage
from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState, Refused, account_of, log, ok, retry_after
from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL, Code, Error, FileInfo, Ok, Push
from chatd.protocol.render import rfc3339

MAX_NAME_CHARS = 128
_MAX_EXT_CHARS = 16
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})


def safe_name(raw: str) -> str:
    """A file name fit to show: no directories, no control or format characters (bidi
    overrides included), at most MAX_NAME_CHARS, keeping a short extension. Never a
    disk path: bodies are stored under their sha256."""
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in _DROP_CATEGORIES)
    name = name.strip()
    if name in ("", ".", ".."):
        return "file"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, ext = name.rpartition(".")
        if dot and stem and len(ext) <= _MAX_EXT_CHARS:
            name = stem[: MAX_NAME_CHARS - len(ext) - 1] + "." + ext
        else:
            name = name[:MAX_NAME_CHARS]
    return name


def file_fields(info: FileInfo) -> dict[str, Any]:
    """The `file` object of replies and messages."""
    return {"id": info.id, "name": info.name, "size": info.size, "sha256": info.sha256}


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One uploaded file: its metadata, who sent it, and the message that carries it."""

    info: FileInfo
    owner: str  # account key
    created: float
    message_id: int


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """An accepted `upload` line: what the data may be and where it goes."""

    user: str  # account key of the sender
    target: str  # as typed; resolved again by finish_upload
    name: str  # sanitised
    limit: int  # the most bytes the data may decode to
    too_large: str  # the ERR text when it does not fit
    verb: str


@dataclass(frozen=True, slots=True)
class Body:
    """What the server stored: the decoded size and its SHA-256 (hex)."""

    size: int
    sha256: str


class FileCommands(ChatState):
    if TYPE_CHECKING:  # MessagingCommands' rule, found through Chat's MRO at run time

        def _count_general(self, acct: Account, now: float) -> None: ...

    def load_files(self, snapshot: Snapshot) -> None:
        """Rebuilds file metadata from the store; rows whose message is gone (a crash
        between the two deletions, an older sweep) are queued for deletion."""
        self.stored_files: dict[int, StoredFile] = {}
        self.file_by_message: dict[int, int] = {}
        self.body_refs: dict[str, int] = {}  # sha256 -> file rows naming it
        self.stored_bytes: dict[str, int] = {}  # account key -> bytes of their files
        self.next_file_id = snapshot.next_file_id
        self._dead_bodies: set[str] = set()
        owners = {f.id: (f.owner, f.created) for f in snapshot.files}
        for m in self.messages.values():
            if m.file is not None and m.file.id in owners:
                owner, created = owners.pop(m.file.id)
                self._keep(StoredFile(m.file, owner, created, m.id))
        for f in snapshot.files:
            self.next_file_id = max(self.next_file_id, f.id + 1)
        self._file_cleanup: list[Change] = [DeleteFile(i) for i in sorted(owners)]

    def take_file_cleanup(self) -> list[Change]:
        """Start-up: deletions of file rows that no message carries (once)."""
        out, self._file_cleanup = self._file_cleanup, []
        return out

    # Upload ------------------------------------------------------------------------

    def begin_upload(self, s: Session, cmd: c.Upload, now: float) -> UploadTicket | Error:
        """The `upload` line: refused now (the ERR is sent after the data's `.`) or a
        ticket saying how big the data may be."""
        try:
            if s.account is None:
                raise Refused(Code.NOT_LOGGED_IN, "log in first: login <name> [password]")
            acct = s.account
            self._upload_target(acct, cmd.target)
            self._check_not_banned(acct, now)
            if cmd.target.lower() == GENERAL:
                self._check_general_window(acct, now)
            limit, too_large = self._upload_limit(acct)
            return UploadTicket(
                acct.key, cmd.target, safe_name(cmd.filename), limit, too_large, cmd.verb
            )
        except Refused as e:
            return Error(e.code, e.message, cmd.verb, e.retry_after)

    def finish_upload(self, s: Session, t: UploadTicket, body: Body, now: float) -> Outcome:
        """The body is stored: check again, then send the file message. The session
        may have closed since its `.` (the upload still counts; the reply is lost)."""
        try:
            return self._finish_upload(s, t, body, now)
        except Refused as e:
            return Outcome(replies=[Error(e.code, e.message, t.verb, e.retry_after)])
        except Exception:
            log.exception("command.failed", cmd=t.verb)
            return Outcome(replies=[Error(Code.INTERNAL, "internal error; logged", t.verb)])

    def _finish_upload(self, s: Session, t: UploadTicket, body: Body, now: float) -> Outcome:
        acct = self.accounts[t.user]
        chat, other = self._upload_target(acct, t.target)
        self._check_not_banned(acct, now)
        limit, too_large = self._upload_limit(acct)
        if body.size > limit:
            raise Refused(Code.TOO_LARGE, too_large)
        if chat == GENERAL:
            self._count_general(acct, now)
        info = FileInfo(self.next_file_id, t.name, body.size, body.sha256)
        self.next_file_id += 1
        msg = self._post(chat, acct.name, t.name, now, to=other.name if other else None, file=info)
        self._keep(StoredFile(info, acct.key, now, msg.id))
        out = Outcome(
            replies=[
                Ok("upload", t.verb, {"id": msg.id, "ts": rfc3339(now), "file": file_fields(info)})
            ]
        )
        out.changes.append(PutFile(info.id, info.sha256, info.name, info.size, acct.key, now))
        out.changes.append(PutMessage(msg))
        out.acked = msg.id
        if other is None:
            out.broadcasts.append((msg, s))
        else:
            if other is not acct:
                out.pushes.append((Push(msg, other.key), tuple(other.sessions)))
            mine = tuple(x for x in acct.sessions if x is not s)
            if mine:
                out.pushes.append((Push(msg, acct.key), mine))
        log.info("file.sent", user=acct.name, chat=chat, id=msg.id, file=info.id, size=info.size)
        return out

    def _upload_target(self, acct: Account, target: str) -> tuple[str, Account | None]:
        """The chat key a file goes to, and the other party of a private chat; the
        rules of `send`: #general, a room of yours, or a user."""
        if target.lower() == GENERAL:
            return GENERAL, None
        if target.startswith("#"):
            return self._member_room(acct, target).key, None
        other = self._user(target)
        return dm_key(acct.key, other.key), other

    def _check_general_window(self, acct: Account, now: float) -> None:
        """Would a message to #general be rate-limited now? (Counted at finish only.)"""
        lim = self.config.limits
        end = acct.window_start + lim.general_window_s
        if now < end and acct.window_count >= lim.general_messages_per_window:
            raise Refused(
                Code.RATE_LIMITED,
                f"at most {lim.general_messages_per_window} messages to {GENERAL} per "
                f"{lim.general_window_s:g}s",
                retry_after(end - now),
            )

    def _upload_limit(self, acct: Account) -> tuple[int, str]:
        """The most bytes this user's next file may have, and the ERR text beyond it."""
        cfg = self.config.files
        quota = cfg.quota_bytes
        used = self.stored_bytes.get(acct.key, 0)
        if quota and quota - used < cfg.max_bytes:
            return max(0, quota - used), (
                f"your files take {used} of your {quota} bytes; they are freed when "
                "their messages expire"
            )
        return cfg.max_bytes, f"files are limited to {cfg.max_bytes} bytes"

    # Download ----------------------------------------------------------------------

    def cmd_download(self, s: Session, cmd: c.Download, now: float) -> Outcome:
        """download <file_id>: the file's metadata, for those who can see its message;
        the server reads the body and adds it as `data`. An id the user cannot see
        reads as missing, like a message id (it does not reveal that it exists)."""
        acct = account_of(s)
        f = self.stored_files.get(cmd.file_id)
        m = self.messages.get(f.message_id) if f is not None else None
        if f is None or m is None or not self._can_see(acct, m):
            raise Refused(Code.NO_SUCH_MESSAGE, f"no file {cmd.file_id}")
        return ok("download", cmd, file=file_fields(f.info))

    # Expiry ------------------------------------------------------------------------

    def forget_files(self, message_ids: Iterable[int], out: Outcome) -> None:
        """Messages are being deleted (retention, a deleted room): drop their files'
        rows and quota; bodies no row names any more go to `take_dead_bodies`."""
        for mid in message_ids:
            fid = self.file_by_message.pop(mid, None)
            if fid is None:
                continue
            f = self.stored_files.pop(fid)
            out.changes.append(DeleteFile(fid))
            left = self.stored_bytes.get(f.owner, 0) - f.info.size
            if left > 0:
                self.stored_bytes[f.owner] = left
            else:
                self.stored_bytes.pop(f.owner, None)
            sha = f.info.sha256
            refs = self.body_refs.get(sha, 0) - 1
            if refs > 0:
                self.body_refs[sha] = refs
            else:
                self.body_refs.pop(sha, None)
                self._dead_bodies.add(sha)
            log.info("file.forgotten", file=fid, message=mid)

    def take_dead_bodies(self) -> list[str]:
        """SHA-256s that lost their last file row since the last call (the server
        deletes those bodies unless an upload of the same content is finishing)."""
        dead = [sha for sha in self._dead_bodies if sha not in self.body_refs]
        self._dead_bodies.clear()
        return dead

    def body_in_use(self, sha256: str) -> bool:
        return sha256 in self.body_refs

    def _keep(self, f: StoredFile) -> None:
        self.stored_files[f.info.id] = f
        self.file_by_message[f.message_id] = f.info.id
        self.body_refs[f.info.sha256] = self.body_refs.get(f.info.sha256, 0) + 1
        self.stored_bytes[f.owner] = self.stored_bytes.get(f.owner, 0) + f.info.size
