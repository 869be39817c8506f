"""The flood guard of a connection over real TCP: a client over its budget is slowed,
never refused."""

from __future__ import annotations

from tests.helpers.server import StartServer


async def test_flooding_connection_is_slowed_not_refused(start_server: StartServer) -> None:
    """200 pings against a burst of 10 at 200/s: every one answered, in order, none
    refused; the server kept reading slower than the client wrote."""
    server = await start_server(limits__flood_burst=10, limits__flood_rate_per_s=200.0)
    c = await server.connect()
    await c.send("".join(f"help {n}\n" if n % 50 == 0 else "ping\n" for n in range(200)))
    replies = [(await c.reply())[-1] for _ in range(200)]
    assert all(r == "OK pong" for i, r in enumerate(replies) if i % 50)
    assert all(r.startswith("ERR bad-args") for i, r in enumerate(replies) if i % 50 == 0)
    holds = sum(conn.flood_holds for conn in server.line_connections())
    assert holds >= 1  # (200 - 10) / 200 per s: it had to wait, more than once in fact


async def test_flood_guard_does_not_touch_a_normal_client(start_server: StartServer) -> None:
    server = await start_server(limits__flood_burst=5, limits__flood_rate_per_s=1.0)
    c = await server.connect()
    await c.send("ping\nping\nping\n")
    assert [(await c.reply())[-1] for _ in range(3)] == ["OK pong"] * 3
    assert sum(conn.flood_holds for conn in server.line_connections()) == 0


async def test_paused_flooder_does_not_block_others(start_server: StartServer) -> None:
    """A connection at its budget waits; another connection is answered meanwhile."""
    server = await start_server(limits__flood_burst=2, limits__flood_rate_per_s=20.0)
    flooder = await server.connect()
    await flooder.send("ping\n" * 40)  # about 2 s of budget
    other = await server.login("bob")
    assert await other.cmd("ping") == "OK pong"
    got = [(await flooder.reply())[-1] for _ in range(40)]
    assert got == ["OK pong"] * 40
