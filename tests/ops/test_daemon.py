"""Operations wired into the daemon: systemd notify and watchdog, socket activation,
reload (in-process and by SIGHUP), TLS, the metrics endpoint, online backup and restore,
config exit codes, and the unit files and the operations guide against the real CLI.

Child processes play the part systemd plays: a datagram socket as NOTIFY_SOCKET,
listening sockets moved to fd 3 and up with LISTEN_FDS/LISTEN_PID for the child's pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme

from chatd import logs
from chatd.cli import _parser, main
from chatd.server.daemon import Daemon
from chatd.server.reload import ReloadResult
from tests.helpers.metrics import Exposition, parse
from tests.helpers.server import ROOT, Child, Client, StartServer, config_with, free_port

TIMEOUT = 10.0  # a guard against hanging, never a measured quantity

# --- helpers --------------------------------------------------------------------------


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(value)


def write_config(path: Path, sections: Mapping[str, Mapping[str, object]]) -> Path:
    lines = []
    for name, table in sections.items():
        lines.append(f"[{name}]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def merged(
    base: Mapping[str, Mapping[str, object]], extra: Mapping[str, Mapping[str, object]]
) -> dict[str, dict[str, object]]:
    out = {k: dict(v) for k, v in base.items()}
    for k, v in extra.items():
        out.setdefault(k, {}).update(v)
    return out


@dataclass(frozen=True)
class Certs:
    ca: trustme.CA
    cert: Path
    key: Path

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    ca = trustme.CA()
    issued = ca.issue_cert("localhost", "127.0.0.1")
    cert, key = tmp_path / "server.crt", tmp_path / "server.key"
    cert.write_bytes(b"".join(p.bytes() for p in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(key))
    return Certs(ca, cert, key)


async def tls_client(port: int, ctx: ssl.SSLContext) -> Client:
    reader, writer = await asyncio.wait_for(
        asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"),
        TIMEOUT,
    )
    client = Client(reader, writer)
    client.greeting = await client.line()
    return client


async def login(client: Client, name: str, password: str = "") -> Client:
    await client.send(f"login {name} {password}".strip() + "\n")
    ok = await client.line()
    assert ok.startswith("OK welcome"), ok
    for _ in range(int(ok.rsplit(", ", 1)[1].split()[0])):  # the unread replay
        await client.line()
    return client


async def scrape(port: int) -> Exposition:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /metrics HTTP/1.1\r\nHost: chatd\r\n\r\n")
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK"), head
    return parse(body.decode())


async def run_cli(*args: str, cwd: Path) -> tuple[int, str, str]:
    """`python -m chatd ARGS` to completion: (exit status, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "chatd", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=cwd,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# A child chatd as systemd starts it: inherited sockets moved to fd 3.. and LISTEN_PID
# set to the child's own pid (which only the child knows), then the real CLI.
WRAPPER = r"""
import fcntl, os, sys
passed = [int(fd) for fd in os.environ.pop("TEST_PASS_FDS", "").split(",") if fd]
if passed:
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in passed]
    for fd in passed:
        os.close(fd)
    for i, fd in enumerate(high):
        os.dup2(fd, 3 + i)
        os.close(fd)
    os.environ["LISTEN_FDS"] = str(len(passed))
    os.environ["LISTEN_PID"] = str(os.getpid())
from chatd.cli import main
sys.exit(main(sys.argv[1:]))
"""


class Systemd:
    """The notify socket's side of systemd: collects datagrams from the child."""

    def __init__(self) -> None:
        self.address = f"@chatd-test-{uuid.uuid4().hex}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.address[1:])
        self.sock.setblocking(False)
        self.seen: list[list[str]] = []

    async def expect(
        self, pred: Callable[[list[str]], bool], timeout: float = TIMEOUT
    ) -> list[str]:
        """The next datagram (as its lines) satisfying pred."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                lines = (await loop.sock_recv(self.sock, 4096)).decode().split("\n")
                self.seen.append(lines)
                if pred(lines):
                    return lines

    def close(self) -> None:
        self.sock.close()


def has(line: str) -> Callable[[list[str]], bool]:
    return lambda lines: line in lines


@dataclass
class ChildDaemon:
    proc: subprocess.Popen[bytes]
    log_path: Path

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def exit_status(self) -> int:
        """Waits off the loop, so this test's clients keep answering (TLS close_notify)."""
        return await asyncio.to_thread(self.proc.wait, TIMEOUT)


@pytest.fixture
def systemd() -> Iterator[Systemd]:
    sd = Systemd()
    yield sd
    sd.close()


@pytest.fixture
def child_daemon(tmp_path: Path) -> Iterator[Callable[..., ChildDaemon]]:
    children: list[ChildDaemon] = []

    def start(
        *args: str,
        notify: Systemd | None = None,
        env: Mapping[str, str] | None = None,
        fds: tuple[socket.socket, ...] = (),
    ) -> ChildDaemon:
        log_path = tmp_path / f"child{len(children)}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("LISTEN_", "NOTIFY"))}
        environ.update(PYTHONUNBUFFERED="1", **(env or {}))
        if notify is not None:
            environ["NOTIFY_SOCKET"] = notify.address
        if fds:
            environ["TEST_PASS_FDS"] = ",".join(str(s.fileno()) for s in fds)
        with open(log_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", WRAPPER, *args],
                cwd=tmp_path,
                env=environ,
                stdout=out,
                stderr=subprocess.STDOUT,
                pass_fds=[s.fileno() for s in fds],
            )
        child = ChildDaemon(proc, log_path)
        children.append(child)
        return child

    yield start
    for child in children:
        if child.proc.poll() is None:
            child.proc.kill()
            child.proc.wait(TIMEOUT)


def base_sections(data_dir: Path, port: int) -> dict[str, dict[str, object]]:
    return {
        "server": {"host": "127.0.0.1", "port": port, "data_dir": str(data_dir)},
        "store": {"synchronous": "normal"},
        "log": {"level": "info"},
    }


# --- systemd --------------------------------------------------------------------------


async def test_notify_ready_status_watchdog_and_stopping(
    tmp_path: Path, systemd: Systemd, child_daemon: Callable[..., ChildDaemon]
) -> None:
    port = free_port()
    cfg = write_config(tmp_path / "chatd.toml", base_sections(tmp_path / "data", port))
    child = child_daemon("--config", str(cfg), notify=systemd, env={"WATCHDOG_USEC": "300000"})

    ready = await systemd.expect(has("READY=1"))
    assert "STATUS=0 sessions online, 0 users, 0 connections" in ready
    # READY=1 means serving: a client gets its greeting right away.
    alice = await login(await Client.connect(port), "alice")
    await systemd.expect(has("STATUS=1 sessions online, 1 users, 1 connections"))
    for _ in range(3):  # every WatchdogSec/2 = 0.15 s, from the event loop
        await systemd.expect(has("WATCHDOG=1"), timeout=3.0)

    child.signal(signal.SIGTERM)
    await systemd.expect(has("STOPPING=1"))
    assert await alice.closed()
    assert await child.exit_status() == 0
    flat = [line for d in systemd.seen for line in d]
    assert flat.index("READY=1") < flat.index("WATCHDOG=1") < flat.index("STOPPING=1")


async def test_socket_activation_serves_inherited_plain_and_tls_sockets(
    tmp_path: Path, systemd: Systemd, certs: Certs, child_daemon: Callable[..., ChildDaemon]
) -> None:
    listeners = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen()
        listeners.append(s)
    plain_port, tls_port = (s.getsockname()[1] for s in listeners)
    configured = free_port()  # must stay unbound: the inherited sockets replace it
    sections = merged(
        base_sections(tmp_path / "data", configured),
        {"tls": {"cert": str(certs.cert), "key": str(certs.key)}},
    )
    cfg = write_config(tmp_path / "chatd.toml", sections)
    child = child_daemon(
        "--config",
        str(cfg),
        notify=systemd,
        env={"LISTEN_FDNAMES": "plain:tls"},
        fds=tuple(listeners),
    )
    for s in listeners:
        s.close()  # the child holds them now
    await systemd.expect(has("READY=1"))

    alice = await login(await Client.connect(plain_port), "alice")
    bob = await login(await tls_client(tls_port, certs.client_context()), "bob")
    assert bob.greeting.startswith("* chatd")
    assert (await alice.cmd("send_all over plain")).startswith("OK")
    assert "<alice> over plain" in await bob.line()
    assert (await bob.cmd("send_all over tls")).startswith("OK")
    assert "<bob> over tls" in await alice.line()
    with pytest.raises(ConnectionRefusedError):
        await Client.connect(configured)

    child.signal(signal.SIGTERM)
    assert await child.exit_status() == 0
    events = {e.get("event"): e for e in child.events()}
    assert events["server.listeners"]["activated"] == ["plain", "tls"]
    assert "server.shutdown_timeout" not in events  # TLS sessions closed cleanly too


# --- reload -------------------------------------------------------------------------


async def test_reload_applies_limits_admins_and_log_level_to_live_sessions(
    start_server: StartServer, tmp_path: Path
) -> None:
    srv = await start_server()
    daemon = srv.daemon
    base = base_sections(srv.data_dir, 0)
    base["log"]["level"] = "warning"
    path = write_config(tmp_path / "chatd.toml", base)
    daemon.config_path = path
    # The tests log at warning while their configs say info: that is the one change.
    assert daemon.reload() == ReloadResult(True, applied=("log.level",))

    alice = await srv.login("alice", password="sekrit")
    assert (await alice.cmd("stats")).startswith("ERR forbidden")
    for i in range(3):
        assert (await alice.cmd(f"send_all before {i}")).startswith("OK")

    write_config(
        path,
        merged(
            base,
            {
                "limits": {"general_messages_per_window": 3, "max_line_bytes": 64},
                "moderation": {"admins": ["alice"]},
                "log": {"level": "error"},
            },
        ),
    )
    try:
        result = daemon.reload()
        assert logs._Logger.min_level == logging.ERROR
    finally:
        logs.set_level("warning")
    assert result == ReloadResult(
        True,
        applied=(
            "limits.max_line_bytes",
            "limits.general_messages_per_window",
            "moderation.admins",
            "log.level",
        ),
    )
    # The same session, without reconnecting, sees the new settings.
    reply = await alice.cmd("send_all after")
    assert reply.startswith("ERR rate-limited"), reply
    assert (await alice.cmd("stats")).startswith("OK")
    assert (await alice.cmd("send " + "x" * 80)).startswith("ERR line-too-long")
    assert await alice.cmd("ping") == "OK pong"

    # Listener, store and database settings need a restart: logged, kept as they are.
    write_config(
        path,
        merged(
            base,
            {
                "server": {"port": 8123},
                "metrics": {"port": 9123},
                "store": {"synchronous": "full"},
                "limits": {"general_messages_per_window": 4},
            },
        ),
    )
    result = daemon.reload()
    assert result.ignored == ("server.port", "store.synchronous", "metrics.port")
    assert "limits.general_messages_per_window" in result.applied
    assert daemon.config.server.port == 0
    assert daemon.config.store.synchronous == "normal"
    assert daemon.config.metrics.port == 0
    assert daemon.chat.config is daemon.config
    assert (await alice.cmd("send_all fourth")).startswith("OK")


async def test_broken_reload_keeps_the_running_config(
    start_server: StartServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    srv = await start_server()
    daemon = srv.daemon
    base = base_sections(srv.data_dir, 0)
    base["log"]["level"] = "warning"
    path = write_config(
        tmp_path / "chatd.toml", merged(base, {"limits": {"general_messages_per_window": 2}})
    )
    daemon.config_path = path
    assert daemon.reload().ok
    running = daemon.config
    alice = await srv.login("alice")

    bad_files = {
        "[limits]\ngeneral_messages_per_window = 0\n": "limits.general_messages_per_window",
        "[limits\n": "not valid TOML",
        "[server]\nprot = 1\n": "unknown key server.prot",
    }
    for text, why in bad_files.items():
        path.write_text(text)
        result = daemon.reload()
        assert not result.ok
        assert result.error is not None and why in result.error
        assert daemon.config is running and daemon.chat.config is running
        assert main(["check-config", str(path)]) == 2
        assert why in capsys.readouterr().err
    path.unlink()
    assert not daemon.reload().ok  # a missing file, too
    assert daemon.config is running

    # The old limit (2) still holds for the live session.
    assert (await alice.cmd("send_all one")).startswith("OK")
    assert (await alice.cmd("send_all two")).startswith("OK")
    assert (await alice.cmd("send_all three")).startswith("ERR rate-limited")
    write_config(path, base)
    assert main(["check-config", str(path)]) == 0


async def test_sighup_reloads_a_running_child(
    tmp_path: Path, systemd: Systemd, child_daemon: Callable[..., ChildDaemon]
) -> None:
    port = free_port()
    base = base_sections(tmp_path / "data", port)
    path = write_config(
        tmp_path / "chatd.toml", merged(base, {"limits": {"general_messages_per_window": 5}})
    )
    child = child_daemon("--config", str(path), notify=systemd)
    await systemd.expect(has("READY=1"))
    alice = await login(await Client.connect(port), "alice")
    assert (await alice.cmd("send_all one")).startswith("OK")

    write_config(
        path,
        merged(base, {"limits": {"general_messages_per_window": 1}, "server": {"port": 1}}),
    )
    child.signal(signal.SIGHUP)
    reloading = await systemd.expect(lambda d: d[0] == "RELOADING=1")
    assert reloading[1].startswith("MONOTONIC_USEC=")
    await systemd.expect(has("READY=1"))
    assert (await alice.cmd("send_all two")).startswith("ERR rate-limited")

    path.write_text("[limits]\ngeneral_messages_per_window = -1\n")
    child.signal(signal.SIGHUP)
    await systemd.expect(lambda d: d[0] == "RELOADING=1")
    await systemd.expect(has("READY=1"))  # also after a refused file: systemd waits for it
    assert (await alice.cmd("send_all three")).startswith("ERR rate-limited")
    assert await alice.cmd("ping") == "OK pong"

    child.signal(signal.SIGTERM)
    await systemd.expect(has("STOPPING=1"))
    assert await child.exit_status() == 0
    events = {e["event"]: e for e in child.events() if "event" in e}
    assert events["config.reload_ignored"]["keys"] == ["server.port"]
    assert "limits.general_messages_per_window" in events["config.reload_failed"]["error"]
    assert events["config.reloaded"]["applied"] == ["limits.general_messages_per_window"]


# --- TLS ------------------------------------------------------------------------------


async def test_tls_listener_serves_the_same_protocol(
    start_server: StartServer, certs: Certs
) -> None:
    srv = await start_server(
        tls__port=free_port(), tls__cert=str(certs.cert), tls__key=str(certs.key)
    )
    tls_port = srv.daemon.ops.tls_port
    assert tls_port and tls_port != srv.port
    alice = await login(await tls_client(tls_port, certs.client_context()), "alice")
    bob = await srv.login("bob")  # plain TCP, same chat
    carol = await login(await tls_client(tls_port, certs.client_context()), "carol")
    ssl_object = alice.writer.get_extra_info("ssl_object")
    assert ssl_object is not None and ssl_object.version() in ("TLSv1.2", "TLSv1.3")

    assert (await alice.cmd("send_all hello over tls")).startswith("OK sent")
    assert "<alice> hello over tls" in await bob.line()
    assert "<alice> hello over tls" in await carol.line()
    assert (await bob.cmd("send alice plain to tls")).startswith("OK")
    assert "plain to tls" in await alice.line()
    assert (await alice.cmd("who")).startswith("OK")

    # A client that does not trust the certificate gets no session.
    with pytest.raises(ssl.SSLCertVerificationError):
        await tls_client(tls_port, ssl.create_default_context())
    await alice.send("quit\n")
    assert await alice.closed()


async def test_config_errors_exit_with_status_2(tmp_path: Path, certs: Certs) -> None:
    data = tmp_path / "data"
    cases = {
        "[server]\nprot = 1\n": "unknown key server.prot",
        f'[tls]\nport = {free_port()}\ncert = "{certs.cert}"\nkey = "{tmp_path}/missing.key"\n': (
            "tls.key"
        ),
        f'[tls]\nport = {free_port()}\ncert = "{certs.cert}"\nkey = "{certs.cert}"\n': "tls.key",
    }
    for text, why in cases.items():
        path = tmp_path / "bad.toml"
        path.write_text(text)
        code, out, err = await run_cli(
            "--config", str(path), "--port", "0", "--data-dir", str(data), cwd=tmp_path
        )
        assert code == 2, (out, err)
        assert why in err
    assert not (data / "chatd.sqlite3").exists()  # refused before opening the database


# --- metrics --------------------------------------------------------------------------


async def test_metrics_endpoint_counts_what_happens(start_server: StartServer) -> None:
    srv = await start_server(metrics__port=free_port())
    port = srv.daemon.ops.metrics_port
    assert port
    alice = await srv.connect()
    await alice.send("mode json\n")
    assert (await alice.obj())["mode"] == "json"
    assert (await alice.jcmd("login alice"))["new"] is True
    bob = await srv.login("bob")
    carol = await srv.login("carol")
    before = await scrape(port)

    assert (await alice.jcmd("send_all hello"))["type"] == "ok"
    assert "<alice> hello" in await bob.line()
    assert "<alice> hello" in await carol.line()
    assert (await alice.jcmd("send bob psst"))["type"] == "ok"
    assert "psst" in await bob.line()
    assert (await bob.cmd("frobnicate")).startswith("ERR unknown-command")
    assert (await bob.cmd("send nobody-here x")).startswith("ERR no-such-user")
    after = await scrape(port)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta("chatd_messages_sent_total", kind="general") == 1
    assert delta("chatd_messages_sent_total", kind="private") == 1
    assert delta("chatd_messages_delivered_total", kind="general") == 2  # not the sender
    assert delta("chatd_messages_delivered_total", kind="private") == 1
    assert delta("chatd_errors_total", code="unknown-command") == 1
    assert delta("chatd_errors_total", code="no-such-user") == 1
    assert delta("chatd_errors_total", code="rate-limited") == 0
    assert delta("chatd_bytes_received_total") >= len("send_all hello\nsend bob psst\n")
    assert delta("chatd_bytes_sent_total") > 2 * len("<alice> hello")
    assert delta("chatd_store_commit_seconds_count") >= 2
    assert after.value("chatd_store_commit_seconds_sum") > 0
    assert after.value("chatd_connections_accepted_total") == 3
    assert after.value("chatd_connections_open") == 3
    assert after.value("chatd_sessions_online") == 3
    assert after.value("chatd_users_online") == 3
    assert after.value("chatd_slow_consumers_total") == 0
    assert after.types["chatd_event_loop_lag_seconds"] == "histogram"
    assert after.value("process_open_fds") > 0

    await carol.send("quit\n")
    assert await carol.closed()
    await asyncio.sleep(0.05)
    assert (await scrape(port)).value("chatd_sessions_online") == 2


# --- backup ---------------------------------------------------------------------------


async def test_backup_under_load_then_restore(
    tmp_path: Path, spawn_server: Callable[..., Child]
) -> None:
    data = tmp_path / "data"
    cfg = write_config(
        tmp_path / "etc.toml",
        {
            "server": {"data_dir": str(data)},
            "store": {"synchronous": "normal"},
            "limits": {"general_messages_per_window": 100000},
        },
    )
    child = spawn_server("--config", str(cfg), data_dir=data)
    writer = await Client.connect(child.port)
    await login(writer, "alice")
    acked: list[int] = []

    done = asyncio.Event()

    async def send(n: int) -> None:
        for i in range(n):
            if done.is_set():
                return  # never cancelled mid-command: every stored message is in `acked`
            reply = await writer.cmd(f"send_all message {len(acked)} {i}")
            assert reply.startswith("OK sent ["), reply
            acked.append(int(reply.split("[", 1)[1].split("]", 1)[0]))

    await send(50)
    sending = asyncio.create_task(send(100_000))
    await asyncio.sleep(0.05)
    before_backup = len(acked)
    dest = tmp_path / "backups" / "today"
    code, out, err = await run_cli("--config", str(cfg), "backup", str(dest), cwd=tmp_path)
    after_backup = len(acked)
    done.set()
    await asyncio.wait_for(sending, TIMEOUT)
    assert code == 0, err
    assert str(dest) in out
    assert after_backup > before_backup, "the client kept sending during the backup"
    assert sorted(p.name for p in dest.iterdir()) == ["chatd.sqlite3", "files"]

    # A backup is never overwritten.
    code, _, err_text = await run_cli("--config", str(cfg), "backup", str(dest), cwd=tmp_path)
    assert code == 1 and "not empty" in err_text
    child.proc.terminate()
    assert await asyncio.to_thread(child.proc.wait, TIMEOUT) == 0

    # Restore: the backup directory becomes a data directory.
    restored = tmp_path / "restored"
    shutil.copytree(dest, restored)
    daemon = Daemon(config_with(restored))  # real time: the messages are from now
    await daemon.start()
    try:
        reader = await Client.connect(daemon.port)
        await reader.send("mode json\n")
        assert (await reader.obj())["mode"] == "json"
        assert (await reader.jcmd("login bob"))["type"] == "ok"
        ids: list[int] = []
        before: int | None = None
        while True:  # page back through all of #general
            page = await reader.jcmd(
                "history #general 200" + (f" before {before}" if before else "")
            )
            got = [m["id"] for m in page["messages"]]
            if not got:
                break
            ids = got + ids
            before = got[0]
        # Consistent: exactly the first N acknowledged messages, N at least those acked
        # before the backup started, no gaps.
        assert len(ids) >= before_backup
        assert ids == acked[: len(ids)]
    finally:
        await daemon.stop()


# --- the unit files and the guide ----------------------------------------------------

UNITS = ROOT / "contrib" / "systemd"


def test_unit_files_verify(tmp_path: Path) -> None:
    service = (UNITS / "chatd.service").read_text()
    assert "RestartPreventExitStatus=2\n" in service  # the CLI's exit status for bad config
    assert (
        "Type=notify\n" in service
        and "ExecReload=/opt/chatd/venv/bin/chatd reload $MAINPID" in service
    )
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    # The unit names the installed path; verify checks that ExecStart exists.
    chatd = Path(sys.executable).with_name("chatd")
    for unit in UNITS.iterdir():
        text = unit.read_text().replace("/opt/chatd/venv/bin/chatd", str(chatd))
        (tmp_path / unit.name).write_text(text)
    units = sorted(str(p) for p in tmp_path.iterdir())
    assert len(units) >= 3
    proc = subprocess.run(
        [tool, "verify", *units], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0 and "Failed to" in proc.stderr and "bus" in proc.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr


def test_every_chatd_command_in_the_guide_parses() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    commands = re.findall(r"/opt/chatd/venv/bin/chatd\b([^'`\n#]*)", guide)
    assert len(commands) >= 6
    spelled = set()
    for rest in commands:
        argv = shlex.split(re.sub(r"\$\([^)]*\)", "X", rest))
        try:
            args = _parser().parse_args(argv)
        except SystemExit as e:  # --help exits 0; a wrong spelling exits 2
            assert e.code == 0, rest
            continue
        spelled.add(args.command)
    assert {"backup", "check-config", None} <= spelled


async def test_start_up_metrics_and_notify_are_no_ops_by_default(
    start_server: StartServer,
) -> None:
    srv = await start_server()
    ops = srv.daemon.ops
    assert not ops.notifier.enabled
    assert ops.tls_port == 0 and ops.metrics_port == 0
    c = await srv.login("alice")
    assert (await c.cmd("send_all hi")).startswith("OK")
    assert (await c.cmd("nonsense")).startswith("ERR unknown-command")
    await srv.daemon.hub.drain()
    stats = srv.daemon.metrics.snapshot()
    assert stats["messages_sent_general"] == 1 and stats["messages_sent_private"] == 0
    assert stats["connections_accepted"] == 1 and stats["store_commits"] >= 1
    assert stats["errors"] == 1
