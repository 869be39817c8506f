"""bench/cluster.py (issue 16) runs at a tiny size: one and two nodes on the session's
PostgreSQL, every client counted, the probe's messages all timed. Nothing is timed
here; it skips only where PostgreSQL (or a C compiler) is missing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from bench import cli, cluster, loadgen

if TYPE_CHECKING:
    from pathlib import Path

    from tests.helpers.postgres import PostgresServer

pytest_plugins = ["tests.helpers.postgres"]

TINY = cluster.Settings(
    nodes=(1, 2),
    runs=1,
    clients=8,
    senders=2,
    duration=0.5,
    probe_messages=10,
    probe_rate=200,
    background_clients=4,
    background_rate=40,
)


def test_the_cluster_bench_counts_every_delivery_on_one_and_two_nodes(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    try:
        loadgen.build()
    except loadgen.GeneratorUnavailable as e:
        pytest.skip(f"the C load generator cannot be built: {e}")
    doc, path = cluster.run_benchmark(TINY, tmp_path, pg=postgres)
    assert path is not None and json.loads(path.read_text())["summary"] == doc["summary"]
    assert [(r["nodes"], r["error"]) for r in doc["runs"]] == [(1, None), (2, None)]
    for record in doc["runs"]:
        fanout = record["fanout"]
        assert fanout["complete"] and fanout["ready"] == TINY.clients
        assert fanout["deliveries_total"] > 0 and fanout["lost"] == 0
        assert fanout["postgres_cpu_pct"] >= 0
        assert record["node_exit_codes"] == [None] * record["nodes"]  # alive to the end
        pairs = record["latency"]["pairs"]
        assert [p["pair"] for p in pairs] == [p.label for p in cluster.pairs_for(record["nodes"])]
        for p in pairs:
            assert (p["sent"], p["received"], p["lost"]) == (10, 10, 0), p
            assert 0 < p["p50_ms"] <= p["p99_ms"] <= p["max_ms"]
        assert record["latency"]["background"]["lost"] == 0
    assert postgres.proc is not None  # its backends are found for the CPU figure
    assert len(cluster.CpuSampler(postgres.proc.pid).groups()["postgres"]) > 1
    two = doc["runs"][1]["fanout"]
    assert len(two["server_cpu_pct_each"]) == 2  # the loadgen measured both nodes
    targets = doc["summary"]["targets"]
    assert set(targets) == {"two_vs_one", "cross_node_p99_added_ms"}
    assert len(targets["cross_node_p99_added_ms"]["per_pair"]) == 3
    text = cluster.table(doc["summary"], TINY)
    assert "| 2 nodes |" in text.splitlines()[0] and "other -> writer" in text


def test_the_cluster_bench_is_a_subcommand_of_python_m_bench(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["cluster", "--help"])
    assert done.value.code == 0
    assert "--probe-messages" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        cli.main(["cluster", "--nodes", "0"])
    assert bad.value.code == 2
