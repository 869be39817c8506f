"""The cluster's ordered log on PostgreSQL (docs/cluster.md): appends serialised so that
positions become visible strictly in order, NOTIFY carrying the new position, and a
follower that hands every entry to its node exactly once, in order, whatever
notifications were lost.

Built and tested as a transport; what the entries carry (commands, sessions, cursors,
ticks) and applying them through the core is designed in docs/cluster.md and not
built yet, so an entry's payload here is any JSON value.

Why the advisory lock: `pos` is a bigserial, and a sequence hands out values at INSERT,
not at COMMIT. Without the lock two appends take 10 and 11, 11 commits first, and a
follower that read up to 11 never sees 10. With `pg_advisory_xact_lock` held from
before the INSERT until the COMMIT ends, the append that took 10 has committed (or
rolled back for good) before another can take 11, so "everything above my position"
is always a complete answer.
"""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from chatd import logs
from chatd.store.base import StoreError
from chatd.store.postgres import connect

#: The advisory lock every append holds until its COMMIT ("chatdL" in ASCII).
LOG_LOCK = 0x63686174644C
#: The NOTIFY channel; the payload is the new position.
CHANNEL = "chatd_log"
#: Entries read per SELECT while catching up.
PAGE = 1000

log = logs.get_logger("chatd.cluster")


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One appended batch of a node: its position in the one order, who appended it,
    the batch's id (to settle an append whose COMMIT lost its connection), when, and
    what (JSON)."""

    pos: int
    node: str
    batch: uuid.UUID
    at: float
    entries: Any


class LogWriter:
    """Appends a node's batches, one transaction each, on a connection of its own. Used
    from one thread at a time (the hub's writer thread)."""

    def __init__(self, dsn: str, node: str, *, timeout: float = 5.0) -> None:
        self._dsn = dsn
        self._node = node
        self._timeout = timeout
        self._db = connect(dsn, timeout=timeout, autocommit=True, name=f"chatd {node} log")

    def append(self, at: float, entries: Any, batch: uuid.UUID | None = None) -> LogEntry:
        """Appends one batch and returns it with its position; durable when it returns
        (synchronous_commit on). StoreError if it failed: then `find(batch)` tells,
        once reconnected, whether it landed after all."""
        batch = batch or uuid.uuid4()
        try:
            if self._db.closed or self._db.broken:
                self._db = connect(
                    self._dsn,
                    timeout=self._timeout,
                    autocommit=True,
                    name=f"chatd {self._node} log",
                )
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (LOG_LOCK,))
                row = self._db.execute(
                    "INSERT INTO log (node, batch, at, entries) VALUES (%s, %s, %s, %s) "
                    "RETURNING pos",
                    (self._node, batch, at, json.dumps(entries)),
                ).fetchone()
                assert row is not None
                pos = int(row[0])
                self._db.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(pos)))
        except psycopg.Error as e:
            raise StoreError(f"log append failed: {' '.join(str(e).split())}") from e
        return LogEntry(pos, self._node, batch, at, entries)

    def find(self, batch: uuid.UUID) -> int | None:
        """The position of a batch appended earlier, or None if it never landed."""
        try:
            if self._db.closed or self._db.broken:
                self._db = connect(self._dsn, timeout=self._timeout, autocommit=True)
            row = self._db.execute("SELECT pos FROM log WHERE batch = %s", (batch,)).fetchone()
        except psycopg.Error as e:
            raise StoreError(f"log lookup failed: {' '.join(str(e).split())}") from e
        return int(row[0]) if row is not None else None

    def close(self) -> None:
        self._db.close()


def read_after(db: psycopg.Connection[Any], pos: int, limit: int = PAGE) -> list[LogEntry]:
    """Entries with a position above `pos`, in order, at most `limit`."""
    rows = db.execute(
        "SELECT pos, node, batch, at, entries FROM log WHERE pos > %s ORDER BY pos LIMIT %s",
        (pos, limit),
    ).fetchall()
    return [LogEntry(int(p), n, b, float(a), e) for p, n, b, a, e in rows]


def trim(db: psycopg.Connection[Any], upto: int) -> int:
    """Deletes entries at or below `upto` (those every node's snapshot includes);
    returns how many went."""
    return db.execute("DELETE FROM log WHERE pos <= %s", (upto,)).rowcount


class LogFollower:
    """Hands every entry above `after` to `deliver`, in order, each once, on a thread of
    its own with a connection of its own. It LISTENs, then reads everything above its
    position; a notification (or `poll_s` without one, covering a notification lost
    with a connection) makes it read again. When PostgreSQL goes away it connects again
    every `retry_s` and reads on from its position, so a node catches up after a restart
    of PostgreSQL or of itself (give it the last position it applied)."""

    def __init__(
        self,
        dsn: str,
        deliver: Callable[[Sequence[LogEntry]], None],
        *,
        after: int = 0,
        poll_s: float = 1.0,
        retry_s: float = 0.5,
        timeout: float = 5.0,
        name: str = "chatd follower",
    ) -> None:
        self._dsn = dsn
        self._deliver = deliver
        self.position = after
        self._poll_s = poll_s
        self._retry_s = retry_s
        self._timeout = timeout
        self._name = name
        self._stop = threading.Event()
        self.connected = threading.Event()
        self.reconnects = 0
        self._thread = threading.Thread(target=self._run, name="chatd-log-follower", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                db = connect(self._dsn, timeout=self._timeout, autocommit=True, name=self._name)
            except StoreError as e:
                log.warning("cluster.log_unreachable", error=str(e))
                self._stop.wait(self._retry_s)
                continue
            if not first:
                self.reconnects += 1
            first = False
            try:
                with db:
                    self._follow(db)
            except psycopg.Error as e:
                self.connected.clear()
                log.warning("cluster.log_lost", error=" ".join(str(e).split()))
                self._stop.wait(self._retry_s)

    def _follow(self, db: psycopg.Connection[Any]) -> None:
        db.execute(f"LISTEN {CHANNEL}")  # first, so nothing appended after the read slips
        self.connected.set()
        while not self._stop.is_set():
            self._catch_up(db)
            # Any notification means "read again"; its payload only says how far.
            for _ in db.notifies(timeout=self._poll_s, stop_after=1):
                pass

    def _catch_up(self, db: psycopg.Connection[Any]) -> None:
        while True:
            page = read_after(db, self.position)
            if not page:
                return
            self._deliver(page)
            self.position = page[-1].pos

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(RuntimeError):
            self._thread.join(self._poll_s + self._timeout + 1)
