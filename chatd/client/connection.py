"""One connection to chatd in JSON mode: lines out, objects in, replies matched in order.

The protocol promises exactly one reply per command, in order, with pushed messages and
notices interleaved; so a FIFO of pending requests is all the matching there is. Input
is framed by the server's own `LineFramer` (with a limit big enough for a `download`
reply, which carries a whole file as base64 on one line). Writes go through one lock,
so an upload's data lines are never interleaved with another command.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from chatd.protocol.framing import FrameError, LineFramer

Obj = dict[str, Any]

MAX_LINE_BYTES = 64 * 1024 * 1024  # a 5 MiB file is ~7 MB of base64 plus JSON
READ_CHUNK = 256 * 1024
CONNECT_TIMEOUT_S = 10.0


class ConnectError(Exception):
    """Could not reach or greet the server; the text is one line for a person."""


class ConnectionLost(Exception):
    """The connection ended while a reply was awaited, or before a request was sent."""


@dataclass(frozen=True, slots=True)
class Endpoint:
    host: str = "127.0.0.1"
    port: int = 8000
    tls: bool = False
    cafile: str | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        """The stdlib default context (verifies the certificate and host name), trusting
        `cafile` when given instead of the system store."""
        if not self.tls:
            return None
        return ssl.create_default_context(cafile=self.cafile)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_server(text: str, default_port: int) -> tuple[str, int]:
    """`HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` as (host, port); ValueError with one
    line for a person otherwise. An IPv6 address needs its brackets: in `::1:8000` the
    last group could be a port or part of the address."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise ValueError(f"{text!r}: no ']' after the IPv6 address")
        if rest and not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected ':PORT' after ']'")
        port_text = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise ValueError(f"{text!r}: an IPv6 address goes in brackets, e.g. [::1]:8000")
    else:
        host, sep, port_text_ = text.partition(":")
        port_text = port_text_ if sep else None
    if not host or any(ch.isspace() for ch in host):
        raise ValueError(f"{text!r}: no host name or address")
    if port_text is None:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{text!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)


def parse_servers(values: Iterable[str], default_port: int) -> list[tuple[str, int]]:
    """Every `--server` value (each may be a comma-separated list) in order, each server
    once; ValueError naming the bad one."""
    servers: list[tuple[str, int]] = []
    for value in values:
        for item in value.split(","):
            if not item.strip():
                raise ValueError(f"{value!r}: an empty server in the list")
            server = parse_server(item, default_port)
            if server not in servers:
                servers.append(server)
    return servers


def backoff(base: float = 1.0, cap: float | None = None) -> Iterator[float]:
    """Retry delays: base, doubling, up to cap (default 30 × base: 1 s … 30 s)."""
    limit = 30 * base if cap is None else cap
    delay = base
    while True:
        yield min(delay, limit)
        delay = min(delay * 2, limit)


def decode(line: str) -> Obj:
    """A server line as an object. Text lines (the greeting, replies before `mode json`
    took effect) become notices or replies of the same shape, so nothing is dropped."""
    try:
        value = json.loads(line)
    except ValueError:
        value = None
    if isinstance(value, dict):
        return value
    if line.startswith("ERR "):
        _, code, message = [*line.split(" ", 2), ""][:3]
        return {"type": "error", "cmd": None, "code": code, "message": message}
    if line == "OK" or line.startswith("OK "):
        return {"type": "ok", "cmd": None, "text": line[3:]}
    return {"type": "notice", "event": "raw", "text": line}


def upload_chunks(b64: str, width: int = 76) -> list[str]:
    """Base64 text as data lines. Should the server refuse the `upload` line itself, the
    data lines are read as commands; a 4-character last line could then spell `quit`,
    `ping` or `help`, so it is joined to the line before (80 characters is still fine)."""
    chunks = [b64[i : i + width] for i in range(0, len(b64), width)]
    if len(chunks) > 1 and chunks[-1].lower() in ("quit", "ping", "help"):
        chunks[-2:] = [chunks[-2] + chunks[-1]]
    return chunks


@dataclass(slots=True)
class _Pending:
    future: asyncio.Future[Obj]
    on_reply: Callable[[Obj], None] | None = None
    progress: Callable[[int], None] | None = None
    until_pong: bool = False  # an upload: the first reply is the result, then skip to pong
    result: Obj | None = field(default=None)


class Connection:
    """A greeted connection. `closed` resolves with the reason when it ends."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_push: Callable[[Obj], None],
        *,
        greeting: str,
        framer: LineFramer,
        early: Iterable[Obj] = (),
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._on_push = on_push
        self.greeting = greeting
        self._framer = framer
        self._pending: deque[_Pending] = deque()
        self._lock = asyncio.Lock()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._early = list(early)
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def open(cls, endpoint: Endpoint, on_push: Callable[[Obj], None]) -> Connection:
        """Connects and reads the greeting; ConnectError with one clear line otherwise."""
        try:
            ctx = endpoint.ssl_context()
        except (OSError, ssl.SSLError) as e:
            raise ConnectError(f"cannot use CA file {endpoint.cafile}: {_reason(e)}") from None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    endpoint.host,
                    endpoint.port,
                    ssl=ctx,
                    server_hostname=endpoint.host if ctx else None,
                    limit=READ_CHUNK,
                ),
                CONNECT_TIMEOUT_S,
            )
        except TimeoutError:
            raise ConnectError(f"cannot connect to {endpoint}: timed out") from None
        except (OSError, ssl.SSLError) as e:
            raise ConnectError(f"cannot connect to {endpoint}: {_reason(e)}") from None
        framer = LineFramer(MAX_LINE_BYTES)
        lines: list[str] = []
        try:
            while not lines:
                data = await asyncio.wait_for(reader.read(READ_CHUNK), CONNECT_TIMEOUT_S)
                if not data:
                    raise ConnectError(f"{endpoint} closed the connection before greeting")
                lines = [x for x in framer.feed(data) if isinstance(x, str)]
        except TimeoutError:
            writer.close()
            raise ConnectError(f"{endpoint} sent no greeting; is it a chatd server?") from None
        except (OSError, ssl.SSLError) as e:
            writer.close()
            raise ConnectError(f"cannot connect to {endpoint}: {_reason(e)}") from None
        except ConnectError:
            writer.close()
            raise
        greeting = lines[0]
        if not greeting.startswith("* "):
            writer.close()
            text = greeting.removeprefix("ERR ").split(" ", 1)[-1]
            raise ConnectError(f"{endpoint} refused the connection: {text}")
        return cls(
            reader, writer, on_push, greeting=greeting, framer=framer, early=map(decode, lines[1:])
        )

    # Requests -------------------------------------------------------------------------

    async def request(
        self,
        line: str,
        *,
        on_reply: Callable[[Obj], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Obj:
        """Sends one command and returns its reply. `on_reply` runs in stream order, before
        any later push is handled (login uses it to announce the replay that follows);
        `progress` hears how many bytes of a long reply have arrived so far."""
        future = self._new_future()
        async with self._lock:
            self._check_open()
            self._pending.append(_Pending(future, on_reply, progress))
            self._writer.write(line.encode() + b"\n")
            await self._drain()
        return await future

    async def upload(
        self, header: str, chunks: list[str], progress: Callable[[int], None] | None = None
    ) -> Obj:
        """`upload …`, the data lines, `.`, then a `ping`. The first reply is the upload's;
        the pong marks the end, however many replies a refusal produced in between (a
        server without uploads answers every data line with an error)."""
        future = self._new_future()
        async with self._lock:
            self._check_open()
            self._pending.append(_Pending(future, until_pong=True))
            self._writer.write(header.encode() + b"\n")
            sent = 0
            for i, chunk in enumerate(chunks):
                self._writer.write(chunk.encode() + b"\n")
                sent += len(chunk) + 1
                if i % 512 == 511:
                    await self._drain()
                    if progress is not None:
                        progress(sent)
            self._writer.write(b".\nping\n")
            await self._drain()
            if progress is not None:
                progress(sent)
        return await future

    async def close(self) -> None:
        """Says `quit` and waits (briefly) for the server to close; then closes anyway."""
        if not self.closed.done():
            with contextlib.suppress(ConnectionLost, TimeoutError):
                await asyncio.wait_for(self.request("quit"), 2.0)
                await asyncio.wait_for(asyncio.shield(self.closed), 2.0)
        self.abort("closed")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task

    def abort(self, reason: str) -> None:
        self._writer.close()
        self._lost(reason)

    # Internals ------------------------------------------------------------------------

    def _new_future(self) -> asyncio.Future[Obj]:
        return asyncio.get_running_loop().create_future()

    def _check_open(self) -> None:
        if self.closed.done():
            raise ConnectionLost(self.closed.result())

    async def _drain(self) -> None:
        try:
            await self._writer.drain()
        except (OSError, ssl.SSLError) as e:
            self._lost(_reason(e))
            raise ConnectionLost(_reason(e)) from None

    async def _read_loop(self) -> None:
        reason = "the server closed the connection"
        try:
            for obj in self._early:
                self._dispatch(obj)
            while data := await self._reader.read(READ_CHUNK):
                for item in self._framer.feed(data):
                    if not isinstance(item, FrameError):
                        self._dispatch(decode(item))
                head = self._pending[0] if self._pending else None
                if head is not None and head.progress is not None and self._framer.pending:
                    head.progress(self._framer.pending)
        except (OSError, ssl.SSLError) as e:
            reason = _reason(e)
        finally:
            self._lost(reason)

    def _dispatch(self, obj: Obj) -> None:
        kind = obj.get("type")
        if kind not in ("ok", "error") or not self._pending:
            self._on_push(obj)
            return
        head = self._pending[0]
        if head.until_pong:
            if head.result is None:
                head.result = obj
            elif kind == "ok" and obj.get("cmd") == "ping":
                self._pending.popleft()
                _resolve(head.future, head.result)
            return
        self._pending.popleft()
        if head.on_reply is not None:
            head.on_reply(obj)
        _resolve(head.future, obj)

    def _lost(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        while self._pending:
            future = self._pending.popleft().future
            if not future.done():
                future.set_exception(ConnectionLost(reason))


def _resolve(future: asyncio.Future[Obj], obj: Obj) -> None:
    if not future.done():  # the awaiting task may have been cancelled
        future.set_result(obj)


def _reason(e: BaseException) -> str:
    """An OS or TLS error as a few words: `connection refused`, not a traceback."""
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({e.verify_message})"
    if isinstance(e, ssl.SSLError):
        return f"TLS error ({e.reason or e})"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve the host name ({e.strerror})"
    if isinstance(e, OSError) and (e.errno or e.strerror):
        # asyncio words a refused connect as "Connect call failed (…)"; the errno's own
        # text ("connection refused") says more.
        text = os.strerror(e.errno) if e.errno else str(e.strerror)
        return text[0].lower() + text[1:]
    return str(e) or type(e).__name__
