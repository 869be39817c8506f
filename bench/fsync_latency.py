"""fsync latency of the data directory's disk (issue 17): what a `synchronous = "full"`
group commit waits for. Appends `--size` bytes and fsyncs, `--count` times, as SQLite's
WAL does at each commit, and prints the distribution.

    .venv/bin/python -m bench.fsync_latency --dir /var/lib/chatd --count 500
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def measure(directory: str, count: int, size: int, *, data_only: bool) -> list[float]:
    """Seconds per write+fsync (or fdatasync) pair, `count` of them."""
    block = os.urandom(size)
    times: list[float] = []
    with tempfile.NamedTemporaryFile(dir=directory, prefix="fsync-probe-") as f:
        fd = f.fileno()
        sync = os.fdatasync if data_only else os.fsync
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, block)
            sync(fd)
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", default=tempfile.gettempdir(), help="a directory on the disk")
    p.add_argument("--count", type=int, default=500)
    p.add_argument("--size", type=int, default=4096 + 24, help="bytes per write (a WAL frame)")
    args = p.parse_args()
    for name, data_only in (("fsync", False), ("fdatasync", True)):
        ms = sorted(t * 1000 for t in measure(args.dir, args.count, args.size, data_only=data_only))
        q = statistics.quantiles(ms, n=100)
        print(
            f"{name:9} {args.count} x {args.size} B in {args.dir}: "
            f"p50 {q[49]:.3f} ms, p90 {q[89]:.3f} ms, p99 {q[98]:.3f} ms, "
            f"max {ms[-1]:.3f} ms, mean {statistics.fmean(ms):.3f} ms "
            f"(at most {1000 / statistics.fmean(ms):.0f} syncs/s)"
        )


if __name__ == "__main__":
    main()
