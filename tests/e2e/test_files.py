"""Files over real TCP: upload, download, storage, permissions, quota, expiry (issue 6)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path

import pytest

from chatd.core.outcome import Outcome
from tests.helpers.server import TIMEOUT, Client, Server, StartServer

MiB = 1024 * 1024
SLOW = 60.0  # seconds allowed for a 5 MiB transfer on a loaded machine (not asserted)


def b64_lines(data: bytes, width: int = 76) -> str:
    b64 = base64.b64encode(data).decode()
    return "".join(b64[i : i + width] + "\n" for i in range(0, len(b64), width))


async def upload(c: Client, target: str, name: str, data: bytes, width: int = 76) -> str:
    """Text mode: the whole upload as `nc` would send it; returns the one reply line."""
    await c.send(f"upload {target} {name}\n{b64_lines(data, width)}.\n")
    reply = await c.reply(SLOW)
    assert len(reply) == 1, reply
    return reply[0]


def file_id(ok_line: str) -> int:
    """`OK sent [<msg>] file <id> <name> <size> <sha256>` -> id."""
    words = ok_line.split()
    assert words[:2] == ["OK", "sent"] and words[3] == "file", ok_line
    return int(words[4])


async def download(c: Client, ident: int) -> tuple[str, bytes, list[str]]:
    """Text mode: (the OK or ERR line, the decoded data, the base64 lines)."""
    await c.send(f"download {ident}\n")
    head = await c.line(SLOW)
    if not head.startswith("OK"):
        return head, b"", []
    raw = await asyncio.wait_for(c.reader.readuntil(b".\n"), SLOW)  # `.` is not base64
    lines = raw[:-2].decode().splitlines()
    return head, base64.b64decode("".join(lines)), lines


def bodies(server: Server) -> list[Path]:
    root = server.data_dir / "files"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != "tmp")


def temps(server: Server) -> list[Path]:
    return sorted((server.data_dir / "files" / "tmp").iterdir())


async def file_thread(server: Server) -> None:
    """Waits until the file thread has done everything queued so far (it is FIFO)."""
    await asyncio.get_running_loop().run_in_executor(server.daemon.files.thread, lambda: None)


async def until(pred: object, what: str) -> None:
    """Polls a server-side condition that follows from something already sent."""
    assert callable(pred)
    for _ in range(int(TIMEOUT / 0.01)):
        if pred():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# Round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 5 * MiB])
async def test_round_trip_text_mode(server: Server, size: int) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    data = os.urandom(size)
    sha = hashlib.sha256(data).hexdigest()
    ok = await upload(alice, "bob", "cat.png", data)
    fid = file_id(ok)
    assert ok.split()[5:] == ["cat.png", str(size), sha]
    pushed = await bob.line()
    assert f"@alice <alice> [file {fid} cat.png {size} bytes]" in pushed
    assert pushed.endswith("bytes]")  # the text (the file name) is not repeated
    head, got, lines = await download(bob, fid)
    assert head == f"OK file {fid} cat.png {size} {sha}"
    assert got == data and hashlib.sha256(got).hexdigest() == sha
    assert all(0 < len(line) <= 76 for line in lines)
    assert await bob.cmd("ping") == "OK pong"
    assert len(bodies(server)) == 1 and temps(server) == []


async def test_one_byte_over_five_mib_is_too_large(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    reply = await upload(alice, "bob", "big.bin", os.urandom(5 * MiB + 1))
    assert reply.startswith("ERR too-large ")
    assert await alice.cmd("ping") == "OK pong"  # the connection stays usable
    assert await bob.silent()
    await file_thread(server)
    assert bodies(server) == [] and temps(server) == []


async def test_json_mode_round_trip_and_the_senders_other_session(server: Server) -> None:
    alice = await server.login("alice", mode="json")
    alice2 = await server.login("alice")
    bob = await server.login("bob", mode="json")
    data = os.urandom(70_000)
    sha = hashlib.sha256(data).hexdigest()
    await alice.send(f"upload @bob report.pdf\n{b64_lines(data, 1000)}.\n")
    ok = await alice.obj(SLOW)
    assert ok["type"] == "ok" and ok["cmd"] == "upload"
    f = ok["file"]
    assert f == {"id": f["id"], "name": "report.pdf", "size": len(data), "sha256": sha}
    assert isinstance(ok["id"], int) and ok["ts"].endswith("Z")
    msg = await bob.obj()
    assert msg["type"] == "message" and msg["id"] == ok["id"] and msg["file"] == f
    assert msg["chat"] == "@alice" and msg["text"] == "report.pdf"
    assert f"[file {f['id']} report.pdf {len(data)} bytes]" in await alice2.line()
    got = await bob.jcmd(f"download {f['id']}")
    assert got["type"] == "ok" and got["cmd"] == "download" and got["file"] == f
    assert base64.b64decode(got["data"]) == data


async def test_pipelined_like_nc_to_general(server: Server) -> None:
    """`(echo login carol; echo upload #general x; base64 x; echo .; echo ping) | nc`"""
    alice = await server.login("alice")
    carol = await server.connect()
    data = os.urandom(3000)
    await carol.send(f"login carol\nupload #general hello.txt\n{b64_lines(data)}.\nping\n")
    assert (await carol.line()).startswith("OK welcome carol")
    sent = await carol.line()
    assert sent.startswith("OK sent [") and " hello.txt 3000 " in sent
    assert await carol.line() == "OK pong"
    pushed = await alice.line()
    assert "#general <carol> [file " in pushed and "hello.txt 3000 bytes]" in pushed


async def test_lines_of_any_length_up_to_the_line_limit(server: Server) -> None:
    alice = await server.login("alice")
    data = os.urandom(20_000)
    for width in (1, 5, 1001, 4096):
        ok = await upload(alice, "alice", f"w{width}.bin", data, width=width)
        _, got, _ = await download(alice, file_id(ok))
        assert got == data, width
    reply = await upload(alice, "alice", "long.bin", data, width=4097)
    assert reply.startswith("ERR line-too-long ")
    assert await alice.cmd("ping") == "OK pong"


# Storage ---------------------------------------------------------------------------------


async def test_the_same_file_twice_is_stored_once(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    data = os.urandom(100_000)
    first = file_id(await upload(alice, "bob", "a.bin", data))
    second = file_id(await upload(alice, "#general", "b.bin", data))
    assert first != second
    assert "a.bin" in await bob.line() and "b.bin" in await bob.line()
    sha = hashlib.sha256(data).hexdigest()
    assert [p.name for p in bodies(server)] == [sha]
    assert bodies(server)[0].read_bytes() == data
    for ident, name in ((first, "a.bin"), (second, "b.bin")):
        head, got, _ = await download(bob, ident)
        assert head.split()[3] == name and got == data


async def test_file_names_are_sanitised_and_never_paths(server: Server) -> None:
    alice = await server.login("alice")
    ok = await upload(alice, "alice", "../../etc/passwd", b"root:x:0:0")
    assert ok.split()[5] == "passwd"
    assert not (server.data_dir.parent / "etc").exists()
    assert [p.name for p in bodies(server)] == [hashlib.sha256(b"root:x:0:0").hexdigest()]


async def test_a_cut_off_upload_leaves_nothing_behind(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    data = b64_lines(os.urandom(2 * MiB))
    await alice.send("upload bob half.bin\n" + data[: len(data) // 2])
    await until(lambda: temps(server), "the temp file")  # it was being written
    await alice.close()
    await until(lambda: server.daemon.connections == 2 - 1, "the server to see the close")
    await file_thread(server)
    assert temps(server) == [] and bodies(server) == []
    assert await bob.silent()
    assert server.daemon.chat.files.by_id == {}


async def test_bad_base64_is_bad_args_and_the_connection_stays_usable(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    good = b64_lines(os.urandom(600_000))
    await alice.send(f"upload bob x.bin\n{good}not*base64\n{good}.\nping\n")
    reply = await alice.reply(SLOW)
    assert len(reply) == 1 and reply[0].startswith("ERR bad-args ")
    assert await alice.line() == "OK pong"
    await file_thread(server)
    assert temps(server) == [] and bodies(server) == []
    assert await bob.silent()


async def test_restart_keeps_files_and_sweeps_leftovers(server: Server) -> None:
    alice = await server.login("alice")
    data = os.urandom(5000)
    fid = file_id(await upload(alice, "alice", "keep.bin", data))
    stray_sha = "ab" * 32
    (server.data_dir / "files" / "ab").mkdir(exist_ok=True)
    (server.data_dir / "files" / "ab" / stray_sha).write_bytes(b"nobody's")
    (server.data_dir / "files" / "tmp" / "dead.tmp").write_bytes(b"half")
    await alice.close()
    server = await server.restart()
    assert temps(server) == []
    assert [p.name for p in bodies(server)] == [hashlib.sha256(data).hexdigest()]
    alice = await server.login("alice")
    _, got, _ = await download(alice, fid)
    assert got == data


# Who may ------------------------------------------------------------------------------


async def test_only_those_who_can_see_the_message_can_download(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    carol = await server.login("carol")
    data = os.urandom(1000)
    fid = file_id(await upload(alice, "bob", "secret.txt", data))
    await bob.line()
    assert (await download(carol, fid))[0].startswith("ERR no-such-message ")
    assert (await download(carol, 999_999))[0].startswith("ERR no-such-message ")
    assert (await download(alice, fid))[1] == data  # the sender can
    assert (await download(bob, fid))[1] == data
    assert await carol.cmd("ping") == "OK pong"


async def test_rooms_members_only(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    carol = await server.login("carol")
    assert (await alice.cmd("room create team")).startswith("OK")
    assert (await alice.cmd("room invite #team bob")).startswith("OK")
    await bob.until(lambda line: "team" in line)  # the invitation notice
    data = os.urandom(2000)
    fid = file_id(await upload(alice, "#team", "plan.txt", data))
    assert f"#team <alice> [file {fid} plan.txt 2000 bytes]" in await bob.line()
    assert (await download(bob, fid))[1] == data
    assert (await download(carol, fid))[0].startswith("ERR no-such-message ")
    reply = await upload(carol, "#team", "spam.txt", data)
    assert reply.startswith("ERR not-a-member ")
    assert (await upload(carol, "#nosuch", "x.txt", data)).startswith("ERR no-such-chat ")
    assert (await upload(carol, "nobody", "x.txt", data)).startswith("ERR no-such-user ")
    assert await carol.cmd("ping") == "OK pong"
    assert await bob.silent()


async def test_a_refused_upload_line_still_consumes_its_data(server: Server) -> None:
    c = await server.connect()
    data = b64_lines(os.urandom(2000))
    await c.send(f"upload bob x.bin\n{data}.\nping\n")
    assert (await c.line()).startswith("ERR not-logged-in ")
    assert await c.line() == "OK pong"  # no ERR per data line
    assert (await c.cmd("login alice")).startswith("OK welcome")
    await c.send(f"upload bob\n{data}.\nping\n")  # no file name: bad-args, after the `.`
    assert (await c.line()).startswith("ERR bad-args usage: upload <target> <filename>")
    assert await c.line() == "OK pong"
    assert await c.silent()


async def test_sending_rules_ban_and_rate_limit(start_server: StartServer) -> None:
    server = await start_server(moderation__strikes_to_ban=1, limits__general_messages_per_window=1)
    alice = await server.login("alice")
    bob = await server.login("bob")
    assert (await alice.cmd("send_all hi")).startswith("OK sent")
    reply = await upload(alice, "#general", "x.bin", b"x")
    assert reply.startswith("ERR rate-limited ") and "retry in" in reply
    assert (await upload(alice, "bob", "x.bin", b"x")).startswith("OK sent")  # private: fine
    assert "x.bin" in await bob.until(lambda line: "[file " in line)
    assert (await bob.cmd("ban alice")).startswith("OK")
    await alice.until(lambda line: line.startswith("* you are banned"))
    assert (await upload(alice, "bob", "y.bin", b"y")).startswith("ERR banned ")


async def test_the_rules_are_checked_again_when_the_data_ends(start_server: StartServer) -> None:
    server = await start_server(moderation__strikes_to_ban=1)
    alice = await server.login("alice")
    bob = await server.login("bob")
    data = os.urandom(400_000)
    lines = b64_lines(data)
    await alice.send("upload bob x.bin\n" + lines)  # accepted: alice is not banned yet
    assert (await bob.cmd("ban alice")).startswith("OK")
    await alice.until(lambda line: "banned" in line)  # the ban notice
    await alice.send(".\n")
    assert (await alice.line(SLOW)).startswith("ERR banned ")
    await file_thread(server)
    assert bodies(server) == [] and temps(server) == []  # stored, refused, removed


# Quota and expiry ----------------------------------------------------------------------


async def test_quota(start_server: StartServer) -> None:
    server = await start_server(files__max_bytes=2000, files__quota_bytes=3000)
    alice = await server.login("alice")
    first = await upload(alice, "alice", "a", os.urandom(2000))
    assert first.startswith("OK sent")
    assert (await upload(alice, "alice", "b", os.urandom(2001))).startswith("ERR too-large ")
    over = await upload(alice, "alice", "c", os.urandom(1001))
    assert over.startswith("ERR too-large ") and "3000" in over  # the quota's message
    assert (await upload(alice, "alice", "d", os.urandom(1000))).startswith("OK sent")
    assert (await upload(alice, "alice", "e", b"1")).startswith("ERR too-large ")
    bob = await server.login("bob")
    assert (await upload(bob, "alice", "f", os.urandom(2000))).startswith("OK sent")
    assert "[file " in await alice.line()  # bob's own quota: not alice's
    # Expiry gives the space back.
    chat = server.daemon.chat
    out = Outcome()
    chat.files.forget([chat.files.by_id[file_id(first)].message_id], out)
    server.daemon.hub.apply(None, out)
    assert (await upload(alice, "alice", "g", os.urandom(2000))).startswith("OK sent")


async def test_expiry_with_the_message_removes_the_body(start_server: StartServer) -> None:
    server = await start_server(retention__delivered_ttl_s=10, retention__sweep_interval_s=1)
    alice = await server.login("alice")
    bob = await server.login("bob")
    data = os.urandom(3000)
    fid = file_id(await upload(alice, "bob", "gone.bin", data))
    await bob.line()
    assert len(bodies(server)) == 1
    server.clock.advance(2)
    server.daemon.tick()  # delivered to both: noted
    server.clock.advance(11)
    server.daemon.tick()  # 10 s later: the message goes, and its file
    await file_thread(server)
    assert bodies(server) == []
    assert fid not in server.daemon.chat.files.by_id
    assert (await download(bob, fid))[0].startswith("ERR no-such-message ")


async def test_the_last_reference_removes_a_shared_body(server: Server) -> None:
    """Through what retention calls (`FileIndex.forget`), one message at a time."""
    alice = await server.login("alice")
    data = os.urandom(3000)
    ids = [file_id(await upload(alice, "alice", n, data)) for n in ("one", "two")]
    chat, files = server.daemon.chat, server.daemon.files
    mids = [chat.files.by_id[i].message_id for i in ids]
    out = Outcome()
    chat.files.forget([mids[0]], out)
    server.daemon.hub.apply(None, out)
    files.collect()
    await file_thread(server)
    assert len(bodies(server)) == 1  # still named by the second
    assert (await download(alice, ids[1]))[1] == data
    out = Outcome()
    chat.files.forget([mids[1], 12345], out)
    server.daemon.hub.apply(None, out)
    files.collect()
    await file_thread(server)
    assert bodies(server) == []
    assert chat.files.bytes_of == {}


async def test_a_download_bigger_than_the_send_buffer_is_not_a_slow_consumer(
    start_server: StartServer,
) -> None:
    """The reply is written at once while the client is not reading yet; the server
    holds most of it, far more than `send_buffer_bytes`, and must not drop the session."""
    server = await start_server(limits__send_buffer_bytes=65536)
    alice = await server.login("alice")
    data = os.urandom(5 * MiB)  # 7 MB of base64: more than the kernel's buffers take
    fid = file_id(await upload(alice, "alice", "big.bin", data))
    peer = server.daemon.chat.accounts["alice"].sessions[0]
    transport = getattr(peer, "transport", None)
    assert transport is not None
    reading = alice.writer.transport
    assert isinstance(reading, asyncio.ReadTransport)
    reading.pause_reading()  # a client that is not reading yet
    await alice.send(f"download {fid}\nping\n")
    await until(lambda: transport.get_write_buffer_size() > 65536, "the reply to be buffered")
    reading.resume_reading()
    head = await alice.line()
    assert head.startswith(f"OK file {fid} big.bin {5 * MiB} ")
    raw = await asyncio.wait_for(alice.reader.readuntil(b".\n"), SLOW)
    assert base64.b64decode(b"".join(raw[:-2].split())) == data
    assert await alice.line() == "OK pong"


# The event loop stays free -------------------------------------------------------------


async def test_others_chat_while_a_big_upload_is_in_progress(server: Server) -> None:
    alice = await server.login("alice")
    bob = await server.login("bob")
    carol = await server.login("carol")
    payload = f"upload carol big.bin\n{b64_lines(os.urandom(5 * MiB))}.\n"

    async def upload_all() -> str:
        await alice.send(payload)
        return await alice.line(SLOW)

    uploading = asyncio.ensure_future(upload_all())
    await asyncio.sleep(0)  # the upload's first bytes are on their way
    assert (await bob.cmd("send carol are you there?")).startswith("OK sent")
    line = await carol.line()
    assert "<bob> are you there?" in line
    assert not uploading.done()  # bob's message went through first
    assert (await uploading).startswith("OK sent")
    assert "[file " in await carol.line()
