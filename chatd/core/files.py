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

from chatd.core.model import Account, Session
from chatd.core.names import dm_key
from chatd.core.outcome import Body, DeleteFile, Outcome, PutFile, PutMessage, UploadTicket
from chatd.core.parts import StoredFile
from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState, Refused, account_of, log, reply
from chatd.protocol import commands as c
from chatd.protocol import replies as r
from chatd.protocol.events import GENERAL, Code, Error, FileInfo, Push

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


class FileCommands(ChatState):
    def load_files(self, snapshot: Snapshot) -> None:
        """Rebuilds file metadata from the store; rows whose message is gone (a crash
        between the two deletions, an older sweep) are queued for deletion."""
        files = self.files
        owners = {f.id: (f.owner, f.created) for f in snapshot.files}
        for ident, info in self.index.files.items():
            if info.id in owners:
                owner, created = owners.pop(info.id)
                files.keep(StoredFile(info, owner, created, ident))
        for f in snapshot.files:
            files.next_id = max(files.next_id, f.id + 1)
        files.cleanup = [DeleteFile(i) for i in sorted(owners)]

    # Upload ------------------------------------------------------------------------

    def cmd_upload(self, s: Session, cmd: c.Upload, now: float) -> Outcome:
        """upload <target> <filename>: refused now (the door answers after the data)
        or an `upload` ticket saying how big the data may be; `finish_upload` sends."""
        acct = account_of(s)
        chat, _ = self._upload_target(acct, cmd.target)
        self._check_not_banned(acct, now)
        self._chat_limit(acct, chat, now, count=False)
        lim = self.config.limits
        busy, reserved = self.files.in_progress(acct.key, now, lim.upload_reserve_s, but=s.id)
        if lim.max_uploads_per_user and busy >= lim.max_uploads_per_user:
            raise Refused(
                Code.TOO_LARGE,
                f"you have {busy} uploads in progress, the most one user may; finish one first",
            )
        limit, too_large = self._upload_limit(acct, reserved)
        self.files.reserve(acct.key, s.id, limit, now)  # its temp file counts meanwhile
        name = safe_name(cmd.filename)
        return Outcome(upload=UploadTicket(acct.key, cmd.target, name, limit, too_large, cmd.verb))

    def begin_upload(self, s: Session, cmd: c.Upload, now: float) -> UploadTicket | Error:
        """`handle` for an upload, as what the door needs: the ticket or the refusal."""
        out = self.handle(s, cmd, now)
        if out.upload is not None:
            return out.upload
        error = out.replies[0]
        assert isinstance(error, Error)
        return error

    def finish_upload(self, s: Session, t: UploadTicket, body: Body, now: float) -> Outcome:
        """The body is stored: check again, then send the file message. The session
        may have closed since its `.` (the upload still counts; the reply is lost)."""
        return self.run(t.verb, lambda: self._finish_upload(s, t, body, now))

    def _finish_upload(self, s: Session, t: UploadTicket, body: Body, now: float) -> Outcome:
        acct = self.accounts[t.user]
        self.files.release(acct.key, s.id)
        chat, other = self._upload_target(acct, t.target)
        self._check_not_banned(acct, now)
        limit, too_large = self._upload_limit(acct)
        if body.size > limit:
            raise Refused(Code.TOO_LARGE, too_large)
        self._chat_limit(acct, chat, now)
        info = FileInfo(self.files.next_id, t.name, body.size, body.sha256)
        self.files.next_id += 1
        msg = self._post(chat, acct.name, t.name, now, to=other.name if other else None, file=info)
        self.files.keep(StoredFile(info, acct.key, now, msg.id))
        out = Outcome(replies=[r.UploadOk(t.verb, msg.id, now, info)])
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

    def _upload_limit(self, acct: Account, reserved: int = 0) -> tuple[int, str]:
        """The most bytes this user's next file may have, and the ERR text beyond it;
        `reserved`: what the user's other uploads in progress may still write."""
        cfg = self.config.files
        quota = cfg.quota_bytes
        used = self.files.bytes_of.get(acct.key, 0) + reserved
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
        f = self.files.by_id.get(cmd.file_id)
        chat = self.index.chat_of(f.message_id) if f is not None else None
        if f is None or chat is None or not self._can_see(acct, chat):
            raise Refused(Code.NO_SUCH_MESSAGE, f"no file {cmd.file_id}")
        return reply(r.DownloadOk(cmd.verb, f.info))
