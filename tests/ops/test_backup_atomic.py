"""`chatd backup` is atomic (issue 13, item 16): a backup killed with SIGKILL leaves
nothing that blocks the next one, and a backup directory is complete or absent."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from pathlib import Path

from tests.helpers.server import ROOT, Server, StartServer

WAIT_S = 10.0  # a guard against hanging, never a measured quantity

# A backup that takes one page per step and naps after each: slow enough to be killed
# in the middle, reporting each step on stdout.
_SLOW_BACKUP = """
import sys, time
from pathlib import Path
from chatd.backup import backup_data_dir
def step(remaining, total):
    print("step", remaining, total, flush=True)
    time.sleep(0.05)
backup_data_dir(Path(sys.argv[1]), Path(sys.argv[2]), pages_per_step=1, progress=step)
"""


async def _chatter(server: Server, n: int) -> None:
    alice = await server.login("alice")
    await alice.send("".join(f"send_all message {i} {'x' * 500}\n" for i in range(n)))
    for _ in range(n):
        assert (await alice.reply())[-1].startswith("OK sent")


async def _slow_backup_started(data_dir: Path, dest: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SLOW_BACKUP,
        str(data_dir),
        str(dest),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), WAIT_S)
    assert line.startswith(b"step"), line
    return proc


async def _cli_backup(data_dir: Path, dest: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "chatd",
        "--data-dir",
        str(data_dir),
        "backup",
        str(dest),
        cwd=dest.parent,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    assert proc.returncode is not None
    return proc.returncode, (out + err).decode()


def _messages_in(db: Path) -> int:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (n,) = conn.execute("SELECT count(*) FROM messages").fetchone()
        return int(n)
    finally:
        conn.close()


async def test_a_killed_backup_leaves_nothing_in_the_way(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server(limits__general_messages_per_window=1000)
    await _chatter(server, 200)
    dest = tmp_path / "backups" / "nightly"
    partial = dest.with_name(".nightly.partial")

    killed = await _slow_backup_started(server.data_dir, dest)
    assert partial.is_dir() and not dest.exists()  # being made beside dest, not in it
    # Meanwhile a second backup into the same place is refused, not interleaved.
    code, text = await _cli_backup(server.data_dir, dest)
    assert code == 1 and "another backup" in text, text
    killed.kill()
    await asyncio.wait_for(killed.wait(), WAIT_S)
    assert not dest.exists()  # complete or absent: absent

    code, text = await _cli_backup(server.data_dir, dest)
    assert code == 0, text
    assert not partial.exists()  # the killed one's leftovers are gone
    assert _messages_in(dest / "chatd.sqlite3") == 200
    assert sorted(p.name for p in dest.iterdir()) == ["chatd.sqlite3", "files"]
    assert sorted(p.name for p in dest.parent.iterdir()) == ["nightly"]


async def test_an_empty_dest_stays_empty_until_the_copy_is_complete(
    start_server: StartServer, tmp_path: Path
) -> None:
    server = await start_server(limits__general_messages_per_window=1000)
    await _chatter(server, 100)
    dest = tmp_path / "mounted-here"
    dest.mkdir()
    killed = await _slow_backup_started(server.data_dir, dest)
    killed.kill()
    await asyncio.wait_for(killed.wait(), WAIT_S)
    assert dest.is_dir() and list(dest.iterdir()) == []
    code, text = await _cli_backup(server.data_dir, dest)
    assert code == 0, text
    assert _messages_in(dest / "chatd.sqlite3") == 100
    # A complete backup is never overwritten.
    code, text = await _cli_backup(server.data_dir, dest)
    assert code == 1 and "not empty" in text, text
