"""The benchmark tools (bench/) run against chatd and count right. Nothing is timed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench import cli, loadgen

DOC_KEYS = {"schema", "started", "finished", "generator", "host", "targets", "runs", "summary"}
COMMON_KEYS = {"complete", "clients", "ready", "setup_s", "server_cpu_pct", "gen_cpu_pct"}
FANOUT_KEYS = {
    "deliveries",
    "deliveries_per_s",
    "deliveries_total",
    "expected_deliveries",
    "messages_acked",
    "lost",
    "latency_ms",
    "ack_ms",
}
TINY = {
    "fanout100": "fanout100:clients=5:senders=1:duration=1",
    "latency": "latency:clients=5:senders=2:rate=50:duration=1",
    "idle": "idle:clients=20",
    "logins": "logins:clients=20",
    "pingpong": "pingpong:pairs=2:duration=1",
}


@pytest.fixture
def c_generator() -> None:
    try:
        loadgen.build()
    except loadgen.GeneratorUnavailable as e:
        pytest.skip(f"C load generator not buildable, the Python fallback is tested: {e}")


def run_bench(tmp_path: Path, scenarios: list[str], generator: str) -> dict[str, Any]:
    argv = ["run", "--scenarios", ",".join(scenarios), "--targets", "chatd", "--runs", "1"]
    code = cli.main([*argv, "--generator", generator, "--out", str(tmp_path)])
    [path] = tmp_path.glob("*.json")
    doc: dict[str, Any] = json.loads(path.read_text())
    assert doc.keys() >= DOC_KEYS
    assert doc["generator"] == generator
    for record in doc["runs"]:
        assert record["error"] is None, record["error"]
        assert record["complete"]
        assert record["result"].keys() >= COMMON_KEYS
    assert code == 0
    return doc


def check_fanout(result: dict[str, Any], clients: int) -> None:
    assert result.keys() >= FANOUT_KEYS
    assert result["deliveries_total"] > 0
    assert result["lost"] == 0
    # one sender: every other client gets each acked message exactly once
    assert result["deliveries_total"] == result["messages_acked"] * (clients - 1)
    assert {"n", "p50", "p99", "max"} <= result["latency_ms"].keys()


def test_python_generator_fanout(tmp_path: Path) -> None:
    doc = run_bench(tmp_path, [TINY["fanout100"]], "python")
    [record] = doc["runs"]
    check_fanout(record["result"], clients=5)
    summary = doc["summary"]["chatd"]["fanout100"]
    assert summary["complete"] == 1
    assert {"min", "median", "max"} <= summary["metrics"]["deliveries_per_s"].keys()


@pytest.mark.usefixtures("c_generator")
def test_c_generator_all_scenarios(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_bench(tmp_path, list(TINY.values()), "c")
    results = {r["scenario"]: r["result"] for r in doc["runs"]}
    assert results.keys() == TINY.keys()
    check_fanout(results["fanout100"], clients=5)

    latency = results["latency"]
    assert latency["lost"] == 0
    assert latency["deliveries_total"] == latency["expected_deliveries"] > 0

    idle = results["idle"]
    assert idle["ready"] == 20
    assert idle["rss_after_kib"] > 0
    assert "rss_per_conn_kib" in idle

    logins = results["logins"]
    assert logins["ready"] == 20
    assert logins["login_ms"]["n"] == 20
    assert logins["all_ok_s"] > 0

    pingpong = results["pingpong"]
    assert pingpong["round_trips"] > 0
    assert pingpong["lost"] == 0

    out = capsys.readouterr().out
    assert "deliveries/s" in out
    assert "min / median / max" in out
