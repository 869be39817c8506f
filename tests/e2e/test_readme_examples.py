"""README.md's nc pipelines, run verbatim through Debian's real `nc` against a daemon.

Every line in a README code block that starts with `$ ` and pipes into `nc` is a
command; the lines after it, up to the next `$ ` or the end of the block, are what it
prints. Only the port changes (the fixture's daemon listens on a free one), and clock
times, which depend on the day the README was written, are compared by shape.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from tests.helpers.server import ROOT, Server

WAIT_S = 10.0  # a guard against hanging, not a measured quantity
README = ROOT / "README.md"
_CLOCK = re.compile(r"\b\d\d:\d\d:\d\d\b")
_RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@dataclass(frozen=True)
class Example:
    command: str
    output: list[str]


def readme_examples() -> list[Example]:
    """The `$ … | nc …` lines of README.md's code blocks, each with its output."""
    examples: list[Example] = []
    in_block = False
    current: Example | None = None
    for line in README.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_block = not in_block
            current = None
            continue
        if not in_block:
            continue
        if line.startswith("$ "):
            current = None
            if re.search(r"\|\s*nc\b", line):
                current = Example(line[2:], [])
                examples.append(current)
        elif current is not None:
            current.output.append(line)
    return examples


EXAMPLES = readme_examples()


def _shape(lines: list[str]) -> list[str]:
    return [_RFC3339.sub("<ts>", _CLOCK.sub("<hh:mm:ss>", line)) for line in lines]


def _netcat() -> str:
    nc = shutil.which("nc")
    if nc is None:
        pytest.skip("nc is not installed (Debian: apt-get install netcat-openbsd)")
    usage = subprocess.run([nc, "-h"], capture_output=True, text=True, check=False)
    if "-N" not in usage.stdout + usage.stderr:
        pytest.skip("this nc is not netcat-openbsd (no -N)")
    return nc


def test_the_readme_has_nc_pipelines_and_each_sends_eof() -> None:
    assert EXAMPLES, "README.md shows no `$ … | nc …` example"
    for ex in EXAMPLES:
        assert re.search(r"\bnc -N 127\.0\.0\.1 8000\b", ex.command), ex.command
        assert ex.output, f"no output shown for {ex.command}"


@pytest.mark.parametrize("example", EXAMPLES, ids=[e.command for e in EXAMPLES])
async def test_a_readme_pipeline_prints_what_the_readme_shows(
    server: Server, example: Example
) -> None:
    _netcat()
    command = example.command.replace("127.0.0.1 8000", f"127.0.0.1 {server.port}")
    proc = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # nc exits by itself: the server answers every line, then closes.
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode == 0, err.decode()
    assert _shape(out.decode().splitlines()) == _shape(example.output)


async def test_without_dash_n_nc_keeps_waiting_after_the_replies(server: Server) -> None:
    """Why the README says `-N`: without it the replies come, but nc never ends."""
    nc = _netcat()
    proc = await asyncio.create_subprocess_exec(
        nc,
        "127.0.0.1",
        str(server.port),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"login zed\nwho\n")
        await proc.stdin.drain()
        proc.stdin.close()
        lines: list[bytes] = []
        while not (lines and lines[-1].startswith(b"OK 1 user online")):
            lines.append(await asyncio.wait_for(proc.stdout.readline(), WAIT_S))
        assert lines[1].startswith(b"OK welcome zed")
        # Its input has ended, yet nc still holds the connection open: zed is online.
        assert proc.returncode is None
        other = await server.login("ann")
        await other.send("who\n")
        assert await other.reply() == [
            "  ann (1 session)",
            "  zed (1 session)",
            "OK 2 users online",
        ]
    finally:
        proc.kill()
        await proc.wait()
