"""The cluster's ordered log on a real PostgreSQL: positions visible strictly in order
under concurrent appenders, NOTIFY carrying the position, and a follower that hands
over every entry once, in order, across lost notifications and a PostgreSQL restart."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

import psycopg

from chatd.cluster.log import CHANNEL, LogEntry, LogFollower, LogWriter, read_after, trim
from chatd.store import postgres as pg_store
from chatd.store.base import StoreError

if TYPE_CHECKING:
    from tests.helpers.postgres import PostgresServer

pytest_plugins = ["tests.helpers.postgres"]

WAIT_S = 20.0


class Collected:
    def __init__(self) -> None:
        self.entries: list[LogEntry] = []
        self._lock = threading.Lock()

    def __call__(self, page: Sequence[LogEntry]) -> None:
        with self._lock:
            self.entries.extend(page)

    def positions(self) -> list[int]:
        with self._lock:
            return [e.pos for e in self.entries]

    def wait_for(self, count: int) -> list[int]:
        deadline = time.monotonic() + WAIT_S
        while len(self.positions()) < count:
            assert time.monotonic() < deadline, f"{len(self.positions())} of {count}"
            time.sleep(0.02)
        return self.positions()


def append_once(writer: LogWriter, at: float, entries: object) -> int:
    """Appends, trying again after a failure as a node does: first asking whether the
    batch landed after all (its id is in the log), so it is never appended twice."""
    batch = uuid.uuid4()
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return writer.append(at, entries, batch).pos
        except StoreError:
            assert time.monotonic() < deadline
            with contextlib.suppress(StoreError):
                landed = writer.find(batch)
                if landed is not None:
                    return landed
            time.sleep(0.05)


def test_positions_become_visible_in_order_under_concurrent_appenders(pg_dsn: str) -> None:
    """A reader that only ever asks for what is above the last position it saw still
    sees every append: no position becomes visible after a higher one."""
    pg_store.migrate(pg_dsn)
    appended: list[int] = []
    done = threading.Event()
    seen: list[int] = []

    def appender(n: int) -> None:
        writer = LogWriter(pg_dsn, f"n{n}")
        for i in range(60):
            appended.append(writer.append(float(i), {"n": n, "i": i}).pos)
        writer.close()

    def reader() -> None:
        with psycopg.connect(pg_dsn, autocommit=True) as db:
            while True:
                finished = done.is_set()
                page = read_after(db, seen[-1] if seen else 0)
                seen.extend(e.pos for e in page)
                if finished and not page:
                    return

    threads = [threading.Thread(target=appender, args=(n,)) for n in range(4)]
    follower = threading.Thread(target=reader)
    follower.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    done.set()
    follower.join(WAIT_S)
    assert len(appended) == 240
    assert seen == sorted(appended)  # each once, in order, none skipped


def test_notify_carries_the_new_position_and_a_lost_append_is_found(pg_dsn: str) -> None:
    pg_store.migrate(pg_dsn)
    writer = LogWriter(pg_dsn, "n1")
    with psycopg.connect(pg_dsn, autocommit=True) as listener:
        listener.execute(f"LISTEN {CHANNEL}")
        entry = writer.append(5.0, [{"kind": "tick", "now": 5.0}])
        payloads = [n.payload for n in listener.notifies(timeout=WAIT_S, stop_after=1)]
    assert payloads == [str(entry.pos)]
    assert writer.find(entry.batch) == entry.pos
    assert writer.find(uuid.uuid4()) is None
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        (back,) = read_after(db, entry.pos - 1)
    assert back == entry
    writer.close()


def test_a_follower_catches_up_from_its_position_and_trim_keeps_the_rest(pg_dsn: str) -> None:
    pg_store.migrate(pg_dsn)
    writer = LogWriter(pg_dsn, "n1")
    positions = [writer.append(float(i), i).pos for i in range(30)]
    got = Collected()
    follower = LogFollower(pg_dsn, got, after=positions[9], poll_s=0.2)
    follower.start()
    try:
        assert got.wait_for(20) == positions[10:]
        assert [e.entries for e in got.entries] == list(range(10, 30))
    finally:
        follower.stop()
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        assert trim(db, positions[19]) == 20
        assert [e.pos for e in read_after(db, 0)] == positions[20:]
    writer.close()


def test_a_follower_gets_every_entry_once_across_a_postgres_restart(
    postgres: PostgresServer, pg_dsn: str
) -> None:
    pg_store.migrate(pg_dsn)
    writer = LogWriter(pg_dsn, "n1")
    got = Collected()
    follower = LogFollower(pg_dsn, got, poll_s=0.2, retry_s=0.1)
    follower.start()
    try:
        assert follower.connected.wait(WAIT_S)
        first = [writer.append(float(i), i).pos for i in range(25)]
        assert got.wait_for(25) == first
        postgres.kill9()  # notifications in flight are lost with the connections
        postgres.start()
        later = [append_once(writer, float(i), i) for i in range(25, 50)]
        assert got.wait_for(50) == first + later
        assert follower.reconnects >= 1
        time.sleep(0.3)  # a poll or two later: still each once
        assert got.positions() == first + later
    finally:
        follower.stop()
        writer.close()
