"""The wire contract over real TCP: framing, the greeting, both output modes, every
core command and every error code of issue 2 (shared/PROTOCOL.md).

Each test starts a real daemon (in-process, FakeClock) and talks to it as `nc`, a
telnet user or a bot would. Where the contract is silent, the reading a bot author would
expect is written next to the assertion.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.server import Client, Server, StartServer

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
START_TS = "2027-01-15T08:00:00.000Z"  # FakeClock's start, 1_800_000_000
TEXT_MSG_RE = re.compile(r"^(\d\d):(\d\d):(\d\d) \[(\d+)\] (\S+) <([^>]+)> (.*)$")
CORE_COMMANDS = (
    "help",
    "mode",
    "ping",
    "login",
    "passwd",
    "send_all",
    "send",
    "ban",
    "who",
    "status",
    "history",
    "quit",
)
MESSAGE_KEYS = {"type", "id", "chat", "from", "text", "ts", "reply_to", "replay"}


# Helpers shared by the other e2e modules ------------------------------------------------


async def jconnect(server: Server) -> Client:
    """A connection switched to JSON mode (the `mode json` reply is already JSON)."""
    c = await server.connect()
    await c.send("mode json\n")
    assert await c.obj() == {"type": "ok", "cmd": "mode", "mode": "json"}
    return c


async def jlogin_full(
    server: Server, name: str, password: str = ""
) -> tuple[Client, dict[str, Any], list[dict[str, Any]]]:
    """A JSON-mode login: the client, the login `ok` and the replayed messages after it."""
    c = await jconnect(server)
    await c.send(f"login {name} {password}".strip() + "\n")
    ok = await c.obj()
    assert ok["type"] == "ok" and ok["cmd"] == "login", ok
    replay = [await c.obj() for _ in range(ok["unread"])]
    return c, ok, replay


async def jlogin(server: Server, name: str, password: str = "") -> Client:
    c, _, _ = await jlogin_full(server, name, password)
    return c


async def register(server: Server, *names: str) -> None:
    """Creates accounts (no password) and logs them out again."""
    for name in names:
        c = await server.login(name)
        assert await c.cmd("quit") == "OK bye"
        assert await c.closed()


def err_code(line: str) -> str:
    """The code of a text-mode `ERR <code> <text>` line."""
    assert line.startswith("ERR "), line
    return line.split()[1]


async def raw_lines(c: Client, n: int) -> list[str]:
    return [await c.line() for _ in range(n)]


async def items(c: Client, command: str) -> list[str]:
    """Text mode: the two-space-indented items of a reply that must end in OK."""
    await c.send(command + "\n")
    lines = await c.reply()
    assert lines[-1].startswith("OK"), lines
    assert all(x.startswith("  ") for x in lines[:-1]), lines
    return [x[2:] for x in lines[:-1]]


# Greeting and framing ---------------------------------------------------------------


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


# Modes ------------------------------------------------------------------------------


async def test_mode_switch_reply_comes_in_the_new_mode(server: Server) -> None:
    # Reading: the reply to `mode X` is already written in mode X.
    c = await server.connect()
    await c.send("mode json\n")
    assert json.loads(await c.line()) == {"type": "ok", "cmd": "mode", "mode": "json"}
    assert await c.jcmd("ping") == {"type": "ok", "cmd": "ping"}
    await c.send("mode text\n")
    assert (await c.line()).startswith("OK")
    assert await c.cmd("ping") == "OK pong"


async def test_mode_bad_args(server: Server) -> None:
    c = await server.connect()
    assert err_code(await c.cmd("mode xml")) == "bad-args"
    assert err_code(await c.cmd("mode")) == "bad-args"
    assert await c.cmd("ping") == "OK pong"  # still text


async def test_json_mode_every_line_is_one_json_object(server: Server) -> None:
    bob = await jlogin(server, "bob")
    alice = await server.login("alice")
    assert (await alice.cmd("send_all hi")).startswith("OK")
    assert (await alice.cmd("send bob psst")).startswith("OK")
    await bob.send("help\nwho\nstatus\nhistory #general\nfrob\nsend_all\nping\n")
    lines = []
    while True:
        line = await bob.line()
        o = json.loads(line)  # every line is JSON
        assert isinstance(o, dict) and o["type"] in ("ok", "error", "message", "notice")
        lines.append(o)
        if o.get("cmd") == "ping":
            break
    assert [o["type"] for o in lines[:2]] == ["message", "message"]
    assert [o.get("cmd") for o in lines[2:]] == [
        "help",
        "who",
        "status",
        "history",
        "frob",
        "send_all",
        "ping",
    ]


async def test_text_replies_with_items_are_indented_then_ok(server: Server) -> None:
    c = await server.login("alice")
    for command in ("help", "who", "status", "history #general"):
        await c.send(command + "\n")
        lines = await c.reply()
        assert lines[-1].startswith("OK")
        assert all(line.startswith("  ") for line in lines[:-1]), (command, lines)
    await c.send("help\n")
    items = (await c.reply())[:-1]
    assert len(items) >= len(CORE_COMMANDS)


# Commands, both modes -------------------------------------------------------------------


async def test_help_text(server: Server) -> None:
    c = await server.connect()  # works before login
    await c.send("help\n")
    lines = await c.reply()
    body = "\n".join(lines[:-1])
    for name in CORE_COMMANDS:
        assert re.search(rf"^  {name}\b", body, re.M), name
    await c.send("help send\n")
    one = await c.reply()
    assert len(one) == 2 and one[0].startswith("  send ") and "<text>" in one[0]
    await c.send("HELP Report\n")  # the alias shows ban's usage
    alias = await c.reply()
    assert alias[-1].startswith("OK") and "ban" in alias[0]


async def test_help_json(server: Server) -> None:
    c = await jconnect(server)
    o = await c.jcmd("help")
    assert o["type"] == "ok" and o["cmd"] == "help"
    assert isinstance(o["commands"], list)
    dumped = json.dumps(o["commands"])
    for name in CORE_COMMANDS:
        assert name in dumped
    one = await c.jcmd("help login")
    assert len(one["commands"]) == 1 and "login" in json.dumps(one["commands"])


async def test_help_unknown_topic_is_an_error(server: Server) -> None:
    c = await server.connect()
    # Reading: help for a command that does not exist is bad-args or unknown-command.
    assert err_code(await c.cmd("help frobnicate")) in ("bad-args", "unknown-command")
    assert err_code(await c.cmd("help a b")) == "bad-args"


async def test_ping_both_modes(server: Server) -> None:
    c = await server.connect()
    assert await c.cmd("ping") == "OK pong"
    c2 = await jconnect(server)
    assert await c2.jcmd("ping") == {"type": "ok", "cmd": "ping"}


async def test_quit_text_before_and_after_login(server: Server) -> None:
    c = await server.connect()
    assert await c.cmd("quit") == "OK bye"
    assert await c.closed()
    c = await server.login("alice")
    assert await c.cmd("QUIT") == "OK bye"
    assert await c.closed()
    other = await jlogin(server, "bob")
    assert (await other.jcmd("who"))["users"] == [{"name": "bob", "sessions": 1}]


async def test_quit_json(server: Server) -> None:
    c = await jlogin(server, "alice")
    assert await c.jcmd("quit") == {"type": "ok", "cmd": "quit"}
    assert await c.closed()


async def test_quit_answers_after_earlier_pipelined_replies(server: Server) -> None:
    c = await server.login("alice")
    await c.send("ping\nsend_all last words\nquit\nping\n")
    assert await c.line() == "OK pong"
    assert (await c.line()).startswith("OK")
    assert await c.line() == "OK bye"
    assert await c.closed()  # the ping after quit is never answered


async def test_login_text_and_json_fields(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice")).startswith("OK")
    _, ok, _ = await jlogin_full(server, "alice")
    assert ok == {"type": "ok", "cmd": "login", "user": "alice", "new": False, "unread": 0}
    _, ok, _ = await jlogin_full(server, "bob")
    assert ok == {"type": "ok", "cmd": "login", "user": "bob", "new": True, "unread": 0}


async def test_names_unique_case_insensitively_shown_as_first_registered(
    server: Server,
) -> None:
    alice = await jlogin(server, "Alice.B-2_x")
    _, ok, _ = await jlogin_full(server, "ALICE.b-2_X")
    assert ok["user"] == "Alice.B-2_x" and ok["new"] is False
    w = await alice.jcmd("who")
    assert w["users"] == [{"name": "Alice.B-2_x", "sessions": 2}]
    m = await alice.jcmd("send_all hi")
    assert m["type"] == "ok"
    assert (await alice.jcmd("history #general"))["messages"][0]["from"] == "Alice.B-2_x"


@pytest.mark.parametrize(
    "name",
    ["a" * 33, "bad!name", "héllo", "al ice\tx", "#room", "@bob", "a/b", "x:y"],
)
async def test_bad_names(server: Server, name: str) -> None:
    c = await server.connect()
    line = await c.cmd(f"login {name}")
    if " " in name or "\t" in name:
        assert err_code(line) in ("bad-name", "bad-args")
    else:
        assert err_code(line) == "bad-name"
    assert (await c.cmd("login ok_name")).startswith("OK welcome ok_name")


async def test_longest_and_shortest_names_are_fine(server: Server) -> None:
    keep = [await server.login("a" * 32), await server.login("b")]
    c = await jlogin(server, "c")
    names = {u["name"] for u in (await c.jcmd("who"))["users"]}
    assert names == {"a" * 32, "b", "c"}
    assert all([await k.cmd("ping") == "OK pong" for k in keep])


async def test_already_logged_in(server: Server) -> None:
    c = await server.login("alice")
    assert err_code(await c.cmd("login alice")) == "already-logged-in"
    assert err_code(await c.cmd("login bob")) == "already-logged-in"
    j = await jlogin(server, "carol")
    o = await j.jcmd("login carol")
    assert o["code"] == "already-logged-in" and o["cmd"] == "login"


async def test_login_with_password_and_bad_password(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice s3cret")).startswith("OK welcome alice")
    await c.close()
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "bad-password"
    assert err_code(await c.cmd("login alice wrong")) == "bad-password"
    assert err_code(await c.cmd("login Alice S3CRET")) == "bad-password"  # case matters
    assert (await c.cmd("login ALICE s3cret")).startswith("OK welcome alice")
    j = await jconnect(server)
    o = await j.jcmd("login alice nope")
    assert o["type"] == "error" and o["code"] == "bad-password" and o["cmd"] == "login"
    assert (await j.jcmd("login alice s3cret"))["type"] == "ok"


def _all_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


async def test_passwords_are_stored_as_scrypt_hashes(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice Plain-Text-Pw-1")).startswith("OK")
    assert (await c.cmd("passwd Other-Plain-Pw-2 Plain-Text-Pw-1")).startswith("OK")
    data = await asyncio.to_thread(_all_bytes, Path(server.data_dir))
    assert b"Plain-Text-Pw-1" not in data and b"Other-Plain-Pw-2" not in data
    assert b"scrypt" in data


async def test_require_password(start_server: StartServer) -> None:
    server = await start_server(auth__require_password=True)
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "bad-password"
    assert (await c.cmd("login alice pw")).startswith("OK welcome alice (new")
    j = await jconnect(server)
    o = await j.jcmd("login bob")
    assert o["type"] == "error" and o["code"] == "bad-password"


async def test_passwd_set_then_needed_then_changed(server: Server) -> None:
    c = await server.login("alice")
    assert (await c.cmd("passwd first")).startswith("OK")
    # From now on the account needs it.
    x = await server.connect()
    assert err_code(await x.cmd("login alice")) == "bad-password"
    assert (await x.cmd("login alice first")).startswith("OK welcome")
    # Changing needs the old one.
    assert err_code(await c.cmd("passwd second")) == "bad-password"
    assert err_code(await c.cmd("passwd second wrong")) == "bad-password"
    assert (await c.cmd("passwd second first")).startswith("OK")
    y = await server.connect()
    assert err_code(await y.cmd("login alice first")) == "bad-password"
    assert (await y.cmd("login alice second")).startswith("OK welcome")


async def test_passwd_json(server: Server) -> None:
    c = await jlogin(server, "alice")
    assert await c.jcmd("passwd pw1") == {"type": "ok", "cmd": "passwd"}
    o = await c.jcmd("passwd pw2 bad")
    assert o["type"] == "error" and o["code"] == "bad-password" and o["cmd"] == "passwd"
    assert await c.jcmd("passwd pw2 pw1") == {"type": "ok", "cmd": "passwd"}
    _, ok, _ = await jlogin_full(server, "alice", "pw2")
    assert ok["user"] == "alice"


async def test_send_all_json_reply_and_push(start_server: StartServer) -> None:
    server = await start_server(server__timezone="UTC")
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    carol = await server.login("carol")
    o = await alice.jcmd("send_all  hello   world ")
    assert set(o) == {"type", "cmd", "id", "ts"}
    assert o["type"] == "ok" and o["cmd"] == "send_all" and isinstance(o["id"], int)
    assert TS_RE.match(o["ts"]) and o["ts"] == START_TS
    m = await bob.obj()
    assert m == {
        "type": "message",
        "id": o["id"],
        "chat": "#general",
        "from": "alice",
        "text": "hello   world",
        "ts": START_TS,
        "reply_to": None,
        "replay": False,
    }
    line = await carol.line()
    assert line == f"08:00:00 [{o['id']}] #general <alice> hello   world"
    assert await alice.silent()  # the sending session gets its OK, not the message


async def test_send_all_text(start_server: StartServer) -> None:
    server = await start_server(server__timezone="UTC")
    alice = await server.login("alice")
    bob = await server.login("bob")
    server.clock.advance(3 * 3600 + 25 * 60 + 7.25)
    ok = await alice.cmd("send_all good morning")
    assert ok.startswith("OK")
    m = TEXT_MSG_RE.match(await bob.line())
    assert m is not None
    assert m.group(1, 2, 3) == ("11", "25", "07")
    assert m.group(5, 6, 7) == ("#general", "alice", "good morning")
    assert m.group(4) in ok  # the OK names the id (reading: scripts want it)


async def test_message_ids_unique_and_increasing_across_chats(server: Server) -> None:
    alice = await jlogin(server, "alice")
    await jlogin(server, "bob")
    ids = []
    for i in range(6):
        cmd = "send_all x" if i % 2 else "send bob y"
        ids.append((await alice.jcmd(cmd))["id"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


async def test_send_private_to_user_and_at_user(start_server: StartServer) -> None:
    server = await start_server(server__timezone="UTC")
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    bob_text = await server.login("bob")
    carol = await jlogin(server, "carol")
    for target in ("bob", "@bob", "@BOB"):
        o = await alice.jcmd(f"send {target} psst {target}")
        assert o["type"] == "ok" and o["cmd"] == "send" and TS_RE.match(o["ts"])
        m = await bob.obj()
        assert m == {
            "type": "message",
            "id": o["id"],
            "chat": "@alice",
            "from": "alice",
            "to": "bob",
            "text": f"psst {target}",
            "ts": START_TS,
            "reply_to": None,
            "replay": False,
        }
        assert await bob_text.line() == f"08:00:00 [{o['id']}] @alice <alice> psst {target}"
    assert await carol.silent()
    assert await alice.silent()


async def test_send_to_general_by_name(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    o = await alice.jcmd("send #general to all")
    assert o["type"] == "ok"
    m = await bob.obj()
    assert m["chat"] == "#general" and m["text"] == "to all" and "to" not in m


async def test_send_to_self_reaches_own_other_sessions(server: Server) -> None:
    # Reading: a note to yourself is allowed and syncs to your other sessions.
    a1 = await jlogin(server, "alice")
    a2 = await jlogin(server, "alice")
    o = await a1.jcmd("send alice note to self")
    assert o["type"] == "ok"
    m = await a2.obj()
    assert m["text"] == "note to self" and m["chat"] == "@alice"
    assert await a1.silent()


async def test_who_both_modes(server: Server) -> None:
    alice = await jlogin(server, "alice")
    alice2 = await jlogin(server, "alice")
    bob = await server.login("bob")
    await register(server, "carol")  # offline users are not listed
    w = await alice.jcmd("who")
    assert w["type"] == "ok" and w["cmd"] == "who"
    assert sorted(w["users"], key=lambda u: u["name"]) == [
        {"name": "alice", "sessions": 2},
        {"name": "bob", "sessions": 1},
    ]
    await bob.send("who\n")
    lines = await bob.reply()
    assert lines[-1].startswith("OK")
    assert len(lines) == 3
    assert any("alice" in x and "2" in x for x in lines[:-1])
    assert (await alice.jcmd("who #general"))["type"] == "ok"
    assert await alice2.jcmd("ping") == {"type": "ok", "cmd": "ping"}


async def test_status_before_and_after_login(server: Server) -> None:
    c = await jconnect(server)
    server.clock.advance(100)
    s = await c.jcmd("status")
    assert set(s) == {"type", "cmd", "server"}
    assert isinstance(s["server"]["version"], str)
    assert s["server"]["uptime_s"] >= 100
    assert s["server"]["online"] == 0
    await c.jcmd("login alice")
    bob = await jlogin(server, "bob")
    await bob.jcmd("send_all hi")
    sent = await bob.jcmd("send alice hey")
    s = await c.jcmd("status")
    assert s["server"]["online"] == 2
    assert s["user"] == "alice" and s["sessions"] == 1
    chats = {x["chat"]: x for x in s["chats"]}
    assert chats["#general"]["unread"] == 0 and chats["#general"]["last_id"] == sent["id"] - 1
    assert chats["@bob"] == {"chat": "@bob", "unread": 0, "last_id": sent["id"]}
    t = await server.connect()
    await t.send("status\n")
    lines = await t.reply()
    assert lines[-1].startswith("OK") and len(lines) >= 2


async def test_history_both_modes(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    ids = [(await alice.jcmd(f"send_all m{i}"))["id"] for i in range(12)]
    pm = [(await alice.jcmd(f"send bob p{i}"))["id"] for i in range(3)]
    h = await alice.jcmd("history #general")
    assert h["type"] == "ok" and h["cmd"] == "history" and h["chat"] == "#general"
    assert [m["id"] for m in h["messages"]] == ids  # oldest first, default 20
    assert set(h["messages"][0]) == MESSAGE_KEYS
    h = await alice.jcmd("history #general 5")
    assert [m["text"] for m in h["messages"]] == [f"m{i}" for i in range(7, 12)]
    h = await alice.jcmd(f"history #general 3 before {ids[5]}")
    assert [m["id"] for m in h["messages"]] == ids[2:5]
    h = await alice.jcmd(f"history #general before {ids[2]}")
    assert [m["id"] for m in h["messages"]] == ids[:2]
    h = await bob.jcmd("history @alice")
    assert h["chat"] == "@alice" and [m["id"] for m in h["messages"]] == pm
    assert all(m["chat"] == "@alice" and m["to"] == "bob" for m in h["messages"])
    h = await alice.jcmd("history bob 2")
    assert h["chat"] == "@bob" and [m["id"] for m in h["messages"]] == pm[1:]
    t = await server.login("carol")
    await t.send("history #general 4\n")
    lines = await t.reply()
    assert lines[-1].startswith("OK") and len(lines) == 5
    for i, line in enumerate(lines[:-1]):
        m = TEXT_MSG_RE.match(line.removeprefix("  "))
        assert m is not None and line.startswith("  ")
        assert m.group(4, 5, 6, 7) == (str(ids[8 + i]), "#general", "alice", f"m{8 + i}")
    # carol cannot read alice and bob's private chat; her @alice chat is empty
    assert await items(t, "history @alice") == []


async def test_history_default_is_20(server: Server) -> None:
    alice = await jlogin(server, "alice")
    ids = []
    for i in range(20):
        ids.append((await alice.jcmd(f"send_all m{i}"))["id"])
    server.clock.advance(3601)  # the #general window resets
    for i in range(5):
        ids.append((await alice.jcmd(f"send_all n{i}"))["id"])
    h = await alice.jcmd("history #general")
    assert [m["id"] for m in h["messages"]] == ids[-20:]


# Moderation -------------------------------------------------------------------------


async def test_three_distinct_reporters_ban_with_notices(server: Server) -> None:
    spam = await jlogin(server, "spammer")
    spam_text = await server.login("spammer")
    r1 = await jlogin(server, "r1")
    r2 = await server.login("r2")
    r3 = await jlogin(server, "r3")

    o = await r1.jcmd("ban spammer flooding")
    assert o == {"type": "ok", "cmd": "ban", "user": "spammer", "strikes": 1, "banned_until": None}
    n = await spam.obj()
    assert n["type"] == "notice" and n["event"] == "warned"
    assert (await spam_text.line()).startswith("* ")
    # the same reporter again: still one strike
    o = await r1.jcmd("report spammer again")
    assert o["cmd"] == "report" and o["strikes"] == 1 and o["banned_until"] is None
    assert (await r2.cmd("REPORT spammer")).startswith("OK")
    n = await spam.obj()
    assert n["type"] == "notice" and n["event"] == "warned"
    o = await r3.jcmd("ban spammer")
    assert o["strikes"] == 3 and o["banned_until"] == "2027-01-15T12:00:00.000Z"
    # warned, then banned with `until`
    events: list[dict[str, Any]] = []
    while len(events) < 2:
        x = await spam.obj()
        assert x["type"] == "notice"
        events.append(x)
    assert [e["event"] for e in events] == ["warned", "banned"]
    assert events[1]["until"] == "2027-01-15T12:00:00.000Z"
    lines = [await spam_text.line() for _ in range(3)]  # warned (r2), warned, banned
    assert all(x.startswith("* ") for x in lines)


async def test_banned_user_cannot_send_but_can_log_in_and_read(server: Server) -> None:
    await register(server, "r1", "r2", "r3")
    target = await jlogin(server, "target")
    for r in ("r1", "r2", "r3"):
        c = await server.login(r)
        assert (await c.cmd("ban target")).startswith("OK")
        await c.close()
    server.clock.advance(60)
    o = await target.jcmd("send_all hello")
    assert o["type"] == "error" and o["code"] == "banned" and o["cmd"] == "send_all"
    assert set(o) == {"type", "cmd", "code", "message", "retry_after"}
    assert 14340 - 1 <= o["retry_after"] <= 14340 + 1
    o = await target.jcmd("send r1 hello")
    assert o["code"] == "banned" and o["retry_after"] > 0
    o = await target.jcmd("send #general hello")
    assert o["code"] == "banned"
    t = await server.login("target")
    assert err_code(await t.cmd("send_all hi")) == "banned"
    assert err_code(await t.cmd("send r2 hi")) == "banned"
    # can still read: history, who, status, and live messages
    r1 = await jlogin(server, "r1")
    sent = await r1.jcmd("send_all still here")
    m = await target.obj()
    assert m["type"] == "message" and m["id"] == sent["id"]
    assert (await target.jcmd("history #general"))["type"] == "ok"
    assert (await target.jcmd("who"))["type"] == "ok"
    # the ban ends after ban_duration_s
    server.clock.advance(14400 - 60 + 1)
    assert (await target.jcmd("send_all I am back"))["type"] == "ok"
    assert (await t.cmd("send r1 hi")).startswith("OK")


async def test_cannot_report_yourself(server: Server) -> None:
    a = await jlogin(server, "alice")
    o = await a.jcmd("ban alice")
    # Reading: the contract names no code; bad-args or forbidden are both fine.
    assert o["type"] == "error" and o["code"] in ("bad-args", "forbidden")
    o = await a.jcmd("report ALICE")
    assert o["type"] == "error" and o["code"] in ("bad-args", "forbidden")
    b = await jlogin(server, "bob")
    assert (await b.jcmd("ban alice"))["strikes"] == 1  # no strike was counted


async def test_strikes_expire_after_the_strike_window(server: Server) -> None:
    await register(server, "target")
    for r in ("r1", "r2"):
        c = await jlogin(server, r)
        assert (await c.jcmd("ban target"))["strikes"] in (1, 2)
    server.clock.advance(86400 + 1)
    c = await jlogin(server, "r3")
    o = await c.jcmd("ban target")
    assert o["strikes"] == 1 and o["banned_until"] is None


async def test_admin_bans_at_once_unbans_and_kicks(start_server: StartServer) -> None:
    server = await start_server(moderation__admins=["root"])
    await register(server, "root")  # without a password root is not an admin
    c = await jlogin(server, "root")
    assert (await c.jcmd("unban bob"))["code"] in ("forbidden", "no-such-user")
    assert (await c.jcmd("passwd rootpw"))["type"] == "ok"
    root = await jlogin(server, "root", "rootpw")
    bob = await jlogin(server, "bob")
    o = await root.jcmd("ban bob")
    assert o["type"] == "ok" and o["banned_until"] is not None
    n = await bob.obj()
    assert n["type"] == "notice" and n["event"] == "banned" and TS_RE.match(n["until"])
    assert (await bob.jcmd("send_all hi"))["code"] == "banned"
    assert (await root.jcmd("unban bob")) == {"type": "ok", "cmd": "unban", "user": "bob"}
    assert (await bob.jcmd("send_all hi"))["type"] == "ok"
    assert (await root.jcmd("kick bob"))["type"] == "ok"
    assert await bob.closed()
    assert (await root.jcmd("stats"))["type"] == "ok"


async def test_login_timeout_closes_idle_connection(start_server: StartServer) -> None:
    server = await start_server(limits__login_timeout_s=0.3)
    c = await server.connect()
    j = await jconnect(server)
    logged = await server.login("alice")
    assert (await c.line(timeout=10)).startswith("* ")
    assert await c.closed()
    n = await j.obj(timeout=10)
    assert n["type"] == "notice" and n["event"] == "login-timeout"
    assert await j.closed()
    assert await logged.cmd("ping") == "OK pong"  # logged-in sessions stay


# Every error code -------------------------------------------------------------------

# (command, expected code, logged in as alice?) — bob and carol exist, offline.
ERROR_CASES: list[tuple[str, str, bool]] = [
    ("frobnicate", "unknown-command", False),
    ("frobnicate now", "unknown-command", True),
    ("sendall hi", "unknown-command", True),
    ("login", "bad-args", False),
    ("login a b c", "bad-args", False),
    ("mode", "bad-args", False),
    ("mode yaml", "bad-args", False),
    ("help a b", "bad-args", False),
    ("send_all", "bad-args", True),
    ("send_all    ", "bad-args", True),
    ("send", "bad-args", True),
    ("send bob", "bad-args", True),
    ("ban", "bad-args", True),
    ("report", "bad-args", True),
    ("passwd", "bad-args", True),
    ("passwd a b c", "bad-args", True),
    ("who a b", "bad-args", True),
    ("history", "bad-args", True),
    ("history #general x", "bad-args", True),
    ("history #general 5 before", "bad-args", True),
    ("history #general 5 after 3", "bad-args", True),
    ("history #general -3", "bad-args", True),
    ("quit now", "bad-args", False),
    ("passwd secret", "not-logged-in", False),
    ("send_all hi", "not-logged-in", False),
    ("send bob hi", "not-logged-in", False),
    ("ban bob", "not-logged-in", False),
    ("report bob", "not-logged-in", False),
    ("who", "not-logged-in", False),
    ("history #general", "not-logged-in", False),
    ("login alice", "already-logged-in", True),
    ("login bad!name", "bad-name", False),
    ("login " + "n" * 33, "bad-name", False),
    ("login bob pw", "bad-password", False),  # bob has a password (set up below)
    ("login bob", "bad-password", False),
    ("send nobody hi", "no-such-user", True),
    ("send @nobody hi", "no-such-user", True),
    ("ban nobody", "no-such-user", True),
    ("report @nobody", "no-such-user", True),
    ("history @nobody", "no-such-user", True),
    ("history nobody", "no-such-user", True),
    ("send #nowhere hi", "no-such-chat", True),
    ("history #nowhere", "no-such-chat", True),
    ("who #nowhere", "no-such-chat", True),
    ("unban carol", "forbidden", True),
    ("kick carol", "forbidden", True),
    ("announce hello", "forbidden", True),
    ("stats", "forbidden", True),
]


def usage_name(command: str) -> str:
    verb = command.split(maxsplit=1)[0].lower()
    return {"report": "ban"}.get(verb, verb)


@pytest.mark.parametrize("mode", ["text", "json"])
@pytest.mark.parametrize(("command", "code", "logged_in"), ERROR_CASES)
async def test_error_codes(
    server: Server, mode: str, command: str, code: str, logged_in: bool
) -> None:
    if code == "bad-password":  # scrypt is slow on purpose: only where it matters
        c = await server.connect()
        assert (await c.cmd("login bob bobpw")).startswith("OK")
        assert await c.cmd("quit") == "OK bye"
    else:
        await register(server, "bob")
    await register(server, "carol")
    c = await server.login("alice") if logged_in else await server.connect()
    if mode == "json":
        await c.send("mode json\n")
        assert (await c.obj())["type"] == "ok"
        o = await c.jcmd(command)
        assert o["type"] == "error", o
        assert o["code"] == code, o
        assert o["cmd"] == command.split(maxsplit=1)[0].lower()
        assert isinstance(o["message"], str) and o["message"]
        assert set(o) == {"type", "cmd", "code", "message"}
        if code == "bad-args":
            assert usage_name(command) in o["message"]  # the usage is in the text
        assert await c.jcmd("ping") == {"type": "ok", "cmd": "ping"}
    else:
        line = await c.cmd(command)
        assert err_code(line) == code, line
        assert len(line.split(None, 2)) == 3  # a human text follows the code
        if code == "bad-args":
            assert usage_name(command) in line
        assert await c.cmd("ping") == "OK pong"


async def test_rate_limited_general(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await server.login("bob")
    for i in range(20):
        assert (await alice.jcmd(f"send_all m{i}"))["type"] == "ok"
    server.clock.advance(600)
    o = await alice.jcmd("send_all one too many")
    assert o["type"] == "error" and o["code"] == "rate-limited" and o["cmd"] == "send_all"
    assert set(o) == {"type", "cmd", "code", "message", "retry_after"}
    assert 3000 - 1 <= o["retry_after"] <= 3000 + 1
    assert (await alice.jcmd("send #general still no"))["code"] == "rate-limited"
    t = await server.login("alice")
    assert err_code(await t.cmd("send_all text mode too")) == "rate-limited"
    # private messages are not limited, and other users are not affected
    assert (await alice.jcmd("send bob private is fine"))["type"] == "ok"
    assert (await bob.cmd("send_all bob can")).startswith("OK")
    # the window resets at its end
    server.clock.advance(3000)
    assert (await alice.jcmd("send_all new window"))["type"] == "ok"


async def test_too_many_sessions(start_server: StartServer) -> None:
    server = await start_server(chat__max_sessions_per_user=2)
    s1 = await server.login("alice")
    s2 = await jlogin(server, "alice")
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "too-many-sessions"
    j = await jconnect(server)
    o = await j.jcmd("login ALICE")
    assert o["type"] == "error" and o["code"] == "too-many-sessions"
    assert await s1.cmd("quit") == "OK bye"
    assert await s1.closed()
    # a freed slot can be taken; the refused connection is still usable
    assert (await c.cmd("login alice")).startswith("OK welcome alice")
    assert (await s2.jcmd("who"))["users"] == [{"name": "alice", "sessions": 2}]


async def test_default_session_limit_is_8(server: Server) -> None:
    sessions = [await server.login("alice") for _ in range(7)]
    last = await jlogin(server, "alice")
    c = await server.connect()
    assert err_code(await c.cmd("login alice")) == "too-many-sessions"
    assert (await last.jcmd("who"))["users"] == [{"name": "alice", "sessions": 8}]
    assert all([await x.cmd("ping") == "OK pong" for x in sessions])


async def test_server_busy_when_full(start_server: StartServer) -> None:
    server = await start_server(limits__max_connections=2)
    a = await server.connect()
    b = await server.connect()
    c = await Client.connect(server.port, greet=False)
    line = await c.line()
    # Reading: a refused connection gets `ERR server-busy …` instead of the greeting.
    assert err_code(line) == "server-busy"
    assert await c.closed()
    assert await a.cmd("ping") == "OK pong"
    assert await b.cmd("quit") == "OK bye"
    assert await b.closed()
    d = await server.connect()
    assert d.greeting.startswith("* ")


async def test_server_busy_per_ip(start_server: StartServer) -> None:
    server = await start_server(limits__max_connections_per_ip=1)
    a = await server.login("alice")
    c = await Client.connect(server.port, greet=False)
    assert err_code(await c.line()) == "server-busy"
    assert await c.closed()
    assert await a.cmd("ping") == "OK pong"


async def test_pipelined_second_login_while_the_first_is_hashing(server: Server) -> None:
    c = await jconnect(server)
    await c.send("login alice pw\nlogin alice pw\nlogin bob\nping\n")
    first, second, third, pong = [await c.obj() for _ in range(4)]
    assert first["type"] == "ok" and first["user"] == "alice"
    assert second["code"] == "already-logged-in" and third["code"] == "already-logged-in"
    assert pong == {"type": "ok", "cmd": "ping"}


async def test_two_connections_creating_one_account_at_once(server: Server) -> None:
    c1 = await jconnect(server)
    c2 = await jconnect(server)
    await asyncio.gather(c1.send("login carol pw-one\n"), c2.send("login Carol pw-two\n"))
    r1, r2 = await c1.obj(), await c2.obj()
    # exactly one created the account; the other needs that one's password
    oks = [r for r in (r1, r2) if r["type"] == "ok"]
    errs = [r for r in (r1, r2) if r["type"] == "error"]
    assert len(oks) == 1 and oks[0]["new"] is True
    assert len(errs) == 1 and errs[0]["code"] == "bad-password"
    winner = "pw-one" if r1["type"] == "ok" else "pw-two"
    _, ok, _ = await jlogin_full(server, "carol", winner)
    assert ok["new"] is False
