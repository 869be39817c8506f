"""The client with stdin not a terminal: run_client.py as a subprocess against a real
daemon (exit codes, output), a stand-in for the file commands still being built, and
a TLS proxy in front of the daemon for --tls/--cafile."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import ssl
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from tests.helpers.server import ROOT, Server, free_port

WAIT_S = 20.0  # a guard against hanging, not a measured quantity


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def chat(port: int, *args: str, stdin: str = "", cwd: Path | None = None, **env: str) -> Run:
    """run_client.py with stdin from a pipe; no controlling tty (new session), so it can
    never stop to ask for a password."""
    environ = {k: v for k, v in os.environ.items() if k not in ("CHATD_PASSWORD", "NO_COLOR")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run_client.py"),
        "--port",
        str(port),
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=environ | env,
        cwd=cwd,
        start_new_session=True,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), WAIT_S)
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


async def test_a_piped_line_posts_to_general_and_exits_0(server: Server) -> None:
    bob = await server.login("bob")
    run = await chat(server.port, "--user", "alice", stdin="hello\n")
    assert run.code == 0, run
    assert "<alice> hello" in await bob.line()
    assert "#general <alice> hello" in run.out  # echoed with its id
    assert "[1]" in run.out


async def test_an_err_makes_exit_1_and_later_lines_still_run(server: Server) -> None:
    """Also the commands other issues are still building: whatever the server answers
    (not available yet, or no such message/chat), it is shown and the session stays in
    step (an upload the server refuses must not leave its data lines misread)."""
    bob = await server.login("bob")
    script = "\n".join(
        [
            "/msg nobody hi",
            "/nonsense",
            "/upload small.txt #nope",
            "/comment 999999 nice",
            "/thread 999999",
            "/download 999999",
            "/who",
        ]
    )
    work = server.data_dir.parent / "work"
    work.mkdir()
    (work / "small.txt").write_bytes(os.urandom(300))  # several base64 lines
    run = await chat(server.port, "--user", "alice", stdin=script + "\n", cwd=work)
    assert run.code == 1, run
    assert "Traceback" not in run.err
    errors = [line for line in run.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 6, run.err
    assert "[no-such-user]" in errors[0]
    assert "unknown command /nonsense" in errors[1]
    assert "alice (1 session)" in run.out and "bob (1 session)" in run.out
    await bob.close()


async def test_command_option_runs_one_protocol_command(server: Server) -> None:
    bob = await server.login("bob")
    run = await chat(server.port, "--user", "alice", "--command", "send bob hi")
    assert run.code == 0, run
    assert "@alice <alice> hi" in await bob.line()
    assert "@bob <alice> hi" in run.out
    run = await chat(server.port, "--user", "alice", "--command", "/status")
    assert run.code == 0 and "you are alice" in run.out


async def test_replayed_messages_are_marked(server: Server) -> None:
    alice = await server.login("alice")
    await alice.close()
    bob = await server.login("bob")
    assert (await bob.cmd("send alice while you were out")).startswith("OK sent")
    run = await chat(server.port, "--user", "alice", stdin="")
    assert run.code == 0, run
    assert "logged in as alice; 1 unread message:" in run.out
    replayed = [line for line in run.out.splitlines() if "while you were out" in line]
    assert len(replayed) == 1 and replayed[0].startswith("[unread] ")


async def test_passwords_come_from_the_environment_in_scripts(server: Server) -> None:
    c = await server.connect()
    assert (await c.cmd("login alice s3cret")).startswith("OK welcome")
    await c.close()
    run = await chat(server.port, "--user", "alice", "--command", "ping")
    assert run.code == 2 and "[bad-password]" in run.err, run
    assert len(run.err.strip().splitlines()) == 1
    run = await chat(server.port, "--user", "alice", "--command", "ping", CHATD_PASSWORD="s3cret")
    assert run.code == 0, run


async def test_connection_problems_are_one_line_and_exit_2(tmp_path: Path) -> None:
    run = await chat(free_port(), "--user", "alice", stdin="hello\n")
    assert run.code == 2
    assert run.err.strip().splitlines() == [run.err.strip()]
    assert "cannot connect" in run.err and "connection refused" in run.err
    run = await chat(free_port(), stdin="hello\n")  # no --user, no terminal to ask on
    assert run.code == 2 and "--user" in run.err


async def test_a_file_round_trip_through_the_daemon(server: Server, tmp_path: Path) -> None:
    bob = await server.login("bob")
    data = os.urandom(5000)
    (tmp_path / "notes.bin").write_bytes(data)
    script = "/upload notes.bin\n/download 1 copy.bin\n"
    run = await chat(server.port, "--user", "alice", stdin=script, cwd=tmp_path)
    assert run.code == 0, run
    assert "<alice> [file 1 notes.bin 5000 bytes]" in await bob.line()
    assert "#general <alice> [file 1: notes.bin, 4.9 KiB]" in run.out
    assert (tmp_path / "copy.bin").read_bytes() == data
    assert "saved file 1 (4.9 KiB)" in run.out


# Files, against a stand-in that speaks the contract's upload and download ---------------


class FileServer:
    """Just enough JSON-mode chatd for files, worded as PROTOCOL.md words them. File 11
    is served damaged, to see the client refuse it."""

    def __init__(self) -> None:
        self.files: dict[int, tuple[str, bytes]] = {}
        self.uploads: list[tuple[str, str]] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        def send(obj: dict[str, object]) -> None:
            writer.write(json.dumps(obj).encode() + b"\n")

        writer.write(b"* fake chatd ready\n")
        while raw := await reader.readline():
            verb, _, rest = raw.decode().rstrip("\n").partition(" ")
            if verb == "mode":
                send({"type": "ok", "cmd": "mode", "mode": "json"})
            elif verb == "login":
                send({"type": "ok", "cmd": "login", "user": rest, "new": True, "unread": 0})
            elif verb == "upload":
                target, name = rest.split()
                chunks = []
                while (line := (await reader.readline()).decode().rstrip("\n")) != ".":
                    chunks.append(line)
                data = base64.b64decode("".join(chunks))
                fid = 10 + len(self.files)
                self.files[fid] = (name, data)
                self.uploads.append((target, name))
                send(
                    {"type": "ok", "cmd": "upload", "id": 100 + fid, "file": _info(fid, name, data)}
                )
            elif verb == "download":
                fid = int(rest)
                name, data = self.files[fid]
                payload = data[::-1] if fid == 11 else data
                b64 = base64.b64encode(payload).decode()
                send({"type": "ok", "cmd": "download", "file": _info(fid, name, data), "data": b64})
            elif verb in ("ping", "quit"):
                send({"type": "ok", "cmd": verb})
                if verb == "quit":
                    break
            else:
                send({"type": "error", "cmd": verb, "code": "unknown-command", "message": "?"})
            await writer.drain()
        writer.close()


def _info(fid: int, name: str, data: bytes) -> dict[str, object]:
    return {"id": fid, "name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@pytest.fixture
async def file_server() -> AsyncIterator[tuple[FileServer, int]]:
    fs = FileServer()
    srv = await asyncio.start_server(fs.serve, "127.0.0.1", 0)
    yield fs, srv.sockets[0].getsockname()[1]
    srv.close()


async def test_upload_and_download_with_progress(
    file_server: tuple[FileServer, int], tmp_path: Path
) -> None:
    fs, port = file_server
    big = os.urandom(1_500_000)  # over 1 MB: progress is shown
    (tmp_path / "big file.bin").write_bytes(big)
    (tmp_path / "small.txt").write_bytes(b"tiny")
    (tmp_path / "out").mkdir()
    script = '/upload "big file.bin" bob\n/upload small.txt\n/download 10 out\n/download 10 out\n'
    run = await chat(port, "--user", "alice", stdin=script, cwd=tmp_path)
    assert run.code == 0, run
    assert fs.uploads == [("@bob", "big_file.bin"), ("#general", "small.txt")]
    assert fs.files[10][1] == big and fs.files[11][1] == b"tiny"
    assert "[file 10: big_file.bin, 1.4 MiB]" in run.out
    assert "uploading big_file.bin: 100%" in run.err
    assert "downloading file 10: 100% of" in run.err
    assert "uploading small.txt" not in run.err  # small files stay quiet
    assert (tmp_path / "out" / "big_file.bin").read_bytes() == big
    assert (tmp_path / "out" / "big_file (1).bin").read_bytes() == big  # never overwritten


async def test_a_damaged_download_is_refused(
    file_server: tuple[FileServer, int], tmp_path: Path
) -> None:
    fs, port = file_server
    fs.files[10] = ("a.txt", b"first")
    fs.files[11] = ("b.txt", b"second")
    run = await chat(port, "--user", "alice", stdin="/download 11\n", cwd=tmp_path)
    assert run.code == 1
    assert "checksum mismatch" in run.err
    assert not (tmp_path / "b.txt").exists()


# TLS, through a proxy that terminates it in front of the daemon ------------------------


@pytest.fixture
async def tls_proxy(server: Server, tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    ca = trustme.CA()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))

    async def pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        w.close()

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", server.port)
        except OSError:
            w.close()
            return
        await asyncio.gather(pipe(r, uw), pipe(ur, w))

    srv = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    yield srv.sockets[0].getsockname()[1], cafile
    srv.close()


async def test_tls_with_a_ca_file(tls_proxy: tuple[int, Path], server: Server) -> None:
    port, cafile = tls_proxy
    bob = await server.login("bob")
    run = await chat(port, "--user", "alice", "--tls", "--cafile", str(cafile), stdin="secure\n")
    assert run.code == 0, run
    assert "<alice> secure" in await bob.line()
    run = await chat(port, "--user", "alice", "--tls", stdin="x\n")  # the system CAs only
    assert run.code == 2
    assert "certificate not trusted" in run.err and "Traceback" not in run.err
