"""A balancer's PROXY protocol header (`server.proxy_protocol_from`): the daemon sees
the client's address, not the balancer's, on the line and HTTP doors; anyone else's
connections are served as before; a trusted connection without a valid header is
closed."""

from __future__ import annotations

import asyncio

from tests.helpers.server import TIMEOUT, Client, StartServer, free_port

LOCAL = ["127.0.0.0/8"]


async def through_balancer(port: int, client_ip: str, first: bytes = b"") -> Client:
    """A connection that starts the way HAProxy's `send-proxy` starts it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"PROXY TCP4 {client_ip} 127.0.0.1 40000 {port}\r\n".encode() + first)
    c = Client(reader, writer)
    return c


async def test_the_client_address_counts_not_the_balancers(start_server: StartServer) -> None:
    server = await start_server(server__proxy_protocol_from=LOCAL, limits__max_connections_per_ip=1)
    a = await through_balancer(server.port, "203.0.113.7")
    b = await through_balancer(server.port, "203.0.113.8")
    for c in (a, b):  # one balancer address, two clients: both admitted
        assert (await c.line()).startswith("* chatd")
    again = await through_balancer(server.port, "203.0.113.7")
    refused = await again.line()
    assert refused.startswith("ERR server-busy") and "203.0.113.7" in refused
    assert (await a.cmd("login alice")).startswith("OK welcome")
    assert (await b.cmd("login bob")).startswith("OK welcome")
    for c in (a, b, again):
        await c.close()


async def test_a_trusted_connection_without_a_header_is_closed(start_server: StartServer) -> None:
    server = await start_server(server__proxy_protocol_from=LOCAL)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"login mallory\n")
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # nothing said, closed
    writer.close()
    ok = await through_balancer(server.port, "198.51.100.1")  # the server is fine
    assert (await ok.line()).startswith("* chatd")
    await ok.close()


async def test_other_addresses_connect_as_before(start_server: StartServer) -> None:
    server = await start_server(server__proxy_protocol_from=["10.0.0.0/8"])
    c = await Client.connect(server.port)  # from 127.0.0.1: not a balancer
    assert (await c.cmd("login carol")).startswith("OK welcome")
    await c.close()


async def test_the_http_door_reads_the_header_too(start_server: StartServer) -> None:
    port = free_port()
    server = await start_server(
        server__proxy_protocol_from=LOCAL, http__port=port, http__max_connections_per_ip=1
    )
    assert server.daemon.door_port("http") == port
    request = b"GET /status HTTP/1.1\r\nHost: chatd\r\n\r\n"
    first = await through_balancer(port, "203.0.113.20", request)
    assert (await first.line()).startswith("HTTP/1.1 ")  # kept open (keep-alive)
    second = await through_balancer(port, "203.0.113.21", request)
    assert (await second.line()).startswith("HTTP/1.1 ")  # another client: not over 1
    for c in (first, second):
        await c.close()
