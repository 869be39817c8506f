"""The design's central property on the real core: nodes that apply the same ordered log
assign the same ids and decide every conflict the same way. First with entries made
by hand (the order is what is tested), then with three nodes appending at once to a
real PostgreSQL and each following the log into its own replica."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg

from chatd.cluster.log import LogEntry, LogFollower, LogWriter
from chatd.cluster.replica import Applied, Replica
from chatd.config import Config
from chatd.core.snapshot import Snapshot
from chatd.protocol.events import Error, Ok
from chatd.store import postgres as pg_store
from chatd.store.memory import MemoryStore

pytest_plugins = ["tests.helpers.postgres"]

WAIT_S = 30.0
CONFIG = Config().with_overrides({"limits.general_messages_per_window": 3})


def entry(pos: int, node: str, at: float, *items: dict[str, Any]) -> LogEntry:
    return LogEntry(pos, node, uuid.uuid4(), at, list(items))


def opened(n: int) -> dict[str, Any]:
    return {"session": n, "open": "127.0.0.1"}


def line(n: int, text: str) -> dict[str, Any]:
    return {"session": n, "line": text}


def replies(done: Sequence[Applied]) -> list[tuple[str, int, str]]:
    """What each item answered, comparable across nodes."""
    out = []
    for a in done:
        for r in a.outcome.replies:
            if isinstance(r, Error):
                out.append((a.node, a.session, f"ERR {r.code.value}"))
            elif isinstance(r, Ok):
                out.append((a.node, a.session, f"{type(r).__name__} {sorted(r.fields.items())}"))
    return out


def test_the_log_order_decides_a_name_race_and_the_hourly_limit_on_every_node() -> None:
    log = [
        entry(1, "a", 10.0, opened(1), line(1, "login alice")),
        entry(2, "b", 10.0, opened(1), line(1, "login alice"), opened(2), line(2, "login bob")),
        entry(3, "a", 11.0, line(1, "send_all one"), line(1, "send_all two")),
        entry(4, "b", 11.5, line(1, "send_all three"), line(1, "send_all four")),
        entry(5, "a", 12.0, line(1, "send bob hi")),
    ]
    nodes = [Replica(CONFIG, Snapshot()) for _ in range(2)]
    done = [[a for e in log for a in r.apply(e)] for r in nodes]
    assert replies(done[0]) == replies(done[1])
    answers = replies(done[0])
    # Node a's login came first: it created alice; node b's is a login to that account.
    assert "new', True" in answers[0][2] and "new', False" in answers[1][2]
    # The limit of 3 an hour counts alice's sends through both nodes: the 4th is refused.
    sends = [x for x in answers if x[2].startswith(("SendAllOk", "ERR"))]
    assert [x[2].split()[0] for x in sends] == ["SendAllOk"] * 3 + ["ERR"]
    assert sends[-1][:2] == ("b", 1) and "rate-limited" in sends[-1][2]
    # One order of ids on both nodes, and the same pushes.
    ids = [
        [
            r.fields["id"]
            for a in d
            for r in a.outcome.replies
            if isinstance(r, Ok) and "id" in r.fields
        ]
        for d in done
    ]
    assert ids[0] == ids[1] == [1, 2, 3, 4]
    assert nodes[0].apply(log[2]) == []  # an entry is applied once


def test_three_nodes_appending_at_once_build_the_same_chat(pg_dsn: str) -> None:
    """Each node appends its own sessions' commands to PostgreSQL while the others do,
    and follows the log into its own replica; at the end every replica answered every
    command alike and would store the same state. Three reporters on three nodes ban
    the target everywhere."""
    pg_store.migrate(pg_dsn)
    names = ["n1", "n2", "n3"]
    replicas = {n: Replica(CONFIG, Snapshot()) for n in names}
    stores = {n: MemoryStore() for n in names}
    applied: dict[str, list[Applied]] = {n: [] for n in names}
    lock = threading.Lock()

    def follower(node: str) -> LogFollower:
        def deliver(page: Sequence[LogEntry]) -> None:
            with lock:
                for e in page:
                    done = replicas[node].apply(e)
                    applied[node].extend(done)
                    stores[node].commit([c for a in done for c in a.outcome.changes])

        return LogFollower(pg_dsn, deliver, poll_s=0.2)

    followers = [follower(n) for n in names]
    for f in followers:
        f.start()
    writers = {n: LogWriter(pg_dsn, n) for n in names}
    # Everyone opens a session and logs in as the same "spammer" target's reporters.
    for i, n in enumerate(names):
        writers[n].append(1.0, [opened(1), line(1, f"login r{i}"), opened(2), line(2, "login x")])

    def traffic(node: str) -> None:
        for k in range(20):
            items = [line(1, f"send x {node}-{k}"), line(2, f"send r0 back {k}")]
            if k == 10:
                items.append(line(1, "ban x spam"))
            writers[node].append(2.0 + k, items)

    threads = [threading.Thread(target=traffic, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    with psycopg.connect(pg_dsn) as db:
        row = db.execute("SELECT max(pos) FROM log").fetchone()
    assert row is not None
    deadline = time.monotonic() + WAIT_S
    while any(r.position != row[0] for r in replicas.values()):
        assert time.monotonic() < deadline, [r.position for r in replicas.values()]
        time.sleep(0.05)
    time.sleep(0.5)  # a few polls more: nothing arrives twice
    for f in followers:
        f.stop()
    for w in writers.values():
        w.close()
    assert len({r.position for r in replicas.values()}) == 1
    first = replies(applied["n1"])
    assert replies(applied["n2"]) == first == replies(applied["n3"])
    assert len(first) == 6 + 3 * (20 * 2 + 1)  # logins, then sends and the three bans
    snaps = [stores[n].load() for n in names]
    assert snaps[0] == snaps[1] == snaps[2]
    banned = {a.key: a.banned_until for a in snaps[0].accounts}
    assert banned["x"] > 0 and banned["r0"] == 0
    # x was banned at the third complaint, wherever it came from: x's sends before that
    # entry went out, those after were refused, at the same place on every node.
    answers = [x[2].split()[0] for x in first if x[1] == 2 and x[2].startswith(("Sent", "ERR"))]
    assert answers == sorted(answers, key=lambda a: a == "ERR")  # oks, then refusals
    assert answers.count("SentOk") > 0 and answers.count("ERR") > 0
    assert all("banned" in x[2] for x in first if x[1] == 2 and x[2].startswith("ERR"))


def test_a_schedule_fires_once_at_the_first_tick_past_its_time_on_every_node() -> None:
    tick = {"tick": True}
    log = [
        entry(1, "a", 100.0, opened(1), line(1, "login alice")),
        entry(2, "a", 100.0, line(1, "schedule +30s send_all later")),
        entry(3, "b", 110.0, tick),  # not due yet
        entry(4, "a", 131.0, tick),  # due: fires here
        entry(5, "b", 131.5, tick),  # a second timekeeper's tick finds nothing due
    ]
    nodes = [Replica(CONFIG, Snapshot()) for _ in range(2)]
    fired = [
        [(e.pos, m.id, m.text) for e in log for a in r.apply(e) for m, _ in a.outcome.broadcasts]
        for r in nodes
    ]
    assert fired[0] == fired[1] == [(4, 1, "later")]
