"""Which nodes are alive, told by PostgreSQL itself (docs/cluster.md, "Node death").

A node holds a session-level advisory lock keyed by its node id on a connection of its
own for as long as it lives. PostgreSQL drops the lock with the connection: at once
when the node's process dies (its socket closes), after the TCP keepalives below when
its machine vanishes. Any node can then ask who is gone with `pg_try_advisory_lock`:
getting a node's lock means that node is gone (the lock is released again at once).
The timekeeper of the design asks this once a second and appends `node_gone` entries;
that part is designed only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import psycopg

from chatd.store.base import StoreError
from chatd.store.postgres import LEASE_KEEPALIVES, connect


def node_key(node_id: str) -> int:
    """The advisory-lock key of a node: 64 bits of its id's SHA-256, as a signed bigint
    (the classid PostgreSQL reports for it is never 0x6368..., the store's locks)."""
    raw = int.from_bytes(hashlib.sha256(f"chatd node {node_id}".encode()).digest()[:8], "big")
    return raw - (1 << 64) if raw >= 1 << 63 else raw


class NodePresence:
    """This node's proof of life, held until `close` (or the process's death)."""

    def __init__(self, dsn: str, node_id: str, *, timeout: float = 5.0) -> None:
        self.node_id = node_id
        self._db = connect(dsn, timeout=timeout, autocommit=True, name=f"chatd {node_id} alive")
        try:
            for setting in LEASE_KEEPALIVES:
                self._db.execute(f"SET {setting}")
            row = self._db.execute(
                "SELECT pg_try_advisory_lock(%s)", (node_key(node_id),)
            ).fetchone()
        except psycopg.Error as e:
            self._db.close()
            raise StoreError(f"PostgreSQL: {' '.join(str(e).split())}") from e
        if row is None or not row[0]:
            self._db.close()
            raise StoreError(f"node id {node_id!r} is in use by a live node: give each its own")

    @property
    def alive(self) -> bool:
        """False once the connection (and with it the lock) is gone."""
        return not (self._db.closed or self._db.broken)

    def close(self) -> None:
        self._db.close()


def gone(db: psycopg.Connection[Any], nodes: Iterable[str]) -> list[str]:
    """The nodes among `nodes` that hold no presence lock (dead, or never started).
    `db` must not be a presence connection (a session re-takes its own locks)."""
    dead = []
    for node in nodes:
        key = node_key(node)
        row = db.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row is not None and row[0]:
            db.execute("SELECT pg_advisory_unlock(%s)", (key,))
            dead.append(node)
    return dead
