"""SQLite store: one embedded file in data_dir, WAL mode, versioned schema.

Each `commit` is one transaction for a whole batch of changes (group commit); with
`synchronous=full` it ends in one fsync of the WAL, so an acknowledged message survives
kill -9 and power loss alike. The schema version lives in `PRAGMA user_version`;
MIGRATIONS[i] upgrades version i to i+1, inside the same transaction as the bump.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chatd.core.outcome import (
    Change,
    DeleteFile,
    DeleteInvite,
    DeleteJoinRequest,
    DeleteLinks,
    DeleteMember,
    DeleteMessages,
    DeleteRoom,
    DeleteSchedule,
    DeleteToken,
    DeleteTokensOf,
    PutAccount,
    PutFile,
    PutInvite,
    PutJoinRequest,
    PutLink,
    PutMember,
    PutMessage,
    PutRoom,
    PutSchedule,
    PutToken,
    SetBan,
    SetCursor,
    SetStrikes,
)
from chatd.core.snapshot import (
    Snapshot,
    TokenRow,
)
from chatd.protocol.events import FileInfo, Message
from chatd.store.base import StoreError
from chatd.store.rows import (
    COUNTERS,
    MESSAGE_COLUMNS,
    PARAMS,
    load_snapshot,
    message_of,
    message_row,
)

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
        recipient TEXT,
        file_id INTEGER
    );
    CREATE INDEX messages_by_chat ON messages (chat, id);
    CREATE TABLE rooms (key TEXT PRIMARY KEY, name TEXT NOT NULL, owner TEXT NOT NULL,
                        created REAL NOT NULL);
    CREATE TABLE members (room TEXT NOT NULL, user TEXT NOT NULL, since REAL NOT NULL,
                          PRIMARY KEY (room, user));
    CREATE TABLE links (token TEXT PRIMARY KEY, room TEXT NOT NULL, expires REAL NOT NULL);
    CREATE TABLE join_requests (room TEXT NOT NULL, user TEXT NOT NULL, ts REAL NOT NULL,
                                PRIMARY KEY (room, user));
    CREATE TABLE schedules (id INTEGER PRIMARY KEY, user TEXT NOT NULL, at REAL NOT NULL,
                            command TEXT NOT NULL, created REAL NOT NULL);
    CREATE TABLE files (id INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, name TEXT NOT NULL,
                        size INTEGER NOT NULL, owner TEXT NOT NULL, created REAL NOT NULL);
    CREATE INDEX files_by_sha256 ON files (sha256);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta VALUES ('next_id', 1), ('next_schedule_id', 1), ('next_file_id', 1);
    """,
    # 2: nothing reads messages by chat (memory is the working copy; the store is read
    # once, in id order, at start-up), and keeping that index cost ~40% of each insert.
    """
    DROP INDEX messages_by_chat;
    """,
    # 3: the HTTP door's bearer tokens (core/tokens.py), by their sha256.
    """
    CREATE TABLE tokens (digest TEXT PRIMARY KEY, user TEXT NOT NULL, created REAL NOT NULL,
                         pw_tag TEXT NOT NULL);
    CREATE INDEX tokens_by_user ON tokens (user);
    """,
    # 4: pending room invitations (rooms.invite_consent; docs/conversations.md).
    """
    CREATE TABLE invites (room TEXT NOT NULL, user TEXT NOT NULL, by_user TEXT NOT NULL,
                          ts REAL NOT NULL, expires REAL NOT NULL, PRIMARY KEY (room, user));
    """,
    # 5: an IRC message's client-only tags and kind (NOTICE); NULL for every other
    # message, so adding them rewrites no row (docs/irc.md).
    """
    ALTER TABLE messages ADD COLUMN tags TEXT;
    ALTER TABLE messages ADD COLUMN kind TEXT;
    """,
)

# Messages, the hot path, have their own two statements: most are plain (no reply, not
# private, no file), and binding three NULLs doubled the cost of each insert.
_PLAIN_MESSAGE = "INSERT INTO messages (id, chat, sender, text, ts) VALUES (?, ?, ?, ?, ?)"
_MESSAGE = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"

_SELECT_MESSAGES = f"SELECT {MESSAGE_COLUMNS} FROM messages"
_READ_CHUNK = 500  # ids per SELECT (SQLite allows 32766 variables; smaller is kinder)

#: One statement per other change type; the parameters are chatd/store/rows.py's.
_SQL: dict[type, str] = {
    PutAccount: (
        "INSERT INTO accounts (key, name, pw_hash, created, cursor) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (key) DO UPDATE SET name = excluded.name, pw_hash = excluded.pw_hash"
    ),
    SetCursor: "UPDATE accounts SET cursor = max(cursor, ?) WHERE key = ?",
    SetBan: "UPDATE accounts SET banned_until = ? WHERE key = ?",
    SetStrikes: "UPDATE accounts SET strikes = ? WHERE key = ?",
    PutRoom: "INSERT OR REPLACE INTO rooms (key, name, owner, created) VALUES (?, ?, ?, ?)",
    DeleteRoom: "DELETE FROM rooms WHERE key = ?",
    PutMember: "INSERT OR REPLACE INTO members (room, user, since) VALUES (?, ?, ?)",
    DeleteMember: "DELETE FROM members WHERE room = ? AND user = ?",
    PutLink: "INSERT OR REPLACE INTO links (token, room, expires) VALUES (?, ?, ?)",
    DeleteLinks: "DELETE FROM links WHERE room = ? AND (? IS NULL OR token = ?)",
    PutJoinRequest: "INSERT OR REPLACE INTO join_requests (room, user, ts) VALUES (?, ?, ?)",
    DeleteJoinRequest: "DELETE FROM join_requests WHERE room = ? AND user = ?",
    PutInvite: (
        "INSERT OR REPLACE INTO invites (room, user, by_user, ts, expires) VALUES (?, ?, ?, ?, ?)"
    ),
    DeleteInvite: "DELETE FROM invites WHERE room = ? AND user = ?",
    PutSchedule: (
        "INSERT OR REPLACE INTO schedules (id, user, at, command, created) VALUES (?, ?, ?, ?, ?)"
    ),
    DeleteSchedule: "DELETE FROM schedules WHERE id = ?",
    PutFile: (
        "INSERT OR REPLACE INTO files (id, sha256, name, size, owner, created) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    ),
    DeleteFile: "DELETE FROM files WHERE id = ?",
    PutToken: "INSERT OR REPLACE INTO tokens (digest, user, created, pw_tag) VALUES (?, ?, ?, ?)",
    DeleteToken: "DELETE FROM tokens WHERE digest = ?",
    DeleteTokensOf: "DELETE FROM tokens WHERE user = ?",
}
_WRITES = {kind: (sql, PARAMS[kind]) for kind, sql in _SQL.items()}

#: How often the checkpointer copies the WAL back into the database file.
CHECKPOINT_INTERVAL_S = 0.1
#: WAL frames (pages of 4 KiB) after which the committing thread finishes a checkpoint.
RESTART_FRAMES = 4096
#: Commits that make a pass worth its two fsyncs before CHECKPOINT_IDLE_S is up (SQLite's
#: own checkpoint came every 1000 pages, ~250 commits of a lone message).
CHECKPOINT_COMMITS = 200
CHECKPOINT_IDLE_S = 1.0


class _Checkpointer:
    """Copies the WAL back into the database from a thread and connection of its own.

    SQLite's automatic checkpoint runs inside the commit that crosses 1000 pages: with
    inline commits it stalled the event loop for its two fsyncs every ~250 commits
    (3.7-5 ms each here, and an fsync can take far longer on a busy disk). A PASSIVE
    checkpoint from another connection never waits for the writer and is never waited
    for. But the WAL only starts over at a commit that finds it wholly copied, which a
    pass that commits keep overtaking rarely leaves: past RESTART_FRAMES it asks the
    committing thread for one more pass (`behind`), which has little left to copy."""

    def __init__(self, path: Path, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        self._path = path
        self._interval = interval
        self._stop = threading.Event()
        self.passes = 0
        self.failures = 0
        self.behind = False
        self.commits = 0  # counted by the store; read here
        self.copied = 0  # commits in the WAL when the last pass began
        self._thread = threading.Thread(target=self._run, name="chatd-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        db: sqlite3.Connection | None = None
        last = time.monotonic()
        try:
            while not self._stop.wait(self._interval):
                commits, now = self.commits, time.monotonic()
                if commits == self.copied or (
                    commits - self.copied < CHECKPOINT_COMMITS and now - last < CHECKPOINT_IDLE_S
                ):
                    continue
                last = now
                try:
                    if db is None:
                        db = sqlite3.connect(self._path, isolation_level=None)
                    _busy, frames, _copied = db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.behind = frames >= RESTART_FRAMES
                    self.copied = commits
                    self.passes += 1
                except sqlite3.Error:
                    self.failures += 1  # disk full, say: the next pass tries again
        finally:
            if db is not None:
                db.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class SqliteStore:
    """The default store. Built and loaded on the loop thread, then committed to by one
    thread at a time (the hub's writer thread, or the loop for inline commits); the WAL
    is checkpointed by a thread of its own (`_Checkpointer`)."""

    def __init__(self, data_dir: str | Path, *, synchronous: str = "full") -> None:
        self.path = Path(data_dir) / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA wal_autocheckpoint = 0")
            self._migrate()
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open {self.path}: {e}") from e
        self._next_id = 0  # one past the highest message id committed or loaded
        self._files: dict[int, FileInfo] = {}  # file rows as loaded (read() looks newer up)
        self._readers = threading.local()  # one read connection per reading thread
        self._readers_lock = threading.Lock()
        self._reader_dbs: list[sqlite3.Connection] = []
        self.checkpointer = _Checkpointer(self.path)

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

    def load(self, recent: int = 0) -> Snapshot:
        """Everything but message text; the newest `recent` messages whole."""
        db = self._db

        def newest() -> tuple[Message, ...]:
            if recent <= 0:
                return ()
            rows = db.execute(f"{_SELECT_MESSAGES} ORDER BY id DESC LIMIT ?", (recent,))
            return tuple(self._message(row) for row in reversed(rows.fetchall()))

        snapshot = load_snapshot(db.execute, user="user", files_known=self._know, newest=newest)
        self._next_id = snapshot.next_id
        return snapshot

    def _know(self, files: dict[int, FileInfo]) -> None:
        self._files = files

    def read(self, ids: Sequence[int]) -> list[Message]:
        """Messages by id, on a connection of the calling thread's own (WAL readers never
        wait for the writer), in chunks the SQL variable limit allows."""
        db = self._reader()
        out: list[Message] = []
        wanted = sorted(ids)
        for i in range(0, len(wanted), _READ_CHUNK):
            chunk = wanted[i : i + _READ_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = db.execute(f"{_SELECT_MESSAGES} WHERE id IN ({marks}) ORDER BY id", chunk)
            out.extend(self._message(row) for row in rows)
        return out

    def _reader(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._readers, "db", None)
        if db is None:
            try:
                db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA busy_timeout = 5000")
            except sqlite3.Error as e:
                raise StoreError(f"cannot read {self.path}: {e}") from e
            self._readers.db = db
            with self._readers_lock:
                self._reader_dbs.append(db)
        return db

    def _message(self, row: tuple[Any, ...]) -> Message:
        fid = row[7]
        file = None
        if fid is not None:
            file = self._files.get(fid)
            if file is None:  # uploaded after start-up: read its row
                file = self._file_info(fid)
        return message_of(row, file)

    def _file_info(self, fid: int) -> FileInfo | None:
        row = (
            self._reader()
            .execute("SELECT id, name, size, sha256 FROM files WHERE id = ?", (fid,))
            .fetchone()
        )
        return FileInfo(*row) if row is not None else None

    def load_tokens(self) -> tuple[TokenRow, ...]:
        """The HTTP door's bearer tokens (read once, when the door starts)."""
        rows = self._db.execute("SELECT digest, user, created, pw_tag FROM tokens")
        return tuple(TokenRow(*r) for r in rows)

    def commit(self, changes: Sequence[Change]) -> None:
        """One transaction for the whole batch; runs of one statement go through
        executemany. Raises StoreError and rolls back if anything fails."""
        db = self._db
        if len(changes) == 1 and type(changes[0]) is PutMessage:
            self._commit_one(changes[0].message)
            return
        try:
            db.execute("BEGIN")
            tops: dict[str, int] = {}
            next_id = 0
            deletes = False
            run: list[Sequence[Any]] = []
            sql = ""
            for ch in changes:
                row: Sequence[Any]
                if type(ch) is PutMessage:
                    m = ch.message
                    if (
                        m.reply_to is None
                        and m.to is None
                        and m.file is None
                        and not (m.tags or m.kind)
                    ):
                        this, row = _PLAIN_MESSAGE, (m.id, m.chat, m.sender, m.text, m.ts)
                    else:
                        this, row = _MESSAGE, message_row(m)
                    next_id = max(next_id, m.id + 1)
                elif type(ch) is DeleteMessages:
                    deletes = True
                    self._flush(sql, run)
                    sql, run = "", []
                    db.executemany("DELETE FROM messages WHERE id = ?", [(i,) for i in ch.ids])
                    continue
                else:
                    this, to_row = _WRITES[type(ch)]
                    row = to_row(ch)
                    counter = COUNTERS.get(type(ch))
                    if counter is not None:
                        name, ident = counter[0], counter[1](ch)
                        tops[name] = max(tops.get(name, 0), ident + 1)
                if this != sql:
                    self._flush(sql, run)
                    sql, run = this, []
                run.append(row)
            self._flush(sql, run)
            next_id = max(next_id, self._next_id)
            if deletes:
                # Loading takes the highest stored id + 1, so meta's next_id only
                # matters once messages are deleted (an id must never come back).
                # Writing it with every commit cost a second page in the WAL.
                tops["next_id"] = next_id
            if tops:
                db.executemany(
                    "UPDATE meta SET value = max(value, ?) WHERE key = ?",
                    [(top, name) for name, top in tops.items()],
                )
            db.execute("COMMIT")
        except sqlite3.Error as e:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise StoreError(f"commit failed: {e}") from e
        self._next_id = next_id
        self._committed()

    def _commit_one(self, m: Message) -> None:
        """A batch of one message (a lone sender, the common case of a quiet server):
        one autocommitted INSERT is its own transaction, without BEGIN, executemany
        and COMMIT around it (16-19 -> 13 us a commit in isolation)."""
        plain = m.reply_to is None and m.to is None and m.file is None and not (m.tags or m.kind)
        try:
            if plain:
                self._db.execute(_PLAIN_MESSAGE, (m.id, m.chat, m.sender, m.text, m.ts))
            else:
                self._db.execute(_MESSAGE, message_row(m))
        except sqlite3.Error as e:
            raise StoreError(f"commit failed: {e}") from e
        self._next_id = max(self._next_id, m.id + 1)
        self._committed()

    def _committed(self) -> None:
        self.checkpointer.commits += 1
        if self.checkpointer.behind:
            self.checkpointer.behind = False
            # What the checkpointer left (its last pass's worth), so the next commit
            # starts the WAL over. Committed already: a failure here only waits.
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()

    def _flush(self, sql: str, rows: list[Sequence[Any]]) -> None:
        if rows:
            self._db.executemany(sql, rows)

    def close(self) -> None:
        self.checkpointer.close()  # first: the last connection to close checkpoints
        with self._readers_lock:
            for db in self._reader_dbs:
                db.close()
            self._reader_dbs.clear()
        self._db.close()
