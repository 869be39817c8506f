"""Logging: with stdout not a terminal, the daemon writes structlog JSON lines, one event
per action (session.opened, user.login, message.sent, user.banned, command.failed …),
and never the text of a message at info level (issue 2)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from typing import Any

from tests.helpers.server import Child, Client

SpawnServer = Callable[..., Child]
SECRET_TEXT = "TOPSECRET-message-body-4242"
SECRET_PW = "Hunter2-password-9191"


async def login(child: Child, name: str, password: str = "") -> Client:
    c = await Client.connect(child.port)
    ok = await c.cmd(f"login {name} {password}".strip())
    assert ok.startswith("OK"), ok
    return c


async def stop_and_read_logs(child: Child) -> tuple[list[dict[str, Any]], str]:
    """SIGTERM, wait for exit 0, then every stdout line parsed as JSON."""
    child.proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.to_thread(child.proc.communicate, None, 15)
    assert child.proc.returncode == 0, err
    text = out.decode()
    events = []
    for line in text.splitlines():
        if not line.strip():
            continue
        obj = json.loads(line)  # every line is one JSON object
        assert isinstance(obj, dict), line
        events.append(obj)
    return events, text + err.decode()


async def _session(child: Child) -> None:
    alice = await login(child, "alice", SECRET_PW)
    bob = await login(child, "bob")
    assert (await alice.cmd(f"send_all {SECRET_TEXT} general")).startswith("OK")
    assert (await alice.cmd(f"send bob {SECRET_TEXT} private")).startswith("OK")
    for r in ("r1", "r2", "r3"):
        c = await login(child, r)
        assert (await c.cmd("ban bob")).startswith("OK")
        assert await c.cmd("quit") == "OK bye"
    assert (await bob.cmd("frobnicate")).startswith("ERR unknown-command")
    assert (await bob.cmd("send_all let me talk")).startswith("ERR banned")
    assert await alice.cmd("quit") == "OK bye"
    assert await alice.closed()


async def test_json_log_lines_with_the_main_events(spawn_server: SpawnServer) -> None:
    child = spawn_server("--log-level", "info")  # the later flag wins over spawn's
    await _session(child)
    events, everything = await stop_and_read_logs(child)
    names = [e["event"] for e in events]
    for expected in (
        "server.listening",
        "session.opened",
        "user.login",
        "message.sent",
        "user.banned",
        "session.closed",
        "server.stopped",
    ):
        assert expected in names, (expected, names)
    for e in events:
        assert "level" in e and "timestamp" in e
    login = next(e for e in events if e["event"] == "user.login" and e.get("user") == "alice")
    assert login["level"] == "info"
    sent = [e for e in events if e["event"] == "message.sent"]
    assert len(sent) == 2 and all(e.get("user") == "alice" for e in sent)
    banned = next(e for e in events if e["event"] == "user.banned")
    assert banned.get("user") == "bob"
    # never the message text or a password
    assert SECRET_TEXT not in everything
    assert SECRET_PW not in everything


async def test_refused_commands_are_logged_as_command_failed(
    spawn_server: SpawnServer,
) -> None:
    # Reading: "events like … command.failed": a command answered with ERR logs a
    # `command.failed` event naming the command and the error code, so an operator can
    # see refusals (bans, bad passwords, rate limits) in the log at the default level.
    child = spawn_server("--log-level", "info")
    bob = await login(child, "bob")
    assert (await bob.cmd("frobnicate")).startswith("ERR unknown-command")
    assert (await bob.cmd("send nobody hi")).startswith("ERR no-such-user")
    events, _ = await stop_and_read_logs(child)
    failed = [e for e in events if e["event"] == "command.failed"]
    codes = {e.get("code") for e in failed}
    assert {"unknown-command", "no-such-user"} <= codes, failed


async def test_warning_level_hides_info_events(spawn_server: SpawnServer) -> None:
    child = spawn_server()  # --log-level warning
    c = await login(child, "alice")
    assert (await c.cmd("send_all hi")).startswith("OK")
    events, _ = await stop_and_read_logs(child)
    assert all(e["level"] not in ("debug", "info") for e in events), events
