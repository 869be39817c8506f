"""Rooms through IRC: join links and approval, comments as +draft/reply; and the IRC
door over TLS (`[irc] tls_port`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from chatd.protocol.irc import parse
from tests.helpers.irc import joined_client, start_irc
from tests.helpers.server import StartServer, free_port
from tests.helpers.tls import certificate


async def test_join_with_a_link_waits_for_the_owner(start_server: StartServer) -> None:
    _, port = await start_irc(start_server)
    owner = await joined_client(port, "olga")
    guest = await joined_client(port, "gil")
    await owner.send("JOIN #den")
    await owner.until("366")
    await owner.send("PRIVMSG chatd :room link #den")
    note = (await owner.until("NOTICE"))[-1]
    link = note.params[1].split()[2]  # "OK link <token> for #den expires …"
    await guest.send(f"JOIN #den {link}")
    asked = (await guest.until("NOTICE"))[-1]
    assert "asked the owner of #den" in asked.params[1]
    request = (await owner.until("NOTICE"))[-1]
    assert "gil asks to join #den" in request.params[1]
    await owner.send("PRIVMSG chatd :room approve #den gil")
    joined = (await guest.until("JOIN"))[-1]
    assert joined.params == ("#den",) and joined.source is not None
    assert joined.source.startswith("gil!")
    await guest.send("PRIVMSG #den :hi all")
    assert (await owner.until("PRIVMSG"))[-1].params == ("#den", "hi all")


async def test_comment_as_draft_reply(start_server: StartServer) -> None:
    server, port = await start_irc(start_server)
    tags = ("message-tags", "echo-message")
    a = await joined_client(port, "rex", caps=tags)
    b = await joined_client(port, "ray", caps=("message-tags",))
    nc = await server.login("rob")
    await a.send("PRIVMSG #general :question?")
    first = (await a.until("PRIVMSG"))[-1]
    ident = first.tags["msgid"]
    await b.until("PRIVMSG")
    await b.send(f"@+draft/reply={ident} PRIVMSG #general :answer")
    got = (await a.until("PRIVMSG"))[-1]
    assert got.params == ("#general", "answer") and got.tags["+draft/reply"] == ident
    line = await nc.until(lambda s: "answer" in s)
    assert f"(re [{ident}]) answer" in line


async def test_irc_over_tls(start_server: StartServer, tmp_path: Path) -> None:
    tls = certificate(tmp_path)
    port = free_port()
    server = await start_server(irc__tls_port=port, **tls.settings())
    assert server.daemon.door_port("irc-tls") == port
    ctx = tls.client
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    writer.write(b"NICK tess\r\nUSER tess 0 * :Tess\r\n")
    await writer.drain()
    first = parse((await asyncio.wait_for(reader.readline(), 5)).decode().rstrip("\r\n"))
    assert first.command == "001" and first.params[0] == "tess"
    writer.close()
