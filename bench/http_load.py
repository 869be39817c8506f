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


class Round:
    """One wake-up round: done when every receiver has its whole answer."""

    __slots__ = ("done", "left")

    def __init__(self, n: int) -> None:
        self.left = n
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if n == 0:
            self.done.set_result(None)

    def one(self) -> None:
        self.left -= 1
        if self.left == 0 and not self.done.done():
            self.done.set_result(None)


class Poller(asyncio.Protocol):
    """A long-poll loop on one keep-alive connection: GET /events?since=…, again.

    `data_received` notes the time of an answer's first bytes and little else (the
    answer is parsed after the round): 1,000 answers arrive at once, and every
    microsecond spent here would be added to the next ones' measured latency."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.since = 0
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.need = -1
        self.at = 0
        self.round: Round | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def poll(self, round_: Round) -> None:
        assert self.transport is not None
        self.round = round_
        self.at = 0
        self.buffer = b""
        self.need = -1
        self.transport.write(
            f"GET /events?since={self.since}&timeout=60 HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {self.token}\r\n\r\n".encode()
        )

    def data_received(self, data: bytes) -> None:
        if not self.at:
            self.at = time.perf_counter_ns()
        self.buffer += data
        if self.need < 0:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            m = _LENGTH.search(self.buffer, 0, end)
            self.need = end + 4 + (int(m.group(1)) if m else 0)
        if len(self.buffer) >= self.need and self.round is not None:
            r, self.round = self.round, None
            r.one()

    def answer(self) -> list[dict[str, Any]]:
        """The round's answer: its events (the cursor moves on)."""
        head, _, body = self.buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(self.buffer[:300].decode(errors="replace"))
        got = json.loads(body)
        self.since = got["next"]
        events: list[dict[str, Any]] = got["events"]
        return events


class Sender(asyncio.Protocol):
    """The line-protocol user who sends each round's message; notes when its OK
    arrives. The OK is written after the commit, just before the fan-out, so the
    time from it to an answer is commit-to-answer (one loopback hop later)."""

    def __init__(self, ok: bytes) -> None:
        self.ok = ok
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.expect = b""
        self.ready: asyncio.Future[None] | None = None
        self.acked: asyncio.Future[int] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        if self.acked is not None and not self.acked.done() and self.ok in data:
            self.acked.set_result(now)
        if self.ready is not None and not self.ready.done():
            self.buffer += data
            if self.expect in self.buffer:
                self.ready.set_result(None)

    def send(self, line: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.acked = asyncio.get_running_loop().create_future()
        self.transport.write(line)
        return self.acked


async def open_sender(port: int, login: bool) -> Sender:
    loop = asyncio.get_running_loop()
    ok = b'"cmd":"send_all"' if login else b"OK"
    _, sender = await loop.create_connection(functools.partial(Sender, ok), HOST, port)
    if login:
        sender.ready = loop.create_future()
        sender.expect = b'"cmd":"login"'
        assert sender.transport is not None
        sender.transport.write(b"mode json\nlogin sender\n")
        await sender.ready
    return sender


class Arrival(Counter):
    """A line-protocol receiver that notes when the round's message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.at = 0
        self.round: Round | None = None

    def data_received(self, data: bytes) -> None:
        if self.round is not None and self.ready.done():
            self.at = time.perf_counter_ns()
            r, self.round = self.round, None
            r.one()
            return
        super().data_received(data)


def wake_result(
    clients: int, rounds: int, from_send: list[int], from_ack: list[int]
) -> dict[str, Any]:
    return {
        "clients": clients,
        "rounds": rounds,
        "wake_ms": percentiles(from_send),
        "from_ok_ms": percentiles(from_ack),
    }


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
    sender = await open_sender(port, login=True)
    from_send: list[int] = []
    from_ack: list[int] = []
    for r in range(rounds):
        round_ = Round(len(receivers))
        for c in receivers:
            c.round = round_
        await asyncio.sleep(0.3)
        started = time.perf_counter_ns()
        acked = sender.send(b"send_all wake %d\n" % r)
        await asyncio.wait_for(round_.done, 60)
        ack = await asyncio.wait_for(acked, 60)
        from_send += [c.at - started for c in receivers]
        from_ack += [c.at - ack for c in receivers]
    if sender.transport is not None:
        sender.transport.close()
    for c in receivers:
        if c.transport is not None:
            c.transport.close()
    return wake_result(clients, rounds, from_send, from_ack)


async def longpoll(
    port: int, http_port: int, clients: int, rounds: int, *, floor: bool = False
) -> dict[str, Any]:
    """`clients` long-polls waiting at once; a line-protocol user sends one message per
    round; the time from just before that send (and from its OK) until each poll's
    answer arrives. `floor`: the server is `serve_floor`'s trivial one."""
    loop = asyncio.get_running_loop()
    if floor:
        tokens = [""] * clients
    else:
        tokens = await in_batches(clients, lambda i: token_for(http_port, f"p{i}"))
    pollers: list[Poller] = []
    for token in tokens:
        _, poller = await loop.create_connection(functools.partial(Poller, token), HOST, http_port)
        pollers.append(poller)
    sender = await open_sender(port, login=not floor)
    from_send: list[int] = []
    from_ack: list[int] = []
    wrong = 0
    for r in range(rounds):
        round_ = Round(len(pollers))
        for p in pollers:
            p.poll(round_)
        await asyncio.sleep(0.3)  # every poll is waiting on the server
        started = time.perf_counter_ns()
        acked = sender.send(b"send_all wake %d\n" % r)
        await asyncio.wait_for(round_.done, 60)
        ack = await asyncio.wait_for(acked, 60)
        from_send += [p.at - started for p in pollers]
        from_ack += [p.at - ack for p in pollers]
        want = f"wake {r}"
        for p in pollers:
            events = p.answer()
            if [e.get("text") for e in events] != [want]:
                wrong += 1
    if sender.transport is not None:
        sender.transport.close()
    for poller in pollers:
        if poller.transport is not None:
            poller.transport.close()
    result = wake_result(clients, rounds, from_send, from_ack)
    result["wrong_answers"] = wrong  # answers that were not exactly the round's message
    return result


# The floor: a trivial server --------------------------------------------------------------


class _Floor:
    """The trivial long-poll server's state: the parked requests' transports."""

    def __init__(self) -> None:
        self.parked: list[asyncio.Transport] = []
        self.round = 0


class _FloorConnection(asyncio.Protocol):
    """Parks every HTTP request; a `send_all` line answers `OK` and then every parked
    request with the same prepared bytes, one write each: the least any server can
    do in Python to wake them."""

    def __init__(self, floor: _Floor) -> None:
        self.floor = floor
        self.transport: asyncio.Transport | None = None
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        assert self.transport is not None
        if self.buffer.startswith(b"send_all ") and self.buffer.endswith(b"\n"):
            text = self.buffer[9:-1].decode()
            self.buffer = b""
            self.transport.write(b"OK\n")
            f = self.floor
            f.round += 1
            body = json.dumps(
                {
                    "events": [
                        {
                            "type": "message",
                            "id": f.round,
                            "chat": "#general",
                            "from": "sender",
                            "text": text,
                            "ts": "2026-11-30T00:00:00.000Z",
                            "replay": False,
                        }
                    ],
                    "next": f.round,
                },
                separators=(",", ":"),
            ).encode()
            wire = (
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                % len(body)
                + body
            )
            parked, f.parked = f.parked, []
            for t in parked:
                t.write(wire)
        elif b"\r\n\r\n" in self.buffer:
            self.buffer = b""
            self.floor.parked.append(self.transport)


def serve_floor(port: int) -> None:
    """The trivial server (`--serve-floor PORT`), under uvloop like chatd."""

    async def main() -> None:
        floor = _Floor()
        server = await asyncio.get_running_loop().create_server(
            lambda: _FloorConnection(floor), HOST, port, backlog=4096
        )
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        _run(main())


def _run(coro: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


@contextlib.contextmanager
def floor_server(tmp: Path) -> Iterator[int]:
    port = servers.free_port()
    cmd = [servers.chatd_python(), "-m", "bench.http_load", "--serve-floor", str(port)]
    with servers._running(cmd, tmp, port, tmp / "floor.log"):
        yield port


# Running -------------------------------------------------------------------------------


@contextlib.contextmanager
def chatd_with_http(tmp: Path, tree: Path | None = None) -> Iterator[tuple[servers.Running, int]]:
    http_port = servers.free_port()
    overrides: dict[str, object] = {"http.port": http_port, "http.max_connections_per_ip": 100000}
    if tree is not None:
        overrides["bench.tree"] = str(tree)
    with servers.chatd(overrides, tmp) as running:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((HOST, http_port), 0.2):
                break
            time.sleep(0.05)
        yield running, http_port


def run_scenario(
    name: str, args: argparse.Namespace, clients: int, tree: Path | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="chatd-http-bench-") as tmp:
        if name == "floor":
            with floor_server(Path(tmp)) as port:
                return _run(longpoll(port, port, clients, args.rounds, floor=True))  # type: ignore[no-any-return]
        with chatd_with_http(Path(tmp), tree) as (running, http_port):
            port = running.port
            if name == "fanout_line":
                coro = fanout(port, http_port, clients, args.messages, "line")
            elif name == "fanout_ws":
                coro = fanout(port, http_port, clients, args.messages, "ws")
            elif name == "send_rps":
                coro = send_rps(http_port, args.connections, args.seconds)
            elif name == "line_wake":
                coro = line_wake(port, clients, args.rounds)
            else:
                coro = longpoll(port, http_port, clients, args.rounds)
            result: dict[str, Any] = _run(coro)
            return result


def summary(results: list[dict[str, Any]]) -> str:
    """The wake-up scenarios as a table: every run's p50 / p99 / max, from the send and
    from the sender's OK."""
    rows: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in results:
        if "wake_ms" in r:
            rows.setdefault((r["scenario"], r["tree"], r["clients"]), []).append(r)
    lines = [
        "| scenario | tree | clients | from send p50 / p99 / max (ms) | from OK p50 / p99 / max |"
    ]
    lines.append("|---|---|---|---|---|")

    def cell(rs: list[dict[str, Any]], key: str) -> str:
        return ", ".join(
            f"{x[key]['p50']:.1f} / {x[key]['p99']:.1f} / {x[key]['max']:.1f}" for x in rs
        )

    for (scenario, tree, clients), rs in sorted(rows.items()):
        sent, ok = cell(rs, "wake_ms"), cell(rs, "from_ok_ms")
        lines.append(f"| {scenario} | {tree} | {clients} | {sent} | {ok} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.http_load", description=__doc__)
    p.add_argument(
        "--clients", default="1000", help="receivers / waiting long-polls (a comma list runs each)"
    )
    p.add_argument("--messages", type=int, default=1000, help="messages per fan-out run")
    p.add_argument("--connections", type=int, default=20, help="keep-alive senders")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the send run")
    p.add_argument("--rounds", type=int, default=20, help="long-poll rounds")
    p.add_argument("--runs", type=int, default=1, help="runs of each scenario")
    p.add_argument(
        "--scenarios",
        default="fanout_line,fanout_ws,send_rps,line_wake,longpoll",
        help="comma-separated; also `floor` (long-polls against a trivial server)",
    )
    p.add_argument(
        "--base-tree",
        type=Path,
        help="another chatd tree (git archive COMMIT | tar -x -C DIR) run next to this one",
    )
    p.add_argument(
        "--tree", type=Path, help="run this chatd tree instead of the repository's (a snapshot)"
    )
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument(
        "--wait-quiet", type=float, default=0.0, help="wait up to this long for a quiet machine"
    )
    p.add_argument("--serve-floor", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve_floor:
        raise_nofile(16384)
        serve_floor(args.serve_floor)
        return 0
    counts = [int(x) for x in str(args.clients).split(",")]
    raise_nofile(4 * max(counts) + 256)
    trees: list[tuple[str, Path | None]] = [("this", args.tree.resolve() if args.tree else None)]
    if args.base_tree is not None:
        trees.insert(0, ("base", args.base_tree.resolve()))
    results = []
    for _ in range(args.runs):
        for clients in counts:
            for name in args.scenarios.split(","):
                for label, tree in trees if name != "floor" else [("floor", None)]:
                    busy = wait_quiet(args.wait_quiet) if args.wait_quiet else None
                    result = run_scenario(name, args, clients, tree)
                    result["scenario"] = name
                    result["tree"] = label
                    result["host_busy_before_pct"] = busy
                    print(json.dumps(result), flush=True)
                    results.append(result)
    print(summary(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
