"""Builds the C load generator (bench/loadgen.c) on demand and runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.scenarios import Scenario
from bench.servers import Running

BENCH = Path(__file__).resolve().parent
SOURCE = BENCH / "loadgen.c"
BINARY = BENCH / "build" / "loadgen"


class GeneratorUnavailable(RuntimeError):
    """No C compiler, so the C load generator cannot be built."""


def build() -> Path:
    """Compiles loadgen.c with `cc -O2` unless the binary is newer than the source."""
    if BINARY.exists() and BINARY.stat().st_mtime >= SOURCE.stat().st_mtime:
        return BINARY
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise GeneratorUnavailable("no C compiler (cc) found to build bench/loadgen.c")
    BINARY.parent.mkdir(exist_ok=True)
    tmp = BINARY.with_suffix(".tmp")
    proc = subprocess.run(
        [cc, "-O2", "-Wall", "-o", str(tmp), str(SOURCE)],
        check=False,
        capture_output=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise GeneratorUnavailable("cc failed:\n" + proc.stderr.decode(errors="replace"))
    tmp.replace(BINARY)
    return BINARY


def command(binary: Path, server: Running, scenario: Scenario) -> list[str]:
    """The loadgen command line for one scenario against one running server."""
    cmd = [str(binary), "--proto", server.proto, "--port", str(server.port)]
    cmd += ["--server-pid", str(server.pid), "--scenario", scenario.kind]
    cmd += ["--window", str(server.setup_window)]
    for key, value in scenario.params.items():
        if key == "join":
            if not value:
                cmd.append("--no-join")
            continue
        cmd += [f"--{key}", f"{value:g}"]
    return cmd


def wall_limit(scenario: Scenario) -> float:
    """Seconds after which a loadgen run is killed: setup, the phase, drain, slack."""
    p = scenario.params
    return p.get("timeout", 120) + p.get("duration", 0) + 120


def run(server: Running, scenario: Scenario) -> tuple[dict[str, Any], str]:
    """Runs the C loadgen; returns its JSON result and its stderr (diagnostics)."""
    proc = subprocess.run(
        command(build(), server, scenario),
        check=False,
        capture_output=True,
        timeout=wall_limit(scenario),
    )
    stderr = proc.stderr.decode(errors="replace").strip()
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"loadgen exited with {proc.returncode}: {stderr}") from None
    return result, stderr
