"""Server CPU per message from a results file (issue 17): on a shared machine the
throughput of a run says how much CPU the server got; the CPU it spent per message
says what a message costs, and moves far less with the neighbours' load.

    .venv/bin/python -m bench.per_message bench/results/<file>.json [--vs chatd]

Per scenario and target: µs of server CPU (utime + stime, all threads) per acked
message (per message sent, i.e. two per round trip, in ping-pong; per login in the
login storm) in each run, the
median, and with `--vs T` the median's ratio to target T's in the same scenario.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any


def per_message_us(result: dict[str, Any]) -> float | None:
    """Server CPU µs per message of one run, None if the run has no messages."""
    cpu = result.get("server_cpu_s")
    phase = result.get("phase_s")
    if cpu is None or not phase:
        return None
    if "round_trips" in result:
        messages = 2 * float(result["round_trips"])
    elif "messages_per_s" in result:
        messages = float(result["messages_per_s"]) * float(phase)
    elif "all_ok_s" in result:  # the login storm: per login
        messages = float(result["ready"])
    else:
        return None
    return float(cpu) / messages * 1e6 if messages else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results", type=Path)
    p.add_argument("--vs", help="target to compare the medians with")
    args = p.parse_args()
    data = json.loads(args.results.read_text())
    runs: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for run in data["runs"]:
        result = run.get("result") or {}
        us = per_message_us(result)
        if us is not None:
            runs[run["scenario"], run["target"]].append((us, result.get("other_cpu_pct", 0.0)))
    medians = {key: statistics.median(us for us, _ in values) for key, values in runs.items()}
    print(f"{'scenario':12} {'target':16} {'µs CPU/message per run (other CPU %)':44} median")
    for (scenario, target), values in sorted(runs.items()):
        each = ", ".join(f"{us:.1f} ({other:.0f}%)" for us, other in values)
        median = medians[scenario, target]
        line = f"{scenario:12} {target:16} {each:44} {median:6.1f}"
        base = medians.get((scenario, args.vs)) if args.vs else None
        if base:
            line += f"  {median / base - 1:+.0%} vs {args.vs}"
        print(line)


if __name__ == "__main__":
    main()
