"""Node liveness from PostgreSQL: a node's presence lock, seen from another connection,
gone the moment the node's connection is."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psycopg
import pytest

from chatd.cluster.nodes import NodePresence, gone, node_key
from chatd.store.base import StoreError

pytest_plugins = ["tests.helpers.postgres"]

HOLD = """
import sys, time
from chatd.cluster.nodes import NodePresence
presence = NodePresence(sys.argv[1], sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


def wait_gone(checker: psycopg.Connection[tuple[object, ...]], node: str) -> float:
    """Seconds until `node` is seen gone (its backend exits just after the socket)."""
    started = time.monotonic()
    while gone(checker, [node]) != [node]:
        assert time.monotonic() - started < 10, f"{node} still alive"
        time.sleep(0.01)
    return time.monotonic() - started


def test_a_live_node_is_seen_and_a_closed_one_is_gone(pg_dsn: str) -> None:
    n1 = NodePresence(pg_dsn, "n1")
    n2 = NodePresence(pg_dsn, "n2")
    with psycopg.connect(pg_dsn, autocommit=True) as checker:
        assert gone(checker, ["n1", "n2", "n3"]) == ["n3"]
        assert gone(checker, ["n1", "n2", "n3"]) == ["n3"]  # asking takes nothing away
        with pytest.raises(StoreError, match="in use by a live node"):
            NodePresence(pg_dsn, "n1")
        n1.close()
        assert wait_gone(checker, "n1") < 1.0
        assert gone(checker, ["n1", "n2"]) == ["n1"]
    assert n2.alive
    n2.close()
    assert not n2.alive


def test_a_node_killed_with_sigkill_is_gone_at_once(pg_dsn: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, pg_dsn, "victim"],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    try:
        assert child.stdout is not None and child.stdout.readline() == b"held\n"
        with psycopg.connect(pg_dsn, autocommit=True) as checker:
            assert gone(checker, ["victim"]) == []
            child.send_signal(signal.SIGKILL)
            child.wait(10)
            assert wait_gone(checker, "victim") < 1.0
    finally:
        child.kill()
        child.wait(10)


def test_node_keys_are_stable_and_distinct() -> None:
    assert node_key("n1") == node_key("n1") != node_key("n2")
    assert all(-(1 << 63) <= node_key(f"n{i}") < 1 << 63 for i in range(100))
