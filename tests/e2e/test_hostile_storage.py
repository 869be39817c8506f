"""Bounds on what one user can make the server store (issue 13, item 8): rooms per user
and per server, live join links per room, pending join requests per room, uploads in
progress per user, whose temporary files count against the file quota."""

from __future__ import annotations

import asyncio
import base64

from tests.helpers.server import Client, Server, StartServer


async def _json(server: Server, name: str) -> Client:
    c = await server.login(name)
    assert (await c.jcmd("mode json"))["mode"] == "json"
    return c


async def test_rooms_per_user_and_per_server(start_server: StartServer) -> None:
    server = await start_server(limits__max_rooms_per_user=3, limits__max_rooms=5)
    alice = await _json(server, "alice")
    for i in range(3):
        assert (await alice.jcmd(f"room create a{i}"))["type"] == "ok"
    err = await alice.jcmd("room create a3")
    assert err["code"] == "too-large" and "you own 3 rooms" in err["message"], err
    bob = await _json(server, "bob")
    assert (await bob.jcmd("room invite #a0 bob"))["code"] == "forbidden"
    assert (await alice.jcmd("room invite #a0 bob"))["type"] == "ok"  # membership is free
    assert (await bob.jcmd("room create b0"))["type"] == "ok"
    assert (await bob.jcmd("room create b1"))["type"] == "ok"
    err = await bob.jcmd("room create b2")
    assert err["code"] == "too-large" and "the server has 5 rooms" in err["message"], err
    # Leaving frees the slot (alice hands #a1 over to nobody: it is deleted).
    assert (await alice.jcmd("room leave #a1"))["type"] == "ok"
    assert (await alice.jcmd("room create a3"))["type"] == "ok"


async def test_live_links_and_pending_requests_per_room(start_server: StartServer) -> None:
    server = await start_server(
        limits__max_links_per_room=2, limits__max_join_requests_per_room=2, rooms__link_ttl_s=600
    )
    owner = await _json(server, "owner")
    assert (await owner.jcmd("room create dev"))["type"] == "ok"
    links = [await owner.jcmd("room link #dev") for _ in range(3)]
    assert [x["type"] for x in links] == ["ok", "ok", "error"]
    assert links[2]["code"] == "too-large" and "2 live join links" in links[2]["message"]
    askers = [await _json(server, f"asker{i}") for i in range(3)]
    answers = [await a.jcmd(f"join {links[0]['link']}") for a in askers]
    assert [x["type"] for x in answers] == ["ok", "ok", "error"]
    assert answers[2]["code"] == "too-large" and "2 pending join requests" in answers[2]["message"]
    assert (await owner.jcmd("room deny #dev asker0"))["type"] == "ok"
    assert (await askers[2].jcmd(f"join {links[0]['link']}"))["type"] == "ok"
    server.clock.advance(600)  # the links expire: room for new ones
    assert (await owner.jcmd("room link #dev"))["type"] == "ok"
    assert (await owner.jcmd("room link #dev"))["type"] == "ok"


def _data(size: int) -> str:
    return base64.encodebytes(b"x" * size).decode()  # lines of 76 characters


async def test_uploads_in_progress_are_bounded_and_count_against_the_quota(
    start_server: StartServer,
) -> None:
    server = await start_server(
        limits__max_uploads_per_user=2, files__quota_bytes=300_000, files__max_bytes=200_000
    )
    await server.login("bob")
    a1, a2, a3 = [await _json(server, "alice") for _ in range(3)]
    await a1.send("upload bob one.bin\n" + _data(999))  # left open: a temp file
    await a2.send("upload bob two.bin\n" + _data(999))
    assert await a1.silent(0.1) and await a2.silent(0.1)  # both in progress, nothing said
    err = await a3.jcmd("upload bob three.bin\n" + _data(999) + ".")
    assert err["code"] == "too-large" and "2 uploads in progress" in err["message"], err
    # The first one may reach 200,000 bytes, so the second only 100,000 of the quota.
    await a2.send(_data(150_000) + ".\n")
    err = await a2.obj()
    assert err["code"] == "too-large" and "300000" in err["message"], err
    ok = await a1.jcmd(".")
    assert ok["type"] == "ok" and ok["file"]["size"] == 999
    # Ended uploads hold nothing: the rest of the quota is free again.
    ok = await a3.jcmd("upload bob four.bin\n" + _data(30_000) + ".")
    assert ok["type"] == "ok", ok
    # A session that closes mid-upload frees its slot.
    await a1.send("upload bob five.bin\n" + _data(9))
    await a1.close()
    for _ in range(100):  # until the server has seen it go
        if len(server.daemon.chat.accounts["alice"].sessions) == 2:
            break
        await asyncio.sleep(0.01)
    await a2.send("upload bob six.bin\n" + _data(9))
    seven = await a3.jcmd("upload bob seven.bin\n" + _data(9) + ".")
    assert seven["type"] == "ok", seven
    assert (await a2.jcmd("."))["type"] == "ok"


async def test_an_upload_whose_data_stops_is_dropped_with_its_temp_file(
    start_server: StartServer,
) -> None:
    server = await start_server(limits__upload_idle_s=0.3, limits__max_uploads_per_user=1)
    await server.login("bob")
    idle = await _json(server, "alice")
    tmp = server.data_dir / "files" / "tmp"
    await idle.send("upload bob stalled.bin\n" + _data(300_000))  # and then nothing
    for _ in range(100):
        if any(tmp.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert len(list(tmp.iterdir())) == 1  # its temporary file
    notice = await idle.obj(timeout=5)  # after 0.3 s without data
    assert notice["event"] == "upload-timeout", notice
    assert await idle.closed()
    for _ in range(100):
        if not any(tmp.iterdir()):
            break
        await asyncio.sleep(0.01)
    assert list(tmp.iterdir()) == []  # deleted
    # Its slot and quota are free: the same user uploads again at once.
    other = await _json(server, "alice")
    ok = await other.jcmd("upload bob next.bin\n" + _data(999) + ".")
    assert ok["type"] == "ok", ok


async def test_an_upload_that_keeps_coming_slowly_is_not_dropped(
    start_server: StartServer,
) -> None:
    server = await start_server(limits__upload_idle_s=0.3)
    await server.login("bob")
    slow = await _json(server, "alice")
    await slow.send("upload bob slow.bin\n")
    line = base64.b64encode(b"x" * 300).decode() + "\n"
    for _ in range(6):  # 0.6 s in all, never 0.3 s without a line
        await slow.send(line)
        await asyncio.sleep(0.1)
    ok = await slow.jcmd(".")
    assert ok["type"] == "ok" and ok["file"]["size"] == 1800, ok
