"""Pure-Python fallback of the fanout scenario against chatd, for machines without `cc`.

One asyncio process; it gives the same JSON keys as loadgen.c's fanout so the runner and
the smoke test work everywhere, but it is far slower than chatd: never a measurement.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from bench.scenarios import Scenario
from bench.servers import HOST, Running

MARK = b"~BENCH~ "


class Unsupported(RuntimeError):
    """The fallback only runs the fanout scenario against chatd."""


def server_cpu_s(pid: int) -> float:
    """utime+stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s() -> float:
    """utime+stime of this process."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def percentiles(ns: list[int]) -> dict[str, float]:
    """n, p50, p99, max in ms, like loadgen.c's histograms."""
    if not ns:
        return {"n": 0, "p50": 0.0, "p99": 0.0, "max": 0.0}
    s = sorted(ns)

    def at(p: float) -> float:
        return s[min(len(s) - 1, int(p / 100 * len(s)))] / 1e6

    return {"n": len(s), "p50": at(50), "p99": at(99), "max": s[-1] / 1e6}


@dataclass
class _Client:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    acked: int = 0
    errors: int = 0
    deliveries: int = 0
    pending: deque[int] = field(default_factory=deque)
    acks: asyncio.Event = field(default_factory=asyncio.Event)


class _Fanout:
    def __init__(self, scenario: Scenario) -> None:
        p = scenario.params
        self.n = int(p["clients"])
        self.senders = min(int(p["senders"]), self.n)
        self.inflight = int(p["inflight"])
        self.duration = float(p["duration"])
        self.clients: list[_Client] = []
        self.measuring = False
        self.in_window = 0
        self.acked_window = 0
        self.latency: list[int] = []
        self.ack_latency: list[int] = []
        self.last_rx = time.monotonic()

    async def login(self, port: int, i: int) -> _Client:
        reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
        greeting = await reader.readline()
        if not greeting.startswith(b"* "):
            raise RuntimeError(f"unexpected greeting {greeting!r}")
        writer.write(f"login u{i}\n".encode())
        reply = await reader.readline()
        if not reply.startswith(b"OK"):
            raise RuntimeError(f"login u{i}: {reply!r}")
        return _Client(reader, writer)

    async def read(self, c: _Client) -> None:
        while line := await c.reader.readline():
            now = time.monotonic_ns()
            self.last_rx = time.monotonic()
            at = line.find(MARK)
            if at >= 0:
                c.deliveries += 1
                self.in_window += self.measuring
                self.latency.append(now - int(line[at + len(MARK) :].split()[0]))
            elif line.startswith((b"OK", b"ERR")) and c.pending:
                sent = c.pending.popleft()
                if line.startswith(b"OK"):
                    c.acked += 1
                    self.acked_window += self.measuring
                    self.ack_latency.append(now - sent)
                else:
                    c.errors += 1
                c.acks.set()

    async def send(self, c: _Client) -> None:
        while self.measuring:
            while len(c.pending) >= self.inflight:
                c.acks.clear()
                await c.acks.wait()
            t = time.monotonic_ns()
            c.pending.append(t)
            c.writer.write(b"send_all " + MARK + str(t).encode() + b"\n")
            await c.writer.drain()

    def expected(self) -> int:
        total = sum(c.acked for c in self.clients)
        return sum(total - c.acked for c in self.clients)

    async def run(self, server: Running) -> dict[str, Any]:
        t_begin = time.monotonic()
        for i in range(self.n):
            self.clients.append(await self.login(server.port, i))
        setup_s = time.monotonic() - t_begin
        readers = [asyncio.create_task(self.read(c)) for c in self.clients]
        srv0, gen0, t0 = server_cpu_s(server.pid), self_cpu_s(), time.monotonic()
        self.measuring = True
        senders = [asyncio.create_task(self.send(c)) for c in self.clients[: self.senders]]
        await asyncio.sleep(self.duration)
        self.measuring = False
        wall = time.monotonic() - t0
        srv1, gen1 = server_cpu_s(server.pid), self_cpu_s()
        for task in senders:
            task.cancel()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and time.monotonic() - self.last_rx < 3:
            pending = any(c.pending for c in self.clients)
            if not pending and sum(c.deliveries for c in self.clients) >= self.expected():
                break
            await asyncio.sleep(0.05)
        for c in self.clients:
            c.writer.transport.abort()
        for task in readers:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*readers, *senders, return_exceptions=True)
        acked = sum(c.acked for c in self.clients)
        total = sum(c.deliveries for c in self.clients)
        expected = self.expected()
        return {
            "scenario": "fanout",
            "proto": "chatd",
            "generator": "python",
            "complete": True,
            "clients": self.n,
            "ready": self.n,
            "connect_failures": 0,
            "login_errors": 0,
            "disconnects": 0,
            "setup_s": setup_s,
            "phase_s": wall,
            "server_cpu_s": srv1 - srv0,
            "gen_cpu_s": gen1 - gen0,
            "server_cpu_pct": 100 * (srv1 - srv0) / wall,
            "gen_cpu_pct": 100 * (gen1 - gen0) / wall,
            "errors": sum(c.errors for c in self.clients),
            "senders": self.senders,
            "inflight": self.inflight,
            "messages_sent": acked + sum(c.errors for c in self.clients),
            "messages_acked": acked,
            "messages_per_s": self.acked_window / wall,
            "deliveries": self.in_window,
            "deliveries_per_s": self.in_window / wall,
            "deliveries_total": total,
            "expected_deliveries": expected,
            "lost": expected - total,
            "latency_ms": percentiles(self.latency),
            "ack_ms": percentiles(self.ack_latency),
        }


def run(server: Running, scenario: Scenario) -> tuple[dict[str, Any], str]:
    """Runs the fanout scenario in this process; same return shape as loadgen.run."""
    if scenario.kind != "fanout" or server.proto != "chatd":
        raise Unsupported(
            f"the Python generator only runs fanout against chatd, not {scenario.name} "
            f"against {server.proto}; install a C compiler (cc) for the rest"
        )
    return asyncio.run(_Fanout(scenario).run(server)), ""
