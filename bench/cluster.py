"""`python -m bench cluster`: one, two and three chatd nodes on one PostgreSQL (issue 16).

Every node takes clients; the one holding the lease (the writer, started first) runs the
chat and the others pass each connection on, byte for byte, to its `[cluster] port`
(chatd/cluster/forward.py). For each node count, in the same run and interleaved:

- **throughput**: the `fanout1000` scenario of the single-node table (1,000 clients in
  #general, 10 senders, <= 8 messages in flight each) with the clients spread evenly
  over the nodes' line ports (client i on node i mod N; the loadgen's `--ports`);
- **cross-node latency**: under a light background load (a `rate` loadgen spread over
  the nodes), timed private messages from a sender on node A to a receiver on node B,
  for every (A, B) kind (writer or not), round-robin so each pair sees the same
  background; delivery latency = receive time - the send time carried in the text
  (CLOCK_MONOTONIC, one machine).

PostgreSQL is started the way the tests start it (tests/helpers/postgres.py); each
(run, node count) gets a fresh database, migrated, and fresh nodes. The JSON file keeps
every number; the last lines printed are the markdown table of docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import loadgen, servers

if TYPE_CHECKING:
    from tests.helpers.postgres import PostgresServer

RESULTS = Path(__file__).resolve().parent / "results"
SECRET = "bench-cluster-secret"
PROBE_MARK = b"~PROBE~ "
BENCH_MARK = b"~BENCH~ "
START_TIMEOUT_S = 60.0


class Unavailable(RuntimeError):
    """PostgreSQL (or psycopg, or a C compiler) is not installed here."""


@dataclass(frozen=True)
class Settings:
    """What one benchmark run measures; the defaults are the issue's sizes."""

    nodes: tuple[int, ...] = (1, 2, 3)
    runs: int = 3
    clients: int = 1000
    senders: int = 10
    inflight: int = 8
    duration: float = 10.0
    probe_messages: int = 300  # timed messages per (sender node, receiver node) pair
    probe_rate: float = 200.0  # timed messages per second, all pairs together
    background_clients: int = 100
    background_rate: float = 200.0  # send_all per second: ~20,000 deliveries/s
    synchronous: str = "normal"  # as the `chatd` column of the single-node table
    sqlite: bool = False  # also one node on SQLite (the single-node table's store)
    pin_writer: bool = False  # the writer alone on CPU 0, everything else on the others
    wait_quiet_s: float = 0.0
    setup_timeout_s: float = 120.0


# PostgreSQL and nodes ----------------------------------------------------------------


def start_postgres() -> PostgresServer:
    """A PostgreSQL server as the tests start one (initdb in a temporary directory, as
    an unprivileged user when we are root); Unavailable where it is not installed."""
    import pytest

    from tests.helpers import postgres

    try:
        return postgres.start_postgres()
    except pytest.skip.Exception as e:
        raise Unavailable(str(e.msg)) from None


def stop_postgres(pg: PostgresServer) -> None:
    pg.stop()
    shutil.rmtree(pg.root, ignore_errors=True)


def listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((servers.HOST, port), 0.5):
        return True
    return False


@dataclass
class Node:
    """One chatd node in a child process: its line port, cluster port and log."""

    name: str
    line: int
    cluster: int
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / "node.log"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, dsn: str, synchronous: str) -> None:
        """On PostgreSQL at `dsn`, or alone on SQLite when `dsn` is empty."""
        overrides: dict[str, object] = {"store.synchronous": synchronous}
        if dsn:
            overrides |= {
                "store.backend": "postgres",
                "store.dsn": dsn,
                "cluster.node_id": self.name,
                "cluster.port": self.cluster,
                "cluster.secret": SECRET,
            }
        config = servers.chatd_config(overrides)
        self.workdir.mkdir(parents=True)
        (self.workdir / "chatd.toml").write_text(servers.dump_toml(config))
        data = self.workdir / "data"
        data.mkdir()
        cmd = [servers.chatd_python(), str(servers.ROOT / "run_server.py")]
        cmd += ["--config", str(self.workdir / "chatd.toml"), "--host", servers.HOST]
        cmd += ["--port", str(self.line), "--data-dir", str(data), "--log-level", "warning"]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir
            )

    def wait_listening(self, port: int, deadline: float) -> None:
        while not listening(port):
            if self.proc is None or self.proc.poll() is not None:
                tail = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{self.name} exited before listening:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} not listening on {port} in time")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)


@contextlib.contextmanager
def running_cluster(
    pg: PostgresServer | None,
    count: int,
    workdir: Path,
    synchronous: str,
    *,
    pin_writer: bool = False,
) -> Iterator[list[Node]]:
    """`count` nodes on a fresh, migrated database; the first one is the writer.
    Without `pg`, one node on SQLite. `pin_writer`: see `pinned`."""
    with (
        pinned(pg if pin_writer else None, pin_writer) as start_writer,
        _nodes(pg, count, workdir, synchronous, start_writer) as nodes,
    ):
        yield nodes


@contextlib.contextmanager
def pinned(pg: PostgresServer | None, pin: bool) -> Iterator[Callable[[Node, str, str], None]]:
    """With `pin`, the writer gets CPU 0 to itself and everything else (PostgreSQL,
    the other nodes, the loadgen, this process) the other CPUs, as if the writer had
    its own machine; yields how to start the writer (its threads inherit CPU 0).
    The rest of the machine (other people's work) still runs anywhere."""
    everything = os.sched_getaffinity(0)
    rest = everything - {0}
    if not pin or not rest or 0 not in everything:

        def start(node: Node, dsn: str, synchronous: str) -> None:
            node.start(dsn, synchronous)

        yield start
        return

    def start_alone(node: Node, dsn: str, synchronous: str) -> None:
        os.sched_setaffinity(0, {0})  # the child inherits the mask of the thread forking
        try:
            node.start(dsn, synchronous)
        finally:
            os.sched_setaffinity(0, rest)

    moved = [] if pg is None or pg.proc is None else _groups(pg.proc.pid)["postgres"]
    try:
        os.sched_setaffinity(0, rest)
        for pid in moved:  # new backends fork from the postmaster: they follow it
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, rest)
        yield start_alone
    finally:
        os.sched_setaffinity(0, everything)
        for pid in moved:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(pid, everything)


@contextlib.contextmanager
def _nodes(
    pg: PostgresServer | None,
    count: int,
    workdir: Path,
    synchronous: str,
    start_writer: Callable[[Node, str, str], None],
) -> Iterator[list[Node]]:
    """The nodes of `running_cluster`, stopped on the way out."""
    from chatd.store import postgres as pg_store

    dsn = ""
    if pg is not None:
        dsn = pg.create_database()
        pg_store.migrate(dsn)
    nodes = [
        Node(f"node{i + 1}", servers.free_port(), servers.free_port(), workdir / f"node{i + 1}")
        for i in range(count)
    ]
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        start_writer(nodes[0], dsn, synchronous)
        if dsn:
            nodes[0].wait_listening(nodes[0].cluster, deadline)  # it holds the lease
        nodes[0].wait_listening(nodes[0].line, deadline)
        for node in nodes[1:]:
            node.start(dsn, synchronous)
        for node in nodes[1:]:
            node.wait_listening(node.line, deadline)  # a standby listens once it knows
        yield nodes
    finally:
        for node in reversed(nodes):  # the standbys first: no takeover on the way out
            node.stop()


# CPU of the processes the loadgen does not see -----------------------------------------


def _cpu_s(pid: int) -> float:
    """utime + stime of one process (all its threads), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _groups(postmaster: int | None) -> dict[str, list[int]]:
    """PostgreSQL's processes (the postmaster and its children: each calls setsid, so
    not its process group) and the kernel's softirq threads (loopback traffic the
    interrupted process did not pay for)."""
    found: dict[str, list[int]] = {"postgres": [], "ksoftirqd": []}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                head, _, tail = f.read().rpartition(")")
        except OSError:
            continue
        if postmaster is not None and postmaster in (pid, int(tail.split()[1])):
            found["postgres"].append(pid)
        elif head.partition("(")[2].startswith("ksoftirqd"):
            found["ksoftirqd"].append(pid)
    return found


class CpuSampler:
    """Samples the CPU seconds of process groups every `interval` s in a thread, so the
    loadgen's measured phase (its CLOCK_MONOTONIC bounds) can be cut out afterwards."""

    def __init__(self, postmaster: int | None, interval: float = 0.2) -> None:
        self._postmaster = postmaster
        self._interval = interval
        self._stop = threading.Event()
        self.samples: list[tuple[int, dict[str, float]]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def groups(self) -> dict[str, list[int]]:
        """The processes sampled now, by group."""
        return _groups(self._postmaster)

    def _run(self) -> None:
        groups = self.groups()
        rescan = time.monotonic() + 1
        while True:
            if time.monotonic() > rescan:  # backends come and go (reader threads)
                groups, rescan = self.groups(), time.monotonic() + 1
            sample = {name: sum(_cpu_s(p) for p in pids) for name, pids in groups.items()}
            self.samples.append((time.monotonic_ns(), sample))
            if self._stop.wait(self._interval):
                return

    def pct_between(self, start_ns: int, end_ns: int) -> dict[str, float]:
        """Each group's CPU % of one core between the samples nearest to the bounds."""
        if len(self.samples) < 2 or end_ns <= start_ns:
            return {}
        a = min(self.samples, key=lambda x: abs(x[0] - start_ns))
        b = min(self.samples, key=lambda x: abs(x[0] - end_ns))
        wall = (b[0] - a[0]) / 1e9
        if wall <= 0:
            return {}
        # A process that ended between them would count negative: clamp at 0.
        return {k: round(max(0.0, 100 * (b[1][k] - a[1].get(k, 0.0)) / wall), 1) for k in b[1]}


# Throughput: the C loadgen over every node's port --------------------------------------


def loadgen_command(nodes: Sequence[Node], scenario: str, params: dict[str, float]) -> list[str]:
    cmd = [str(loadgen.build()), "--proto", "chatd", "--scenario", scenario]
    cmd += ["--ports", ",".join(str(n.line) for n in nodes)]
    cmd += ["--server-pid", ",".join(str(n.pid) for n in nodes)]
    for key, value in params.items():
        cmd += [f"--{key}", f"{value:g}"]
    return cmd


def run_loadgen(cmd: Sequence[str], limit_s: float) -> dict[str, Any]:
    proc = subprocess.run(list(cmd), check=False, capture_output=True, timeout=limit_s)
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        stderr = proc.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"loadgen exited with {proc.returncode}: {stderr}") from None
    return result


def throughput(nodes: Sequence[Node], s: Settings, postmaster: int | None) -> dict[str, Any]:
    """The fan-out scenario with every client on node (i mod N); PostgreSQL's CPU
    over its measured phase as `postgres_cpu_pct`, the kernel's softirq threads' as
    `ksoftirqd_cpu_pct` (both are in the loadgen's `other_cpu_pct`)."""
    params: dict[str, float] = {
        "clients": s.clients,
        "senders": s.senders,
        "inflight": s.inflight,
        "duration": s.duration,
        "timeout": s.setup_timeout_s,
    }
    cmd = loadgen_command(nodes, "fanout", params)
    with CpuSampler(postmaster) as sampler:
        result = run_loadgen(cmd, s.setup_timeout_s + s.duration + 120)
    if "measure_start_ns" in result:
        cut = sampler.pct_between(result["measure_start_ns"], result["measure_end_ns"])
        for name, pct in cut.items():
            result[f"{name}_cpu_pct"] = pct
    return result


# Latency: timed private messages between nodes, at a light background load ------------


@dataclass(frozen=True)
class Pair:
    """Where a probe's sender and receiver are connected: node indexes, 0 = writer."""

    label: str
    sender: int
    receiver: int


def pairs_for(count: int) -> list[Pair]:
    """Both on the writer, and every kind of crossing the node count allows."""
    pairs = [Pair("writer -> writer", 0, 0)]
    if count >= 2:
        pairs += [
            Pair("writer -> other", 0, 1),
            Pair("other -> writer", 1, 0),
            Pair("other -> same other", 1, 1),
        ]
    if count >= 3:
        pairs.append(Pair("other -> another", 1, 2))
    return pairs


class ProbeClient(asyncio.Protocol):
    """A line-protocol client that notes the time every probe line arrives (and
    little else in the callback: a busy callback would add to the next line's time)."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.latencies_ns: list[int] = []
        self.ok = asyncio.get_running_loop().create_future()
        self.background = asyncio.Event()
        self.errors: list[str] = []
        self.closed = False
        self.expected = -1  # set once every probe is sent: then `all_in` can be set
        self.all_in = asyncio.Event()

    def expect(self, count: int) -> None:
        self.expected = count
        if len(self.latencies_ns) >= count:
            self.all_in.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        now = time.monotonic_ns()
        *lines, self.buffer = (self.buffer + data).split(b"\n")
        for line in lines:
            at = line.find(PROBE_MARK)
            if at >= 0:
                digits = line[at + len(PROBE_MARK) :].split(b" ", 1)[0].rstrip(b"\r")
                self.latencies_ns.append(now - int(digits))
                if len(self.latencies_ns) == self.expected:
                    self.all_in.set()
            elif BENCH_MARK in line:
                self.background.set()
            elif line.startswith(b"OK") and not self.ok.done():
                self.ok.set_result(None)
            elif line.startswith(b"ERR"):
                self.errors.append(line.decode(errors="replace"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


async def probe_client(port: int, name: str) -> ProbeClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(ProbeClient, servers.HOST, port)
    client.write(f"login {name}\n".encode())
    await asyncio.wait_for(client.ok, 30)
    return client


def percentile(sorted_ms: Sequence[float], p: float) -> float:
    """Nearest rank, as the loadgen's histogram reads it (`sorted_ms` not empty)."""
    return sorted_ms[min(len(sorted_ms) - 1, int(p / 100 * len(sorted_ms)))]


@dataclass
class ProbeResult:
    pair: Pair
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        v = sorted(self.latencies_ms)
        return {
            "pair": self.pair.label,
            "sender_node": self.pair.sender,
            "receiver_node": self.pair.receiver,
            "sent": self.sent,
            "received": len(v),
            "lost": self.sent - len(v),
            "p50_ms": round(percentile(v, 50), 3) if v else None,
            "p99_ms": round(percentile(v, 99), 3) if v else None,
            "max_ms": round(v[-1], 3) if v else None,
        }


async def probe(nodes: Sequence[Node], s: Settings) -> dict[str, Any]:
    """Background loadgen (rate) on every node; timed messages for every pair."""
    pairs = pairs_for(len(nodes))
    clients: list[tuple[ProbeClient, ProbeClient]] = []
    for k, pair in enumerate(pairs):
        tx = await probe_client(nodes[pair.sender].line, f"probe{k}s")
        rx = await probe_client(nodes[pair.receiver].line, f"probe{k}r")
        clients.append((tx, rx))
    span_s = len(pairs) * s.probe_messages / s.probe_rate
    background = None
    if s.background_clients > 0:
        params: dict[str, float] = {
            "clients": s.background_clients,
            "senders": min(10, s.background_clients),
            "rate": s.background_rate,
            "duration": span_s + 1,  # outlasts the probe, which waits for it to start
        }
        cmd = [*loadgen_command(nodes, "rate", params), "--prefix", "bg"]
        background = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        # The background is measuring once its messages reach our receivers.
        await asyncio.wait_for(clients[0][1].background.wait(), s.setup_timeout_s)
    results = [ProbeResult(p) for p in pairs]
    loop = asyncio.get_running_loop()
    step = 1 / s.probe_rate
    next_at = loop.time()
    for i in range(s.probe_messages * len(pairs)):
        k = i % len(pairs)
        tx, _ = clients[k]
        tx.write(b"send probe%dr %s%d\n" % (k, PROBE_MARK, time.monotonic_ns()))
        results[k].sent += 1
        next_at += step
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    for (_, rx), r in zip(clients, results, strict=True):
        rx.expect(r.sent)
    with contextlib.suppress(TimeoutError):  # what has not come in 10 s is lost
        await asyncio.wait_for(asyncio.gather(*(rx.all_in.wait() for _, rx in clients)), 10)
    for (tx, rx), r in zip(clients, results, strict=True):
        r.latencies_ms = [ns / 1e6 for ns in rx.latencies_ns]
        for c in (tx, rx):
            if c.transport is not None:
                c.transport.close()
    out: dict[str, Any] = {
        "pairs": [r.summary() for r in results],
        "errors": [e for tx, rx in clients for e in tx.errors + rx.errors][:5],
    }
    if background is not None:
        stdout, stderr = await asyncio.wait_for(background.communicate(), span_s + 90)
        try:
            out["background"] = json.loads(stdout)
        except json.JSONDecodeError:
            out["background"] = {"error": stderr.decode(errors="replace")[-500:]}
    return out


# The run --------------------------------------------------------------------------------


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def configs(s: Settings) -> list[str]:
    """What each run measures: "sqlite" (one node on SQLite) and node counts ("2")."""
    return (["sqlite"] if s.sqlite else []) + [str(n) for n in s.nodes]


def measure(
    pg: PostgresServer, config: str, run: int, s: Settings, workdir: Path
) -> dict[str, Any]:
    """One configuration, once: fresh database and nodes, fan-out, then the probe."""
    from bench.cli import wait_quiet

    count = 1 if config == "sqlite" else int(config)
    record: dict[str, Any] = {
        "config": config,
        "nodes": count,
        "backend": "sqlite" if config == "sqlite" else "postgres",
        "run": run,
        "host_busy_before_pct": wait_quiet(s.wait_quiet_s),
        "load_average_before": load_average(),
        "fanout": None,
        "latency": None,
        "error": None,
    }
    t0 = time.monotonic()
    try:
        on = None if config == "sqlite" else pg
        where = workdir / f"r{run}-{config}"
        with running_cluster(on, count, where, s.synchronous, pin_writer=s.pin_writer) as nodes:
            record["fanout"] = throughput(nodes, s, pg.proc.pid if pg.proc else None)
            record["latency"] = asyncio.run(probe(nodes, s))
            record["node_exit_codes"] = [n.proc.poll() if n.proc else None for n in nodes]
    except (RuntimeError, OSError, TimeoutError, subprocess.TimeoutExpired) as e:
        record["error"] = f"{type(e).__name__}: {e}"
    record["wall_s"] = round(time.monotonic() - t0, 1)
    record["load_average_after"] = load_average()
    return record


def fmt(x: float | None) -> str:
    from bench.cli import fmt as number

    return "-" if x is None else number(x)


def spread(values: Sequence[float]) -> str:
    """`min / median / max`, or one value."""
    if not values:
        return "-"
    if len(values) == 1:
        return fmt(values[0])
    return " / ".join(fmt(v) for v in (min(values), statistics.median(values), max(values)))


def summarize(records: Sequence[dict[str, Any]], s: Settings) -> dict[str, Any]:
    """Per configuration: the spread of every headline number; and the two targets."""
    out: dict[str, Any] = {}
    for config in configs(s):
        mine = [r for r in records if r["config"] == config and r["error"] is None]
        fan = [r["fanout"] for r in mine if r["fanout"] and r["fanout"].get("complete")]
        row: dict[str, Any] = {
            "runs": len([r for r in records if r["config"] == config]),
            "complete": len(fan),
            "deliveries_per_s": [f["deliveries_per_s"] for f in fan],
            "messages_per_s": [f["messages_per_s"] for f in fan],
            "lost": [f["lost"] for f in fan],
            "disconnects": [f["disconnects"] for f in fan],
            "delivery_p99_ms": [f["latency_ms"]["p99"] for f in fan],
            "node_cpu_pct": [f.get("server_cpu_pct_each", [f["server_cpu_pct"]]) for f in fan],
            "gen_cpu_pct": [f["gen_cpu_pct"] for f in fan],
            "other_cpu_pct": [f["other_cpu_pct"] for f in fan],
            "postgres_cpu_pct": [f["postgres_cpu_pct"] for f in fan if "postgres_cpu_pct" in f],
            "ksoftirqd_cpu_pct": [f.get("ksoftirqd_cpu_pct", 0.0) for f in fan],
            # CPU per delivery moves far less with a busy machine than deliveries/s do.
            "ns_per_delivery": [
                round(
                    1e7
                    * (
                        sum(f.get("server_cpu_pct_each", [f["server_cpu_pct"]]))
                        + f.get("postgres_cpu_pct", 0.0)
                    )
                    / f["deliveries_per_s"]
                )
                for f in fan
                if f["deliveries_per_s"]
            ],
            "probe": {},
            "probe_lost": [
                sum(p["lost"] for p in r["latency"]["pairs"]) for r in mine if r["latency"]
            ],
        }
        for r in mine:
            for p in (r["latency"] or {}).get("pairs", []):
                if p["p99_ms"] is None:
                    continue  # nothing arrived: counted as lost below
                slot = row["probe"].setdefault(p["pair"], {"p50_ms": [], "p99_ms": [], "lost": []})
                slot["p50_ms"].append(p["p50_ms"])
                slot["p99_ms"].append(p["p99_ms"])
                slot["lost"].append(p["lost"])
        out[config] = row
    out["targets"] = targets(records, out)
    return out


def targets(records: Sequence[dict[str, Any]], summary: dict[str, Any]) -> dict[str, Any]:
    """Two nodes at >= 80 % of one node's deliveries/s (medians; per run too); a
    cross-node delivery at most 5 ms more than writer -> writer at p99 (per run, the
    worst crossing)."""
    result: dict[str, Any] = {}
    one, two = summary.get("1"), summary.get("2")
    if one and two and one["deliveries_per_s"] and two["deliveries_per_s"]:
        ratio = statistics.median(two["deliveries_per_s"]) / statistics.median(
            one["deliveries_per_s"]
        )
        per_run = [
            a["fanout"]["deliveries_per_s"] / b["fanout"]["deliveries_per_s"]
            for a in records
            for b in records
            if a["config"] == "2"
            and b["config"] == "1"
            and a["run"] == b["run"]
            and a["fanout"]
            and b["fanout"]
            and a["fanout"].get("complete")
            and b["fanout"].get("complete")
        ]
        result["two_vs_one"] = {
            "ratio_of_medians": round(ratio, 3),
            "per_run": [round(x, 3) for x in per_run],
            "met": ratio >= 0.8,
        }
    added: dict[str, list[float]] = {}
    added_p50: dict[str, list[float]] = {}
    for r in records:
        pairs = (r["latency"] or {}).get("pairs", []) if r["error"] is None else []
        base = next((p for p in pairs if p["pair"] == "writer -> writer"), None)
        if base is None or base["p99_ms"] is None:
            continue
        for p in pairs:
            if p is not base and p["p99_ms"] is not None:
                key = f"{r['config']} nodes: {p['pair']}"
                added.setdefault(key, []).append(round(p["p99_ms"] - base["p99_ms"], 3))
                added_p50.setdefault(key, []).append(round(p["p50_ms"] - base["p50_ms"], 3))
    if added:
        worst = max(statistics.median(v) for v in added.values())
        result["cross_node_p99_added_ms"] = {
            "per_pair": added,
            "p50_added_per_pair": added_p50,
            "worst_median": round(worst, 3),
            "met": worst <= 5.0,
        }
    return result


def _per_node_median(rows: Sequence[Sequence[float]]) -> str:
    """`writer + second + third` CPU %, each the median over the runs."""
    if not rows:
        return "-"
    width = min(len(r) for r in rows)
    return " + ".join(f"{statistics.median(r[k] for r in rows):.0f}" for k in range(width))


def table(summary: dict[str, Any], s: Settings) -> str:
    """The markdown table of docs/performance.md: min / median / max over the runs."""
    counts = [c for c in configs(s) if c in summary]
    names = {"sqlite": "1 node, SQLite", "1": "1 node"}
    head = ["", *[names.get(c, f"{c} nodes") for c in counts]]
    rows: list[list[str]] = []

    def add(label: str, cells: list[str]) -> None:
        rows.append([label, *cells])

    add(
        f"fan-out C={s.clients}, deliveries/s",
        [spread(summary[c]["deliveries_per_s"]) for c in counts],
    )
    base = summary.get("1", {}).get("deliveries_per_s")
    if base:
        add(
            "vs one node on PostgreSQL (medians)",
            [
                f"{statistics.median(summary[c]['deliveries_per_s']) / statistics.median(base):.0%}"
                if summary[c]["deliveries_per_s"]
                else "-"
                for c in counts
            ],
        )
    add("runs complete", [f"{summary[c]['complete']} of {summary[c]['runs']}" for c in counts])
    add("lost deliveries", [spread(summary[c]["lost"]) for c in counts])
    add("fan-out delivery p99 ms", [spread(summary[c]["delivery_p99_ms"]) for c in counts])
    add(
        "CPU % of a core per node, writer first (medians)",
        [_per_node_median(summary[c]["node_cpu_pct"]) for c in counts],
    )
    add("PostgreSQL CPU %", [spread(summary[c]["postgres_cpu_pct"]) for c in counts])
    add(
        "CPU ns per delivery, nodes + PostgreSQL",
        [spread(summary[c].get("ns_per_delivery", [])) for c in counts],
    )
    add("loadgen CPU %", [spread(summary[c]["gen_cpu_pct"]) for c in counts])
    add(
        "all other CPU % (PostgreSQL, kernel threads, other work)",
        [spread(summary[c]["other_cpu_pct"]) for c in counts],
    )
    labels = [p.label for p in pairs_for(max(s.nodes))]
    for label in labels:
        for key, name in (("p50_ms", "p50"), ("p99_ms", "p99")):
            cells = []
            for c in counts:
                slot = summary[c]["probe"].get(label)
                cells.append(spread(slot[key]) if slot else "")
            add(f"{label}: delivery {name} ms", cells)
    add("timed messages lost", [spread(summary[c]["probe_lost"]) for c in counts])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def run_benchmark(
    s: Settings, out: Path | None = None, pg: PostgresServer | None = None
) -> tuple[dict[str, Any], Path | None]:
    """Every node count in every run, interleaved; PostgreSQL started here unless
    given. The JSON file (in `out`) is rewritten after each measurement."""
    from bench.cli import _git_commit, _write_json, host_info, raise_nofile

    raise_nofile(s.clients + s.background_clients + 1024)
    try:
        loadgen.build()
    except loadgen.GeneratorUnavailable as e:
        raise Unavailable(str(e)) from None
    own_pg = pg is None
    server = start_postgres() if pg is None else pg
    started = dt.datetime.now(dt.UTC)
    path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{started:%Y%m%dT%H%M%SZ}-cluster.json"
    doc: dict[str, Any] = {
        "schema": 1,
        "started": started.isoformat(timespec="seconds"),
        "finished": None,
        "command": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "commit": _git_commit(),
        "host": host_info(),
        "settings": {k: v for k, v in s.__dict__.items()},
        "postgres": str(server.bin),
        "runs": [],
        "summary": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    try:
        for run in range(1, s.runs + 1):
            for config in configs(s):
                record = measure(server, config, run, s, workdir)
                doc["runs"].append(record)
                print(progress(record), flush=True)
                if path is not None:
                    _write_json(path, doc)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if own_pg:
            stop_postgres(server)
    doc["summary"] = summarize(doc["runs"], s)
    doc["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    if path is not None:
        _write_json(path, doc)
    return doc, path


def progress(record: dict[str, Any]) -> str:
    head = f"[run {record['run']}] {record['config']:>6}"
    if record["error"]:
        return f"{head}: ERROR {record['error'].strip().splitlines()[0]}"
    f = record["fanout"] or {}
    parts = [
        f"deliveries/s {fmt(f.get('deliveries_per_s'))}",
        f"lost {f.get('lost')}",
        f"node CPU {f.get('server_cpu_pct_each', f.get('server_cpu_pct'))}",
        f"gen CPU {f.get('gen_cpu_pct')}",
        f"other {f.get('other_cpu_pct')} (postgres {f.get('postgres_cpu_pct')})",
    ]
    for p in (record["latency"] or {}).get("pairs", []):
        parts.append(f"{p['pair']} p50/p99 {p['p50_ms']}/{p['p99_ms']} ms")
    return f"{head}: " + ", ".join(parts) + f" ({record['wall_s']} s)"


def parse_args(argv: Sequence[str]) -> tuple[Settings, Path]:
    d = Settings()
    p = argparse.ArgumentParser(prog="python -m bench cluster", description=__doc__)
    p.add_argument("--nodes", default=",".join(map(str, d.nodes)), help="node counts, e.g. 1,2,3")
    p.add_argument("--runs", type=int, default=d.runs)
    p.add_argument("--clients", type=int, default=d.clients)
    p.add_argument("--senders", type=int, default=d.senders)
    p.add_argument("--inflight", type=int, default=d.inflight)
    p.add_argument("--duration", type=float, default=d.duration, help="s of fan-out")
    p.add_argument("--probe-messages", type=int, default=d.probe_messages, help="per pair")
    p.add_argument("--probe-rate", type=float, default=d.probe_rate, help="msg/s, all pairs")
    p.add_argument("--background-clients", type=int, default=d.background_clients)
    p.add_argument("--background-rate", type=float, default=d.background_rate)
    p.add_argument("--synchronous", choices=("normal", "full"), default=d.synchronous)
    p.add_argument("--sqlite", action="store_true", help="also one node on SQLite")
    p.add_argument(
        "--pin-writer",
        action="store_true",
        help="the writer alone on CPU 0, the rest on the other CPUs (as if on its own machine)",
    )
    p.add_argument("--wait-quiet", type=float, default=d.wait_quiet_s, metavar="SECONDS")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON file")
    a = p.parse_args(argv)
    try:
        nodes = tuple(int(x) for x in a.nodes.split(",") if x.strip())
    except ValueError:
        p.error("--nodes: a comma-separated list of numbers")
    if not nodes or min(nodes) < 1 or a.runs < 1 or a.probe_rate <= 0 or a.clients < 2:
        p.error("bad --nodes/--runs/--probe-rate/--clients")
    s = Settings(
        nodes=nodes,
        runs=a.runs,
        clients=a.clients,
        senders=a.senders,
        inflight=a.inflight,
        duration=a.duration,
        probe_messages=a.probe_messages,
        probe_rate=a.probe_rate,
        background_clients=a.background_clients,
        background_rate=a.background_rate,
        synchronous=a.synchronous,
        sqlite=a.sqlite,
        pin_writer=a.pin_writer,
        wait_quiet_s=a.wait_quiet,
    )
    return s, a.out


def main(argv: Sequence[str]) -> int:
    s, out = parse_args(argv)
    try:
        doc, path = run_benchmark(s, out)
    except Unavailable as e:
        print(f"bench cluster: {e}", file=sys.stderr)
        return 2
    print()
    print(table(doc["summary"], s))
    print()
    print(json.dumps(doc["summary"]["targets"], indent=1))
    print(f"\nresults: {path}")
    return 0 if all(r["error"] is None for r in doc["runs"]) else 1
