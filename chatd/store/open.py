"""Which store a daemon uses: `[store] backend` (docs/cluster.md)."""

from __future__ import annotations

from chatd.config import Config
from chatd.store.base import Store


def open_store(config: Config) -> Store:
    """The configured store, opened (StoreError if it cannot be). The PostgreSQL driver
    is imported only when that backend is chosen."""
    store = config.store
    if store.backend == "postgres":
        from chatd.store.postgres import PostgresStore

        return PostgresStore(
            store.dsn,
            synchronous=store.synchronous,
            timeout=store.connect_timeout_s,
            node_id=config.cluster.node_id,
        )
    from chatd.store.sqlite import SqliteStore

    return SqliteStore(config.server.data_dir, synchronous=store.synchronous)
