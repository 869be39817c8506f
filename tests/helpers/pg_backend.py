"""Opt-in: the whole end-to-end suite with every daemon on PostgreSQL.

    .venv/bin/python -m pytest -p tests.helpers.pg_backend tests/e2e

Every `start_server` daemon gets `[store] backend = "postgres"` and a fresh database
(per data directory, so a restart finds its data) on one PostgreSQL for the run
(tests/helpers/postgres.py). Two tests open the SQLite file directly and fail by
design (test_hostile_schedules' 30,000 schedules, test_login's scrypt hashes); every
other e2e test passed this way when the store was built (docs/cluster.md).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

import tests.conftest
import tests.helpers.server
from chatd.config import Config
from chatd.store import postgres
from tests.helpers.postgres import PostgresServer, start_postgres

_SERVER = pytest.StashKey[PostgresServer]()


def pytest_configure(config: pytest.Config) -> None:
    plain = tests.helpers.server.config_with
    databases: dict[str, str] = {}

    def on_postgres(data_dir: Path, **settings: object) -> Config:
        server = config.stash.get(_SERVER, None)
        if server is None:
            server = config.stash[_SERVER] = start_postgres()
        dsn = databases.get(str(data_dir))
        if dsn is None:
            dsn = databases[str(data_dir)] = server.create_database()
            postgres.migrate(dsn)
        settings.setdefault("store__backend", "postgres")
        settings.setdefault("store__dsn", dsn)
        return plain(data_dir, **settings)

    patched: Any = on_postgres
    tests.helpers.server.config_with = patched
    vars(tests.conftest)["config_with"] = patched  # conftest imported the name itself


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(_SERVER, None)
    if server is not None:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)
