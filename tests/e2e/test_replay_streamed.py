"""Issue 13, items 2 and 3: a login's replay is streamed from the store a page at a
time, and what the server keeps of messages does not grow with retained history."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from chatd.server.peer import Peer
from tests.helpers.server import Client, Server, StartServer

TEXT = "y" * 3900
# 8 MB owed to alice: twice what the kernel may buffer for a socket here (tcp_wmem's
# 4 MiB), so a client that does not read stalls the replay itself.
N = 2000
PAGE = 20
PAGE_BYTES = PAGE * 4100


async def _owe(server: Server, n: int) -> None:
    """bob sends `n` messages of ~4 KB to #general while alice is away."""
    bob = await server.login("bob")
    await bob.send("".join(f"send_all {i} {TEXT}\n" for i in range(n)))
    for _ in range(n):
        await bob.reply()
    await bob.close()


def _peers(server: Server, name: str) -> list[Peer]:
    return [
        c.peer
        for c in server.line_connections()
        if c.peer is not None and c.peer.account is not None and c.peer.account.name == name
    ]


async def _logged_in(server: Server, name: str, n: int = 1) -> list[Peer]:
    """The sessions of `name`, once `n` of them have logged in."""
    for _ in range(500):
        peers = _peers(server, name)
        if len(peers) >= n:
            return peers
        await asyncio.sleep(0.01)
    raise AssertionError(f"{name} did not log in")


async def _held(server: Server, peer: Peer) -> int:
    """What the server holds for `peer` once it stopped making progress (the kernel's
    buffers full, the same for a few polls): the transport's buffer and replies
    waiting for a commit."""
    seen: list[int] = []
    for _ in range(500):
        await server.daemon.hub.drain()
        assert peer.transport is not None
        seen.append(peer.transport.get_write_buffer_size() + server.daemon.hub.queued(peer))
        if peer.paused and len(seen) >= 3 and seen[-1] == seen[-2] == seen[-3]:
            break
        await asyncio.sleep(0.01)
    return seen[-1]


async def test_a_replay_that_is_not_read_holds_a_page_not_the_backlog(
    start_server: StartServer,
) -> None:
    server = await start_server(
        limits__general_messages_per_window=100000,
        limits__send_buffer_bytes=65536,
        chat__recent_bytes=50000,  # the window holds ~10 of them: the rest is read from disk
        chat__replay_page=PAGE,
    )
    alice = await server.login("alice")
    await alice.close()
    await _owe(server, N)
    assert len(server.daemon.chat.recent) < 30  # the bodies live in the store

    slow = await Client.with_receive_buffer(server.port, 32768)
    slow.stop_reading()
    await slow.send("mode json\nlogin alice\n")
    (peer,) = await _logged_in(server, "alice")
    held = await _held(server, peer)
    # The replay stalled with the client: the kernel's buffers full, the server holding
    # about one page over the send buffer, not the 8 MB backlog (the old code wrote it
    # all at once), and most of the backlog not even read from the store yet.
    assert peer.paused
    assert held < 65536 + PAGE_BYTES, held
    assert peer.written_id < N * 3 // 4, peer.written_id
    # Something live comes while the replay is stuck: it must come after it, once.
    carol = await server.login("carol")
    assert (await carol.cmd("send_all live")).startswith("OK")

    slow.resume_reading()
    objs: list[dict[str, Any]] = []
    while not (objs and objs[-1].get("text") == "live"):
        objs.append(json.loads(await slow.line(timeout=20)))
    login = next(o for o in objs if o.get("type") == "ok" and o.get("cmd") == "login")
    assert login["unread"] == N
    msgs = [o for o in objs if o.get("type") == "message"]
    assert [m["text"].split()[0] for m in msgs[:N]] == [str(i) for i in range(N)]
    assert all(m["replay"] for m in msgs[:N])
    assert [m["text"] for m in msgs[N:]] == ["live"] and not msgs[N]["replay"]
    ids = [m["id"] for m in msgs]
    assert ids == sorted(set(ids))  # in order, none twice
    # Live from now on.
    assert (await carol.cmd("send_all after")).startswith("OK")
    assert json.loads(await slow.line())["text"] == "after"
    await slow.close()


async def test_eight_sessions_owed_a_backlog_hold_a_few_pages(start_server: StartServer) -> None:
    server = await start_server(
        limits__general_messages_per_window=100000,
        limits__send_buffer_bytes=65536,
        chat__recent_bytes=50000,
        chat__replay_page=PAGE,
    )
    alice = await server.login("alice")
    await alice.close()
    await _owe(server, N)
    clients = [await Client.with_receive_buffer(server.port, 32768) for _ in range(8)]
    for c in clients:
        c.stop_reading()
        await c.send("login alice\n")
    peers = await _logged_in(server, "alice", 8)
    total = 0
    for p in peers:
        total += await _held(server, p)
        assert p.paused and p.written_id < N * 3 // 4
    # 8 x 8 MB owed; held: at most a page over the send buffer each.
    assert total < 8 * (65536 + PAGE_BYTES), total
    for c in clients[:2]:  # those that read get everything
        c.resume_reading()
        line = await c.until(lambda s: s.startswith("OK welcome"), timeout=20)
        assert f"{N} unread" in line, line
        seen = 0
        while seen < N:
            if TEXT in await c.line(timeout=20):
                seen += 1
    for c in clients:
        await c.close()


async def test_history_and_thread_read_old_messages_from_the_store(
    start_server: StartServer,
) -> None:
    server = await start_server(
        limits__general_messages_per_window=100000, chat__recent_bytes=20000
    )
    bob = await server.login("bob")
    await bob.send("".join(f"send_all {i} {TEXT}\n" for i in range(100)))
    for _ in range(100):
        await bob.reply()
    first = server.daemon.chat.index.last("#general", 100)[0]
    assert first not in server.daemon.chat.recent
    assert (await bob.cmd(f"comment {first} old but gold")).startswith("OK")
    await bob.send(f"history #general 5 before {first + 5}\n")
    got = await bob.reply()
    assert got[-1] == "OK 5 messages in #general", got
    assert all(f"{i} {TEXT}" in g for i, g in enumerate(got[:-1])), got
    await bob.send(f"thread {first}\n")
    got = await bob.reply()
    assert any("old but gold" in g for g in got), got
    assert any(f"0 {TEXT}" in g for g in got), got
