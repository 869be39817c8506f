"""Clients that half-close after their last command (`nc -N`, `nc -q`, scripts): every
command still gets its reply, then the server closes."""

from __future__ import annotations

import asyncio
import shutil
import socket

import pytest

from tests.helpers.server import Server


async def run(*argv: str, stdin: bytes, timeout: float = 10) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(stdin), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


@pytest.mark.parametrize("flags", [["-N"], ["-q", "1"]])
async def test_nc_pipeline_prints_every_reply(server: Server, flags: list[str]) -> None:
    if shutil.which("nc") is None:
        pytest.skip("needs nc (netcat-openbsd)")
    script = b"login zed\nsend_all hi\nwho\n"
    rc, out = await run("nc", *flags, "127.0.0.1", str(server.port), stdin=script)
    lines = out.splitlines()
    assert rc == 0
    assert lines[0].startswith("* chatd ")
    assert lines[1] == "OK welcome zed (new account), 0 unread"
    assert lines[2].startswith("OK sent [")
    assert lines[3:] == ["  zed (1 session)", "OK 1 user online"]


async def test_half_close_answers_slow_commands_too(server: Server) -> None:
    # A password login is hashed off the loop; the commands after it wait for it, and
    # the close waits for all of them.
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"login amy secret\nsend_all one\nsend_all two\nping\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)  # read() returns at the server's EOF
    lines = data.decode().splitlines()
    assert lines[1].startswith("OK welcome amy")
    assert [line[:7] for line in lines[2:4]] == ["OK sent", "OK sent"]
    assert lines[4:] == ["OK pong"]
    watcher = await server.login("bob")
    assert await watcher.cmd("history #general") == "OK 2 messages in #general"


async def test_an_unterminated_last_line_is_not_a_command(server: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"login cut\nsend_all half a mess")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    assert data.decode().splitlines()[1:] == ["OK welcome cut (new account), 0 unread"]
    watcher = await server.login("bob")
    assert await watcher.cmd("history #general") == "OK 0 messages in #general"


async def test_a_half_closed_upload_is_dropped_and_the_session_closes(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"login upl\nupload #general a.txt\naGVsbG8=\n")  # no `.`
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    assert data.decode().splitlines()[1:] == ["OK welcome upl (new account), 0 unread"]
    files = server.daemon.files
    await asyncio.get_running_loop().run_in_executor(files.thread, lambda: None)  # in order
    assert files.blobs.sweep_orphans(lambda sha: True) == (0, 0)  # no temp file was left


async def test_quit_then_eof_still_answers_everything(server: Server) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"login zed\nsend_all hi\nquit\n")
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), 10)
    lines = data.decode().splitlines()
    assert lines[1:3] == ["OK welcome zed (new account), 0 unread", "OK sent [1]"]
    assert lines[3:] == ["OK bye"]
