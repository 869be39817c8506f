"""Group commit with `store.synchronous = "full"` (issue 17): how many messages share a
commit (one fsync) as more senders are in flight.

For each sender count, a fresh chatd (`chatd-full`'s config, /metrics on) and the C
loadgen's fan-out to 100 clients, each sender with one message in flight. /metrics is
read every 0.2 s; over the measured phase (while messages grow) it gives commits per
second and messages per commit, next to the loadgen's acked messages/s and ack latency.

    .venv/bin/python -m bench.group_commit --senders 1,10,100 --duration 5
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import loadgen, servers

_SAMPLE = re.compile(
    r"^(chatd_messages_sent_total|chatd_store_commit_seconds_count)(?:\{[^}]*\})? (\S+)$", re.M
)


def scrape(port: int) -> tuple[float, float]:
    """(messages sent, commits) from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    sent = commits = 0.0
    for name, value in _SAMPLE.findall(text):
        if name == "chatd_messages_sent_total":
            sent += float(value)
        else:
            commits += float(value)
    return sent, commits


def one(senders: int, duration: float, clients: int) -> dict[str, float]:
    binary = loadgen.build()
    metrics_port = servers.free_port()
    overrides = {"store.synchronous": "full", "metrics.port": metrics_port}
    with (
        tempfile.TemporaryDirectory(prefix="bench-group-") as tmp,
        servers.chatd(overrides, Path(tmp)) as server,
    ):
        samples: list[tuple[float, float, float]] = []
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                samples.append((time.monotonic(), *scrape(metrics_port)))

        sampler = threading.Thread(target=sample)
        sampler.start()
        cmd = [str(binary), "--port", str(server.port), "--scenario", "fanout"]
        cmd += ["--clients", str(clients), "--senders", str(senders), "--inflight", "1"]
        cmd += ["--duration", str(duration), "--server-pid", str(server.pid)]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
        finally:
            done.set()
            sampler.join()
    result = json.loads(out.stdout)
    moving = [s for s in samples if s[1] > 0]
    # Drop the first and last samples of the phase (partial intervals, the drain).
    window = moving[1:-2] if len(moving) > 4 else moving
    (t0, sent0, commits0), (t1, sent1, commits1) = window[0], window[-1]
    commits = max(commits1 - commits0, 1.0)
    return {
        "senders": senders,
        "messages_per_s": (sent1 - sent0) / (t1 - t0),
        "commits_per_s": commits / (t1 - t0),
        "messages_per_commit": (sent1 - sent0) / commits,
        "ack_p50_ms": result["ack_ms"]["p50"],
        "ack_p99_ms": result["ack_ms"]["p99"],
        "server_cpu_pct": result["server_cpu_pct"],
        "other_cpu_pct": result["other_cpu_pct"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--senders", default="1,10,100")
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--duration", type=float, default=5)
    args = p.parse_args()
    print(
        "senders  msg/s   commits/s  msg/commit  ack p50 ms  ack p99 ms  server CPU %  other CPU %"
    )
    for senders in (int(s) for s in args.senders.split(",")):
        r = one(senders, args.duration, max(args.clients, senders))
        print(
            f"{senders:7d}  {r['messages_per_s']:6.0f}  {r['commits_per_s']:9.0f}  "
            f"{r['messages_per_commit']:10.1f}  {r['ack_p50_ms']:10.2f}  {r['ack_p99_ms']:10.2f}  "
            f"{r['server_cpu_pct']:12.0f}  {r['other_cpu_pct']:11.0f}"
        )


if __name__ == "__main__":
    main()
