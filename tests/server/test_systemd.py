"""The systemd notify protocol against a real datagram socket, and socket activation in a
child process that inherits real listening sockets at fd 3 and 4, as systemd would pass them."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from chatd.server.systemd import ListenSocket, Notifier, Watchdog, listen_fds

RECV_TIMEOUT_S = 10.0  # a guard against hanging, never a measured quantity


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket playing systemd's notify socket, announced in NOTIFY_SOCKET."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(RECV_TIMEOUT_S)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def recv(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_no_notify_socket_means_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    notifier = Notifier.from_env()
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_state_changes_arrive_as_datagrams(systemd: socket.socket) -> None:
    notifier = Notifier.from_env()
    assert notifier.enabled
    assert "NOTIFY_SOCKET" not in os.environ  # children must not inherit it

    assert notifier.ready("0 sessions online")
    assert recv(systemd) == ["READY=1", "STATUS=0 sessions online"]
    assert notifier.status("3 sessions\nonline")
    assert recv(systemd) == ["STATUS=3 sessions online"]

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading()
    reloading, monotonic = recv(systemd)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert reloading == "RELOADING=1"
    key, _, value = monotonic.partition("=")
    assert key == "MONOTONIC_USEC"
    assert before <= int(value) <= after
    assert notifier.ready()
    assert recv(systemd) == ["READY=1"]

    assert notifier.stopping()
    assert recv(systemd) == ["STOPPING=1"]
    notifier.close()
    assert notifier.ready() is False


def test_abstract_namespace_address(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"chatd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(RECV_TIMEOUT_S)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier.from_env()
        assert notifier.ready()
        assert recv(sock) == ["READY=1"]
        notifier.close()


def test_send_failure_is_not_fatal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens"))
    notifier = Notifier.from_env()
    assert notifier.enabled
    assert notifier.ready() is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 30.0),
        ("30000000", "self", 30.0),
        ("30000000", "1", None),  # meant for another process
        ("0", None, None),
        ("soon", None, None),
        (None, None, None),
    ],
)
def test_watchdog_interval(usec: str | None, pid: str | None, expected: float | None) -> None:
    env = {"NOTIFY_SOCKET": "/run/systemd/notify"}
    if usec is not None:
        env["WATCHDOG_USEC"] = usec
    if pid is not None:
        env["WATCHDOG_PID"] = str(os.getpid()) if pid == "self" else pid
    notifier = Notifier.from_env(env)
    assert notifier.watchdog_interval_s == expected
    assert env == {}  # all read variables removed
    notifier.close()


async def test_watchdog_pings_from_the_event_loop(
    systemd: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "100000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    notifier = Notifier.from_env()
    assert notifier.watchdog_interval_s == 0.1
    online = [2]
    watchdog = Watchdog(notifier, status=lambda: f"{online[0]} sessions online")
    assert watchdog.period_s == 0.05  # half the interval, as sd_watchdog_enabled(3) advises

    loop = asyncio.get_running_loop()
    systemd.setblocking(False)

    async def next_datagram() -> str:
        async with asyncio.timeout(RECV_TIMEOUT_S):
            return (await loop.sock_recv(systemd, 4096)).decode()

    watchdog.start()
    assert watchdog.running
    assert await next_datagram() == "WATCHDOG=1"
    assert await next_datagram() == "STATUS=2 sessions online"
    assert await next_datagram() == "WATCHDOG=1"  # the second tick: status unchanged, not resent
    online[0] = 5
    datagrams = [await next_datagram() for _ in range(2)]
    assert "STATUS=5 sessions online" in datagrams
    watchdog.stop()
    assert not watchdog.running
    watchdog.stop()  # idempotent
    notifier.close()


async def test_watchdog_idle_without_watchdog_usec(systemd: socket.socket) -> None:
    notifier = Notifier.from_env()
    watchdog = Watchdog(notifier)
    assert watchdog.period_s is None
    watchdog.start()
    assert not watchdog.running
    notifier.close()


async def test_status_only_without_watchdog_usec(systemd: socket.socket) -> None:
    notifier = Notifier.from_env()
    watchdog = Watchdog(notifier, status=lambda: "7 sessions online")
    assert watchdog.period_s == 10.0
    watchdog.start()  # the first tick runs at once
    watchdog.stop()
    assert recv(systemd) == ["STATUS=7 sessions online"]  # no WATCHDOG=1 when not asked for
    notifier.close()


def test_listen_fds_without_activation() -> None:
    assert listen_fds({}) == []


def test_listen_fds_for_another_process_is_ignored_and_cleared() -> None:
    env = {"LISTEN_PID": "1", "LISTEN_FDS": "2", "LISTEN_FDNAMES": "plain:tls"}
    assert listen_fds(env) == []
    assert env == {}


def test_listen_fds_rejects_a_bad_count() -> None:
    with pytest.raises(ValueError, match="LISTEN_FDS"):
        listen_fds({"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "two"})


# Run in a child: moves the inherited sockets to fd 3 and 4 as systemd does, sets the
# variables for its own pid, then serves one echo per socket.
CHILD = r"""
import fcntl, json, os, sys
from chatd.server.systemd import listen_fds
passed = [int(a) for a in sys.argv[2:]]
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in passed]
for fd in passed:
    os.close(fd)
for i, fd in enumerate(high):
    os.dup2(fd, 3 + i)
    os.close(fd)
os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS=str(len(passed)))
if sys.argv[1]:
    os.environ["LISTEN_FDNAMES"] = sys.argv[1]
found = listen_fds()
print(json.dumps({
    "names": [s.name for s in found],
    "fds": [s.fd for s in found],
    "inheritable": [os.get_inheritable(s.fd) for s in found],
    "env_left": [k for k in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES") if k in os.environ],
    "ports": [s.sock.getsockname()[1] for s in found],
}), flush=True)
for s in found:
    conn, _ = s.sock.accept()
    with conn:
        conn.sendall(s.name.encode() + b":" + conn.recv(100))
"""


@pytest.mark.parametrize(("fdnames", "expected"), [("plain:tls", ["plain", "tls"]), ("", None)])
def test_listen_fds_serves_inherited_sockets(fdnames: str, expected: list[str] | None) -> None:
    listeners = []
    for _ in range(2):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind(("127.0.0.1", 0))
        s.listen()
        listeners.append(s)
    ports = [s.getsockname()[1] for s in listeners]
    fds = [s.fileno() for s in listeners]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, fdnames, *map(str, fds)],
        pass_fds=fds,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for s in listeners:
            s.close()  # the child holds them now
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        names = expected or ["unknown", "unknown"]
        assert info == {
            "names": names,
            "fds": [3, 4],
            "inheritable": [False, False],
            "env_left": [],
            "ports": ports,
        }
        for name, port in zip(names, ports, strict=True):
            with socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT_S) as c:
                c.sendall(b"ping")
                c.shutdown(socket.SHUT_WR)
                assert b"".join(iter(lambda: c.recv(100), b"")) == f"{name}:ping".encode()
        assert child.wait(timeout=RECV_TIMEOUT_S) == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_listen_socket_is_a_value() -> None:
    with socket.socket() as s:
        item = ListenSocket("plain", s)
        assert item.fd == s.fileno()
        with pytest.raises(AttributeError):
            item.name = "tls"  # type: ignore[misc]
