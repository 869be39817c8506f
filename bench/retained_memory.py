"""RSS against retained history (issue 13, item 3): a chatd process, then 50 MB of
private messages kept for a user who is offline, then a restart over them.

    .venv/bin/python -m bench.retained_memory --mb 50 [--text-bytes 4000] [--repo-dir DIR]

Prints the daemon's RSS (VmRSS) at start, after the messages were sent (all committed),
and after a restart with them stored. `--repo-dir` runs another checkout's chatd (for a
before/after comparison, e.g. a `git worktree` of an older commit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def _start(repo: Path, data: Path, port: int) -> subprocess.Popen[bytes]:
    config = Path(__file__).with_name("chatd-bench.toml")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(repo / "run_server.py"),
            "--config",
            str(config),
            "--port",
            str(port),
            "--data-dir",
            str(data),
        ],
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("chatd did not start")


async def _send(port: int, count: int, text: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await reader.readline()  # greeting
    writer.write(b"login alice\n")
    await reader.readline()
    writer.write(b"quit\n")
    await writer.drain()
    writer.close()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    await reader.readline()
    writer.write(b"login bob\n")
    await reader.readline()
    sent = 0
    while sent < count:
        batch = min(200, count - sent)
        writer.write(b"".join(f"send @alice {text}\n".encode() for _ in range(batch)))
        for _ in range(batch):
            line = await reader.readline()
            assert line.startswith(b"OK"), line
        sent += batch
    writer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mb", type=int, default=50)
    p.add_argument("--text-bytes", type=int, default=4000, help="size of each message")
    p.add_argument("--repo-dir", type=Path, default=Path(__file__).resolve().parent.parent)
    args = p.parse_args()
    text = "z" * args.text_bytes
    count = args.mb * 1_000_000 // len(text)
    with tempfile.TemporaryDirectory() as tmp:
        data, port = Path(tmp) / "data", _free_port()
        proc = _start(args.repo_dir, data, port)
        try:
            time.sleep(0.5)
            start = _rss_kb(proc.pid)
            asyncio.run(_send(port, count, text))
            time.sleep(0.5)
            loaded = _rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
        proc = _start(args.repo_dir, data, port)
        try:
            time.sleep(0.5)
            restarted = _rss_kb(proc.pid)
        finally:
            proc.terminate()
            proc.wait(10)
    print(
        f"{args.mb} MB in {count} messages of {len(text)} B kept for an offline user: "
        f"RSS at start {start / 1024:.1f} MB, after sending {loaded / 1024:.1f} MB "
        f"(+{(loaded - start) / 1024:.1f}), after a restart {restarted / 1024:.1f} MB"
    )


if __name__ == "__main__":
    main()
