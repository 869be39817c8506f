"""A real daemon on a free port, real TCP clients, a movable clock (conftest.py has
the fixtures that start them).

`start_server(**settings)` starts an in-process Daemon on 127.0.0.1:0 with a fresh
SQLite data dir and a FakeClock; settings are dotted config keys with `__` for the dot
(`limits__max_connections_per_ip=2`). `Client` speaks the line protocol as nc would.
For kill -9 tests, `spawn_server` runs `run_server.py` in a child process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatd.config import Config
from chatd.server.connection import Connection
from chatd.server.daemon import Daemon

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 5.0
_TELNET_NEGOTIATION = re.compile(rb"\xff[\xfb-\xfe][\x00-\xff]")


class FakeClock:
    """Time that only moves when a test says so."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def config_with(data_dir: Path, **settings: object) -> Config:
    overrides: dict[str, object] = {
        "server.host": "127.0.0.1",
        "server.port": 0,
        "server.data_dir": str(data_dir),
        "store.synchronous": "normal",
    }
    overrides.update({k.replace("__", "."): v for k, v in settings.items()})
    return Config().with_overrides(overrides)


class Client:
    """A line-protocol client over a real TCP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting = ""

    @classmethod
    async def connect(cls, port: int, *, greet: bool = True) -> Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        client = cls(reader, writer)
        if greet:
            client.greeting = await client.line()
        return client

    @classmethod
    async def with_receive_buffer(cls, port: int, rcvbuf: int) -> Client:
        """A client whose kernel receive buffer is small, so that once it stops reading
        (`stop_reading`) the server's side fills at once. Keep it referenced: a dropped
        writer closes the connection."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connecting: the window scale is agreed in the handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
        client = cls(reader, writer)
        client.greeting = await client.line()
        return client

    def stop_reading(self) -> None:
        """Stops taking bytes from the socket (asyncio would otherwise read ahead into
        the StreamReader): from now on the kernel's receive buffer fills, then the
        server's side."""
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()

    def resume_reading(self) -> None:
        transport = self.writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.resume_reading()

    def reset(self) -> None:
        """Dies the hard way: a TCP reset (what a killed client with unread data sends)."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def send(self, data: str | bytes) -> None:
        """Writes raw text or bytes; add the newline yourself."""
        self.writer.write(data.encode() if isinstance(data, str) else data)
        await self.writer.drain()

    async def line(self, timeout: float = TIMEOUT) -> str:
        raw = await asyncio.wait_for(self.reader.readline(), timeout)
        if not raw:
            raise EOFError("connection closed")
        if b"\xff" in raw or b"\r" in raw:  # a client that spoke telnet gets CRLF and
            raw = _TELNET_NEGOTIATION.sub(b"", raw).replace(b"\r", b"")  # negotiation
        return raw.decode().rstrip("\n")

    async def reply(self, timeout: float = TIMEOUT) -> list[str]:
        """Text mode: lines up to and including the closing OK/ERR line."""
        lines = []
        while True:
            line = await self.line(timeout)
            lines.append(line)
            if line == "OK" or line.startswith(("OK ", "ERR ")):
                return lines

    async def cmd(self, line: str) -> str:
        """Text mode: sends a command and returns its closing OK/ERR line."""
        await self.send(line + "\n")
        return (await self.reply())[-1]

    async def obj(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """JSON mode: the next object the server writes."""
        value = json.loads(await self.line(timeout))
        assert isinstance(value, dict)
        return value

    async def jcmd(self, line: str) -> dict[str, Any]:
        """JSON mode: sends a command and returns its ok/error object, skipping pushes."""
        await self.send(line + "\n")
        while True:
            o = await self.obj()
            if o["type"] in ("ok", "error"):
                return o

    async def until(self, pred: Callable[[str], bool], timeout: float = TIMEOUT) -> str:
        """Reads lines until one satisfies pred; returns it."""
        while True:
            line = await self.line(timeout)
            if pred(line):
                return line

    async def silent(self, seconds: float = 0.2) -> bool:
        """True when nothing arrives for `seconds`."""
        try:
            await asyncio.wait_for(self.reader.readline(), seconds)
        except TimeoutError:
            return True
        return False

    async def closed(self, timeout: float = TIMEOUT) -> bool:
        """True when the server closes the connection (reads up to EOF)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), timeout):
                pass
        except ConnectionResetError:
            return True
        return True

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


@dataclass
class Server:
    daemon: Daemon
    clock: FakeClock
    data_dir: Path

    @property
    def port(self) -> int:
        return self.daemon.port

    async def connect(self, greet: bool = True) -> Client:
        return await Client.connect(self.port, greet=greet)

    async def login(self, name: str, *, mode: str = "text", password: str = "") -> Client:
        """A connected, logged-in client whose login reply (and replay) was read."""
        c = await self.connect()
        if mode == "json":
            await c.send("mode json\n")
            assert (await c.obj())["mode"] == "json"
            o = await c.jcmd(f"login {name} {password}".strip())
            assert o["type"] == "ok", o
            for _ in range(o["unread"]):
                await c.obj()
        else:
            await c.send(f"login {name} {password}".strip() + "\n")
            ok = await c.line()
            assert ok.startswith("OK welcome"), ok
            unread = int(ok.rsplit(", ", 1)[1].split()[0])
            for _ in range(unread):
                await c.line()
        return c

    def line_connections(self) -> list[Connection]:
        """The daemon's open line-door connections (not IRC, HTTP or WebSocket ones)."""
        return [c for c in self.daemon._connections if isinstance(c, Connection)]

    async def restart(self, **settings: object) -> Server:
        """Stops this daemon cleanly and starts a new one on the same data dir."""
        await self.daemon.stop()
        config = config_with(self.data_dir, **settings)
        daemon = Daemon(config, clock=self.clock)
        await daemon.start()
        return Server(daemon, self.clock, self.data_dir)


StartServer = Callable[..., Awaitable[Server]]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Child:
    """A daemon in a child process (for kill -9 and signal tests)."""

    proc: subprocess.Popen[bytes]
    port: int
    data_dir: Path

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(TIMEOUT)


def launch(
    data_dir: Path, port: int, *args: str, output: int = subprocess.PIPE
) -> subprocess.Popen[bytes]:
    """`run_server.py` on this port and data directory (plus `args`), not waiting."""
    return subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "run_server.py"),
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--log-level",
            "warning",
            *args,
        ],
        cwd=data_dir.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=output,
        stderr=output,
    )


def spawn(data_dir: Path, *args: str, port: int | None = None) -> Child:
    """A daemon in a child process, once it listens."""
    port = port or free_port()
    proc = launch(data_dir, port, *args)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return Child(proc, port, data_dir)
        except OSError:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else "died"
                raise RuntimeError(err) from None
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("server did not start")
