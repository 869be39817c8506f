"""`python -m bench run …`: runs scenarios against targets, prints a table, writes JSON."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import loadgen, pygen, scenarios, servers
from bench.scenarios import Scenario

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SCENARIOS = "fanout100,fanout1000,latency,idle,logins,pingpong"
Generator = Callable[[servers.Running, Scenario], tuple[dict[str, Any], str]]


def raise_nofile(need: int) -> None:
    """Raises RLIMIT_NOFILE (inherited by the servers and the loadgen) to cover `need`."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(max(need, soft), hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < need:
        raise SystemExit(f"bench: need {need} open files, the hard limit is {hard}")


def pick_generator(name: str) -> tuple[str, Generator]:
    """The C loadgen (built now), or the Python fallback; "auto" prefers C."""
    if name == "python":
        return "python", pygen.run
    try:
        loadgen.build()
    except loadgen.GeneratorUnavailable:
        if name == "c":
            raise
        print("bench: no C compiler, using the Python generator (fanout only)", file=sys.stderr)
        return "python", pygen.run
    return "c", loadgen.run


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            check=False,
            capture_output=True,
            cwd=servers.ROOT,
            timeout=10,
        )
    except OSError:
        return "unknown"
    return out.stdout.decode().strip() or "unknown"


def host_info() -> dict[str, Any]:
    """CPU, kernel, Python: enough to tell machines apart in a results file."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model
            )
    except OSError:
        pass
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
    }


def host_busy_pct(interval: float = 0.3) -> float:
    """Share of all CPUs busy (not idle or iowait) over `interval` s, from /proc/stat."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:9]]
        return sum(ticks) - ticks[3] - ticks[4], sum(ticks)

    busy0, total0 = sample()
    time.sleep(interval)
    busy1, total1 = sample()
    return 100 * (busy1 - busy0) / max(1, total1 - total0)


def wait_quiet(limit_s: float, threshold_pct: float = 10.0) -> float:
    """Waits up to `limit_s` for the machine to be quiet; returns the last busy %."""
    deadline = time.monotonic() + limit_s
    busy = host_busy_pct()
    while busy > threshold_pct and time.monotonic() < deadline:
        busy = host_busy_pct()
    return round(busy, 1)


def _log_tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def run_one(
    target: str, scenario: Scenario, run: int, gen: Generator, quiet_s: float
) -> dict[str, Any]:
    """One fresh server, one loadgen run; failures are recorded, not raised.

    Before it, waits up to `quiet_s` for other processes to leave the CPUs alone and
    records how busy the machine was (`host_busy_before_pct`).
    """
    record: dict[str, Any] = {
        "target": target,
        "scenario": scenario.name,
        "kind": scenario.kind,
        "params": scenario.params,
        "run": run,
        "complete": False,
        "result": None,
        "error": None,
        "host_busy_before_pct": wait_quiet(quiet_s),
    }
    t0 = time.monotonic()
    try:
        with servers.start(target) as server:
            result, stderr = gen(server, scenario)
            record["result"] = result
            record["complete"] = bool(result.get("complete"))
            if not record["complete"]:
                record["error"] = "incomplete: " + (stderr or "see result")
                record["server_log_tail"] = _log_tail(server.log)
            elif stderr:
                record["stderr"] = stderr
    except (servers.ServerError, pygen.Unsupported, RuntimeError, OSError) as e:
        record["error"] = str(e)
    except subprocess.TimeoutExpired as e:
        record["error"] = f"loadgen killed after {e.timeout:.0f} s"
    record["wall_s"] = round(time.monotonic() - t0, 3)
    return record


def summarize(
    records: Sequence[dict[str, Any]], chosen: Sequence[Scenario], targets: Sequence[str]
) -> dict[str, Any]:
    """min/median/max per target, scenario and metric over complete runs.

    When no run of a pair completed, the incomplete ones are summarized and flagged.
    """
    summary: dict[str, Any] = {}
    for target in targets:
        for sc in chosen:
            mine = [r for r in records if r["target"] == target and r["scenario"] == sc.name]
            done = [r for r in mine if r["complete"]]
            use = done or [r for r in mine if r["result"] is not None]
            metrics: dict[str, Any] = {}
            for m in sc.metrics:
                values = [
                    v for r in use if (v := scenarios.lookup(r["result"], m.path)) is not None
                ]
                if values:
                    metrics[m.path] = {
                        "label": m.label,
                        "min": min(values),
                        "median": statistics.median(values),
                        "max": max(values),
                    }
            summary.setdefault(target, {})[sc.name] = {
                "runs": len(mine),
                "complete": len(done),
                "incomplete_only": not done and bool(use),
                "metrics": metrics,
            }
    return summary


def fmt(x: float) -> str:
    """A number in at most ~6 characters: 4.61M, 312k, 25.3, 0.042."""
    a = abs(x)
    if a >= 1e6:
        return f"{x / 1e6:.2f}M"
    if a >= 1e4:
        return f"{x / 1e3:.0f}k"
    if a >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.3g}"


def table(summary: dict[str, Any], chosen: Sequence[Scenario], targets: Sequence[str]) -> str:
    """The results as text: one row per scenario metric, `min / median / max` per target."""
    head = ["scenario", "metric", *[f"{t} (min / median / max)" for t in targets]]
    rows: list[list[str]] = []
    for sc in chosen:
        for i, m in enumerate(sc.metrics):
            row = [sc.name if i == 0 else "", m.label]
            for t in targets:
                s = summary[t][sc.name]
                v = s["metrics"].get(m.path)
                if v is None:
                    row.append("failed" if i == 0 and s["runs"] else "-")
                    continue
                cell = " / ".join(fmt(v[k]) for k in ("min", "median", "max"))
                if s["incomplete_only"]:
                    cell += " !"
                elif i == 0 and s["complete"] < s["runs"]:
                    cell += f" ({s['complete']} of {s['runs']} runs)"
                row.append(cell)
            rows.append(row)
    widths = [max(len(r[c]) for r in [head, *rows]) for c in range(len(head))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in [head, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if any(summary[t][sc.name]["incomplete_only"] for t in targets for sc in chosen):
        lines.append("! no run completed (not every client logged in); incomplete runs shown")
    return "\n".join(lines)


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def _progress(record: dict[str, Any], sc: Scenario, runs: int) -> str:
    head = f"[run {record['run']}/{runs}] {sc.name:<11} {record['target']:<11}"
    if record["result"] is None:
        return f"{head} ERROR {record['error'].strip().splitlines()[-1]} (details in the JSON)"
    shown = []
    for m in sc.metrics[:3]:
        v = scenarios.lookup(record["result"], m.path)
        if v is not None:
            shown.append(f"{m.label} {fmt(v)}")
    status = "" if record["complete"] else "  INCOMPLETE"
    return f"{head} {', '.join(shown)}  ({record['wall_s']:.1f} s){status}"


def run_benchmark(
    chosen: Sequence[Scenario],
    targets: Sequence[str],
    runs: int,
    generator: str,
    out: Path,
    *,
    quiet_s: float = 0.0,
) -> tuple[dict[str, Any], Path]:
    """Every run of every scenario on every target, interleaved; returns the doc and its file.

    The JSON file is rewritten after each run, so an interrupted benchmark keeps its data.
    """
    raise_nofile(max(sc.connections for sc in chosen) + 1024)
    gen_name, gen = pick_generator(generator)
    started = dt.datetime.now(dt.UTC)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{started:%Y%m%dT%H%M%SZ}.json"
    doc: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": None,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "generator": gen_name,
        "commit": _git_commit(),
        "host": host_info(),
        "targets": {t: _describe(t) for t in targets},
        "scenarios": {sc.name: {"kind": sc.kind, "params": sc.params} for sc in chosen},
        "runs": [],
        "summary": {},
    }
    for run in range(1, runs + 1):
        for sc in chosen:
            for target in targets:
                record = run_one(target, sc, run, gen, quiet_s)
                doc["runs"].append(record)
                print(_progress(record, sc, runs), flush=True)
                _write_json(path, doc)
    doc["summary"] = summarize(doc["runs"], chosen, targets)
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    _write_json(path, doc)
    return doc, path


def _describe(target: str) -> dict[str, Any]:
    if target in servers.VERSIONS:
        try:
            version = servers.VERSIONS[target]()
        except (servers.ServerError, OSError, subprocess.TimeoutExpired) as e:
            version = f"unavailable: {e}"
        return {"kind": target, "version": version}
    return {"kind": "chatd", "config": servers.chatd_config(servers.TARGETS[target])}


def _parse_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["cluster"]:  # several nodes on PostgreSQL: its own options
        from bench import cluster

        return cluster.main(args_in[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("cluster", help="1, 2, 3 nodes on PostgreSQL (bench/cluster.py)")
    run = sub.add_parser("run", help="run scenarios against targets")
    run.add_argument(
        "--scenarios",
        default=DEFAULT_SCENARIOS,
        help="comma-separated; each NAME or NAME:key=value:key=value "
        f"(default {DEFAULT_SCENARIOS})",
    )
    run.add_argument(
        "--targets",
        default="chatd,ngircd",
        help=f"comma-separated, of {', '.join(servers.ALL_TARGETS)} (default chatd,ngircd)",
    )
    run.add_argument("--runs", type=int, default=3, help="runs per scenario and target")
    run.add_argument("--duration", type=float, help="seconds of every timed phase (default 10)")
    run.add_argument("--generator", choices=("auto", "c", "python"), default="auto")
    run.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON file")
    run.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each run, wait up to this long until the CPUs are < 10%% busy",
    )
    sub.add_parser("list", help="show scenarios, their parameters and the targets")
    args = parser.parse_args(argv)

    if args.command == "list":
        for sc in scenarios.SCENARIOS.values():
            params = ":".join(f"{k}={v:g}" for k, v in sc.params.items())
            print(f"{sc.name:<11} {sc.kind:<9} {params}")
        print(f"targets: {', '.join(servers.ALL_TARGETS)}")
        return 0

    try:
        chosen = [scenarios.parse(s) for s in _parse_list(args.scenarios)]
        if args.duration is not None:
            chosen = [
                sc.with_overrides({"duration": args.duration}) if "duration" in sc.params else sc
                for sc in chosen
            ]
    except ValueError as e:
        parser.error(str(e))
    targets = _parse_list(args.targets)
    unknown = [t for t in targets if t not in servers.ALL_TARGETS]
    if unknown or not targets or not chosen or args.runs < 1:
        parser.error(
            f"bad --targets/--scenarios/--runs (targets: {', '.join(servers.ALL_TARGETS)})"
        )
    doc, path = run_benchmark(
        chosen, targets, args.runs, args.generator, args.out, quiet_s=args.wait_quiet
    )
    print()
    print(table(doc["summary"], chosen, targets))
    print(f"\nresults: {path}")
    return 0 if all(r["complete"] for r in doc["runs"]) else 1
