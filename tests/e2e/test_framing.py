"""The wire over real TCP: the greeting, line endings, pipelining, fragmentation, telnet
bytes, control characters, line length and encoding errors, random binary (issue 2,
shared/PROTOCOL.md)."""

from __future__ import annotations

import asyncio
import random
import socket

import pytest

from tests.helpers.protocol import err_code, items, jconnect, jlogin, raw_lines
from tests.helpers.server import Client, Server, StartServer


async def test_greeting_is_exactly_one_text_line(server: Server) -> None:
    c = await server.connect()
    assert c.greeting.startswith("* ")
    assert await c.silent(0.2)  # exactly one line, nothing else until a command
    assert await c.cmd("ping") == "OK pong"


async def test_greeting_is_text_even_for_a_json_client(server: Server) -> None:
    c = await jconnect(server)
    assert c.greeting.startswith("* ") and not c.greeting.startswith("{")
    c2 = await server.connect()  # a second connection starts in text mode again
    assert c2.greeting.startswith("* ")
    assert await c2.cmd("ping") == "OK pong"


async def test_lf_and_crlf_line_endings(server: Server) -> None:
    c = await jlogin(server, "alice")
    await c.send("ping\n")
    assert (await c.obj())["cmd"] == "ping"
    await c.send("ping\r\n")
    assert (await c.obj())["cmd"] == "ping"
    # The CR before LF is not part of the text.
    assert (await c.jcmd("send_all hello\r"))["type"] == "ok"
    h = await c.jcmd("history #general 1")
    assert h["messages"][0]["text"] == "hello"


async def test_empty_and_blank_lines_are_ignored(server: Server) -> None:
    c = await server.connect()
    await c.send("\n\r\n   \n\t\n\r\nping\n")
    assert await c.line() == "OK pong"
    assert await c.silent(0.2)


async def test_commands_are_case_insensitive(server: Server) -> None:
    c = await server.connect()
    assert await c.cmd("PING") == "OK pong"
    assert (await c.cmd("LOGIN alice")).startswith("OK welcome")
    assert (await c.cmd("Send_All hi")).startswith("OK")
    await c.send("MODE json\n")
    assert (await c.obj())["type"] == "ok"
    # `cmd` is the first word lower-cased.
    assert await c.jcmd("PiNg") == {"type": "ok", "cmd": "ping"}
    o = await c.jcmd("FROB x")
    assert o["cmd"] == "frob" and o["code"] == "unknown-command"
    assert (await c.jcmd("WHO"))["cmd"] == "who"


async def test_pipelined_commands_in_one_segment_answer_in_order(server: Server) -> None:
    c = await jconnect(server)
    # A login with a password (hashed off the loop) at the front must not let the
    # commands behind it overtake it.
    lines = [
        "login alice s3cret",
        "ping",
        "frobnicate",
        "who",
        "send_all one",
        "history",
        "send_all two",
        "status",
        "history #general",
        "help ping",
        "send_all three",
        "quit",
    ]
    await c.send("".join(line + "\n" for line in lines))
    replies = [await c.obj() for _ in lines]
    assert [r["cmd"] for r in replies] == [line.split()[0] for line in lines]
    assert [r["type"] for r in replies] == [
        "ok",
        "ok",
        "error",
        "ok",
        "ok",
        "error",
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
        "ok",
    ]
    assert replies[2]["code"] == "unknown-command"
    assert replies[5]["code"] == "bad-args"
    ids = [replies[i]["id"] for i in (4, 6, 10)]
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [m["text"] for m in replies[8]["messages"]] == ["one", "two"]
    assert await c.closed()


async def test_many_pipelined_commands_all_answered(server: Server) -> None:
    c = await server.login("alice")
    n = 200
    await c.send("".join(f"send bob{i % 2} x\n" if i % 3 else "ping\n" for i in range(n)))
    replies = await raw_lines(c, n)
    for i, r in enumerate(replies):
        if i % 3:
            assert err_code(r) == "no-such-user"
        else:
            assert r == "OK pong"


async def _send_bytewise(c: Client, data: bytes) -> None:
    sock = c.writer.get_extra_info("socket")
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for i in range(len(data)):
        await c.send(data[i : i + 1])
        if i % 4 == 0:
            await asyncio.sleep(0)


async def test_commands_fragmented_byte_by_byte(server: Server) -> None:
    bob = await jlogin(server, "bob")
    c = await server.connect()
    text = "héllo wörld ✓ 日本"
    data = (
        b"\xff\xfb\x01"  # a telnet negotiation, split across segments too
        + b"login alice\r\n"
        + f"send_all {text}\r\n".encode()
        + b"ping\r\n"
    )
    await _send_bytewise(c, data)
    assert (await c.line()).startswith("OK welcome alice")
    assert (await c.line()).startswith("OK")
    assert await c.line() == "OK pong"
    m = await bob.obj()
    assert m["type"] == "message" and m["text"] == text and m["from"] == "alice"


async def test_telnet_iac_sequences_are_stripped(server: Server) -> None:
    c = await jlogin(server, "alice")
    # IAC DO SUPPRESS-GO-AHEAD, IAC WILL ECHO, then a command.
    await c.send(b"\xff\xfd\x03\xff\xfb\x01ping\r\n")
    assert await c.obj() == {"type": "ok", "cmd": "ping"}
    # A subnegotiation (NAWS 80x24) and an IAC NOP inside a message line.
    await c.send(b"send_all a\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0b\xff\xf1c\r\n")
    assert (await c.obj())["type"] == "ok"
    h = await c.jcmd("history #general 1")
    assert h["messages"][0]["text"] == "abc"


async def test_control_characters_removed_but_tab_kept(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    await alice.send(b"send_all a\x07b\x1b[1mc\td\x00e\x08f\r\n")
    assert (await alice.obj())["type"] == "ok"
    m = await bob.obj()
    assert m["text"] == "ab[1mc\tdef"


async def test_line_too_long_gets_one_error_and_connection_stays_usable(
    server: Server,
) -> None:
    c = await server.login("alice")
    await c.send("send_all " + "x" * 20_000 + "\n")
    assert err_code(await c.line()) == "line-too-long"
    assert await c.cmd("ping") == "OK pong"
    # The long line was discarded, not sent.
    assert await items(c, "history #general") == []


async def test_line_too_long_arriving_in_pieces(server: Server) -> None:
    c = await jlogin(server, "alice")
    await c.send(b"send_all ")
    for _ in range(20):
        await c.send(b"y" * 1024)  # 20 KB in 1 KB segments, then the LF
        await asyncio.sleep(0)
    await c.send(b" quit\nping\n")
    o = await c.obj()
    assert o["type"] == "error" and o["code"] == "line-too-long"
    # The tail of the long line (" quit") was discarded, not run: the next is the pong.
    assert await c.obj() == {"type": "ok", "cmd": "ping"}
    assert await c.silent(0.2)
    h = await c.jcmd("history #general")
    assert h["messages"] == []


async def test_line_length_limit_boundary(server: Server) -> None:
    c = await jlogin(server, "alice")
    prefix = "send_all "
    exact = prefix + "z" * (4096 - len(prefix))
    assert len(exact.encode()) == 4096
    assert (await c.jcmd(exact))["type"] == "ok"
    # Reading: the CR of a CRLF is dropped before the limit applies (telnet users).
    await c.send(exact + "\r\n")
    assert (await c.obj())["type"] == "ok"
    o = await c.jcmd(exact + "z")
    assert o["type"] == "error" and o["code"] == "line-too-long"
    assert (await c.jcmd("ping"))["type"] == "ok"


async def test_max_line_bytes_is_configurable(start_server: StartServer) -> None:
    server = await start_server(limits__max_line_bytes=64)
    c = await server.login("alice")
    assert err_code(await c.cmd("send_all " + "q" * 60)) == "line-too-long"
    assert (await c.cmd("send_all " + "q" * 50)).startswith("OK")


@pytest.mark.parametrize(
    "bad",
    [
        b"send_all \xc3\x28",  # a broken 2-byte sequence
        b"send_all \x80\x81",  # lone continuation bytes
        b"send_all \xc0\xaf",  # overlong encoding of '/'
        b"send_all \xed\xa0\x80",  # a UTF-16 surrogate
        b"send_all \xf4\x90\x80\x80",  # beyond U+10FFFF
        b"\xfe\xfe ping",
    ],
)
async def test_bad_utf8_gets_bad_encoding_and_connection_stays_usable(
    server: Server, bad: bytes
) -> None:
    c = await server.login("alice")
    await c.send(bad + b"\n")
    assert err_code(await c.line()) == "bad-encoding"
    assert await c.cmd("ping") == "OK pong"
    assert await items(c, "history #general") == []


async def test_bad_encoding_in_json_mode(server: Server) -> None:
    c = await jconnect(server)
    await c.send(b"login \xc3\x28\n")
    o = await c.obj()
    assert o["type"] == "error" and o["code"] == "bad-encoding"
    assert set(o) == {"type", "cmd", "code", "message"}
    assert o["cmd"] is None or o["cmd"] == "login"


async def _until_pong(c: Client) -> list[str]:
    """Reads lines until `OK pong`; every line before it must be a reply or notice."""
    seen: list[str] = []
    while True:
        line = await c.line()
        if line == "OK pong":
            return seen
        assert line.startswith(("ERR ", "* ", "OK")), line
        seen.append(line)


async def test_random_binary_never_breaks_the_connection(server: Server) -> None:
    rng = random.Random(20261126)
    c = await server.login("alice")
    blob = rng.randbytes(64 * 1024)
    for i in range(0, len(blob), 4096):
        await c.send(blob[i : i + 4096])
    # Reading: after any garbage, a fresh line is a fresh command; what a person at
    # nc would expect after pasting junk and pressing enter.
    await c.send(b"\nping\n")
    errors = await _until_pong(c)
    assert errors and all(line.startswith("ERR ") for line in errors)
    assert await c.cmd("ping") == "OK pong"


async def test_unterminated_telnet_subnegotiation_does_not_swallow_the_stream(
    server: Server,
) -> None:
    # Reading: IAC SB without IAC SE (random binary, a broken client) must not make
    # the connection deaf forever; at the latest the next line after max_line_bytes of
    # subnegotiation data is a command again.
    rng = random.Random(7)
    junk = bytes(b for b in rng.randbytes(6000) if b != 0xFF)
    c = await server.login("alice")
    await c.send(b"\xff\xfa" + junk + b"\nping\n")
    await _until_pong(c)
    assert await c.cmd("ping") == "OK pong"
