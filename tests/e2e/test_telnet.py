"""Telnet users: the telnet door, telnet on the main port, and Debian's telnet itself."""

from __future__ import annotations

import asyncio

from chatd.protocol.telnet import BINARY, DO, IAC, IP, TIMING_MARK, WILL
from tests.helpers.server import Client, Server, StartServer, free_port
from tests.helpers.tmux import Terminal, need

OFFER = bytes((IAC, WILL, BINARY, IAC, DO, BINARY))
CTRL_C = bytes((IAC, IP, IAC, DO, TIMING_MARK))
WILL_TM = bytes((IAC, WILL, TIMING_MARK))


async def telnet_door(start_server: StartServer) -> tuple[Server, int]:
    server = await start_server(telnet__port=free_port())
    return server, server.daemon.door_port("telnet")


async def test_the_telnet_door_offers_binary_then_greets_with_crlf(
    start_server: StartServer,
) -> None:
    server, port = await telnet_door(start_server)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    first = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
    assert first.startswith(OFFER)
    assert first[len(OFFER) :].startswith(b"* chatd ") and first.endswith(b"\r\n")
    writer.write(bytes((IAC, DO, BINARY, IAC, WILL, BINARY)))  # what telnet answers
    writer.write("login иван\r\n".encode())
    reply = await asyncio.wait_for(reader.readuntil(b"\n"), 5)
    assert reply.endswith(b"\r\n") and b"bad-name" in reply  # names are ASCII
    writer.write("login ivan\r\nsend_all у меня всё хорошо 🎉\r\n".encode())
    assert b"OK welcome ivan" in await asyncio.wait_for(reader.readuntil(b"\n"), 5)
    assert b"OK sent" in await asyncio.wait_for(reader.readuntil(b"\n"), 5)
    bob = await server.login("bob")
    await bob.send("history #general\n")
    lines = await bob.reply()
    assert lines[0].endswith("<ivan> у меня всё хорошо 🎉")
    writer.close()


async def test_the_main_port_never_sends_telnet_to_a_client_that_sent_none(
    server: Server,
) -> None:
    c = await server.connect()
    await c.send("login nc\nsend_all ПРИВЕТ\r\nping\n".encode())
    raw = await asyncio.wait_for(c.reader.read(4096), 5)
    while b"OK pong" not in raw:
        raw += await asyncio.wait_for(c.reader.read(4096), 5)
    assert b"\xff" not in raw and b"\r" not in raw


async def test_ctrl_c_on_the_main_port_is_answered_and_the_session_goes_on(
    server: Server,
) -> None:
    c = await server.login("dan")
    await c.send(b"send_all half typ" + CTRL_C)
    data = await asyncio.wait_for(c.reader.readexactly(len(OFFER) + len(WILL_TM)), 5)
    assert data == OFFER + WILL_TM  # BINARY offered at the first IAC; the mark answered
    await c.send(b"ping\r\n")
    assert await c.line() == "OK pong"
    watcher = await server.login("eve")
    assert (await watcher.cmd("history #general")) == "OK 0 messages in #general"


async def test_a_line_telnet_mangled_names_the_telnet_door(start_server: StartServer) -> None:
    server, port = await telnet_door(start_server)
    c = await server.login("petr")
    # `send_all у` as Debian's telnet sends it without BINARY: 0x83 became Ctrl-C.
    await c.send(b"send_all \xd1" + CTRL_C + b"\r\n")
    line = await c.line()
    assert line.startswith("ERR bad-encoding ") and f"telnet 127.0.0.1 {port}" in line
    watcher = await server.login("olga")
    assert (await watcher.cmd("history #general")) == "OK 0 messages in #general"


async def test_debian_telnet_in_a_terminal(start_server: StartServer) -> None:
    """The real client: Russian from the first line, Ctrl-C, and chatting on."""
    need("telnet")
    server, port = await telnet_door(start_server)
    nc_user: Client = await server.login("bob")
    term = await Terminal.start(f"env LANG=C.UTF-8 telnet 127.0.0.1 {port}", width=100)
    try:
        await term.wait_for("* chatd")
        await term.type("login ivan")
        await term.wait_for("OK welcome ivan")
        await term.type("send_all у меня всё хорошо")
        await term.wait_for("OK sent [")
        assert (await nc_user.line()).endswith("<ivan> у меня всё хорошо")
        await term.keys("C-c")
        await term.type("who")
        await term.wait_for("OK 2 users online")
        await nc_user.send("send_all привет, ivan\n")
        assert (await nc_user.line()).startswith("OK sent")
        screen = await term.wait_for("<bob> привет, ivan")
        # CR LF: every line starts at the left edge (no staircase)
        assert any(line.startswith("OK 2 users online") for line in screen.splitlines())
    finally:
        await term.kill()
