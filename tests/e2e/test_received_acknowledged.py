"""Issue 13, item 15: with `chat.received = "acknowledged"`, what a client's TCP never
acknowledged is not received: a client that dies without reading gets it back."""

from __future__ import annotations

import asyncio

from tests.helpers.server import Client, Server, StartServer

TEXT = "w" * 2000
N = 200  # 400 KB: far more than the dead client's receive buffer


async def _reader_that_never_reads(server: Server) -> Client:
    client = await Client.with_receive_buffer(server.port, 4096)
    assert (await client.cmd("login alice")).startswith("OK welcome")
    client.stop_reading()
    return client


async def _unread_after_a_crash(server: Server) -> int:
    """alice's client stops reading; bob sends her N messages; the client dies (a
    reset: unread data in its buffer). How many does her next login replay?"""
    dead = await _reader_that_never_reads(server)
    bob = await server.login("bob")
    await bob.send("".join(f"send alice {i} {TEXT}\n" for i in range(N)))
    for _ in range(N):
        await bob.reply()
    await server.daemon.hub.drain()
    peer = next(
        c.peer
        for c in server.line_connections()
        if c.peer and c.peer.account and c.peer.account.name == "alice"
    )
    server.daemon._save_cursors()  # the once-a-second save, now
    await server.daemon.hub.drain()
    dead.reset()  # unread data in its buffer, and nothing more acknowledged
    for _ in range(500):
        if peer.account is None:
            break
        await asyncio.sleep(0.01)
    again = await Client.connect(server.port)
    await again.send("mode json\n")
    await again.obj()
    ok = await again.jcmd("login alice")
    await again.close()
    await bob.close()
    return int(ok["unread"])


async def test_what_the_dead_client_never_acknowledged_is_replayed(
    start_server: StartServer,
) -> None:
    # no slow-consumer close meanwhile: the kernel's and the transport's buffers fill
    big = 4 * 1024 * 1024
    acknowledged = await start_server(chat__received="acknowledged", limits__send_buffer_bytes=big)
    owed = await _unread_after_a_crash(acknowledged)
    # Its 4 KB buffer held a couple of them; everything else comes back.
    assert owed >= N - 10, owed
    written = await start_server(limits__send_buffer_bytes=big)  # the protocol's default
    assert await _unread_after_a_crash(written) < owed  # what the kernel took was "received"
