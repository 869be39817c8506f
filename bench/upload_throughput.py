"""Upload throughput over loopback, and what an upload costs everyone else.

Starts chatd in a child process (as deployed: its own interpreter, uvloop if present),
uploads a random file as base64 lines and times from the first byte sent to the `OK`;
meanwhile a second client pings in a loop and the slowest round trip is reported (the
event loop's stall as another user sees it). Also times the download of the same file.

    .venv/bin/python bench/upload_throughput.py [--size 5242880] [--line 76] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lines(data: bytes, width: int) -> bytes:
    b64 = base64.b64encode(data)
    return b"".join(b64[i : i + width] + b"\n" for i in range(0, len(b64), width))


async def _login(port: int, name: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
    await reader.readline()
    writer.write(f"login {name}\n".encode())
    await reader.readline()
    return reader, writer


async def _pinger(port: int, stop: asyncio.Event, worst: list[float]) -> None:
    reader, writer = await _login(port, "pinger")
    while not stop.is_set():
        t = time.perf_counter()
        writer.write(b"ping\n")
        await reader.readline()
        worst.append(time.perf_counter() - t)
    writer.close()


async def _run(port: int, size: int, width: int) -> tuple[float, float, float]:
    data = os.urandom(size)
    payload = b"upload bob bench.bin\n" + _lines(data, width) + b".\n"
    _, _bob = await _login(port, "bob")
    reader, writer = await _login(port, "alice")
    stop = asyncio.Event()
    rtts: list[float] = []
    pinger = asyncio.ensure_future(_pinger(port, stop, rtts))
    await asyncio.sleep(0.2)
    rtts.clear()
    t = time.perf_counter()
    writer.write(payload)
    reply = await reader.readline()
    upload_s = time.perf_counter() - t
    stop.set()
    await pinger
    assert reply.startswith(b"OK sent"), reply
    file_id = reply.split()[4].decode()
    t = time.perf_counter()
    writer.write(f"download {file_id}\n".encode())
    await reader.readuntil(b"\n.\n")
    download_s = time.perf_counter() - t
    writer.close()
    return upload_s, download_s, max(rtts, default=0.0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=5 * 1024 * 1024)
    ap.add_argument("--line", type=int, default=76, help="base64 characters per line")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "run_server.py"), "--port", str(port),
             "--data-dir", tmp, "--log-level", "warning"],
            cwd=tmp,
        )  # fmt: skip
        try:
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            for run in range(args.runs):
                up, down, worst = asyncio.run(_run(port, args.size, args.line))
                mb = args.size / 1e6
                sys.stdout.write(
                    f"run {run + 1}: upload {mb / up:6.1f} MB/s ({up * 1000:.0f} ms), "
                    f"download {mb / down:6.1f} MB/s ({down * 1000:.0f} ms), "
                    f"slowest ping during upload {worst * 1000:.1f} ms\n"
                )
        finally:
            proc.terminate()
            proc.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
