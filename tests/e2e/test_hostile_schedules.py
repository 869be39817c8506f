"""Timed work in slices (issue 13, item 5): 30,000 scheduled messages falling due in the
same second are fired `limits.schedules_per_tick` at a time, so the event loop keeps
answering everyone else meanwhile, and each fires exactly once."""

from __future__ import annotations

import asyncio
import sqlite3
import time

from tests.helpers.server import StartServer

N = 30_000


async def test_30000_due_schedules_do_not_stall_a_ping(start_server: StartServer) -> None:
    server = await start_server(limits__private_messages_per_window=0)
    for name in ("alice", "bob"):
        c = await server.login(name)
        assert await c.cmd("quit") == "OK bye"
    at = server.clock.now + 5
    db = sqlite3.connect(server.data_dir / "chatd.sqlite3", timeout=5)
    with db:
        db.executemany(
            "INSERT INTO schedules (id, user, at, command, created) VALUES (?, ?, ?, ?, ?)",
            ((i + 1, "alice", at, f"send bob m{i}", at - 5) for i in range(N)),
        )
    db.close()
    server = await server.restart(limits__private_messages_per_window=0)
    calm = await server.login("calm")
    chat = server.daemon.chat
    assert len(chat.schedules.by_id) == N
    server.clock.advance(10)
    server.daemon.tick()  # all 30,000 are due now
    worst, pings = 0.0, 0
    deadline = time.monotonic() + 60
    while chat.schedules.by_id and time.monotonic() < deadline:
        started = time.perf_counter()
        assert await calm.cmd("ping") == "OK pong"
        worst = max(worst, time.perf_counter() - started)
        pings += 1
        await asyncio.sleep(0.005)
    assert not chat.schedules.by_id, len(chat.schedules.by_id)
    assert pings >= 5  # it took many turns of the loop, and we were answered in each
    assert worst < 1.0, worst  # before: one tick held the loop for seconds
    await server.daemon.hub.drain()
    texts = [m.text for m in chat.read_bodies(chat.index.chats["@alice|bob"].ids)]
    assert sorted(texts) == sorted(f"m{i}" for i in range(N))
    server = await server.restart(limits__private_messages_per_window=0)
    assert not server.daemon.chat.schedules.by_id  # none fires again after a restart
    assert len(server.daemon.chat.index.chats["@alice|bob"]) == N
