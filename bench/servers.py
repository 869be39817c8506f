"""The servers under test, each started fresh per run as a child process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH_CONFIG = ROOT / "bench" / "chatd-bench.toml"
HOST = "127.0.0.1"


class ServerError(RuntimeError):
    """A server did not start, or is not installed."""


@dataclass(frozen=True)
class Running:
    """A started server: where it listens, its PID (for /proc), its log file."""

    proto: str  # "chatd" or "irc": the loadgen's dialect
    port: int
    pid: int
    log: Path
    setup_window: int = 8  # logins the loadgen keeps pending while it sets up clients


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise ServerError(f"server exited with {proc.returncode} before listening:\n{tail}")
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServerError(f"server not listening on {HOST}:{port} after {timeout:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(data: Mapping[str, Mapping[str, object]]) -> str:
    """Writes a TOML document of tables of scalars (all a chatd config has)."""
    parts = []
    for section, table in data.items():
        parts.append(f"[{section}]")
        parts.extend(f"{key} = {_toml_value(value)}" for key, value in table.items())
        parts.append("")
    return "\n".join(parts)


def chatd_config(overrides: Mapping[str, object]) -> dict[str, dict[str, object]]:
    """bench/chatd-bench.toml with dotted-key overrides (`"store.synchronous": "full"`)."""
    with BENCH_CONFIG.open("rb") as f:
        data: dict[str, dict[str, object]] = tomllib.load(f)
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})[key] = value
    return data


def chatd_python() -> str:
    """The project's virtualenv interpreter when there is one, else this interpreter."""
    venv = ROOT / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


@contextlib.contextmanager
def chatd(overrides: Mapping[str, object], workdir: Path) -> Iterator[Running]:
    """Runs run_server.py with the bench config and a fresh data directory."""
    # BENCH_TREE: the chatd targets run that tree (a `git archive` of a commit) instead of
    # this one, e.g. while the work tree is mid-edit.
    base = overrides.get("bench.tree") or os.environ.get("BENCH_TREE")
    server = (Path(str(base)) if base else ROOT) / "run_server.py"
    overrides = {k: v for k, v in overrides.items() if k != "bench.tree"}
    if not server.exists():
        raise ServerError(f"{server} does not exist (chatd not built yet?)")
    config = workdir / "chatd.toml"
    config.write_text(dump_toml(chatd_config(overrides)))
    data = workdir / "data"
    data.mkdir()
    port = free_port()
    log = workdir / "chatd.log"
    cmd = [chatd_python(), str(server), "--config", str(config), "--host", HOST]
    cmd += ["--port", str(port), "--data-dir", str(data)]
    if "log.level" not in overrides:
        cmd += ["--log-level", "warning"]
    with _running(cmd, workdir, port, log) as pid:
        yield Running("chatd", port, pid, log)


@contextlib.contextmanager
def _running(cmd: list[str], workdir: Path, port: int, log: Path) -> Iterator[int]:
    """Starts `cmd` with its output in `log`, waits until it listens on `port`, yields
    its PID, and stops it afterwards."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
    try:
        _wait_listening(proc, port, log, timeout=30)
        yield proc.pid
    finally:
        _stop(proc)


def _installed(name: str) -> str:
    """Path of a Debian-packaged server's executable (in /usr/sbin, often off PATH)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        raise ServerError(f"{name} not installed: apt-get update && apt-get install -y {name}")
    return found


def _version_line(binary: str) -> str:
    """The first line a server prints for --version."""
    out = subprocess.run([binary, "--version"], check=False, capture_output=True, timeout=10)
    lines = (out.stdout + out.stderr).decode(errors="replace").splitlines()
    return next((line.strip() for line in lines if line.strip()), "unknown")


NGIRCD_CONF = """\
[Global]
Name = bench.irc
Info = chatd benchmark
AdminInfo1 = bench
AdminInfo2 = bench
AdminEMail = bench@localhost
Listen = {host}
Ports = {port}
MotdPhrase = bench
[Limits]
# 0 = unlimited. A high number instead makes ngIRCd walk a pool of that many connection
# slots in every loop iteration (100000 slots: ~5 ms per iteration, 1 % of the throughput).
MaxConnections = 0
MaxConnectionsIP = 0
MaxJoins = 10
MaxNickLength = 31
MaxPenaltyTime = 0
PingTimeout = 600
PongTimeout = 600
[Options]
DNS = no
Ident = no
PAM = no
[Channel]
Name = #general
Modes = tn
"""


def ngircd_version() -> str:
    """ngIRCd's version line, e.g. `ngIRCd 26.1-IDENT+IPv6+...`."""
    return _version_line(_installed("ngircd"))


@contextlib.contextmanager
def ngircd(workdir: Path) -> Iterator[Running]:
    """Runs ngIRCd in the foreground (-n) with a generated config."""
    binary = _installed("ngircd")
    port = free_port()
    conf = workdir / "ngircd.conf"
    conf.write_text(NGIRCD_CONF.format(host=HOST, port=port))
    log = workdir / "ngircd.log"
    with _running([binary, "-n", "-f", str(conf)], workdir, port, log) as pid:
        yield Running("irc", port, pid, log)


# InspIRCd 3 with its limits out of the way (bench/README.md, "InspIRCd"). No <module> tags:
# only the built-in core modules run, so no ident, connect throttling or flood modules.
INSPIRCD_CONF = """\
<server name="bench.irc" description="chatd benchmark" network="bench">
<admin name="bench" nick="bench" email="bench@localhost">
<path configdir="{dir}" datadir="{dir}" logdir="{dir}" runtimedir="{dir}">
<pid file="{dir}/inspircd.pid">
<files motd="{dir}/motd.txt">
<bind address="{host}" port="{port}" type="clients">
<performance softlimit="{softlimit}" somaxconn="4096">
<limits maxnick="31">
<connect name="bench"
         allow="*"
         resolvehostnames="no"
         fakelag="no"
         threshold="4000000"
         commandrate="4000000000"
         recvq="16777216"
         softsendq="16777216"
         hardsendq="16777216"
         limit="1000000"
         localmax="1000000"
         globalmax="1000000"
         maxchans="100"
         maxconnwarn="no"
         pingfreq="10m"
         timeout="5m">
"""


def inspircd_version() -> str:
    """InspIRCd's version line, e.g. `InspIRCd-3.15.0-debian`."""
    return _version_line(_installed("inspircd"))


def _nofile_limit() -> int:
    """The soft RLIMIT_NOFILE the server inherits: its fd ceiling, so its softlimit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1_000_000 if soft == resource.RLIM_INFINITY else max(soft, 10)


@contextlib.contextmanager
def inspircd(workdir: Path) -> Iterator[Running]:
    """Runs InspIRCd in the foreground (--nofork) with a generated config."""
    binary = _installed("inspircd")
    port = free_port()
    (workdir / "motd.txt").write_text("bench\n")
    conf = workdir / "inspircd.conf"
    conf.write_text(
        INSPIRCD_CONF.format(dir=workdir, host=HOST, port=port, softlimit=_nofile_limit())
    )
    log = workdir / "inspircd.log"
    cmd = [binary, "--nofork", "--config", str(conf)]
    if os.geteuid() == 0:  # InspIRCd refuses to start as root without it
        cmd.append("--runasroot")
    with _running(cmd, workdir, port, log) as pid:
        # InspIRCd completes a registration only in its once-a-second housekeeping, so 8
        # pending logins would set up 8 clients per second; the storm is not paced.
        yield Running("irc", port, pid, log, setup_window=200)


@contextlib.contextmanager
def chatd_irc(workdir: Path) -> Iterator[Running]:
    """chatd's IRC door (issue 15): the `chatd` target's config plus `[irc] port`; the
    loadgen speaks IRC to it as to ngIRCd."""
    irc_port = free_port()
    with chatd({"store.synchronous": "normal", "irc.port": irc_port}, workdir) as running:
        yield Running("irc", irc_port, running.pid, running.log)


def chatd_irc_version() -> str:
    from chatd import __version__

    return f"chatd {__version__} (IRC door)"


TARGETS: dict[str, Mapping[str, object]] = {
    "chatd": {"store.synchronous": "normal"},
    "chatd-full": {"store.synchronous": "full"},
    # The default logging (issue 17): `info`, a JSON line per event into the log file.
    "chatd-info": {"store.synchronous": "normal", "log.level": "info", "log.format": "json"},
}
"""chatd targets and their config overrides; IRC_TARGETS are the others."""

if os.environ.get("BENCH_BASE_TREE"):
    # Before/after in one interleaved run: `git archive <commit> | tar -x -C DIR`, then
    # BENCH_BASE_TREE=DIR runs that tree's chatd as `chatd-base` (bench config, "normal").
    TARGETS["chatd-base"] = {
        "store.synchronous": "normal",
        "bench.tree": os.environ["BENCH_BASE_TREE"],
    }
    # ... and at the default logging, as chatd-info (what logging cost before).
    TARGETS["chatd-base-info"] = {
        **TARGETS["chatd-info"],
        "bench.tree": os.environ["BENCH_BASE_TREE"],
    }

IRC_TARGETS: dict[str, Callable[[Path], contextlib.AbstractContextManager[Running]]] = {
    "ngircd": ngircd,
    "inspircd": inspircd,
    "chatd-irc": chatd_irc,
}
"""IRC servers for reference: each starts one in a working directory."""

VERSIONS: dict[str, Callable[[], str]] = {
    "ngircd": ngircd_version,
    "inspircd": inspircd_version,
    "chatd-irc": chatd_irc_version,
}
"""The version line of each IRC target, for the results file."""

ALL_TARGETS = (*TARGETS, *IRC_TARGETS)


@contextlib.contextmanager
def start(target: str) -> Iterator[Running]:
    """Starts `target` in a fresh temporary directory, removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{target}-"))
    try:
        cm: contextlib.AbstractContextManager[Running]
        if target in IRC_TARGETS:
            cm = IRC_TARGETS[target](workdir)
        elif target in TARGETS:
            cm = chatd(TARGETS[target], workdir)
        else:
            raise ServerError(f"unknown target {target!r} (known: {', '.join(ALL_TARGETS)})")
        with cm as running:
            yield running
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
