"""A full disk (issue 13, item 6), on a real 16 MiB tmpfs under a real SQLite store:
commands that need no disk keep working, commands that must commit get `ERR
unavailable` with `retry_after` after a bounded wait, nothing is acknowledged that was
not committed, and service resumes by itself when space returns."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatd.server.daemon import Daemon
from tests.helpers.server import Client, FakeClock, config_with
from tests.helpers.stores import FullDisk

WAIT_S = 10.0  # a guard against hanging, never a measured quantity


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (needs root): {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Takes every free byte of the file system; returns the filler to delete."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    with pytest.raises(OSError) as e:
        os.close(os.open(disk / "probe", os.O_WRONLY | os.O_CREAT, 0o600))
        with open(disk / "probe", "wb") as f:
            f.write(b"x" * 4096)
    assert e.value.errno == errno.ENOSPC
    return filler


async def test_full_disk_refuses_writes_serves_reads_and_recovers(small_disk: Path) -> None:
    data = small_disk / "data"
    config = config_with(data, store__commit_timeout_s=1.0, store__commit_retry_s=0.2)
    daemon = Daemon(config, clock=FakeClock())
    await daemon.start()
    try:
        alice = await Client.connect(daemon.port)
        assert (await alice.cmd("login alice")).startswith("OK")
        bob = await Client.connect(daemon.port)
        assert (await bob.cmd("login bob")).startswith("OK")
        acked = [await alice.cmd("send_all before")]
        assert (await bob.line()).endswith("#general <alice> before")
        carol = await Client.connect(daemon.port)
        assert (await carol.cmd("login carol")).startswith("OK")
        filler = fill(small_disk)

        # Big messages need new pages in the WAL: the commit fails for lack of space.
        text = "x" * 3900
        started = time.monotonic()
        await alice.send("".join(f"send bob {i} {text}\n" for i in range(20)))
        assert await alice.silent(0.3)  # the commit is being retried: no OK, no loss
        t = time.monotonic()
        assert await carol.cmd("ping") == "OK pong"  # others are answered meanwhile
        assert await carol.cmd("who") == "OK 3 users online"
        assert time.monotonic() - t < 0.5
        replies = [await alice.line(timeout=WAIT_S) for _ in range(20)]
        waited = time.monotonic() - started
        refused = [r for r in replies if r.startswith("ERR unavailable ")]
        ok = [r for r in replies if r.startswith("OK sent")]
        assert refused, replies[:3]
        assert len(refused) + len(ok) == 20, replies
        assert all("(retry in 1s)" in r for r in refused), refused[0]
        assert waited < 1.0 + 3.0  # commit_timeout_s, then the answer: not silence
        acked += ok
        print(f"disk full: {len(ok)} sent, {len(refused)} refused after {waited:.2f}s")

        # Meanwhile: reads work, writes are refused at once, nothing leaks to bob.
        for line in ("ping", "who", "history #general 5", "status"):
            t = time.monotonic()
            assert (await alice.cmd(line)).startswith("OK"), line
            assert time.monotonic() - t < 1.0
        t = time.monotonic()
        err = await alice.cmd("send_all during")
        assert err.startswith("ERR unavailable ") and time.monotonic() - t < 1.0, err
        assert (await bob.cmd("room create nope")).startswith("ERR unavailable ")
        while not await bob.silent(0.2):  # the pushes of what was acknowledged
            pass
        await bob.send("history @alice 50\n")
        seen = [x for x in await bob.reply() if " @alice <alice> " in x]
        assert len(seen) == len(ok)  # exactly the acknowledged ones

        # Space returns: service resumes by itself.
        filler.unlink()
        deadline = time.monotonic() + WAIT_S
        while True:
            line = await alice.cmd("send_all after")
            if line.startswith("OK sent"):
                acked.append(line)
                break
            assert line.startswith("ERR unavailable "), line
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
        await daemon.hub.drain()
    finally:
        await daemon.stop()

    # What the store holds is exactly what was acknowledged, each once.
    db = sqlite3.connect(data / "chatd.sqlite3")
    texts = [row[0] for row in db.execute("SELECT text FROM messages ORDER BY id")]
    db.close()
    assert texts[0] == "before" and texts[-1] == "after"
    assert len(texts) == len(acked)
    assert len(set(texts)) == len(texts)


@pytest.mark.parametrize("synchronous", ["normal", "full"])  # inline and writer-thread commits
async def test_what_a_stuck_batch_held_is_refused_or_waits(
    tmp_path: Path, synchronous: str
) -> None:
    store = FullDisk()
    config = config_with(
        tmp_path,
        store__synchronous=synchronous,
        store__commit_timeout_s=0.5,
        store__commit_retry_s=0.1,
    )
    daemon = Daemon(config, clock=FakeClock(), store=store)
    await daemon.start()
    try:
        alice = await Client.connect(daemon.port)
        assert (await alice.jcmd("mode json"))["mode"] == "json"
        assert (await alice.jcmd("login alice"))["type"] == "ok"
        store.full = True
        # One batch: a message, a schedule and a new account (which binds: it waits).
        newcomer = await Client.connect(daemon.port)
        await alice.send("send_all lost\nschedule +1h send_all later\n")
        await newcomer.send("login dave\n")
        sent = await alice.obj(timeout=WAIT_S)
        scheduled = await alice.obj(timeout=WAIT_S)
        assert sent["code"] == scheduled["code"] == "unavailable", (sent, scheduled)
        assert sent["retry_after"] == 1 and sent["cmd"] == "send_all"
        assert (await alice.jcmd("scheduled"))["scheduled"] == []  # withdrawn
        assert (await alice.jcmd("history #general"))["messages"] == []
        assert await newcomer.silent(0.7)  # a new account waits for the disk
        store.full = False
        assert (await newcomer.line(timeout=WAIT_S)).startswith("OK welcome dave (new account)")
        assert (await alice.jcmd("send_all back"))["type"] == "ok"
        await daemon.hub.drain()
        assert [m.text for m in store.messages.values()] == ["back"]
        assert "dave" in store.accounts and not store.schedules

        # A batch with a change that binds and a message: the message is refused, the
        # change waits for the disk, and so does the rest of that session's output.
        carol = await Client.connect(daemon.port)
        assert (await carol.cmd("login carol")).startswith("OK")
        store.full = True
        await alice.send("room create dev\nsend_all lost too\n")
        assert await alice.silent(0.8)
        assert await carol.cmd("ping") == "OK pong"  # others go on
        assert (await carol.cmd("history #general")).startswith("OK 1 message")
        store.full = False
        created = await alice.obj(timeout=WAIT_S)
        refused = await alice.obj(timeout=WAIT_S)
        assert created["type"] == "ok" and created["room"] == "#dev", created
        assert refused["code"] == "unavailable" and refused["cmd"] == "send_all", refused
        await daemon.hub.drain()
        assert [m.text for m in store.messages.values()] == ["back"]
        assert "#dev" in store.rooms
    finally:
        await daemon.stop()
