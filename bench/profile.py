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
import re
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
sys.path.insert(0, server.rsplit("/", 1)[0])  # that tree's chatd, as run_server.py gets
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
    if path.endswith("chatd/server/hub.py") and name == "_write":
        return TRANSPORT  # its own time is transport.write (uvloop's calls are unseen)
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
    """Messages of the run (per login in the `logins` scenario: its rows are per login)."""
    if "round_trips" in result:
        return 2 * int(result["round_trips"])
    if "messages_acked" in result:
        return int(result["messages_acked"])
    return int(result["ready"])


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


def perf_dsos(
    tree: Path, scenario: scenarios.Scenario, level: str
) -> tuple[float, list[str], dict[str, float]]:
    """An unprofiled run sampled by `perf record` (cpu-clock): the server's CPU µs per
    message, perf's shares by shared object (kernel, uvloop, sqlite, the interpreter)
    and by kernel function as lines, and {row: µs per message}."""
    old = os.environ.get("BENCH_TREE")
    os.environ["BENCH_TREE"] = str(tree)
    try:
        target = "chatd-info" if level == "info" else "chatd"
        with (
            tempfile.TemporaryDirectory(prefix="bench-perf-") as tmp,
            servers.start(target) as server,
        ):
            data = Path(tmp) / "perf.data"
            record = ["perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "999"]
            perf = subprocess.Popen(
                [*record, "-o", str(data), "-p", str(server.pid)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            result, _ = loadgen.run(server, scenario)
            perf.send_signal(signal.SIGINT)
            perf.wait(60)
            report = perf_report(data, "--no-children", "--sort", "dso", "-g", "none")
            calls = perf_report(data, "--children", "--sort", "sym", "-g", "none")
    finally:
        if old is None:
            os.environ.pop("BENCH_TREE", None)
        else:
            os.environ["BENCH_TREE"] = old
    cpu = float(result["server_cpu_s"]) / messages_of(result) * 1e6
    rows = []
    for line in report.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+(\S+)", line)
        if match and float(match[1]) >= 0.5:
            rows.append((match[2], float(match[1])))
    for line in calls.splitlines():
        match = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[k\] (\S+)$", line)
        if match and match[2] in KERNEL:
            rows.append(("  kernel: " + KERNEL[match[2]], float(match[1])))
    lines = [f"{name:52} {pct:5.1f}% {pct * cpu / 100:7.1f} µs/msg" for name, pct in rows]
    return cpu, lines, {name.strip(): pct * cpu / 100 for name, pct in rows}


#: Kernel functions whose time with callees (perf's children) is worth a row.
KERNEL = {
    "do_syscall_64": "all syscalls",
    "sock_write_iter": "socket writes (with loopback TCP receive)",
    "sock_read_iter": "socket reads",
    "__x64_sys_epoll_pwait": "epoll_wait",
    "__x64_sys_pwrite64": "pwrite (WAL, checkpoint)",
    "__x64_sys_fcntl": "fcntl (SQLite's locks)",
    "__x64_sys_fdatasync": "fdatasync (checkpointer)",
    "exit_to_user_mode_loop": "rescheduled on return to user mode",
}


def perf_report(data: Path, *options: str) -> str:
    return subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "-q", *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout


def print_stages(
    got: dict[str, float], messages: int, plain: float | None, perf: dict[str, float]
) -> None:
    """The stage table. cProfile's clock is wall time, so a stage that wakes the load
    generator (a socket write) also counts the time the server waited to run again;
    with perf's numbers the writes, the wake-ups and what runs outside Python come from
    perf, and the other stages share the rest of the unprofiled CPU per message."""
    python = {k: v for k, v in got.items() if k != TRANSPORT}
    total = sum(python.values())
    outside = {
        "socket writes (kernel, perf)": perf.get(
            "kernel: socket writes (with loopback TCP receive)"
        ),
        "rescheduled after a syscall (perf)": perf.get(
            "kernel: rescheduled on return to user mode"
        ),
        "epoll + socket reads (kernel, perf)": sum(
            perf.get(f"kernel: {k}", 0.0) for k in ("epoll_wait", "socket reads")
        ),
        "uvloop's C code (perf)": perf.get("loop.cpython-311-x86_64-linux-gnu.so"),
    }
    rest = None
    if plain is not None:
        rest = plain - sum(v or 0.0 for v in outside.values())
    print(f"{'stage':36} {'µs/msg profiled':>16} {'share':>7} {'µs/msg':>8}")
    for stage, seconds in sorted(python.items(), key=lambda kv: -kv[1]):
        us = seconds / messages * 1e6
        share = seconds / total
        scaled = f"{share * rest:8.2f}" if rest is not None else ""
        print(f"{stage:36} {us:16.2f} {share:7.1%} {scaled}")
    write = got.get(TRANSPORT, 0.0) / messages * 1e6
    print(f"{TRANSPORT + ' (wall)':36} {write:16.2f}")
    for label, value in outside.items():
        if value is not None:
            print(f"{label:36} {'':16} {'':7} {value:8.2f}")
    if plain is not None:
        print(f"{'total (unprofiled server CPU)':36} {'':16} {'':7} {plain:8.2f}")


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
        chosen = scenarios.SCENARIOS[base]
        timed = {"duration": args.duration} if "duration" in chosen.params else {}
        scenario = chosen.with_overrides({**timed, **{k: float(v) for k, v in overrides.items()}})
        plain: float | None = None
        perf: dict[str, float] = {}
        if args.perf:
            plain, dsos, perf = perf_dsos(args.tree, scenario, args.log_level)
            print(f"\n{name} without the profiler: {plain:.1f} µs of server CPU per message")
            print("perf, by shared object, then kernel functions with their callees:")
            print("  " + "\n  ".join(dsos))
        got, messages, cpu_s, stats = profile(args.tree, scenario, args.log_level, args.keep)
        cpu = cpu_s / messages * 1e6
        print(f"\n{name}: {messages} messages; loop thread {cpu:.1f} µs/message under cProfile")
        print_stages(got, messages, plain, perf)
        if args.top:
            stats.sort_stats("tottime").print_stats(args.top)
        sys.stdout.flush()


if __name__ == "__main__":
    with contextlib.suppress(subprocess.TimeoutExpired):
        main()
