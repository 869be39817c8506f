"""Which store a daemon uses: `[store] backend` (docs/cluster.md)."""

from __future__ import annotations

from collections.abc import Callable

from chatd.config import Config
from chatd.store.base import Store


def open_store(config: Config, on_standby: Callable[[str], None] | None = None) -> Store:
    """The configured store, opened (StoreError if it cannot be). The PostgreSQL driver
    is imported only when that backend is chosen. `on_standby` hears, while another
    node holds PostgreSQL's lease, where that node takes passed-on connections."""
    store = config.store
    if store.backend == "postgres":
        from chatd.store.postgres import PostgresStore

        return PostgresStore(
            store.dsn,
            synchronous=store.synchronous,
            timeout=store.connect_timeout_s,
            node_id=config.cluster.node_id,
            advertise=cluster_address(config),
            on_standby=on_standby,
        )
    from chatd.store.sqlite import SqliteStore

    return SqliteStore(config.server.data_dir, synchronous=store.synchronous)


def cluster_address(config: Config) -> str:
    """`host:port` where this node takes connections passed on by the others, "" when
    `[cluster] port` is 0."""
    cluster = config.cluster
    if not cluster.port:
        return ""
    host = cluster.advertise or cluster.host
    return f"[{host}]:{cluster.port}" if ":" in host else f"{host}:{cluster.port}"
