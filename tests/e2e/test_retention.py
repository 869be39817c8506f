"""Message lifetime over real TCP with the FakeClock and `daemon.tick()`."""

from __future__ import annotations

from tests.helpers.server import StartServer

TTL = 3600.0
SWEEP = 60.0


async def test_sweep_end_to_end(start_server: StartServer) -> None:
    """Delivered messages go an hour after delivery; a message an offline user has not
    received stays until they log in (or max age); history shows what is left."""
    server = await start_server()
    carol = await server.login("carol")
    await carol.close()  # carol: offline, seen just now, so a #general recipient
    alice = await server.login("alice")
    bob = await server.login("bob")
    assert (await alice.cmd("send_all for everyone")).startswith("OK sent [")
    assert "for everyone" in await bob.line()
    assert (await alice.cmd("send bob just bob")).startswith("OK sent [")
    assert "just bob" in await bob.line()
    assert (await alice.cmd("send carol just carol")).startswith("OK sent [")
    server.clock.advance(SWEEP)
    server.daemon.tick()
    server.clock.advance(TTL)
    server.daemon.tick()
    assert await bob.cmd("history @alice") == "OK 0 messages in @alice"
    await bob.send("history #general\n")
    lines = await bob.reply()
    assert lines[-1] == "OK 1 message in #general" and "for everyone" in lines[0]
    carol = await server.connect()
    await carol.send("login carol\n")
    ok = await carol.line()
    assert ok.endswith("2 unread")  # both still there for her
    replayed = [await carol.line(), await carol.line()]
    assert "for everyone" in replayed[0] and "just carol" in replayed[1]
    server.clock.advance(SWEEP)
    server.daemon.tick()
    server.clock.advance(TTL)
    server.daemon.tick()
    assert (await carol.cmd("history #general")) == "OK 0 messages in #general"
    assert (await carol.cmd("history @alice")) == "OK 0 messages in @alice"
    assert len(server.daemon.chat.index) == 0


async def test_sweep_deletions_are_durable(start_server: StartServer) -> None:
    server = await start_server(retention__delivered_ttl_s=10.0)
    alice = await server.login("alice")
    assert (await alice.cmd("send_all short-lived")).startswith("OK")
    server.clock.advance(SWEEP)
    server.daemon.tick()
    server.clock.advance(SWEEP)
    server.daemon.tick()
    await server.daemon.hub.drain()
    server = await server.restart()
    assert len(server.daemon.chat.index) == 0
    again = await server.login("alice")
    assert await again.cmd("history #general") == "OK 0 messages in #general"
