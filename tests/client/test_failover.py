"""The client with several servers (`--server`): the first that greets is used, a drop
fails over to the next at once, and the backoff applies only after a whole round
failed; the login after a failover asks for everything after the last message shown,
so nothing is lost or shown twice. In-process daemons for the order of tries, the real
client in a pseudo-terminal against child-process servers for what a person sees."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chatd.client.connection import ConnectError, Endpoint
from chatd.client.session import LoginError, Session
from tests.helpers.server import ROOT, Child, Client, StartServer, free_port
from tests.helpers.session_events import WAIT_S, Recorder
from tests.helpers.tty import Tty


def logins(rec: Recorder) -> list[tuple[object, ...]]:
    return [e for e in rec.events if e[0] == "login"]


async def test_the_first_server_that_greets_is_used_and_a_drop_fails_over_at_once(
    start_server: StartServer,
) -> None:
    one, two = await start_server(), await start_server()
    dead = free_port()
    servers = [Endpoint(port=p) for p in (dead, one.port, two.port)]
    rec = Recorder()
    # min_uptime=0: the connection counts as lasting however short the test keeps it.
    session = Session(servers, "alice", None, rec, retry_base=0.01, min_uptime=0)
    await session.start()
    assert session.endpoint.port == one.port  # the dead one was skipped, in order
    supervisor = asyncio.create_task(session.run())
    try:
        bob = await one.login("bob")
        assert (await bob.cmd("send alice on one")).startswith("OK sent")
        await rec.until(lambda e: e[:3] == ("push", "message", "on one"))

        await one.daemon.stop()
        await rec.until(lambda e: len(logins(rec)) == 2)
        assert session.endpoint.port == two.port  # the next after the one that dropped
        assert not [e for e in rec.events if e[0] == "retry"]  # no delay: two was up
        carol = await two.login("carol")
        assert (await carol.cmd("send alice on two")).startswith("OK sent")
        await rec.until(lambda e: e[:3] == ("push", "message", "on two"))

        # Both down: the others (dead, one) are tried at once and fail, then rounds of
        # all three with backoff, until one's port answers again.
        await two.daemon.stop()
        await rec.until(lambda e: len([e for e in rec.events if e[0] == "retry"]) >= 3)
        back = await start_server(server__port=one.port)
        await rec.until(lambda e: len(logins(rec)) == 3)
        assert session.endpoint.port == back.port
        retries = [e for e in rec.events if e[0] == "retry"]
        assert retries[0][1] == 0.01
        assert all(
            b[1] == pytest.approx(min(2 * a[1], 0.3)) for a, b in itertools.pairwise(retries)
        )
        # Each says why the round before failed: the last server tried in it.
        assert f"cannot connect to 127.0.0.1:{one.port}: connection refused" in str(retries[0][2])
        assert f"127.0.0.1:{two.port}" in str(retries[1][2])
        assert (await session.request("ping"))["type"] == "ok"
    finally:
        await session.close()
        await supervisor


async def test_a_connection_that_did_not_last_waits_before_failing_over(
    start_server: StartServer,
) -> None:
    """Two servers that each took the login and dropped it at once would otherwise be
    tried in turn without a pause."""
    one, two = await start_server(), await start_server()
    rec = Recorder()
    servers = [Endpoint(port=one.port), Endpoint(port=two.port)]
    session = Session(servers, "alice", None, rec, retry_base=0.01, min_uptime=60)
    await session.start()
    supervisor = asyncio.create_task(session.run())
    try:
        await one.daemon.stop()
        await rec.until(lambda e: len(logins(rec)) == 2)
        after_drop = rec.events[rec.events.index(("offline",)) + 1 :]
        assert after_drop[0] == ("retry", 0.01, None)  # waited first
        assert session.endpoint.port == two.port
    finally:
        await session.close()
        await supervisor


async def test_when_no_server_answers_start_says_why_for_each() -> None:
    a, b = free_port(), free_port()
    session = Session([Endpoint(port=a), Endpoint(port=b)], "alice", None, Recorder())
    with pytest.raises(ConnectError) as info:
        await session.start()
    text = str(info.value)
    assert text.startswith("no server could be used: ")
    assert f"127.0.0.1:{a}: connection refused" in text
    assert f"127.0.0.1:{b}: connection refused" in text


async def test_a_refusal_every_node_would_repeat_is_not_taken_to_the_next(
    start_server: StartServer,
) -> None:
    one, two = await start_server(), await start_server()
    c = await one.connect()
    assert (await c.cmd("login alice pw")).startswith("OK welcome")
    await c.close()
    servers = [Endpoint(port=one.port), Endpoint(port=two.port)]
    with pytest.raises(LoginError) as info:
        await Session(servers, "alice", None, Recorder()).start()
    assert info.value.code == "bad-password"
    c = await two.connect()  # never tried: alice is still a new name there
    assert (await c.cmd("login alice")).startswith("OK welcome alice (new account)")
    await c.close()


async def test_the_client_fails_over_to_the_second_server_and_shows_each_message_once(
    spawn_server: Callable[..., Child], tmp_path: Path
) -> None:
    first = spawn_server()
    second_port = free_port()
    servers = f"127.0.0.1:{first.port},127.0.0.1:{second_port}"
    args = ["--server", servers, "--user", "alice", "--retry-delay", "0.05"]
    alice = Tty(args, tmp_path / "state")
    try:
        await alice.expect(
            lambda s: s.find(f"logged in to 127.0.0.1:{first.port} as alice") is not None,
            "the login, naming the first server",
        )
        await alice.prompt()
        bob = await Client.connect(first.port)
        assert (await bob.cmd("login bob")).startswith("OK")
        assert (await bob.cmd("send alice before the kill")).startswith("OK sent")
        await alice.expect(lambda s: s.find("<bob> before the kill") is not None, "it live")
        await bob.close()

        first.kill9()
        await alice.expect(lambda s: s.find("connection lost") is not None, "the drop")
        # While alice is away, bob writes to her: stored by an interim server on the same
        # data but a port she does not know, so they are certain to be missed.
        interim = spawn_server(data_dir=first.data_dir, port=free_port())
        bob = await Client.connect(interim.port)
        assert (await bob.cmd("login bob")).startswith("OK")
        for text in ("missed one", "missed two"):
            assert (await bob.cmd(f"send alice {text}")).startswith("OK sent")
        await bob.close()
        interim.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(interim.proc.wait, WAIT_S) == 0

        # The second server takes over the data (as a standby node would).
        second = spawn_server(data_dir=first.data_dir, port=second_port)
        await alice.expect(
            lambda s: s.find(f"reconnected to 127.0.0.1:{second_port} as alice") is not None,
            "the login on the second server, naming it",
        )
        await alice.expect(lambda s: s.find("<bob> missed two") is not None, "the replay")
        await alice.prompt()
        row = alice.screen.find("missed one")
        assert row is not None and alice.screen.line(row).startswith("[unread]")
        bob = await Client.connect(second.port)
        assert (await bob.cmd("login bob")).startswith("OK")
        assert (await bob.cmd("send alice live again")).startswith("OK sent")
        await alice.expect(lambda s: s.find("<bob> live again") is not None, "live on two")
        await bob.close()
        for text in ("before the kill", "missed one", "missed two", "live again"):
            assert alice.text().count(f"<bob> {text}") == 1, text
        alice.type("/quit\r")
        assert await alice.exit_code() == 0
    finally:
        alice.close()


async def test_a_script_uses_the_first_server_that_answers(
    start_server: StartServer, tmp_path: Path
) -> None:
    """--command with several servers: the dead first one is skipped."""
    server = await start_server()
    bob = await server.login("bob")
    dead = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run_client.py"),
        "--server",
        f"127.0.0.1:{dead}",
        "--server",
        f"127.0.0.1:{server.port}",
        "--user",
        "alice",
        "--command",
        "send bob via the second",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), WAIT_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    assert proc.returncode == 0, err
    assert "<alice> via the second" in await bob.line()
    assert "<alice> via the second" in out.decode()
