"""Delivery over real TCP: live push to every session but the sending one, sync across a
user's sessions, history_on_join, unread replay, the sessions limit, and a reader that
stopped reading never stalling anyone else (shared/PROTOCOL.md, "Delivery semantics")."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from typing import Any

from tests.helpers.protocol import TEXT_MSG_RE, err_code, jlogin, jlogin_full, register
from tests.helpers.server import Client, Server, StartServer


async def next_message(c: Client) -> dict[str, Any]:
    o = await c.obj()
    assert o["type"] == "message", o
    return o


async def test_live_push_to_all_sessions_except_the_sending_one(server: Server) -> None:
    a1 = await jlogin(server, "alice")
    a2 = await jlogin(server, "alice")
    a3 = await server.login("alice")
    b1 = await jlogin(server, "bob")
    b2 = await server.login("bob")
    carol = await jlogin(server, "carol")

    o = await a1.jcmd("send_all hello everyone")
    for c in (a2, b1, carol):
        m = await next_message(c)
        assert (m["id"], m["chat"], m["from"], m["text"]) == (
            o["id"],
            "#general",
            "alice",
            "hello everyone",
        )
        assert m["replay"] is False
    for t in (a3, b2):
        m2 = TEXT_MSG_RE.match(await t.line())
        assert m2 is not None and m2.group(4, 5, 6, 7) == (
            str(o["id"]),
            "#general",
            "alice",
            "hello everyone",
        )

    # a private message: both of bob's sessions, and alice's other sessions (sync)
    p = await a1.jcmd("send @bob just you")
    m = await next_message(b1)
    assert (m["id"], m["chat"], m["from"], m["to"]) == (p["id"], "@alice", "alice", "bob")
    assert f"[{p['id']}] @alice <alice> just you" in await b2.line()
    m = await next_message(a2)
    assert (m["id"], m["chat"], m["from"], m["to"]) == (p["id"], "@bob", "alice", "bob")
    assert f"[{p['id']}] @bob <alice> just you" in await a3.line()
    assert await carol.silent()
    assert await a1.silent(0.1)


async def test_sender_other_sessions_get_own_messages_in_order(server: Server) -> None:
    a1 = await server.login("alice")
    a2 = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    await a1.send("".join(f"send_all n{i}\n" for i in range(10)))
    oks = [await a1.line() for _ in range(10)]
    assert all(x.startswith("OK") for x in oks)
    mine = [await next_message(a2) for _ in range(10)]
    theirs = [await next_message(bob) for _ in range(10)]
    assert [m["text"] for m in mine] == [f"n{i}" for i in range(10)]
    assert [m["id"] for m in mine] == [m["id"] for m in theirs]
    assert [m["id"] for m in mine] == sorted(m["id"] for m in mine)
    assert await a1.silent(0.1)


async def test_concurrent_senders_every_recipient_sees_increasing_ids(server: Server) -> None:
    alice = await server.login("alice")
    carol = await server.login("carol")
    bob = await jlogin(server, "bob")
    await asyncio.gather(
        alice.send("".join(f"send_all a{i}\n" for i in range(15))),
        carol.send("".join(f"send_all c{i}\n" for i in range(15))),
    )
    got = [await next_message(bob) for _ in range(30)]
    ids = [m["id"] for m in got]
    assert ids == sorted(ids) and len(set(ids)) == 30
    assert [m["text"] for m in got if m["from"] == "alice"] == [f"a{i}" for i in range(15)]
    assert [m["text"] for m in got if m["from"] == "carol"] == [f"c{i}" for i in range(15)]


async def test_new_user_gets_last_history_on_join_general_messages(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    ids = [(await alice.jcmd(f"send_all a{i}"))["id"] for i in range(15)]
    ids += [(await bob.jcmd(f"send_all b{i}"))["id"] for i in range(10)]
    await alice.jcmd("send bob private stays private")
    _, ok, replay = await jlogin_full(server, "dave")
    assert ok["new"] is True and ok["unread"] == 20
    assert [m["id"] for m in replay] == ids[-20:]  # the last 20, oldest first
    assert all(m["type"] == "message" and m["replay"] is True for m in replay)
    assert all(m["chat"] == "#general" for m in replay)
    # in text mode: the count in the OK, then that many message lines
    t = await server.connect()
    await t.send("login erin\n")
    ok_line = await t.line()
    assert ok_line.startswith("OK") and "20" in ok_line
    lines = [await t.line() for _ in range(20)]
    parsed = [TEXT_MSG_RE.match(x) for x in lines]
    assert all(p is not None for p in parsed)
    assert [int(p.group(4)) for p in parsed if p] == ids[-20:]
    assert await t.silent(0.1)


async def test_new_user_on_an_empty_server_gets_nothing(server: Server) -> None:
    c, ok, replay = await jlogin_full(server, "first")
    assert ok["unread"] == 0 and replay == []
    assert await c.silent(0.1)


async def test_history_on_join_is_configurable(start_server: StartServer) -> None:
    server = await start_server(chat__history_on_join=3)
    alice = await jlogin(server, "alice")
    ids = [(await alice.jcmd(f"send_all m{i}"))["id"] for i in range(5)]
    _, ok, replay = await jlogin_full(server, "bob")
    assert ok["unread"] == 3 and [m["id"] for m in replay] == ids[-3:]
    server0 = await start_server(chat__history_on_join=0)
    alice0 = await jlogin(server0, "alice")
    await alice0.jcmd("send_all m")
    _, ok, replay = await jlogin_full(server0, "bob")
    assert ok["unread"] == 0 and replay == []


async def test_new_user_then_live_messages_not_marked_replay(server: Server) -> None:
    alice = await jlogin(server, "alice")
    await alice.jcmd("send_all before")
    bob, ok, replay = await jlogin_full(server, "bob")
    assert ok["unread"] == 1 and replay[0]["text"] == "before"
    o = await alice.jcmd("send_all after")
    m = await next_message(bob)
    assert m["id"] == o["id"] and m["replay"] is False
    assert await bob.silent(0.1)


async def test_returning_user_gets_every_unread_message_replayed(server: Server) -> None:
    await register(server, "alice")
    bob = await jlogin(server, "bob")
    carol = await jlogin(server, "carol")
    expected = []
    expected.append((await bob.jcmd("send_all g1"))["id"])
    expected.append((await bob.jcmd("send alice p1"))["id"])
    await bob.jcmd("send carol not for alice")
    expected.append((await carol.jcmd("send @alice p2"))["id"])
    expected.append((await carol.jcmd("send_all g2"))["id"])
    expected.append((await bob.jcmd("send ALICE p3"))["id"])

    alice, ok, replay = await jlogin_full(server, "alice")
    assert ok == {"type": "ok", "cmd": "login", "user": "alice", "new": False, "unread": 5}
    assert [m["id"] for m in replay] == expected  # oldest first, across chats
    assert all(m["replay"] is True for m in replay)
    assert [m["chat"] for m in replay] == ["#general", "@bob", "@carol", "#general", "@bob"]
    assert [m.get("to") for m in replay] == [None, "alice", "alice", None, "alice"]
    assert [m["text"] for m in replay] == ["g1", "p1", "p2", "g2", "p3"]
    # they come right after the ok: nothing in between, nothing more
    assert await alice.silent(0.1)
    # and the next login has nothing left
    assert (await alice.jcmd("quit"))["type"] == "ok"
    assert await alice.closed()
    _, ok2, _ = await jlogin_full(server, "alice")
    assert ok2["unread"] == 0


async def test_replay_comes_before_the_replies_to_pipelined_commands(server: Server) -> None:
    await register(server, "alice")
    bob = await jlogin(server, "bob")
    ids = [(await bob.jcmd(f"send alice m{i}"))["id"] for i in range(3)]
    c = await server.connect()
    await c.send("mode json\nlogin alice\nping\n")
    assert (await c.obj())["cmd"] == "mode"
    ok = await c.obj()
    assert ok["cmd"] == "login" and ok["unread"] == 3
    assert [(await c.obj())["id"] for _ in range(3)] == ids
    assert await c.obj() == {"type": "ok", "cmd": "ping"}


async def test_history_on_join_messages_are_not_replayed_again(server: Server) -> None:
    alice = await jlogin(server, "alice")
    for i in range(3):
        await alice.jcmd(f"send_all m{i}")
    dave, ok, _ = await jlogin_full(server, "dave")
    assert ok["unread"] == 3
    await dave.jcmd("quit")
    assert await dave.closed()
    _, ok, _ = await jlogin_full(server, "dave")
    assert ok["new"] is False and ok["unread"] == 0


async def test_returning_user_replay_in_text_mode(server: Server) -> None:
    await register(server, "alice")
    bob = await jlogin(server, "bob")
    g = await bob.jcmd("send_all hello there")
    p = await bob.jcmd("send alice secret")
    t = await server.connect()
    await t.send("login alice\n")
    ok = await t.line()
    assert ok.startswith("OK") and re.search(r"\b2\b", ok)
    first, second = TEXT_MSG_RE.match(await t.line()), TEXT_MSG_RE.match(await t.line())
    assert first is not None and second is not None
    assert first.group(4, 5, 6, 7) == (str(g["id"]), "#general", "bob", "hello there")
    assert second.group(4, 5, 6, 7) == (str(p["id"]), "@bob", "bob", "secret")
    assert await t.cmd("ping") == "OK pong"


async def test_message_received_live_is_not_replayed(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    await bob.jcmd("send_all live one")
    await bob.jcmd("send alice live two")
    assert (await next_message(alice))["text"] == "live one"
    assert (await next_message(alice))["text"] == "live two"
    assert (await alice.jcmd("quit"))["type"] == "ok"
    assert await alice.closed()
    o = await bob.jcmd("send_all while away")
    _, ok, replay = await jlogin_full(server, "alice")
    assert ok["unread"] == 1 and [m["id"] for m in replay] == [o["id"]]


async def test_received_by_any_session_is_not_replayed(server: Server) -> None:
    a1 = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    o = await bob.jcmd("send alice to one session")
    assert (await next_message(a1))["id"] == o["id"]
    # a second session while the first is online: read state is per user
    a2, ok, _ = await jlogin_full(server, "alice")
    assert ok["unread"] == 0
    await a1.jcmd("quit")
    await a2.jcmd("quit")
    assert await a1.closed() and await a2.closed()
    _, ok, _ = await jlogin_full(server, "alice")
    assert ok["unread"] == 0


async def test_session_closed_abruptly_keeps_read_position(server: Server) -> None:
    alice = await jlogin(server, "alice")
    bob = await jlogin(server, "bob")
    o1 = await bob.jcmd("send_all one")
    assert (await next_message(alice))["id"] == o1["id"]
    await alice.close()  # no quit: the peer just goes away
    # wait until the server noticed
    for _ in range(100):
        if (await bob.jcmd("who"))["users"] == [{"name": "bob", "sessions": 1}]:
            break
        await asyncio.sleep(0.02)
    o2 = await bob.jcmd("send_all two")
    _, ok, replay = await jlogin_full(server, "alice")
    assert ok["unread"] == 1 and replay[0]["id"] == o2["id"]


async def test_sender_own_messages_are_not_replayed_to_the_sender(server: Server) -> None:
    # Reading: a message a user sent counts as received by that user (they got the
    # OK); it is not replayed to them at their next login.
    alice = await jlogin(server, "alice")
    await jlogin(server, "bob")
    await alice.jcmd("send_all mine")
    await alice.jcmd("send bob mine too")
    await alice.jcmd("quit")
    assert await alice.closed()
    _, ok, replay = await jlogin_full(server, "alice")
    assert ok["unread"] == 0, replay


async def test_every_session_up_to_the_limit_gets_live_messages(
    start_server: StartServer,
) -> None:
    server = await start_server(chat__max_sessions_per_user=3)
    sessions = [await jlogin(server, "alice") for _ in range(3)]
    extra = await server.connect()
    assert err_code(await extra.cmd("login alice")) == "too-many-sessions"
    bob = await jlogin(server, "bob")
    o = await bob.jcmd("send alice hi all")
    for s in sessions:
        assert (await next_message(s))["id"] == o["id"]
    # notices reach every session too
    r = await jlogin(server, "carol")
    await r.jcmd("ban alice")
    for s in sessions:
        n = await s.obj()
        assert n["type"] == "notice" and n["event"] == "warned"
    assert await extra.silent(0.1)


async def _recv_until(sock: socket.socket, marker: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while marker not in data:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 65536), 10)
        assert chunk, data
        data += chunk
    return data


async def test_reader_that_stopped_reading_does_not_stall_others(
    start_server: StartServer,
) -> None:
    server = await start_server(
        limits__send_buffer_bytes=32 * 1024, limits__general_messages_per_window=100_000
    )
    loop = asyncio.get_running_loop()
    # A plain socket with a small receive buffer that nobody reads (an asyncio stream
    # would keep reading into its own buffer behind our back).
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    slow.setblocking(False)
    await loop.sock_connect(slow, ("127.0.0.1", server.port))
    await loop.sock_sendall(slow, b"login bob\n")
    head = await _recv_until(slow, b"OK welcome")
    assert head.startswith(b"* ")
    carol = await jlogin(server, "carol")
    alice = await server.login("alice")
    n, text = 1000, "x" * 3000
    sent_ids: list[int] = []

    async def send_all() -> None:
        for start in range(0, n, 100):
            await alice.send("".join(f"send_all {i} {text}\n" for i in range(start, start + 100)))
            for _ in range(100):
                ok = await alice.line(timeout=20)
                m = re.search(r"\[(\d+)\]", ok)
                assert ok.startswith("OK") and m, ok
                sent_ids.append(int(m.group(1)))

    async def read_all() -> list[int]:
        return [(await carol.obj(timeout=20))["id"] for _ in range(n)]

    try:
        _, carol_ids = await asyncio.gather(send_all(), read_all())
        assert carol_ids == sent_ids  # the others got everything, in order
        # The slow reader was cut off: reading now reaches EOF.
        data = head
        while True:
            try:
                chunk = await asyncio.wait_for(loop.sock_recv(slow, 1 << 20), 10)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        slow.close()
    lines = data.split(b"\n")[:-1]  # complete lines only
    got = set()
    for raw in lines[2:]:  # after the greeting and the login reply
        m2 = TEXT_MSG_RE.match(raw.decode())
        if m2:
            got.add(int(m2.group(4)))
        else:
            assert raw.startswith(b"* "), raw[:80]  # only a closing notice besides
    assert len(got) < n  # it really was dropped before getting it all
    # Nothing it had not received is lost: it is replayed at the next login.
    bob, ok, replay = await jlogin_full(server, "bob")
    replayed = [m["id"] for m in replay]
    assert ok["unread"] == len(replay)
    assert replayed == sorted(replayed)
    assert got | set(replayed) == set(sent_ids)
    assert (await bob.jcmd("ping"))["type"] == "ok"


async def test_replay_with_many_unread_is_complete(start_server: StartServer) -> None:
    server = await start_server(limits__general_messages_per_window=100_000)
    await register(server, "bob")
    alice = await server.login("alice")
    n = 500
    await alice.send("".join(f"send_all m{i} {'y' * 200}\n" for i in range(n)))
    for _ in range(n):
        assert (await alice.line()).startswith("OK")
    c = await server.connect()
    await c.send("mode json\nlogin bob\n")
    await c.obj()
    ok = await c.obj()
    assert ok["unread"] == n
    texts = [json.loads(await c.line())["text"].split()[0] for _ in range(n)]
    assert texts == [f"m{i}" for i in range(n)]


async def test_big_replay_and_history_reach_a_reader_that_reads(
    start_server: StartServer,
) -> None:
    # The slow-reader limit is for readers that stopped reading: a client that reads
    # gets a replay (and a history page) far bigger than the limit, whole.
    server = await start_server(
        limits__send_buffer_bytes=16 * 1024, limits__general_messages_per_window=100_000
    )
    await register(server, "bob")
    alice = await server.login("alice")
    n = 1000
    for start in range(0, n, 250):
        await alice.send(
            "".join(f"send_all m{i} {'y' * 2000}\n" for i in range(start, start + 250))
        )
        for _ in range(250):
            assert (await alice.line()).startswith("OK")
    c, ok, replay = await jlogin_full(server, "bob")
    assert ok["unread"] == n and len(replay) == n
    assert [m["text"].split()[0] for m in replay] == [f"m{i}" for i in range(n)]
    h = await c.jcmd("history #general 200")
    assert [m["text"].split()[0] for m in h["messages"]] == [f"m{i}" for i in range(800, n)]
    assert await c.jcmd("ping") == {"type": "ok", "cmd": "ping"}
