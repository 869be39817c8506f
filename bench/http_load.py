"""HTTP door scenarios: WebSocket fan-out next to the line protocol's, POST /send
requests per second over keep-alive, and long-poll wake-up latency with many waiters.

    .venv/bin/python -m bench.http_load [--clients 1000] [--messages 100] [--json out.json]

One chatd child process (bench/chatd-bench.toml plus its HTTP door) per scenario, and
one asyncio client process (uvloop when installed) that speaks raw HTTP/1.1 and
WebSocket frames: a small client, so that as much of the machine as possible is left to
the server. On a 2-core machine the client and the server share the CPUs, as they do
for bench/cli.py's scenarios; the numbers compare doors, not machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import re
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

from bench import servers
from bench.cli import raise_nofile, wait_quiet
from bench.pygen import percentiles

HOST = "127.0.0.1"
MESSAGE = b'"type":"message"'


# Clients -------------------------------------------------------------------------------


class Counter(asyncio.Protocol):
    """Counts pushed messages on a line or WebSocket connection; `wanted` resolves
    once `target` of them arrived."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.count = 0
        self.target = 0
        self.wanted: asyncio.Future[None] | None = None
        self.ready: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.expect = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def data_received(self, data: bytes) -> None:
        if not self.ready.done():
            self.buffer += data
            if self.expect in self.buffer:
                self.ready.set_result(self.buffer)
                self.buffer = b""
            return
        self.count += data.count(MESSAGE)
        if self.wanted is not None and self.count >= self.target and not self.wanted.done():
            self.wanted.set_result(None)

    def want(self, total: int) -> asyncio.Future[None]:
        self.target = total
        self.wanted = asyncio.get_running_loop().create_future()
        if self.count >= total:
            self.wanted.set_result(None)
        return self.wanted


def ws_frame(text: bytes) -> bytes:
    """A masked client text frame (mask key 0: the payload stays as it is)."""
    n = len(text)
    if n < 126:
        return bytes((0x81, 0x80 | n)) + b"\0\0\0\0" + text
    return bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big") + b"\0\0\0\0" + text


async def open_counter(port: int) -> Counter:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(Counter, HOST, port)
    return proto


async def line_client(port: int, name: str) -> Counter:
    c = await open_counter(port)
    c.expect = b'"cmd":"login"'
    assert c.transport is not None
    c.transport.write(f"mode json\nlogin {name}\n".encode())
    await c.ready
    return c


async def ws_client(http_port: int, name: str) -> Counter:
    c = await open_counter(http_port)
    c.expect = b"\r\n\r\n"
    assert c.transport is not None
    c.transport.write(
        b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await c.ready
    assert head.startswith(b"HTTP/1.1 101"), head[:100]
    c.ready = asyncio.get_running_loop().create_future()
    c.expect = b'"cmd":"login"'
    c.transport.write(ws_frame(f"login {name}".encode()))
    await c.ready
    return c


async def in_batches(n: int, make: Callable[[int], Any], batch: int = 50) -> list[Any]:
    out: list[Any] = []
    for start in range(0, n, batch):
        out += await asyncio.gather(*(make(i) for i in range(start, min(n, start + batch))))
    return out


async def http_call(
    port: int, method: str, path: str, body: bytes = b"", token: str = ""
) -> dict[str, Any]:
    reader, writer = await asyncio.open_connection(HOST, port)
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    writer.write(
        f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + body
    )
    data = await reader.read()
    writer.close()
    value = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert isinstance(value, dict)
    return value


async def token_for(port: int, name: str) -> str:
    got = await http_call(port, "POST", "/connect", json.dumps({"name": name}).encode())
    token = got["token"]
    assert isinstance(token, str)
    return token


# Scenarios -----------------------------------------------------------------------------


async def fanout(
    port: int, http_port: int, clients: int, messages: int, door: str
) -> dict[str, Any]:
    """`clients` receivers in #general (WebSocket or line protocol, both JSON), one
    line-protocol sender pipelining `messages` messages; deliveries per second until
    every receiver has every message."""
    if door == "ws":
        receivers = await in_batches(clients, lambda i: ws_client(http_port, f"w{i}"))
    else:
        receivers = await in_batches(clients, lambda i: line_client(port, f"l{i}"))
    sender = await line_client(port, "sender")
    await asyncio.sleep(0.5)
    waits = [r.want(messages) for r in receivers]
    burst = b"".join(b"send_all bench message %d\n" % i for i in range(messages))
    started = time.perf_counter()
    assert sender.transport is not None
    sender.transport.write(burst)
    await asyncio.wait_for(asyncio.gather(*waits), 120)
    elapsed = time.perf_counter() - started
    for r in (*receivers, sender):
        if r.transport is not None:
            r.transport.close()
    return {
        "door": door,
        "clients": clients,
        "messages": messages,
        "seconds": round(elapsed, 3),
        "deliveries_per_s": round(clients * messages / elapsed),
    }


class KeepAlive(asyncio.Protocol):
    """One keep-alive connection doing one request after another."""

    def __init__(self, request: bytes, until: float, done: asyncio.Future[None]) -> None:
        self.request = request
        self.until = until
        self.done = done
        self.responses = 0
        self.transport: asyncio.Transport | None = None
        self.latencies: list[int] = []
        self.sent_at = 0
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        self._send()

    def _send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        n, self.buffer = take_responses(self.buffer)
        if n == 0:
            return
        self.responses += n
        self.latencies.append(time.perf_counter_ns() - self.sent_at)
        if time.perf_counter() < self.until:
            self._send()
        elif not self.done.done():
            self.done.set_result(None)


_LENGTH = re.compile(rb"Content-Length: (\d+)", re.IGNORECASE)


def take_responses(buffer: bytes) -> tuple[int, bytes]:
    """Complete 200 responses at the start of `buffer`, and the rest."""
    n = 0
    while True:
        head, sep, rest = buffer.partition(b"\r\n\r\n")
        if not sep:
            return n, buffer
        m = _LENGTH.search(head)
        length = int(m.group(1)) if m else 0
        if len(rest) < length:
            return n, buffer
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(buffer[:300].decode(errors="replace"))
        n += 1
        buffer = rest[length:]


async def send_rps(http_port: int, conns: int, seconds: float) -> dict[str, Any]:
    """`conns` keep-alive connections, each POST /send after POST /send to #general
    for `seconds`; requests per second and latency."""
    loop = asyncio.get_running_loop()
    tokens = await in_batches(conns, lambda i: token_for(http_port, f"s{i}"))
    until = time.perf_counter() + seconds
    protos: list[KeepAlive] = []
    dones = []
    started = time.perf_counter()
    for i, token in enumerate(tokens):
        body = json.dumps({"to": "#general", "text": f"from {i}"}).encode()
        request = (
            f"POST /send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        done: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            functools.partial(KeepAlive, request, until, done), HOST, http_port
        )
        protos.append(proto)
        dones.append(done)
    await asyncio.wait_for(asyncio.gather(*dones), seconds + 30)
    elapsed = time.perf_counter() - started
    total = sum(p.responses for p in protos)
    for p in protos:
        if p.transport is not None:
            p.transport.close()
    lat = percentiles([x for p in protos for x in p.latencies])
    return {
        "connections": conns,
        "requests": total,
        "requests_per_s": round(total / elapsed),
        "latency_ms": lat,
    }


class Poller(asyncio.Protocol):
    """A long-poll loop on one keep-alive connection: GET /events?since=…, again."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.since = 0
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.got: asyncio.Future[int] | None = None
        self.received_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def poll(self) -> None:
        assert self.transport is not None
        self.got = asyncio.get_running_loop().create_future()
        self.transport.write(
            f"GET /events?since={self.since}&timeout=60 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        self.buffer += data
        head, sep, body = self.buffer.partition(b"\r\n\r\n")
        if not sep:
            return
        m = re.search(rb"Content-Length: (\d+)", head)
        if m is None or len(body) < int(m.group(1)):
            return
        self.buffer = b""
        self.received_at = now
        self.since = json.loads(body)["next"]
        if self.got is not None and not self.got.done():
            self.got.set_result(now)


class Arrival(Counter):
    """A line-protocol receiver that notes when the round's message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.arrived: asyncio.Future[int] | None = None

    def data_received(self, data: bytes) -> None:
        if self.ready.done() and self.arrived is not None and not self.arrived.done():
            self.arrived.set_result(time.perf_counter_ns())
        super().data_received(data)


async def line_wake(port: int, clients: int, rounds: int) -> dict[str, Any]:
    """The same measure as `longpoll` for line-protocol receivers: the floor that
    1,000 writes to 1,000 sockets set on this machine, whatever the door."""
    loop = asyncio.get_running_loop()

    async def receiver(i: int) -> Arrival:
        _, c = await loop.create_connection(Arrival, HOST, port)
        c.expect = b'"cmd":"login"'
        assert c.transport is not None
        c.transport.write(f"mode json\nlogin r{i}\n".encode())
        await c.ready
        return c

    receivers: list[Arrival] = await in_batches(clients, receiver)
    sender = await line_client(port, "sender")
    assert sender.transport is not None
    samples: list[int] = []
    for r in range(rounds):
        for c in receivers:
            c.arrived = loop.create_future()
        await asyncio.sleep(0.3)
        started = time.perf_counter_ns()
        sender.transport.write(b"send_all wake %d\n" % r)
        got = await asyncio.wait_for(
            asyncio.gather(*(c.arrived for c in receivers if c.arrived)), 60
        )
        samples += [t - started for t in got]
    sender.transport.close()
    for arrival in receivers:
        if arrival.transport is not None:
            arrival.transport.close()
    return {"clients": clients, "rounds": rounds, "wake_ms": percentiles(samples)}


async def longpoll(port: int, http_port: int, clients: int, rounds: int) -> dict[str, Any]:
    """`clients` long-polls waiting at once; a line-protocol user sends one message per
    round; the time from just before that send until each poll's answer arrives."""
    loop = asyncio.get_running_loop()
    tokens = await in_batches(clients, lambda i: token_for(http_port, f"p{i}"))
    pollers: list[Poller] = []
    for token in tokens:
        _, poller = await loop.create_connection(functools.partial(Poller, token), HOST, http_port)
        pollers.append(poller)
    sender = await line_client(port, "sender")
    assert sender.transport is not None
    samples: list[int] = []
    for r in range(rounds):
        for p in pollers:
            p.poll()
        await asyncio.sleep(0.3)  # every poll is waiting on the server
        started = time.perf_counter_ns()
        sender.transport.write(b"send_all wake %d\n" % r)
        got = await asyncio.wait_for(asyncio.gather(*(p.got for p in pollers if p.got)), 60)
        samples += [t - started for t in got]
    sender.transport.close()
    for poller in pollers:
        if poller.transport is not None:
            poller.transport.close()
    return {"clients": clients, "rounds": rounds, "wake_ms": percentiles(samples)}


# Running -------------------------------------------------------------------------------


@contextlib.contextmanager
def chatd_with_http(tmp: Path) -> Iterator[tuple[servers.Running, int]]:
    http_port = servers.free_port()
    overrides = {"http.port": http_port, "http.max_connections_per_ip": 100000}
    with servers.chatd(overrides, tmp) as running:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, http_port), 0.2):
                break
            time.sleep(0.05)
        yield running, http_port


def run_scenario(name: str, args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="chatd-http-bench-") as tmp,
        chatd_with_http(Path(tmp)) as (
            running,
            http_port,
        ),
    ):
        port = running.port
        if name == "fanout_line":
            coro = fanout(port, http_port, args.clients, args.messages, "line")
        elif name == "fanout_ws":
            coro = fanout(port, http_port, args.clients, args.messages, "ws")
        elif name == "send_rps":
            coro = send_rps(http_port, args.connections, args.seconds)
        elif name == "line_wake":
            coro = line_wake(port, args.clients, args.rounds)
        else:
            coro = longpoll(port, http_port, args.clients, args.rounds)
        result: dict[str, Any] = asyncio.run(coro)
        result["scenario"] = name
        return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__)
    p.add_argument("--clients", type=int, default=1000, help="receivers / waiting long-polls")
    p.add_argument("--messages", type=int, default=1000, help="messages per fan-out run")
    p.add_argument("--connections", type=int, default=20, help="keep-alive senders")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the send run")
    p.add_argument("--rounds", type=int, default=20, help="long-poll rounds")
    p.add_argument("--runs", type=int, default=1, help="runs of each scenario")
    p.add_argument(
        "--scenarios",
        default="fanout_line,fanout_ws,send_rps,line_wake,longpoll",
        help="comma-separated",
    )
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to this long for a quiet machine"
    )
    args = p.parse_args(argv)
    raise_nofile(4 * args.clients + 256)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    results = []
    for _ in range(args.runs):
        for name in args.scenarios.split(","):
            busy = wait_quiet(args.wait_quiet) if args.wait_quiet else None
            result = run_scenario(name, args)
            result["host_busy_before_pct"] = busy
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
