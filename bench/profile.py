"""Where a message's server time goes (issue 17): chatd under cProfile for one loadgen
run, its functions summed into stages, in µs per message.

    .venv/bin/python -m bench.profile pingpong1 pingpong fanout100 --duration 6

The server runs the bench config (bench/chatd-bench.toml, `synchronous = "normal"`,
`--log-level warning` unless `--log-level` says otherwise) with cProfile on its main
thread (the event loop: parsing, the core, the hub, the inline commit, the writes).
Each function's own time (tottime) goes to a stage by the file it is in; a built-in
(a C method: `str.split`, `sqlite3.Cursor.execute`, `transport.write`) goes to the
stage of the function that called it, except the transport's methods, which are their
own stage (the syscalls they make). What cProfile cannot see is uvloop's own C code
and the kernel between callbacks (epoll, reads, accepting): `server CPU - profiled`,
from the unprofiled run's CPU per message when `--plain` runs one first. cProfile
slows every Python call (by ~1.5-2x on tiny functions), so read the stages as shares
and scale them to the plain run's CPU per message, which the table also shows.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pstats
import signal
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench import loadgen, scenarios, servers

#: (stage, path fragments of the functions in it), first match wins.
STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("framing", ("chatd/protocol/framing.py", "chatd/protocol/telnet.py")),
    ("parse", ("chatd/protocol/commands.py",)),
    (
        "render",
        (
            "chatd/protocol/render.py",
            "chatd/protocol/timefmt.py",
            "chatd/protocol/terminal.py",
            "chatd/protocol/replies.py",
            "chatd/protocol/irc.py",
        ),
    ),
    ("core", ("chatd/core/",)),
    ("commit", ("chatd/store/",)),
    ("hub batch/fan-out", ("chatd/server/hub.py",)),
    ("door + pipeline", ("chatd/server/connection.py", "chatd/server/pipeline.py")),
    ("door + pipeline", ("chatd/server/peer.py", "chatd/server/context.py")),
    ("logging", ("chatd/logs.py", "structlog/")),
    ("daemon, timers", ("chatd/server/",)),
    ("events (dataclasses)", ("chatd/protocol/events.py", "<string>")),
    ("asyncio/uvloop (Python)", ("asyncio/", "uvloop/")),
)
#: Built-ins that are their own stage: the transport's calls into uvloop and the kernel.
TRANSPORT = "write/transport (syscalls)"
_WRAPPER = """
import cProfile, runpy, signal, sys
out, server = sys.argv[1], sys.argv[2]
sys.argv = sys.argv[2:]
prof = cProfile.Profile()
signal.signal(signal.SIGUSR1, lambda *_: prof.enable())  # start-up is not profiled
try:
    runpy.run_path(server, run_name="__main__")
except SystemExit:
    pass
finally:
    prof.disable()
    prof.dump_stats(out)
"""


def stage_of(func: tuple[str, int, str]) -> str | None:
    """The stage of a profiled function, None for a built-in (see the module doc)."""
    path, _line, name = func
    if path == "~":
        if "Transport" in name or "UVStream" in name or "TCPTransport" in name:
            return TRANSPORT
        return None
    for stage, fragments in STAGES:
        if any(f in path for f in fragments):
            return stage
    return "other Python"


def stages(stats: pstats.Stats) -> dict[str, float]:
    """Seconds of own time per stage; a built-in's goes to its callers' stages."""
    out: dict[str, float] = defaultdict(float)
    table: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    for func, (_cc, _nc, tt, _ct, callers) in table.items():
        stage = stage_of(func)
        if stage is not None:
            out[stage] += tt
            continue
        caller_tt = sum(c[2] for c in callers.values())
        for caller, (_c, _n, ctt, _cct) in callers.items():
            share = tt * (ctt / caller_tt) if caller_tt else tt / len(callers)
            out[stage_of(caller) or "other built-ins"] += share
        if not callers:
            out["other built-ins"] += tt
    return dict(out)


@contextlib.contextmanager
def profiled_chatd(tree: Path, workdir: Path, prof: Path, level: str) -> Iterator[servers.Running]:
    """chatd (bench config) under cProfile; the profile is in `prof` once it stopped."""
    config = workdir / "chatd.toml"
    config.write_text(servers.dump_toml(servers.chatd_config({"store.synchronous": "normal"})))
    data = workdir / "data"
    data.mkdir()
    port = servers.free_port()
    log = workdir / "chatd.log"
    cmd = [servers.chatd_python(), "-c", _WRAPPER, str(prof), str(tree / "run_server.py")]
    cmd += ["--config", str(config), "--host", servers.HOST, "--port", str(port)]
    cmd += ["--data-dir", str(data), "--log-level", level]
    with servers._running(cmd, workdir, port, log) as pid:
        yield servers.Running("chatd", port, pid, log)


def messages_of(result: dict[str, Any]) -> int:
    if "round_trips" in result:
        return 2 * int(result["round_trips"])
    return int(result["messages_acked"])


def thread_cpu_s(pid: int) -> float:
    """utime + stime of a process's main thread (the event loop), in seconds."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(
    tree: Path, scenario: scenarios.Scenario, level: str, keep: Path | None
) -> tuple[dict[str, float], int, float, pstats.Stats]:
    """Stage seconds, messages, and the loop thread's CPU seconds over the loadgen run."""
    with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
        prof = (keep or Path(tmp)) / f"{scenario.name}.prof"
        with profiled_chatd(tree, Path(tmp), prof, level) as server:
            os.kill(server.pid, signal.SIGUSR1)
            before = thread_cpu_s(server.pid)
            result, _ = loadgen.run(server, scenario)
            cpu = thread_cpu_s(server.pid) - before
        stats = pstats.Stats(str(prof))
    return stages(stats), messages_of(result), cpu, stats


def perf_dsos(tree: Path, scenario: scenarios.Scenario, level: str) -> tuple[float, list[str]]:
    """An unprofiled run sampled by `perf record` (cpu-clock): the server's CPU µs per
    message, and perf's shares by shared object (kernel, uvloop, sqlite, the
    interpreter)."""
    old = os.environ.get("BENCH_TREE")
    os.environ["BENCH_TREE"] = str(tree)
    try:
        target = "chatd-info" if level == "info" else "chatd"
        with (
            tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp,
            servers.start(target) as server,
        ):
            data = Path(tmp) / "perf.data"
            record = ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999"]
            perf = subprocess.Popen(
                [*record, "-o", str(data), "-p", str(server.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result, _ = loadgen.run(server, scenario)
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            report = subprocess.run(
                ["perf", "report", "-i", str(data), "--sort", "dso", "--stdio", "-q"],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            ).stdout
    finally:
        if old is None:
            os.environ.pop("BENCH_TREE", None)
        else:
            os.environ["BENCH_TREE"] = old
    lines = [line.strip() for line in report.splitlines() if line.strip()][:12]
    return float(result["server_cpu_s"]) / messages_of(result) * 1e6, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("scenarios", nargs="+", help="e.g. pingpong1 pingpong fanout100")
    p.add_argument("--duration", type=float, default=6)
    p.add_argument("--tree", type=Path, default=servers.ROOT, help="chatd tree to profile")
    p.add_argument("--log-level", default="warning")
    p.add_argument("--perf", action="store_true", help="an unprofiled run under perf first")
    p.add_argument("--keep", type=Path, help="directory to keep the .prof files in")
    p.add_argument("--top", type=int, default=0, help="also print the N costliest functions")
    args = p.parse_args()
    loadgen.build()
    for name in args.scenarios:
        base = name.split(":")[0]
        overrides = dict(kv.split("=") for kv in name.split(":")[1:])
        scenario = scenarios.SCENARIOS[base].with_overrides(
            {"duration": args.duration, **{k: float(v) for k, v in overrides.items()}}
        )
        plain = None
        if args.perf:
            plain, dsos = perf_dsos(args.tree, scenario, args.log_level)
            print(f"\n{name} without the profiler: {plain:.1f} µs of server CPU per message")
            print("perf, by shared object:\n  " + "\n  ".join(dsos))
        got, messages, cpu_s, stats = profile(args.tree, scenario, args.log_level, args.keep)
        profiled = sum(got.values())
        cpu = cpu_s / messages * 1e6
        print(f"\n{name}: {messages} messages; loop thread {cpu:.1f} µs/message under cProfile")
        scale = (plain / cpu) if plain is not None else 1.0
        print(f"{'stage':28} {'µs/msg (profiled)':>18} {'share':>7} {'µs/msg (scaled)':>16}")
        rows = sorted(got.items(), key=lambda kv: -kv[1])
        rows.append(("uvloop C + kernel (unseen)", max(0.0, cpu_s - profiled)))
        for stage, seconds in rows:
            us = seconds / messages * 1e6
            print(f"{stage:28} {us:18.2f} {seconds / cpu_s:7.1%} {us * scale:16.2f}")
        if args.top:
            stats.sort_stats("tottime").print_stats(args.top)
        sys.stdout.flush()


if __name__ == "__main__":
    with contextlib.suppress(subprocess.TimeoutExpired):
        main()
