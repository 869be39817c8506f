"""Scheduled messages over real TCP: firing, cancel, restarts, text mode, a real clock."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from chatd.server.daemon import Daemon
from tests.helpers.server import Server, config_with


async def test_schedule_fires_cancel_before_and_after(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    bob = await server.login("bob", mode="json")
    made = await alice.jcmd("schedule +30s send_all ding")
    assert made["type"] == "ok" and made["at"].endswith("Z")
    doomed = await alice.jcmd("schedule +40s send_all never")
    assert (await alice.jcmd(f"cancel {doomed['schedule_id']}")) == {
        "type": "ok",
        "cmd": "cancel",
        "schedule_id": doomed["schedule_id"],
    }
    listed = await alice.jcmd("scheduled")
    assert [r["command"] for r in listed["scheduled"]] == ["send_all ding"]

    server.clock.advance(30)
    server.daemon.tick()
    got = await bob.obj()
    assert (got["from"], got["text"], got["chat"]) == ("alice", "ding", "#general")
    assert await alice.obj() == {
        "type": "notice",
        "event": "scheduled-sent",
        "schedule_id": made["schedule_id"],
        "id": got["id"],
    }
    mine = await alice.obj()
    assert (mine["type"], mine["id"], mine["replay"]) == ("message", got["id"], False)
    late = await alice.jcmd(f"cancel {made['schedule_id']}")
    assert late["type"] == "error" and late["code"] == "no-such-schedule"
    server.clock.advance(60)
    server.daemon.tick()
    assert await bob.silent()  # the cancelled one never comes


async def test_schedules_survive_a_restart_and_due_ones_go_at_start(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    await alice.jcmd("schedule +10m send_all after restart")
    await alice.jcmd("schedule +1h send_all while down")
    await alice.close()

    server = await server.restart()
    alice = await server.login("alice", mode="json")
    assert len((await alice.jcmd("scheduled"))["scheduled"]) == 2
    server.clock.advance(600)
    server.daemon.tick()
    got = [await alice.obj(), await alice.obj()]  # the message and scheduled-sent
    assert {o["type"] for o in got} == {"message", "notice"}
    assert next(o["text"] for o in got if o["type"] == "message") == "after restart"
    await alice.close()

    await server.daemon.stop()
    server.clock.advance(7200)  # the second falls due while the server is down
    server = await server.restart()
    bob = await server.login("bob", mode="json")
    history = await bob.jcmd("history #general")
    assert [m["text"] for m in history["messages"]] == ["after restart", "while down"]
    server = await server.restart()  # not sent twice
    bob = await server.login("bob", mode="json")
    history = await bob.jcmd("history #general")
    assert [m["text"] for m in history["messages"]] == ["after restart", "while down"]
    alice = await server.login("alice", mode="json")
    assert (await alice.jcmd("scheduled"))["scheduled"] == []


async def test_schedule_in_text_mode(server: Server) -> None:
    alice = await server.login("alice")
    assert (
        await alice.cmd("schedule +1m send_all hi") == "OK scheduled 1 at 2027-01-15T08:01:00.000Z"
    )
    await alice.send("scheduled\n")
    assert await alice.reply() == [
        "  1 at 2027-01-15T08:01:00.000Z: send_all hi",
        "OK 1 scheduled message",
    ]
    assert (await alice.cmd("schedule yesterday send_all hi")).startswith("ERR bad-args")
    assert await alice.cmd("cancel 1") == "OK cancelled 1"


async def test_a_real_one_second_schedule(tmp_path: Path) -> None:
    daemon = Daemon(config_with(tmp_path / "data"), clock=time.time)
    await daemon.start()
    try:
        server = Server(daemon, None, tmp_path / "data")  # type: ignore[arg-type]
        alice = await server.login("alice", mode="json")
        started = time.monotonic()
        await alice.jcmd("schedule +1s send_all tick")
        got = [await alice.obj(timeout=3), await alice.obj()]
        assert 0.5 < time.monotonic() - started < 2.5
        assert next(o["text"] for o in got if o["type"] == "message") == "tick"
        assert next(o["event"] for o in got if o["type"] == "notice") == "scheduled-sent"
    finally:
        await daemon.stop()
    await asyncio.sleep(0)
