"""Durability and shutdown: an `OK` means on disk (kill -9 loses nothing acknowledged);
accounts, passwords, strikes, bans and read positions survive restarts; SIGTERM/SIGINT
tell every session, flush and exit 0 (shared/PROTOCOL.md, issue 2).

kill -9 and signal tests run the real daemon in a child process (`spawn_server`) with
the default `store.synchronous` ("full").
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.protocol import err_code, jlogin, jlogin_full, register
from tests.helpers.server import Child, Client, Server

SpawnServer = Callable[..., Child]
OK_ID = re.compile(r"^OK .*\[(\d+)\]")


async def connect(child: Child) -> Client:
    return await Client.connect(child.port)


async def login(child: Child, name: str, password: str = "") -> Client:
    c = await connect(child)
    ok = await c.cmd(f"login {name} {password}".strip())
    assert ok.startswith("OK"), ok
    n = int(re.findall(r"\d+", ok)[-1])  # "…, N unread"
    for _ in range(n):
        await c.line()
    return c


async def jlogin_child(
    child: Child, name: str, password: str = ""
) -> tuple[Client, dict[str, Any], list[dict[str, Any]]]:
    c = await connect(child)
    await c.send("mode json\n")
    assert (await c.obj())["mode"] == "json"
    await c.send(f"login {name} {password}".strip() + "\n")
    ok = await c.obj()
    assert ok["type"] == "ok", ok
    replay = [await c.obj() for _ in range(ok["unread"])]
    return c, ok, replay


def wait_exit(child: Child, timeout: float = 15) -> int:
    return child.proc.wait(timeout)


# kill -9 ---------------------------------------------------------------------------------


async def test_kill9_after_300_pipelined_sends_loses_no_acknowledged_message(
    spawn_server: SpawnServer,
) -> None:
    child = spawn_server()
    bob = await login(child, "bob")
    assert await bob.cmd("quit") == "OK bye"
    alice = await login(child, "alice")
    # 20 to #general (its hourly limit), 280 private: 300 commands in one write.
    lines = [f"send_all g{i}" for i in range(20)] + [f"send bob p{i}" for i in range(280)]
    await alice.send("".join(x + "\n" for x in lines))
    acked = []
    for _ in lines:
        ok = await alice.line()
        m = OK_ID.match(ok)
        assert m, ok
        acked.append(int(m.group(1)))
    child.kill9()  # right after the last OK

    child2 = spawn_server()
    _, ok2, replay = await jlogin_child(child2, "bob")
    assert ok2["unread"] == 300
    assert [m["id"] for m in replay] == acked
    assert [m["text"] for m in replay] == [x.split()[-1] for x in lines]
    c, _, _ = await jlogin_child(child2, "alice")
    h = await c.jcmd("history #general 20")
    assert [m["text"] for m in h["messages"]] == [f"g{i}" for i in range(20)]
    # ids keep increasing after the restart
    o = await c.jcmd("send bob after")
    assert o["id"] > max(acked)


async def test_kill9_while_sending_keeps_every_acknowledged_message(
    spawn_server: SpawnServer,
) -> None:
    child = spawn_server()
    await register_child(child, "bob")
    alice = await login(child, "alice")
    await alice.send("".join(f"send bob q{i}\n" for i in range(300)))
    acked = []
    for _ in range(150):  # kill in the middle of the stream of OKs
        m = OK_ID.match(await alice.line())
        assert m
        acked.append(int(m.group(1)))
    child.kill9()
    child2 = spawn_server()
    _, ok, replay = await jlogin_child(child2, "bob")
    ids = [m["id"] for m in replay]
    assert ok["unread"] >= 150
    assert set(acked) <= set(ids)
    assert ids == sorted(ids)


async def register_child(child: Child, *names: str, password: str = "") -> None:
    for name in names:
        c = await login(child, name, password)
        assert await c.cmd("quit") == "OK bye"
        assert await c.closed()


async def test_kill9_keeps_accounts_passwords_strikes_and_bans(
    spawn_server: SpawnServer,
) -> None:
    child = spawn_server()
    await register_child(child, "alice", password="alice-pw")
    await register_child(child, "bob", "carol", "dave", "r1", "r2", "r3")
    for reporter, targets in (("r1", ("carol", "dave")), ("r2", ("carol", "dave"))):
        c = await login(child, reporter)
        for t in targets:
            assert (await c.cmd(f"ban {t}")).startswith("OK")
    r3 = await jlogin_child(child, "r3")
    o = await r3[0].jcmd("ban dave")
    assert o["strikes"] == 3 and o["banned_until"] is not None
    child.kill9()

    child2 = spawn_server()
    c = await connect(child2)
    assert err_code(await c.cmd("login alice")) == "bad-password"
    assert err_code(await c.cmd("login alice wrong")) == "bad-password"
    assert (await c.cmd("login alice alice-pw")).startswith("OK")
    _, ok, _ = await jlogin_child(child2, "bob")
    assert ok["new"] is False
    # dave is still banned
    dave, _, _ = await jlogin_child(child2, "dave")
    o = await dave.jcmd("send_all let me out")
    assert o["code"] == "banned" and o["retry_after"] > 14000
    # carol still has 2 strikes from r1 and r2: r1 again adds none, r3 bans
    r1, _, _ = await jlogin_child(child2, "r1")
    assert (await r1.jcmd("ban carol"))["strikes"] == 2
    r3c, _, _ = await jlogin_child(child2, "r3")
    o = await r3c.jcmd("ban carol")
    assert o["strikes"] == 3 and o["banned_until"] is not None


async def test_kill9_keeps_read_position_of_a_session_that_quit(
    spawn_server: SpawnServer,
) -> None:
    child = spawn_server()
    alice, _, _ = await jlogin_child(child, "alice")
    bob, _, _ = await jlogin_child(child, "bob")
    seen = await bob.jcmd("send_all seen live")
    assert (await alice.obj())["id"] == seen["id"]
    assert (await alice.jcmd("quit"))["type"] == "ok"
    assert await alice.closed()
    missed = await bob.jcmd("send alice missed")
    child.kill9()
    child2 = spawn_server()
    _, ok, replay = await jlogin_child(child2, "alice")
    assert [m["id"] for m in replay] == [missed["id"]]
    assert ok["unread"] == 1 and replay[0]["replay"] is True


# Clean restarts (in-process) --------------------------------------------------------------


async def test_restart_keeps_accounts_passwords_strikes_bans(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice pw1")).startswith("OK")
    assert (await c.cmd("passwd pw2 pw1")).startswith("OK")
    await register(server, "target", "r1", "r2", "r3", "victim")
    for r in ("r1", "r2"):
        x = await jlogin(server, r)
        assert (await x.jcmd("ban target"))["type"] == "ok"
        assert (await x.jcmd("ban victim"))["type"] == "ok"
    r3 = await jlogin(server, "r3")
    assert (await r3.jcmd("ban victim"))["strikes"] == 3
    server = await server.restart()

    c = await server.connect()
    assert err_code(await c.cmd("login alice pw1")) == "bad-password"
    assert (await c.cmd("login alice pw2")).startswith("OK welcome alice,")
    v = await jlogin(server, "victim")
    assert (await v.jcmd("send_all hi"))["code"] == "banned"
    r1 = await jlogin(server, "r1")
    assert (await r1.jcmd("report target"))["strikes"] == 2
    r3 = await jlogin(server, "r3")
    assert (await r3.jcmd("report target"))["strikes"] == 3
    t = await jlogin(server, "target")
    assert (await t.jcmd("send_all hi"))["code"] == "banned"
    # a ban still ends on time after a restart
    server.clock.advance(14401)
    assert (await v.jcmd("send_all free again"))["type"] == "ok"


async def test_restart_keeps_read_positions(server: Server) -> None:
    alice = await jlogin(server, "alice")
    online = await jlogin(server, "olivia")  # online across the restart
    bob = await jlogin(server, "bob")
    first = await bob.jcmd("send_all first")
    assert (await alice.obj())["id"] == first["id"]
    assert (await online.obj())["id"] == first["id"]
    await alice.jcmd("quit")
    assert await alice.closed()
    second = await bob.jcmd("send alice second")
    server = await server.restart()

    _, ok, replay = await jlogin_full(server, "alice")
    assert ok["unread"] == 1 and [m["id"] for m in replay] == [second["id"]]
    # olivia received `first` live before the shutdown: not replayed
    _, ok, replay = await jlogin_full(server, "olivia")
    assert ok["unread"] == 0, replay
    # bob sent everything himself
    _, ok, _ = await jlogin_full(server, "bob")
    assert ok["unread"] == 0


async def test_restart_shutdown_notice_to_in_process_sessions(server: Server) -> None:
    a = await server.login("alice")
    j = await jlogin(server, "bob")
    anon = await server.connect()
    await server.restart()
    assert (await a.line()).startswith("* ")
    assert await a.closed()
    n = await j.obj()
    assert n == {"type": "notice", "event": "shutdown"} or (
        n["type"] == "notice" and n["event"] == "shutdown"
    )
    assert await j.closed()
    assert (await anon.line()).startswith("* ")
    assert await anon.closed()


# Signals ---------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_signal_sends_shutdown_notice_flushes_and_exits_0(
    spawn_server: SpawnServer, sig: signal.Signals
) -> None:
    child = spawn_server()
    text = await login(child, "alice")
    js, _, _ = await jlogin_child(child, "bob")
    anon = await connect(child)  # not logged in: told as well
    sent = await js.jcmd("send alice before the signal")
    assert (await text.line()).endswith("before the signal")

    child.proc.send_signal(sig)
    line = await text.line(timeout=10)
    assert line.startswith("* ") and "shut" in line
    n = await js.obj(timeout=10)
    assert n["type"] == "notice" and n["event"] == "shutdown"
    assert (await anon.line(timeout=10)).startswith("* ")
    # it stopped accepting: a new connection is refused or turned away at once
    try:
        late = await Client.connect(child.port, greet=False)
    except OSError:
        pass
    else:
        try:
            first = await late.line(timeout=10)
        except (EOFError, ConnectionError):
            first = ""
        assert not first.startswith("* chatd"), first
    for c in (text, js, anon):
        assert await c.closed(timeout=10)
    rc = await asyncio.to_thread(wait_exit, child)
    assert rc == 0, child.proc.stderr.read() if child.proc.stderr else ""

    child2 = spawn_server()
    _, ok, _ = await jlogin_child(child2, "alice")
    assert ok["unread"] == 0  # alice received it before the shutdown
    b, _, _ = await jlogin_child(child2, "bob")
    h = await b.jcmd("history @alice")
    assert [m["id"] for m in h["messages"]] == [sent["id"]]


async def test_sigterm_exits_even_with_a_reader_that_stopped_reading(
    spawn_server: SpawnServer, tmp_path: Path
) -> None:
    # A short drain timeout from ./chatd.toml keeps the test fast; the mechanism is
    # the same as with the default 5 s.
    (tmp_path / "chatd.toml").write_text(
        "[server]\nshutdown_timeout_s = 0.5\n[limits]\ngeneral_messages_per_window = 100000\n"
    )
    child = spawn_server()
    loop = asyncio.get_running_loop()
    import socket

    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.setblocking(False)
    await loop.sock_connect(stuck, ("127.0.0.1", child.port))
    await loop.sock_sendall(stuck, b"login stuck\n")
    try:
        alice = await login(child, "alice")
        await alice.send("".join(f"send_all {i} {'z' * 2000}\n" for i in range(200)))
        for _ in range(200):
            assert (await alice.line()).startswith("OK")
        child.proc.send_signal(signal.SIGTERM)
        assert (await alice.until(lambda x: x.startswith("* "), timeout=10)).startswith("* ")
        rc = await asyncio.to_thread(wait_exit, child)
        assert rc == 0
    finally:
        stuck.close()
