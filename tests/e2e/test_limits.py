"""Every limit end to end over TCP, with small settings and the FakeClock where time
matters: the #general rate limit, connection limits, the login timeout, failed-login
throttling, slow consumers, keepalive, and clients that vanish mid-command."""

from __future__ import annotations

import asyncio
import json
import socket

from tests.helpers.server import Client, Server, StartServer

# The #general rate limit -------------------------------------------------------------------


async def json_client(server: Server, name: str | None = None) -> Client:
    c = await server.connect()
    await c.send("mode json\n")
    assert (await c.obj())["mode"] == "json"
    if name is not None:
        o = await c.jcmd(f"login {name}")
        assert o["type"] == "ok", o
        for _ in range(o["unread"]):
            await c.obj()
    return c


async def test_twenty_first_general_message_in_the_window(start_server: StartServer) -> None:
    server = await start_server()  # the default: 20 per hour
    alice = await json_client(server, "alice")
    for i in range(20):
        assert (await alice.jcmd(f"send_all message {i}"))["type"] == "ok"
        server.clock.advance(60)
    refused = await alice.jcmd("send_all one too many")
    assert refused["code"] == "rate-limited"
    assert refused["retry_after"] == 3600 - 20 * 60  # the window began at the first one
    assert (await alice.jcmd("send #general via send"))["code"] == "rate-limited"
    assert (await alice.jcmd("send alice private is not limited"))["type"] == "ok"
    server.clock.advance(3600 - 20 * 60 - 1)
    assert (await alice.jcmd("send_all not yet"))["retry_after"] == 1
    server.clock.advance(1)  # the window ends: a fresh one
    assert (await alice.jcmd("send_all new window"))["type"] == "ok"


async def test_small_rate_limit_is_per_user(start_server: StartServer) -> None:
    server = await start_server(limits__general_messages_per_window=3, limits__general_window_s=60)
    a1 = await server.login("alice")
    a2 = await server.login("alice")  # a second session shares the user's budget
    bob = await server.login("bob")
    assert (await a1.cmd("send_all 1")).startswith("OK sent")
    assert (await a2.cmd("send_all 2")).startswith("OK sent")
    assert (await a1.cmd("send_all 3")).startswith("OK sent")
    refused = await a2.cmd("send_all 4")
    assert refused.startswith("ERR rate-limited ") and refused.endswith("(retry in 60s)")
    assert (await bob.cmd("send_all mine")).startswith("OK sent")
    server.clock.advance(60)
    assert (await a2.cmd("send_all 5")).startswith("OK sent")


# Connection limits ------------------------------------------------------------------------


async def wait_for_connections(server: Server, n: int) -> None:
    """Until the daemon has noticed closes (event-driven: no timing asserted)."""
    while server.daemon.connections != n:  # noqa: ASYNC110 (no event for "n left")
        await asyncio.sleep(0.01)


async def test_seventeenth_connection_from_one_address(start_server: StartServer) -> None:
    server = await start_server()  # max_connections_per_ip = 16
    clients = [await server.connect() for _ in range(16)]
    extra = await Client.connect(server.port, greet=False)
    line = await extra.line()
    assert line.startswith("ERR server-busy ") and "16" in line
    assert await extra.closed()
    assert await clients[0].cmd("ping") == "OK pong"  # the others are untouched
    await clients[0].close()
    await wait_for_connections(server, 15)
    again = await server.connect()
    assert again.greeting.startswith("* ")
    assert await again.cmd("ping") == "OK pong"


async def test_total_connection_limit(start_server: StartServer) -> None:
    server = await start_server(limits__max_connections=3)
    held = [await server.connect() for _ in range(3)]  # (kept: a dropped Client closes)
    extra = await Client.connect(server.port, greet=False)
    assert (await extra.line()).startswith("ERR server-busy the server is full")
    assert await extra.closed()
    assert await held[0].cmd("ping") == "OK pong"


# Login timeout ----------------------------------------------------------------------------


async def test_silent_connection_is_closed_at_its_login_timeout(start_server: StartServer) -> None:
    server = await start_server(limits__login_timeout_s=0.2)
    silent = await server.connect()
    talker = await server.connect()
    assert await talker.cmd("ping") == "OK pong"  # commands do not count: only a login
    member = await server.login("alice")
    assert await silent.line() == "* closing: no login within 0.2s"
    assert await silent.closed()
    assert (await talker.line()).startswith("* closing: no login")
    await asyncio.sleep(0.3)  # well past the timeout: the logged-in one stays
    assert await member.cmd("ping") == "OK pong"


# Failed logins ----------------------------------------------------------------------------


async def test_failed_logins_are_throttled_per_name_and_address(start_server: StartServer) -> None:
    server = await start_server(limits__login_failures_before_throttle=3)
    c = await server.connect()
    assert (await c.cmd("login alice secret")).startswith("OK welcome")
    await c.close()
    guesser = await json_client(server)
    for guess in ("a", "b", "c"):
        assert (await guesser.jcmd(f"login alice {guess}"))["code"] == "bad-password"
    throttled = await guesser.jcmd("login alice d")
    assert throttled["code"] == "rate-limited" and throttled["retry_after"] == 3
    # per name: another address would be throttled too; per address: another name is
    other = await json_client(server)
    assert (await other.jcmd("login bob x"))["new"] is True  # creating one is not guessing
    third = await json_client(server)
    assert (await third.jcmd("login bob wrong"))["code"] == "rate-limited"  # same address
    server.clock.advance(3)
    assert (await guesser.jcmd("login alice e"))["code"] == "bad-password"  # one try ...
    assert (await guesser.jcmd("login alice secret"))["code"] == "rate-limited"  # ... per 3 s
    server.clock.advance(3)
    ok = await guesser.jcmd("login alice secret")
    assert ok["type"] == "ok" and ok["user"] == "alice"


# Slow consumers ---------------------------------------------------------------------------


def _tiny_receive_buffer_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    return sock


async def test_non_reader_is_dropped_and_others_get_everything(start_server: StartServer) -> None:
    """5,000 messages of 1 KB: the reader who stopped reading is closed once its buffer
    passes the limit, the reading one gets all 5,000, and the dropped one gets the rest
    at its next login."""
    n = 5000
    server = await start_server(
        limits__general_messages_per_window=n,
        limits__send_buffer_bytes=65536,
        limits__flood_burst=n,
    )
    loop = asyncio.get_running_loop()
    sock = _tiny_receive_buffer_socket()
    await loop.sock_connect(sock, ("127.0.0.1", server.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**24)
    slow = Client(reader, writer)
    slow.greeting = await slow.line()
    assert await slow.cmd("login slow") == "OK welcome slow (new account), 0 unread"
    for conn in server.daemon._connections:  # let the kernel hold little for it, too
        if conn.peer is not None and conn.peer.account is not None:
            sock_ = conn.peer.transport.get_extra_info("socket") if conn.peer.transport else None
            if sock_ is not None:
                sock_.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    fast = await server.login("fast")
    sender = await server.login("sender")
    text = "x" * 1000
    await sender.send("".join(f"send_all {i:05d} {text}\n" for i in range(n)))
    got = 0
    for _ in range(n):  # the reading client gets every one, in order
        line = await fast.line()
        assert f"<sender> {got:05d} " in line
        got += 1
    assert got == n
    acks = [await sender.line() for _ in range(n)]
    assert all(a.startswith("OK sent [") for a in acks)
    assert server.daemon.hub.slow_consumers == 1

    # The slow one now reads what reached it: messages, then the notice, then EOF.
    seen: set[int] = set()
    notice = ""
    try:
        while True:
            line = await slow.line()
            if line.startswith("* "):
                notice = line
            elif "<sender>" in line:
                seen.add(int(line.split("<sender> ")[1][:5]))
    except EOFError:
        pass
    assert notice.startswith("* closing: you stopped reading")
    assert len(seen) < n
    back = await server.connect()
    await back.send("login slow\n")
    ok = await back.line()
    unread = int(ok.rsplit(", ", 1)[1].split()[0])
    replayed = set()
    for _ in range(unread):
        replayed.add(int((await back.line()).split("<sender> ")[1][:5]))
    assert seen | replayed == set(range(n))  # nothing lost


async def test_keepalive_is_on_for_every_connection(start_server: StartServer) -> None:
    server = await start_server()
    held = [await server.connect(), await server.login("alice")]
    assert await held[1].cmd("ping") == "OK pong"
    conns = server.line_connections()
    assert len(conns) == 2
    for conn in conns:
        assert conn.peer is not None and conn.peer.transport is not None
        sock = conn.peer.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


# Clients that vanish ----------------------------------------------------------------------


async def test_client_disconnecting_mid_command(start_server: StartServer) -> None:
    server = await start_server()
    watcher = await server.login("watcher")
    half = await server.login("half")
    await half.send("send_all this line never ends")  # no LF: not a command yet
    await half.close()
    hasher = await server.connect()
    await hasher.send("login hasher pw\nsend_all half of it")  # hashing in flight
    await hasher.close()
    await wait_for_connections(server, 1)
    await server.daemon.hub.drain()
    assert await watcher.cmd("history #general") == "OK 0 messages in #general"
    assert await watcher.silent(0.1)
    c = await server.connect()
    assert (await c.cmd("login half")).startswith("OK welcome half, ")
    assert (await c.cmd("send_all still works")).startswith("OK sent [")
    assert "still works" in await watcher.line()
    h = await server.connect()  # the login that completed after its client left stands
    assert (await h.cmd("login hasher pw")).startswith("OK welcome hasher, ")


async def test_disconnect_with_replies_unread(start_server: StartServer) -> None:
    """A client that sends a burst and leaves before reading: the server handles
    what arrived and carries on."""
    server = await start_server()
    watcher = await json_client(server, "watcher")
    c = await server.connect()
    await c.send("login gone\n" + "send_all bye\n" * 3 + "who\n" * 50)
    await c.close()
    msgs = [await watcher.obj() for _ in range(3)]
    assert [m["text"] for m in msgs] == ["bye"] * 3
    await wait_for_connections(server, 1)
    who = await watcher.jcmd("who")
    assert json.dumps(who["users"]) == json.dumps([{"name": "watcher", "sessions": 1}])
