"""Several chatd nodes on one PostgreSQL (docs/cluster.md): the ordered log."""
