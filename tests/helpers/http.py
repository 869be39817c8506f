"""The HTTP door in tests: a daemon with its HTTP listener on a free port, an httpx
client per user, raw sockets for what a well-behaved client never sends, and an SSE
reader (httpx streams the body; the framing is read here, not by chatd's code)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection

from tests.helpers.server import TIMEOUT, Server, StartServer, free_port


async def start_http(start_server: StartServer, **settings: object) -> tuple[Server, str]:
    """A daemon with its HTTP door on a free port; returns it and the base URL."""
    port = free_port()
    server = await start_server(http__port=port, **settings)
    assert server.daemon.door_port("http") == port
    return server, f"http://127.0.0.1:{port}"


def client(base: str, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=TIMEOUT)


async def connect(base: str, name: str, password: str | None = None) -> str:
    """POST /connect; the token."""
    body: dict[str, Any] = {"name": name}
    if password is not None:
        body["password"] = password
    async with client(base) as c:
        r = await c.post("/connect", json=body)
    assert r.status_code == 200, r.text
    token = r.json()["token"]
    assert isinstance(token, str)
    return token


async def user(base: str, name: str, password: str | None = None) -> httpx.AsyncClient:
    """An httpx client logged in as `name` (close it, or use `async with`)."""
    return client(base, await connect(base, name, password))


def error_code(r: httpx.Response) -> str:
    code = r.json()["error"]["code"]
    assert isinstance(code, str)
    return code


async def raw(port: int, data: bytes, *, read_until_close: bool = True) -> bytes:
    """Writes `data` on a fresh socket; everything the server answers until it closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        if not read_until_close:
            return b""
        return await asyncio.wait_for(reader.read(), TIMEOUT)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


def status_lines(data: bytes) -> list[int]:
    """The status codes of every response in a raw byte stream."""
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", data)]


@dataclass
class SseEvent:
    id: str | None
    data: dict[str, Any]


@dataclass
class SseReader:
    """Reads Server-Sent Events from a streamed httpx response."""

    lines: AsyncIterator[str]
    comments: list[str] = field(default_factory=list)

    async def comment(self, timeout: float = TIMEOUT) -> str:
        """The next comment line (`: ...`), skipping anything else."""

        async def read() -> str:
            async for line in self.lines:
                if line.startswith(":"):
                    self.comments.append(line)
                    return line
            raise EOFError("the stream ended")

        return await asyncio.wait_for(read(), timeout)

    async def next(self, timeout: float = TIMEOUT) -> SseEvent:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> SseEvent:
        ident: str | None = None
        data: list[str] = []
        async for line in self.lines:
            if line == "":
                if data:
                    return SseEvent(ident, json.loads("\n".join(data)))
                continue
            if line.startswith(":"):
                self.comments.append(line)
            elif line.startswith("id:"):
                ident = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].strip())
        raise EOFError("the stream ended")


async def ws_obj(ws: ClientConnection) -> dict[str, Any]:
    """The next WebSocket text frame, a JSON object."""
    frame = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(frame, str)
    value = json.loads(frame)
    assert isinstance(value, dict)
    return value
