"""A real IRC client library (jaraco's `irc`, asyncio flavour) against the IRC door:
registration, #general, a channel message each way with an nc user, a private message."""

from __future__ import annotations

import asyncio
from typing import Any

import irc.client_aio  # type: ignore[import-untyped]

from tests.helpers.irc import start_irc
from tests.helpers.server import TIMEOUT, StartServer


async def test_irc_library_chats_with_an_nc_user(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    loop = asyncio.get_running_loop()
    events: asyncio.Queue[Any] = asyncio.Queue()
    reactor = irc.client_aio.AioReactor(loop=loop)
    for kind in ("welcome", "join", "namreply", "pubmsg", "privmsg"):
        reactor.add_global_handler(kind, lambda c, e: events.put_nowait(e))

    async def next_event(kind: str) -> Any:
        while True:
            e = await asyncio.wait_for(events.get(), TIMEOUT)
            if e.type == kind:
                return e

    conn = reactor.server()
    await conn.connect("127.0.0.1", port, "libby")
    assert (await next_event("welcome")).target == "libby"
    assert (await next_event("join")).target == "#general"
    names = await next_event("namreply")
    assert "libby" in names.arguments[-1].split()
    nc = await server.login("ned")
    conn.privmsg("#general", "hello from the irc library")
    line = await nc.until(lambda s: "irc library" in s)
    assert "#general <libby> hello from the irc library" in line
    assert await nc.cmd("send_all hi libby") == "OK sent [2]"
    pub = await next_event("pubmsg")
    assert (pub.source.nick, pub.target, pub.arguments) == ("ned", "#general", ["hi libby"])
    assert await nc.cmd("send libby psst") == "OK sent [3]"
    priv = await next_event("privmsg")
    assert (priv.source.nick, priv.arguments) == ("ned", ["psst"])
    conn.quit("bye")
    conn.disconnect()
