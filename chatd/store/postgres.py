"""PostgreSQL store: the same state and semantics as the SQLite store, in a database
several chatd nodes can share (docs/cluster.md).

Each `commit` is one transaction for a whole batch, sent as one pipeline (one round
trip); with `synchronous_commit = on` (store.synchronous = "full") it returns only once
PostgreSQL has flushed its WAL, so an acknowledged message survives kill -9 of chatd or
of PostgreSQL. The schema is versioned in `chatd_schema`; `migrate` (the `chatd migrate`
command) applies MIGRATIONS[i] to go from version i to i+1, each in one transaction,
under an advisory lock so that two nodes migrating at once do not race. Opening a store
whose schema is not this chatd's version is an error naming `chatd migrate`.

One writer per database (the lease): a node's memory only knows what it loaded and what
it did itself, so two writing nodes on one database would hand out the same ids. The
writer connection holds the session-level advisory lock LEASE_LOCK, and shows its
cluster address in its application_name; another node waits for it (passing its
clients on to that address meanwhile: chatd/cluster/forward.py) until the writer's
connection is gone, as after kill -9, then loads everything the first committed. After
a reconnect the lease is taken again, or the commit fails with LeaseLost: a node that
lost it never writes again.

A connection lost during COMMIT leaves the batch's fate unknown. Each batch also sets
meta 'batch' to its number, so once the store has connected again and holds the lease
(the old session is gone, its transaction committed or not for good) it knows: the hub
retrying a batch that landed gets success without writing it twice; a batch that landed
but that the hub gave up meanwhile (its senders were answered `unavailable`) has its
messages, schedules and files deleted, so what was refused never appears. Writes are
idempotent besides (messages ON CONFLICT DO NOTHING, the rest upserts and deletes).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import psycopg

from chatd import logs
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
from chatd.store.base import LeaseLost, StoreError
from chatd.store.rows import (
    COUNTERS,
    MESSAGE_COLUMNS,
    PARAMS,
    load_snapshot,
    message_of,
    message_row,
)

#: The advisory lock `migrate` holds (any constant; "chatd" in ASCII).
MIGRATE_LOCK = 0x6368617464
#: The advisory lock the writer holds for as long as its connection lives (the lease).
LEASE_LOCK = 0x63686174646C
#: How often a standby asks for the lease again.
LEASE_POLL_S = 0.25
#: How often a standby that lost PostgreSQL tries to connect again.
STANDBY_RETRY_S = 1.0
#: How long a standby that connected again leaves the lease to the writer, which takes
#: it back at its next commit or probe (store.commit_retry_s) after a restart.
LEASE_GRACE_S = 5.0
#: Server-side TCP keepalives of the writer connection (see `_open`).
LEASE_KEEPALIVES = (
    "tcp_keepalives_idle = 10",
    "tcp_keepalives_interval = 5",
    "tcp_keepalives_count = 3",
)

log = logs.get_logger("chatd.store")

MIGRATIONS: tuple[str, ...] = (
    # 1: the SQLite schema's tables at its version 3 ("user" is reserved: user_key).
    """
    CREATE TABLE accounts (
        key text PRIMARY KEY,
        name text NOT NULL,
        pw_hash text,
        created double precision NOT NULL,
        cursor bigint NOT NULL DEFAULT 0,
        banned_until double precision NOT NULL DEFAULT 0,
        strikes text NOT NULL DEFAULT '[]'
    );
    CREATE TABLE messages (
        id bigint PRIMARY KEY,
        chat text NOT NULL,
        sender text NOT NULL,
        text text NOT NULL,
        ts double precision NOT NULL,
        reply_to bigint,
        recipient text,
        file_id bigint
    );
    CREATE INDEX messages_by_chat ON messages (chat, id);
    CREATE TABLE rooms (key text PRIMARY KEY, name text NOT NULL, owner text NOT NULL,
                        created double precision NOT NULL);
    CREATE TABLE members (room text NOT NULL, user_key text NOT NULL,
                          since double precision NOT NULL, PRIMARY KEY (room, user_key));
    CREATE TABLE links (token text PRIMARY KEY, room text NOT NULL,
                        expires double precision NOT NULL);
    CREATE TABLE join_requests (room text NOT NULL, user_key text NOT NULL,
                                ts double precision NOT NULL, PRIMARY KEY (room, user_key));
    CREATE TABLE schedules (id bigint PRIMARY KEY, user_key text NOT NULL,
                            at double precision NOT NULL, command text NOT NULL,
                            created double precision NOT NULL);
    CREATE TABLE files (id bigint PRIMARY KEY, sha256 text NOT NULL, name text NOT NULL,
                        size bigint NOT NULL, owner text NOT NULL,
                        created double precision NOT NULL);
    CREATE INDEX files_by_sha256 ON files (sha256);
    CREATE TABLE tokens (digest text PRIMARY KEY, user_key text NOT NULL,
                         created double precision NOT NULL, pw_tag text NOT NULL);
    CREATE INDEX tokens_by_user ON tokens (user_key);
    CREATE TABLE meta (key text PRIMARY KEY, value bigint NOT NULL);
    INSERT INTO meta VALUES ('next_id', 1), ('next_schedule_id', 1), ('next_file_id', 1),
                            ('batch', 0);
    """,
    # 2: the cluster's ordered log (chatd/cluster/log.py, docs/cluster.md).
    """
    CREATE TABLE log (
        pos bigserial PRIMARY KEY,
        node text NOT NULL,
        batch uuid NOT NULL UNIQUE,
        at double precision NOT NULL,
        entries jsonb NOT NULL
    );
    """,
    # 3: pending room invitations (rooms.invite_consent; SQLite's version 4).
    """
    CREATE TABLE invites (room text NOT NULL, user_key text NOT NULL, by_user text NOT NULL,
                          ts double precision NOT NULL, expires double precision NOT NULL,
                          PRIMARY KEY (room, user_key));
    """,
    # 4: an IRC message's client-only tags and kind (NOTICE); SQLite's version 5.
    """
    ALTER TABLE messages ADD COLUMN tags text;
    ALTER TABLE messages ADD COLUMN kind text;
    """,
)

_COLUMNS = MESSAGE_COLUMNS
_SELECT_MESSAGES = f"SELECT {_COLUMNS} FROM messages"
_MESSAGE = (
    f"INSERT INTO messages ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO NOTHING"
)
# A run of messages as one statement over column arrays: one INSERT for a batch's
# messages instead of one each (a batch of 100: p50 2.5 -> 1.8 ms here).
_MESSAGES = (
    f"INSERT INTO messages ({_COLUMNS}) SELECT * FROM unnest(%s::bigint[], %s::text[], "
    "%s::text[], %s::text[], %s::float8[], %s::bigint[], %s::text[], %s::bigint[], "
    "%s::text[], %s::text[]) "
    "ON CONFLICT (id) DO NOTHING"
)

#: One statement per other change type; the parameters are chatd/store/rows.py's.
_SQL: dict[type, str] = {
    PutAccount: (
        "INSERT INTO accounts (key, name, pw_hash, created, cursor) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET name = excluded.name, pw_hash = excluded.pw_hash"
    ),
    SetCursor: "UPDATE accounts SET cursor = greatest(cursor, %s) WHERE key = %s",
    SetBan: "UPDATE accounts SET banned_until = %s WHERE key = %s",
    SetStrikes: "UPDATE accounts SET strikes = %s WHERE key = %s",
    PutRoom: (
        "INSERT INTO rooms (key, name, owner, created) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (key) DO UPDATE SET name = excluded.name, owner = excluded.owner, "
        "created = excluded.created"
    ),
    DeleteRoom: "DELETE FROM rooms WHERE key = %s",
    PutMember: (
        "INSERT INTO members (room, user_key, since) VALUES (%s, %s, %s) "
        "ON CONFLICT (room, user_key) DO UPDATE SET since = excluded.since"
    ),
    DeleteMember: "DELETE FROM members WHERE room = %s AND user_key = %s",
    PutLink: (
        "INSERT INTO links (token, room, expires) VALUES (%s, %s, %s) "
        "ON CONFLICT (token) DO UPDATE SET room = excluded.room, expires = excluded.expires"
    ),
    DeleteLinks: "DELETE FROM links WHERE room = %s AND (%s::text IS NULL OR token = %s)",
    PutJoinRequest: (
        "INSERT INTO join_requests (room, user_key, ts) VALUES (%s, %s, %s) "
        "ON CONFLICT (room, user_key) DO UPDATE SET ts = excluded.ts"
    ),
    DeleteJoinRequest: "DELETE FROM join_requests WHERE room = %s AND user_key = %s",
    PutInvite: (
        "INSERT INTO invites (room, user_key, by_user, ts, expires) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (room, user_key) DO UPDATE SET by_user = excluded.by_user, "
        "ts = excluded.ts, expires = excluded.expires"
    ),
    DeleteInvite: "DELETE FROM invites WHERE room = %s AND user_key = %s",
    PutSchedule: (
        "INSERT INTO schedules (id, user_key, at, command, created) VALUES (%s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET user_key = excluded.user_key, at = excluded.at, "
        "command = excluded.command, created = excluded.created"
    ),
    DeleteSchedule: "DELETE FROM schedules WHERE id = %s",
    PutFile: (
        "INSERT INTO files (id, sha256, name, size, owner, created) "
        "VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET sha256 = excluded.sha256, name = excluded.name, "
        "size = excluded.size, owner = excluded.owner, created = excluded.created"
    ),
    DeleteFile: "DELETE FROM files WHERE id = %s",
    PutToken: (
        "INSERT INTO tokens (digest, user_key, created, pw_tag) VALUES (%s, %s, %s, %s) "
        "ON CONFLICT (digest) DO UPDATE SET user_key = excluded.user_key, "
        "created = excluded.created, pw_tag = excluded.pw_tag"
    ),
    DeleteToken: "DELETE FROM tokens WHERE digest = %s",
    DeleteTokensOf: "DELETE FROM tokens WHERE user_key = %s",
}
_WRITES = {kind: (sql, PARAMS[kind]) for kind, sql in _SQL.items()}


def connect(
    dsn: str, *, timeout: float = 5.0, autocommit: bool = False, name: str = "chatd"
) -> psycopg.Connection[Any]:
    """A connection to `dsn`, or StoreError saying why not (without the password).
    `name` is its application_name (pg_stat_activity shows which node it is)."""
    try:
        return psycopg.connect(
            dsn,
            connect_timeout=max(1, round(timeout)),
            autocommit=autocommit,
            application_name=name[:63],
        )
    except psycopg.Error as e:
        raise StoreError(f"cannot connect to PostgreSQL: {_reason(e)}") from e


def schema_version(db: psycopg.Connection[Any]) -> int:
    """The schema version of the database (0: no chatd schema yet)."""
    row = db.execute("SELECT to_regclass('chatd_schema') IS NOT NULL").fetchone()
    if row is None or not row[0]:
        return 0
    found = db.execute("SELECT max(version) FROM chatd_schema").fetchone()
    return int(found[0] or 0) if found else 0


def migrate(dsn: str, *, timeout: float = 5.0) -> tuple[int, int]:
    """Creates or upgrades the schema; returns (version before, version after)."""
    with connect(dsn, timeout=timeout, autocommit=True) as db:
        try:
            with db.transaction():
                db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                db.execute("CREATE TABLE IF NOT EXISTS chatd_schema (version integer NOT NULL)")
                before = schema_version(db)
            if before > len(MIGRATIONS):
                raise StoreError(
                    f"the database has schema version {before}, newer than this chatd "
                    f"({len(MIGRATIONS)}); upgrade chatd"
                )
            for i in range(before, len(MIGRATIONS)):
                with db.transaction():
                    db.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
                    if schema_version(db) != i:  # another node did this step meanwhile
                        continue
                    db.execute(MIGRATIONS[i])
                    db.execute("INSERT INTO chatd_schema (version) VALUES (%s)", (i + 1,))
        except psycopg.Error as e:
            raise StoreError(f"migration failed: {_reason(e)}") from e
        return before, len(MIGRATIONS)


def check(dsn: str, *, timeout: float = 5.0) -> str:
    """Connects and describes what it found (`chatd check-config`); StoreError if it
    cannot connect or the schema is not this chatd's."""
    with connect(dsn, timeout=timeout, autocommit=True) as db:
        try:
            version = schema_version(db)
            server = db.info.server_version
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL: {_reason(e)}") from e
    major, minor = server // 10000, server % 10000
    if version != len(MIGRATIONS):
        raise StoreError(_version_problem(version))
    return f"PostgreSQL {major}.{minor}, schema version {version}"


def _version_problem(version: int) -> str:
    if version > len(MIGRATIONS):
        return (
            f"the database has schema version {version}, newer than this chatd "
            f"({len(MIGRATIONS)}); upgrade chatd"
        )
    return (
        f"the database has schema version {version}, this chatd needs "
        f"{len(MIGRATIONS)}: run `chatd migrate`"
    )


def _lease_holder(db: psycopg.Connection[Any]) -> tuple[str, str]:
    """Who holds the lease, in words, and the cluster address it advertises ("" if
    none): both from its connection's application_name (see `writer_name`)."""
    row = db.execute(
        "SELECT a.application_name, a.client_addr::text, a.pid FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' "
        "AND l.granted AND l.database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) "
        "AND l.objsubid = 1 AND (l.classid::bigint << 32 | l.objid::bigint) = %s",
        (LEASE_LOCK,),
    ).fetchone()
    if row is None:
        return "a node that just let go", ""
    name, addr, pid = row
    words = f"{name or 'unnamed'} from {addr or 'a local socket'}, backend pid {pid}"
    return words, advertised(name or "")


def writer_name(node_id: str, advertise: str) -> str:
    """The writer connection's application_name: how the other nodes learn, from the
    lease's holder, where to pass their clients on (docs/cluster.md). The address comes
    first: PostgreSQL cuts names at 63 bytes, and a cut node id still reads."""
    return f"chatd @{advertise} {node_id}" if advertise else f"chatd {node_id}".strip()


def advertised(application_name: str) -> str:
    """The cluster address in a writer's application_name, "" if it shows none."""
    head, _, rest = application_name.partition(" @")
    return rest.split(" ", 1)[0] if head == "chatd" else ""


def _reason(e: psycopg.Error) -> str:
    """The server's or libpq's own words, on one line."""
    return " ".join(str(e).split()) or type(e).__name__


class PostgresStore:
    """The store on PostgreSQL. Built and loaded on the loop thread, then committed to
    by one thread at a time (the writer connection); `read` runs on any thread, each
    with a connection of its own (a reader never waits for a commit in flight)."""

    def __init__(
        self,
        dsn: str,
        *,
        synchronous: str = "full",
        timeout: float = 5.0,
        node_id: str = "",
        wait_s: float = float("inf"),
        advertise: str = "",
        on_standby: Callable[[str], None] | None = None,
    ) -> None:
        """Opens the writer connection and takes the lease, waiting up to `wait_s` for
        another node to let it go (StoreError after that). Meanwhile `on_standby` is
        called, on this thread, at every look with the address the holder advertises
        ("" if none); `advertise` is this node's, shown once it holds the lease."""
        self._dsn = dsn
        self._timeout = timeout
        self._name = writer_name(node_id, advertise)
        self._on_standby = on_standby
        self._synchronous_commit = "on" if synchronous == "full" else "off"
        self._db = self._open()
        try:
            try:
                version = schema_version(self._db)
            except psycopg.Error as e:
                raise StoreError(f"PostgreSQL: {_reason(e)}") from e
            if version != len(MIGRATIONS):  # before waiting for the lease: fail at once
                raise StoreError(_version_problem(version))
            self._wait_for_lease(wait_s)
            self._on_standby = None  # the writer now: nobody to pass clients on to
            try:  # read with the lease held: nobody else writes it from now on
                row = self._db.execute("SELECT value FROM meta WHERE key = 'batch'").fetchone()
            except psycopg.Error as e:
                raise StoreError(f"PostgreSQL: {_reason(e)}") from e
        except BaseException:
            self._db.close()
            raise
        self._next_id = 0  # one past the highest message id committed or loaded
        self._batch = int(row[0]) if row else 0  # the last batch committed (meta 'batch')
        self._unknown: tuple[int, tuple[Change, ...]] | None = None  # lost in COMMIT
        self._files: dict[int, FileInfo] = {}
        self._readers = threading.local()
        self._readers_lock = threading.Lock()
        self._reader_dbs: list[psycopg.Connection[Any]] = []

    def _wait_for_lease(self, wait_s: float) -> None:
        """Takes the lease on `self._db`. A standby that waits for ever rides out
        PostgreSQL restarts and lost connections: it connects again and waits on."""
        while True:
            try:
                self._take_lease(self._db, wait_s)
                return
            except StoreError as e:
                if wait_s != float("inf") or not (self._db.closed or self._db.broken):
                    raise
                log.warning("store.standby_reconnecting", error=str(e))
            self._db.close()
            while True:
                time.sleep(STANDBY_RETRY_S)
                try:
                    self._db = self._open()
                    break
                except StoreError as e:
                    log.warning("store.standby_reconnecting", error=str(e))
            # PostgreSQL came back (a restart drops every connection, the writer's
            # too): the writer gets this long to take its lease again first.
            time.sleep(LEASE_GRACE_S)

    def _take_lease(self, db: psycopg.Connection[Any], wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        waiting = False
        try:
            while True:
                row = db.execute("SELECT pg_try_advisory_lock(%s)", (LEASE_LOCK,)).fetchone()
                if row is not None and row[0]:
                    if waiting:
                        log.warning("store.lease_taken")
                    return
                holder, address = _lease_holder(db)
                if self._on_standby is not None:
                    self._on_standby(address)
                if time.monotonic() >= deadline:
                    raise LeaseLost(
                        f"another chatd ({holder}) is writing to this database: one writer "
                        "at a time (docs/cluster.md)"
                    )
                if not waiting:
                    log.warning("store.standby", holder=holder)
                    waiting = True
                time.sleep(LEASE_POLL_S)
        except psycopg.Error as e:
            raise StoreError(f"PostgreSQL: {_reason(e)}") from e

    def _open(self) -> psycopg.Connection[Any]:
        db = connect(self._dsn, timeout=self._timeout, autocommit=True, name=self._name)
        try:
            db.execute(f"SET synchronous_commit = {self._synchronous_commit}")
            # A node that vanished without closing its connection (power cut, network
            # gone) keeps the lease until PostgreSQL notices: ask it to probe the idle
            # connection after 10 s, every 5 s, 3 times (the OS default waits 2 hours).
            for setting in LEASE_KEEPALIVES:
                db.execute(f"SET {setting}")
        except psycopg.Error as e:
            db.close()
            raise StoreError(f"PostgreSQL: {_reason(e)}") from e
        return db

    def _writer(self) -> psycopg.Connection[Any]:
        """The writer connection, opened again after PostgreSQL dropped it."""
        if self._db.closed or self._db.broken:
            self._db.close()
            db = self._open()
            try:
                self._take_lease(db, 0.0)  # lost with the old connection; someone else's now?
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def load(self, recent: int = 0) -> Snapshot:
        """Everything but message text; the newest `recent` messages whole."""
        try:
            return self._load(self._writer(), recent)
        except psycopg.Error as e:
            raise StoreError(f"cannot load from PostgreSQL: {_reason(e)}") from e

    def _load(self, db: psycopg.Connection[Any], recent: int) -> Snapshot:
        def newest() -> tuple[Message, ...]:
            if recent <= 0:
                return ()
            rows = db.execute(f"{_SELECT_MESSAGES} ORDER BY id DESC LIMIT %s", (recent,))
            return tuple(self._message(row) for row in reversed(rows.fetchall()))

        snapshot = load_snapshot(db.execute, user="user_key", files_known=self._know, newest=newest)
        self._next_id = snapshot.next_id
        row = db.execute("SELECT value FROM meta WHERE key = 'batch'").fetchone()
        self._batch = int(row[0]) if row else 0
        return snapshot

    def _know(self, files: dict[int, FileInfo]) -> None:
        self._files = files

    def load_tokens(self) -> tuple[TokenRow, ...]:
        """The HTTP door's bearer tokens (read once, when the door starts)."""
        try:
            rows = self._writer().execute("SELECT digest, user_key, created, pw_tag FROM tokens")
            return tuple(TokenRow(*r) for r in rows)
        except psycopg.Error as e:
            raise StoreError(f"cannot load tokens from PostgreSQL: {_reason(e)}") from e

    def read(self, ids: Sequence[int]) -> list[Message]:
        """The stored messages with these ids, in id order (gone ones left out), on a
        connection of the calling thread's own."""
        if not ids:
            return []
        try:
            rows = self._reader().execute(
                f"{_SELECT_MESSAGES} WHERE id = ANY(%s) ORDER BY id", (list(ids),)
            )
            return [self._message(row) for row in rows.fetchall()]
        except psycopg.Error as e:
            self._drop_reader()
            raise StoreError(f"cannot read from PostgreSQL: {_reason(e)}") from e

    def _reader(self) -> psycopg.Connection[Any]:
        db: psycopg.Connection[Any] | None = getattr(self._readers, "db", None)
        if db is None or db.closed or db.broken:
            db = connect(self._dsn, timeout=self._timeout, autocommit=True, name=self._name)
            self._readers.db = db
            with self._readers_lock:
                self._reader_dbs.append(db)
        return db

    def _drop_reader(self) -> None:
        db: psycopg.Connection[Any] | None = getattr(self._readers, "db", None)
        if db is not None and (db.closed or db.broken):
            db.close()
            self._readers.db = None
            with self._readers_lock:
                if db in self._reader_dbs:
                    self._reader_dbs.remove(db)

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
            .execute("SELECT id, name, size, sha256 FROM files WHERE id = %s", (fid,))
            .fetchone()
        )
        return FileInfo(*row) if row is not None else None

    def commit(self, changes: Sequence[Change]) -> None:
        """One transaction for the whole batch, pipelined (one round trip, runs of one
        statement through executemany). Raises StoreError, with nothing applied, if
        anything fails."""
        tops: dict[str, int] = {}
        next_id = 0
        deletes = False
        runs: list[tuple[str, list[Sequence[Any]]]] = []
        for ch in changes:
            row: Sequence[Any]
            if type(ch) is PutMessage:
                m = ch.message
                sql, row = _MESSAGE, message_row(m)
                next_id = max(next_id, m.id + 1)
            elif type(ch) is DeleteMessages:
                deletes = True
                sql, row = "DELETE FROM messages WHERE id = ANY(%s)", (list(ch.ids),)
            else:
                sql, to_row = _WRITES[type(ch)]
                row = to_row(ch)
                counter = COUNTERS.get(type(ch))
                if counter is not None:
                    name, ident = counter[0], counter[1](ch)
                    tops[name] = max(tops.get(name, 0), ident + 1)
            if runs and runs[-1][0] == sql:
                runs[-1][1].append(row)
            else:
                runs.append((sql, [row]))
        next_id = max(next_id, self._next_id)
        if deletes:  # loading takes the highest stored id + 1; after deletions, meta's
            tops["next_id"] = next_id
        if tops:
            runs.append(
                (
                    "UPDATE meta SET value = greatest(value, %s) WHERE key = %s",
                    [(top, name) for name, top in tops.items()],
                )
            )
        db = self._writer()  # StoreError here: nothing was sent
        if self._unknown is not None and self._settle(db, changes):
            self._next_id = next_id  # this very batch had landed
            return
        batch = self._batch + 1
        runs.append(("UPDATE meta SET value = %s WHERE key = 'batch'", [(batch,)]))
        try:
            with db.transaction(), db.pipeline(), db.cursor() as cur:
                for sql, rows in runs:
                    if sql is _MESSAGE and len(rows) > 1:
                        cur.execute(_MESSAGES, [list(column) for column in zip(*rows, strict=True)])
                    else:
                        cur.executemany(sql, rows)
        except psycopg.Error as e:
            if db.closed or db.broken:  # maybe during COMMIT: settled after reconnecting
                self._unknown = (batch, tuple(changes))
                raise StoreError(f"commit failed, outcome unknown: {_reason(e)}") from e
            raise StoreError(f"commit failed: {_reason(e)}") from e
        self._batch = batch
        self._next_id = next_id

    def _settle(self, db: psycopg.Connection[Any], changes: Sequence[Change]) -> bool:
        """Finds out whether the batch lost in COMMIT landed (the lease is ours, so its
        session is gone). True: `changes` is that batch, and it is committed."""
        assert self._unknown is not None
        number, lost = self._unknown
        try:
            row = db.execute("SELECT value FROM meta WHERE key = 'batch'").fetchone()
            landed = row is not None and int(row[0]) >= number
            if landed and tuple(changes) == lost:
                self._batch, self._unknown = number, None
                log.warning("store.commit_landed", batch=number)
                return True
            if landed:  # given up by the server: its senders heard `unavailable`
                self._withdraw(db, lost)
                self._batch = number
            self._unknown = None
        except psycopg.Error as e:
            raise StoreError(f"commit failed: {_reason(e)}") from e
        return False

    def _withdraw(self, db: psycopg.Connection[Any], lost: Sequence[Change]) -> None:
        messages = [c.message.id for c in lost if isinstance(c, PutMessage)]
        schedules = [c.id for c in lost if isinstance(c, PutSchedule)]
        files = [c.id for c in lost if isinstance(c, PutFile)]
        with db.transaction():
            db.execute(  # their ids stay taken, as after any deletion
                "UPDATE meta SET value = greatest(value, %s) WHERE key = 'next_id'",
                (max(messages, default=0) + 1,),
            )
            db.execute("DELETE FROM messages WHERE id = ANY(%s)", (messages,))
            db.execute("DELETE FROM schedules WHERE id = ANY(%s)", (schedules,))
            db.execute("DELETE FROM files WHERE id = ANY(%s)", (files,))
        log.warning("store.commit_withdrawn", messages=len(messages), schedules=len(schedules))

    def close(self) -> None:
        with self._readers_lock:
            for db in self._reader_dbs:
                db.close()
            self._reader_dbs.clear()
        self._db.close()
