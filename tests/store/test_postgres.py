"""The PostgreSQL store against a real PostgreSQL: the same state as the memory and
SQLite stores after every change type, one transaction per batch, versioned schema,
reads from other threads during commits, and durability across kill -9 of PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest

from chatd import cli
from chatd.config import Config
from chatd.core import outcome as o
from chatd.core.snapshot import Snapshot
from chatd.protocol.events import FileInfo, Message
from chatd.store import postgres
from chatd.store.base import StoreError
from chatd.store.memory import MemoryStore
from chatd.store.open import open_store
from chatd.store.postgres import MIGRATIONS, PostgresStore
from chatd.store.sqlite import SqliteStore

if TYPE_CHECKING:
    from tests.helpers.postgres import CuttingRelay, PostgresServer

pytest_plugins = ["tests.helpers.postgres"]

FILE = FileInfo(1, "cat.png", 10, "ab" * 32)

#: Every change type, in an order that exercises replacing and deleting in one batch.
CHANGES: list[o.Change] = [
    o.PutAccount("alice", "Alice", "scrypt$x", 1.0),
    o.PutAccount("bob", "bob", None, 2.0),
    o.PutAccount("carol", "carol", None, 2.5, cursor=7),
    o.PutAccount("bob", "Bob", "scrypt$b", 9.0),  # an update: name and password only
    o.SetCursor("alice", 3),
    o.SetCursor("alice", 2),  # cursors never move back
    o.PutFile(1, "ab" * 32, "cat.png", 10, "alice", 3.0),
    o.PutFile(2, "cd" * 32, "gone.txt", 3, "bob", 3.5),
    o.DeleteFile(2),
    o.PutMessage(Message(1, "#general", "Alice", "hi", 3.0)),
    o.PutMessage(Message(2, "@alice|bob", "Alice", "psst", 4.0, to="bob")),
    o.PutMessage(Message(3, "#general", "bob", "", 5.0, reply_to=1, file=FILE)),
    o.SetBan("bob", 99.0),
    o.SetStrikes("bob", (("alice", 5.0), ("carol", 5.5))),
    o.PutRoom("#dev", "dev", "alice", 6.0),
    o.PutRoom("#dev", "Dev", "alice", 6.0),  # replaced
    o.PutRoom("#old", "old", "bob", 6.0),
    o.DeleteRoom("#old"),
    o.PutMember("#dev", "alice", 6.0),
    o.PutMember("#dev", "bob", 6.5),
    o.DeleteMember("#dev", "bob"),
    o.PutLink("tok", "#dev", 100.0),
    o.PutLink("tok2", "#dev", 100.0),
    o.PutLink("tok3", "#dev", 100.0),
    o.DeleteLinks("#dev", "tok2"),
    o.PutJoinRequest("#dev", "bob", 7.0),
    o.PutJoinRequest("#dev", "carol", 7.0),
    o.DeleteJoinRequest("#dev", "carol"),
    o.PutInvite("#dev", "bob", "alice", 7.0, 70.0),
    o.PutInvite("#dev", "carol", "alice", 7.0, 70.0),
    o.PutInvite("#dev", "carol", "alice", 7.5, 75.0),  # replaced
    o.PutInvite("#dev", "dave", "alice", 7.0, 70.0),
    o.DeleteInvite("#dev", "dave"),
    o.PutSchedule(4, "alice", 50.0, "send_all later", 7.0),
    o.PutSchedule(5, "bob", 40.0, "send_all sooner", 7.0),
    o.DeleteSchedule(5),
    o.PutToken("d1", "alice", 8.0, "tag1"),
    o.PutToken("d2", "bob", 8.0, "tag2"),
    o.PutToken("d3", "bob", 8.0, "tag2"),
    o.DeleteToken("d1"),
    o.PutMessage(Message(9, "#general", "Alice", "gone", 8.0)),
    o.DeleteMessages((9,)),
]


def comparable(snap: Snapshot) -> Snapshot:
    """Rows in a fixed order (each store lists unordered tables as it likes)."""
    return Snapshot(
        accounts=tuple(sorted(snap.accounts, key=lambda a: a.key)),
        messages=tuple(snap.messages),  # SQLite hands a generator
        recent=snap.recent,
        next_id=snap.next_id,
        rooms=tuple(sorted(snap.rooms, key=lambda r: r.key)),
        members=tuple(sorted(snap.members, key=lambda m: (m.room, m.user))),
        links=tuple(sorted(snap.links, key=lambda k: k.token)),
        requests=tuple(sorted(snap.requests, key=lambda r: (r.room, r.user))),
        schedules=snap.schedules,
        next_schedule_id=snap.next_schedule_id,
        files=tuple(sorted(snap.files, key=lambda f: f.id)),
        next_file_id=snap.next_file_id,
        invites=tuple(sorted(snap.invites, key=lambda i: (i.room, i.user))),
    )


def migrated(dsn: str) -> str:
    postgres.migrate(dsn)
    return dsn


def test_every_change_reloads_as_memory_and_sqlite_have_it(pg_dsn: str, tmp_path: Path) -> None:
    store = PostgresStore(migrated(pg_dsn))
    store.commit(CHANGES[:20])
    store.commit(CHANGES[20:])
    store.close()
    reopened = PostgresStore(pg_dsn)
    got = comparable(reopened.load(recent=2))
    mem, lite = MemoryStore(), SqliteStore(tmp_path)
    for other in (mem, lite):
        other.commit(CHANGES[:20])
        other.commit(CHANGES[20:])
    assert got == comparable(mem.load(recent=2)) == comparable(lite.load(recent=2))
    assert [m.id for m in got.messages] == [1, 2, 3]
    assert got.recent == (
        Message(2, "@alice|bob", "Alice", "psst", 4.0, to="bob"),
        Message(3, "#general", "bob", "", 5.0, reply_to=1, file=FILE),
    )
    assert (got.next_id, got.next_schedule_id, got.next_file_id) == (10, 6, 3)
    accounts = {a.key: a for a in got.accounts}
    assert accounts["alice"].cursor == 3 and accounts["carol"].cursor == 7
    assert (accounts["bob"].name, accounts["bob"].pw_hash) == ("Bob", "scrypt$b")
    assert accounts["bob"].strikes == (("alice", 5.0), ("carol", 5.5))
    assert [(i.user, i.ts, i.expires) for i in got.invites] == [
        ("bob", 7.0, 70.0),
        ("carol", 7.5, 75.0),
    ]
    assert sorted(reopened.load_tokens(), key=str) == sorted(mem.load_tokens(), key=str)
    reopened.commit([o.DeleteTokensOf("bob")])
    assert reopened.load_tokens() == ()
    lite.close()
    reopened.close()


def test_big_batches_reload_like_memory(pg_dsn: str) -> None:
    """Runs of hundreds of rows, plain and private messages interleaved, one account
    written twice in a batch, in one pipelined transaction."""
    changes: list[o.Change] = [o.PutAccount(f"u{i}", f"U{i}", None, float(i)) for i in range(300)]
    changes.append(o.PutAccount("u7", "Seven", "scrypt$y", 7.0))
    for i in range(1, 342):
        to = "u2" if i % 5 == 0 else None
        chat = "@u1|u2" if to else "#general"
        changes.append(o.PutMessage(Message(i, chat, "U1", f"m{i}", float(i), to=to)))
    store, mem = PostgresStore(migrated(pg_dsn)), MemoryStore()
    store.commit(changes)
    mem.commit(changes)
    got = store.load()
    assert tuple(got.messages) == tuple(mem.load().messages) and got.next_id == 342
    assert {a.key: a.name for a in got.accounts}["u7"] == "Seven"
    store.close()


def test_reads_by_id_from_threads_while_commits_run(pg_dsn: str) -> None:
    store = PostgresStore(migrated(pg_dsn))
    store.commit([o.PutFile(1, "ab" * 32, "cat.png", 10, "alice", 3.0)])
    store.commit([o.PutMessage(Message(1, "#general", "a", "one", 1.0, file=FILE))])
    errors: list[BaseException] = []
    seen: list[int] = []

    def reader() -> None:
        try:
            for _ in range(50):
                got = store.read([1, 2, 9999])
                assert got[0] == Message(1, "#general", "a", "one", 1.0, file=FILE)
                seen.append(len(got))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(2, 40):
        store.commit([o.PutMessage(Message(i, "#general", "a", f"m{i}", float(i)))])
    for t in threads:
        t.join(30)
    assert not errors and len(seen) == 150 and set(seen) <= {1, 2}
    assert [m.id for m in store.read([39, 3, 2])] == [2, 3, 39]
    assert store.read([]) == []
    store.close()


def test_a_failed_batch_rolls_back_whole(pg_dsn: str) -> None:
    store = PostgresStore(migrated(pg_dsn))
    store.commit([o.PutMessage(Message(1, "#general", "a", "one", 1.0))])
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute(
            "CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN IF NEW.id = 3 THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$"
        )
        db.execute(
            "CREATE TRIGGER no_three BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION boom()"
        )
    batch: list[o.Change] = [
        o.PutAccount("x", "x", None, 1.0),
        o.PutMessage(Message(2, "#general", "a", "two", 2.0)),
        o.PutMessage(Message(3, "#general", "a", "three", 3.0)),
    ]
    with pytest.raises(StoreError, match="boom"):
        store.commit(batch)
    snap = store.load()
    assert [m.id for m in snap.messages] == [1] and snap.accounts == ()
    store.commit([o.PutAccount("y", "y", None, 1.0)])  # the connection is usable again
    assert [a.key for a in store.load().accounts] == ["y"]
    store.close()


def test_a_batch_tried_again_after_an_unknown_outcome_is_harmless(pg_dsn: str) -> None:
    """The hub retries a batch whose COMMIT lost its connection; it may have landed."""
    store = PostgresStore(migrated(pg_dsn))
    store.commit(CHANGES)
    first = comparable(store.load())
    store.commit(CHANGES)
    assert comparable(store.load()) == first
    store.close()


def test_schema_is_created_by_migrate_and_checked_at_open(pg_dsn: str) -> None:
    with pytest.raises(
        StoreError,
        match=f"schema version 0, this chatd needs {len(MIGRATIONS)}: run `chatd migrate`",
    ):
        PostgresStore(pg_dsn)
    assert postgres.migrate(pg_dsn) == (0, len(MIGRATIONS))
    assert postgres.migrate(pg_dsn) == (len(MIGRATIONS), len(MIGRATIONS))  # idempotent
    assert postgres.check(pg_dsn).endswith(f"schema version {len(MIGRATIONS)}")
    with psycopg.connect(pg_dsn, autocommit=True) as db:
        db.execute("INSERT INTO chatd_schema VALUES (%s)", (len(MIGRATIONS) + 1,))
    with pytest.raises(StoreError, match="newer than this chatd"):
        PostgresStore(pg_dsn)
    with pytest.raises(StoreError, match="newer than this chatd"):
        postgres.migrate(pg_dsn)


def test_two_nodes_migrating_at_once_apply_each_step_once(pg_dsn: str) -> None:
    results: list[tuple[int, int]] = []
    threads = [
        threading.Thread(target=lambda: results.append(postgres.migrate(pg_dsn))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 4
    with psycopg.connect(pg_dsn) as db:
        rows = db.execute("SELECT version FROM chatd_schema ORDER BY version").fetchall()
    assert rows == [(v,) for v in range(1, len(MIGRATIONS) + 1)]


def test_an_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL"):
        PostgresStore("postgresql://postgres@127.0.0.1:1/nothing", timeout=1)


def test_open_store_follows_the_backend_setting(pg_dsn: str, tmp_path: Path) -> None:
    lite = open_store(Config().with_overrides({"server.data_dir": str(tmp_path)}))
    assert isinstance(lite, SqliteStore)
    lite.close()
    pg = open_store(
        Config().with_overrides({"store.backend": "postgres", "store.dsn": migrated(pg_dsn)})
    )
    assert isinstance(pg, PostgresStore)
    pg.close()


def test_a_committed_batch_survives_kill_9_of_postgres(
    postgres: PostgresServer, pg_dsn: str
) -> None:
    store = PostgresStore(migrated(pg_dsn))
    store.commit([o.PutAccount("a", "a", None, 1.0)])
    store.commit([o.PutMessage(Message(i, "#general", "a", f"m{i}", 1.0)) for i in range(1, 101)])
    postgres.kill9()  # right after the commits returned
    with pytest.raises(StoreError):
        store.commit([o.PutMessage(Message(101, "#general", "a", "lost", 1.0))])
    postgres.start()
    store.commit([o.PutMessage(Message(102, "#general", "a", "again", 1.0))])  # reconnects
    with psycopg.connect(pg_dsn) as db:
        ids = [i for (i,) in db.execute("SELECT id FROM messages ORDER BY id")]
    assert ids == [*range(1, 101), 102]
    with pytest.raises(StoreError):  # readers reconnect too: first the dead connection fails
        postgres.kill9()
        store.read([1])
    postgres.start()
    assert [m.text for m in store.read([1, 102])] == ["m1", "again"]
    store.close()


def _write_config(tmp_path: Path, dsn: str) -> Path:
    path = tmp_path / "chatd.toml"
    path.write_text(f'[store]\nbackend = "postgres"\ndsn = "{dsn}"\nconnect_timeout_s = 2\n')
    return path


def test_cli_migrate_and_check_config(
    pg_dsn: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write_config(tmp_path, pg_dsn)
    assert cli.main(["check-config", str(path)]) == 1
    assert "run `chatd migrate`" in capsys.readouterr().err
    assert cli.main(["--config", str(path), "migrate"]) == 0
    assert f"schema version 0 -> {len(MIGRATIONS)}" in capsys.readouterr().out
    assert cli.main(["migrate", "--config", str(path)]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert cli.main(["check-config", str(path)]) == 0
    assert "ok (PostgreSQL 15." in capsys.readouterr().out
    away = _write_config(tmp_path, "postgresql://postgres@127.0.0.1:1/nothing")
    assert cli.main(["check-config", str(away)]) == 1
    assert "cannot connect to PostgreSQL" in capsys.readouterr().err
    assert cli.main(["--data-dir", str(tmp_path / "d"), "migrate"]) == 0
    assert "SQLite" in capsys.readouterr().out
    assert cli.main(["--config", str(path), "backup", str(tmp_path / "copy")]) == 2
    assert "pg_dump" in capsys.readouterr().err


def test_one_writer_per_database_and_a_standby_takes_over(pg_dsn: str) -> None:
    """Until the cluster part is built, two live nodes on one database would hand out the
    same ids: the second waits for the first's connection to go (a standby)."""
    first = PostgresStore(migrated(pg_dsn), node_id="n1")
    # PostgreSQL probes the writer's connection, so a vanished machine lets go in ~25 s.
    assert first._db.execute("SHOW tcp_keepalives_idle").fetchone() == ("10",)
    with pytest.raises(StoreError, match=r"another chatd \(chatd n1 from 127\.0\.0\.1"):
        PostgresStore(pg_dsn, node_id="n2", wait_s=0.3)
    first.commit([o.PutMessage(Message(1, "#general", "a", "by n1", 1.0))])
    taken: list[PostgresStore] = []
    standby = threading.Thread(target=lambda: taken.append(PostgresStore(pg_dsn, wait_s=20)))
    standby.start()
    standby.join(0.5)
    assert not taken  # still waiting
    first.close()  # as when n1's process dies: PostgreSQL drops its connection and lease
    standby.join(20)
    second = taken[0]
    assert [m.text for m in second.read([1])] == ["by n1"]
    second.commit([o.PutMessage(Message(2, "#general", "a", "by n2", 2.0))])
    assert [m.id for m in second.load().messages] == [1, 2]
    second.close()


def commit_when_back(store: PostgresStore, changes: list[o.Change]) -> None:
    """Tries again, as the hub does, until PostgreSQL has let the cut session go."""
    deadline = time.monotonic() + 10
    while True:
        try:
            store.commit(changes)
            return
        except StoreError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_a_commit_cut_off_in_its_commit_is_settled_after_reconnecting(
    cutting_relay: CuttingRelay, pg_dsn: str
) -> None:
    """The network fails right after COMMIT went out: PostgreSQL committed, chatd heard
    nothing. Retried, the batch is not written twice; given up (its senders were told
    `unavailable`), it is taken back, so nothing refused ever appears."""
    relay = cutting_relay
    store = PostgresStore(relay.dsn(migrated(pg_dsn)))
    store.commit([o.PutAccount("a", "a", None, 1.0)])

    def batch(*ids: int) -> list[o.Change]:
        return [o.PutMessage(Message(i, "#general", "a", f"m{i}", 1.0)) for i in ids]

    relay.armed.set()
    with pytest.raises(StoreError, match="outcome unknown"):
        store.commit(batch(1, 2))
    commit_when_back(store, batch(1, 2))  # the hub's retry: it had landed
    relay.armed.set()
    with pytest.raises(StoreError, match="outcome unknown"):
        store.commit([*batch(3), o.PutSchedule(7, "a", 9.0, "send_all x", 1.0)])
    commit_when_back(store, batch(4))  # the hub gave 3 up and went on
    assert relay.cuts == 2
    with psycopg.connect(pg_dsn) as db:
        ids = [i for (i,) in db.execute("SELECT id FROM messages ORDER BY id")]
        schedules = db.execute("SELECT count(*) FROM schedules").fetchone()
    assert ids == [1, 2, 4] and schedules == (0,)
    store.close()
    assert PostgresStore(pg_dsn).load().next_id == 5  # 3 is not handed out again
