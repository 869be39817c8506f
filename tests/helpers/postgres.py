"""A real PostgreSQL for the tests: Debian's postgresql 15, initdb in a temporary
directory, one server per test session, a fresh database per test.

PostgreSQL refuses to run as root and the tests run as root in CI, so the server runs
as an unprivileged system user (`chatd-test`, created with useradd when missing). It
listens on a free port on 127.0.0.1 and on a unix socket in its own directory, with
fsync on (the durability tests kill it with SIGKILL). Every start and stop is bounded
in time. The session fixture `postgres` skips, saying why, only where PostgreSQL is not
installed (scripts/apt-packages.txt installs it; CI runs that).

Use it from a test module with `pytest_plugins = ["tests.helpers.postgres"]`.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers.server import free_port

TEST_USER = "chatd-test"
PR_SET_PDEATHSIG = 1  # prctl(2)
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0


def find_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3])
    )
    return Path(found[-1]).parent if found else None


def _run_as() -> tuple[int, int] | None:
    """The (uid, gid) to run PostgreSQL as: `chatd-test` when we are root (created when
    missing), else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=True,
            timeout=30,
            capture_output=True,
        )
        entry = pwd.getpwnam(TEST_USER)
    return entry.pw_uid, entry.pw_gid


def _die_with_parent() -> Callable[[], None]:
    """For the child, after it became the unprivileged user: SIGKILL when the test run
    that started it dies (PR_SET_PDEATHSIG), so a killed or timed-out run leaves no
    server behind (its backends exit when the postmaster is gone). Resolved here, so
    the child only makes the call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    kill = int(signal.SIGKILL)

    def set_parent_death_signal() -> None:
        prctl(PR_SET_PDEATHSIG, kill)

    return set_parent_death_signal


@dataclass
class PostgresServer:
    """One PostgreSQL server process on 127.0.0.1:`port`, its data under `root`."""

    bin: Path
    root: Path
    port: int
    owner: tuple[int, int] | None
    proc: subprocess.Popen[bytes] | None = None
    _names: Iterator[int] = field(default_factory=itertools.count)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def sockets(self) -> Path:
        return self.root / "sockets"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def _popen(self, args: list[str], **kw: object) -> subprocess.Popen[bytes]:
        uid_gid = {} if self.owner is None else {"user": self.owner[0], "group": self.owner[1]}
        # preexec_fn is unsafe with threads when it takes locks; this one makes one
        # system call through a function resolved before the fork.
        return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
            args,
            cwd=self.root,
            preexec_fn=_die_with_parent(),  # noqa: PLW1509
            **uid_gid,
            **kw,
        )

    def initdb(self) -> None:
        self.sockets.mkdir()
        if self.owner is not None:
            for p in (self.root, self.sockets):
                os.chown(p, *self.owner)
        proc = self._popen(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        out, _ = proc.communicate(timeout=START_TIMEOUT_S)
        if proc.returncode != 0:
            raise RuntimeError(f"initdb failed: {out.decode(errors='replace')}")

    def start(self) -> None:
        """Starts the server (a new session, so SIGKILL takes every process of it) and
        waits until it accepts connections. Right after a SIGKILL the old processes may
        still hold the shared memory for a moment: then it tries again. Call it on the
        test's own thread: the server gets SIGKILL when the *thread* that started it
        ends (PR_SET_PDEATHSIG), so started from a worker thread it would die with it."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            mark = self.log.stat().st_size if self.log.exists() else 0
            try:
                self._start_once(deadline)
                return
            except RuntimeError:
                told = self.log.read_bytes()[mark:]
                if b"is still in use" not in told or time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def _start_once(self, deadline: float) -> None:
        with open(self.log, "ab") as log:
            self.proc = self._popen(
                [
                    str(self.bin / "postgres"),
                    "-D",
                    str(self.data),
                    "-p",
                    str(self.port),
                    "-k",
                    str(self.sockets),
                    "-c",
                    "listen_addresses=127.0.0.1",
                    "-c",
                    "fsync=on",
                    "-c",
                    "synchronous_commit=on",
                    "-c",
                    "max_connections=200",
                    "-c",
                    "shared_buffers=32MB",
                    "-c",
                    "logging_collector=off",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(
                    f"postgres exited: {self.log.read_text(errors='replace')[-2000:]}"
                )
            if self._ready():
                return
            time.sleep(0.05)
        self.kill9()
        raise RuntimeError("postgres did not start in time")

    def _ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(self.dsn(), connect_timeout=1, autocommit=True) as db:
                db.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def kill9(self) -> None:
        """SIGKILL to every process of the server at once, as a crash does."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(STOP_TIMEOUT_S)
        self._wait_gone()
        self.proc = None

    def stop(self) -> None:
        """A fast shutdown (SIGINT), SIGKILL when it takes too long."""
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.kill9()
            return
        self._wait_gone()
        self.proc = None

    def _wait_gone(self) -> None:
        """Until no process of the killed server's group is left (a new postmaster
        refuses to start while an old backend still holds the shared memory)."""
        assert self.proc is not None
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.02)

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self) -> str:
        """A new empty database; returns its dsn."""
        import psycopg

        name = f"t{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), connect_timeout=5, autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.dsn(name)


def start_postgres() -> PostgresServer:
    """initdb and start a server in a new temporary directory (the caller stops it and
    removes `root`); pytest.skip where PostgreSQL or psycopg is missing."""
    bin_dir = find_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; CI installs it)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg is not installed (scripts/bootstrap --dev)")
    owner = _run_as()
    root = Path(tempfile.mkdtemp(prefix="chatd-pg-"))
    server = PostgresServer(bin_dir, root, free_port(), owner)
    try:
        server.initdb()
        server.start()
    except BaseException:
        server.kill9()
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture
def cutting_relay(postgres: PostgresServer) -> Iterator[CuttingRelay]:
    """A relay to the session's server that can cut a connection after its COMMIT."""
    relay = CuttingRelay(postgres.port)
    try:
        yield relay
    finally:
        relay.close()


@pytest.fixture
def pg_dsn(postgres: PostgresServer) -> str:
    """A fresh, empty database on the session's server (no schema yet)."""
    if postgres.proc is None or postgres.proc.poll() is not None:
        postgres.start()  # a test killed it and failed before starting it again
    return postgres.create_database()


class CuttingRelay:
    """A TCP relay to PostgreSQL that, once armed, cuts the connection right after
    passing on a COMMIT: the server commits, the client never hears it (a network
    that fails at the worst moment). Threads, bounded by socket timeouts."""

    def __init__(self, port: int) -> None:
        self.target = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self.armed = threading.Event()
        self.cuts = 0
        self._stop = threading.Event()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def dsn(self, dsn: str) -> str:
        return dsn.replace(f":{self.target}/", f":{self.port}/")

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            server = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            self._pairs.append((client, server))
            cut = threading.Event()
            for src, dst, upstream in ((client, server, True), (server, client, False)):
                threading.Thread(
                    target=self._pump, args=(src, dst, upstream, cut), daemon=True
                ).start()

    def _pump(
        self, src: socket.socket, dst: socket.socket, upstream: bool, cut: threading.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if cut.is_set():
                    break  # the answer to the COMMIT never reaches the client
                if upstream and self.armed.is_set() and b"COMMIT\x00" in data:
                    self.armed.clear()
                    cut.set()
                    self.cuts += 1
                    dst.sendall(data)
                    time.sleep(0.3)  # the server commits meanwhile
                    break
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()
        for pair in self._pairs:
            for s in pair:
                s.close()
