"""One client that pipelines costly commands and never reads must not slow anyone
else down, nor make the server hold its replies in memory."""

from __future__ import annotations

import asyncio
import time

from tests.helpers.server import Client, StartServer


async def test_a_pipelining_non_reader_is_not_read_further(start_server: StartServer) -> None:
    server = await start_server(limits__send_buffer_bytes=262144)
    hog = await server.login("hog")
    assert (await hog.cmd("room create big")).startswith("OK")
    text = "x" * 4000
    await hog.send("".join(f"send #big {text}\n" for _ in range(200)))
    for _ in range(200):
        await hog.reply()
    # Small kernel buffers on the hog's side, so the server's side fills quickly.
    hogger = await Client.with_receive_buffer(server.port, 65536)
    assert (await hogger.cmd("login hog")).startswith("OK welcome")
    # 400 histories of 200 messages of 4 KB: 320 MB of replies if all were built.
    hogger.stop_reading()
    await hogger.send("history #big 200\n" * 400)
    other = await server.login("calm")
    worst = 0.0
    for _ in range(20):
        started = time.perf_counter()
        assert await other.cmd("ping") == "OK pong"
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.02)
    assert worst < 1.0, worst  # the loop was never held for long
    conn = next(
        c
        for c in server.line_connections()
        if c.peer
        and c.peer.account
        and c.peer.account.name == "hog"
        and c.peer.transport is not None
        and c.peer.transport.get_write_buffer_size() > 0
    )
    assert conn.peer is not None and conn.peer.transport is not None
    unsent = conn.peer.transport.get_write_buffer_size() + server.daemon.hub.queued(conn.peer)
    assert unsent < 4 * 1024 * 1024, unsent  # about one reply over the limit, not 320 MB
    assert conn.pipeline is not None and not conn.peer.closing
    # It reads again: everything it asked for comes, in order.
    hogger.resume_reading()
    count = 0
    while count < 400:
        line = await hogger.line(timeout=10)
        if line.startswith("OK 200 messages in #big"):
            count += 1
    assert count == 400
