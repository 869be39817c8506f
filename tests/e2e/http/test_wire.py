"""HTTP/1.1 on the wire, over raw sockets: keep-alive, pipelining, chunked bodies, a
request split byte by byte, Expect: 100-continue, HEAD, and every limit (header and
body bytes, header timeout, connections per address, a slowloris)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time

from tests.helpers.http import client, connect, raw, start_http, status_lines
from tests.helpers.server import TIMEOUT, StartServer


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def test_keep_alive_and_pipelining(start_server: StartServer) -> None:
    server, base = await start_http(start_server)
    token = await connect(base, "alice")
    auth = f"Authorization: Bearer {token}\r\n"
    send = [
        _post("/send", json.dumps({"to": "#general", "text": f"m{i}"}).encode(), auth)
        for i in range(5)
    ]
    last = _get("/openapi.json", "Connection: close\r\n")
    # Five sends and a GET in one write: five answers in order, on one connection.
    data = await raw(_port(base), b"".join(send) + last)
    assert status_lines(data) == [200] * 6
    ids = [int(x) for x in re.findall(rb'"id":(\d+)', data)]
    assert len(ids) == 5 and ids == sorted(ids)
    # httpx keeps one connection for many requests.
    async with client(base, token) as alice:
        for _ in range(3):
            assert (await alice.get("/status")).status_code == 200
        assert server.daemon.door_port("http")
    assert data.count(b"Connection: close") == 1


async def test_request_split_byte_by_byte(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    body = json.dumps({"name": "slowpoke"}).encode()
    request = _post("/connect", body, "Connection: close\r\n")
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(base))
    for i in range(len(request)):
        writer.write(request[i : i + 1])
        await writer.drain()
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    assert status_lines(data) == [200]
    assert b'"user":"slowpoke"' in data


async def test_chunked_request_body(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    body = json.dumps({"name": "chunky"}).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 3]), body[i : i + 3]) for i in range(0, len(body), 3)
    )
    request = (
        b"POST /connect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n" + chunks + b"0\r\n\r\n"
    )
    data = await raw(_port(base), request)
    assert status_lines(data) == [200] and b'"user":"chunky"' in data


async def test_expect_100_continue_and_head(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    body = json.dumps({"name": "polite"}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", _port(base))
    writer.write(
        b"POST /connect HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n"
        % len(body)
    )
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert interim.startswith(b"HTTP/1.1 100 ")
    writer.write(body + _get("/", "Connection: close\r\n").replace(b"GET", b"HEAD"))
    data = await asyncio.wait_for(reader.read(), TIMEOUT)
    writer.close()
    assert status_lines(data) == [200, 200]
    head = data.split(b"HTTP/1.1 200 OK\r\n")[2]
    assert b"Content-Length: " in head and head.endswith(b"\r\n\r\n")  # no body after HEAD


async def test_oversized_headers_and_bodies(start_server: StartServer) -> None:
    _server, base = await start_http(
        start_server, http__max_header_bytes=1024, http__max_body_bytes=100
    )
    port = _port(base)
    data = await raw(port, _get("/", "X-Big: " + "a" * 2000 + "\r\n"))
    assert status_lines(data) == [431] and b'"code":"too-large"' in data
    data = await raw(port, _post("/connect", b"{" + b" " * 200 + b"}"))
    assert status_lines(data) == [413] and b"Connection: close" in data
    chunked = (
        b"POST /connect HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"80\r\n"
        + b" " * 128
        + b"\r\n0\r\n\r\n"
    )
    data = await raw(port, chunked)
    assert status_lines(data) == [413]


async def test_malformed_requests(start_server: StartServer) -> None:
    _server, base = await start_http(start_server)
    port = _port(base)
    assert status_lines(await raw(port, b"NONSENSE\r\n\r\n")) == [400]
    assert status_lines(await raw(port, b"GET / HTTP/1.1\r\nNo colon here\r\n\r\n")) == [400]
    data = await raw(port, b"GET / HTTP/1.1\r\n\r\n")  # no Host: HTTP/1.1 requires one
    assert status_lines(data) == [400]


async def test_header_timeout_and_idle_close(start_server: StartServer) -> None:
    _server, base = await start_http(
        start_server, http__header_timeout_s=0.2, http__idle_timeout_s=0.3
    )
    port = _port(base)
    started = time.monotonic()
    data = await raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    assert status_lines(data) == [408]
    assert time.monotonic() - started < 2
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # idle: closed, no answer
    writer.close()


async def test_connections_per_address(start_server: StartServer) -> None:
    _server, base = await start_http(start_server, http__max_connections_per_ip=3)
    port = _port(base)
    held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
    data = await raw(port, _get("/"))
    assert status_lines(data) == [503] and b'"code":"server-busy"' in data
    for _, writer in held:
        writer.close()
    await asyncio.sleep(0.05)
    async with client(base) as anon:
        assert (await anon.get("/openapi.json")).status_code == 200


async def test_a_slowloris_costs_others_nothing(start_server: StartServer) -> None:
    """1,000 half-sent requests are held open; another client is served at once."""
    _server, base = await start_http(start_server, http__max_connections_per_ip=2000)
    port = _port(base)
    writers = []
    for _ in range(1000):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        writers.append(writer)
    await asyncio.gather(*(w.drain() for w in writers))
    try:
        token = await connect(base, "busy")
        started = time.monotonic()
        async with client(base, token) as c:
            for _ in range(20):
                assert (await c.get("/status")).status_code == 200
        assert time.monotonic() - started < 2.0
    finally:
        for w in writers:
            w.close()
        for w in writers:
            with contextlib.suppress(ConnectionError, OSError):
                await w.wait_closed()
