"""journald output (issue 18): under systemd each event goes to the journal in its native
protocol at its own priority with searchable CHATD_* fields; elsewhere JSON lines (or the
console on a terminal). The encoder is a pure function; the selection and the sending
are checked against a real datagram socket standing in for journald's."""

from __future__ import annotations

import enum
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from chatd import cli, logs
from tests.helpers.journald import FakeJournald, as_dict, decode_native


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    yield
    logs.configure("warning", "console")  # as tests/conftest.py set it


@pytest.fixture
def journald(tmp_path: Path) -> Iterator[FakeJournald]:
    j = FakeJournald(tmp_path / "journal.socket")
    yield j
    j.close()


@pytest.fixture
def out(tmp_path: Path) -> Iterator[TextIO]:
    with open(tmp_path / "stdout", "w+", encoding="utf-8") as f:
        yield f


def stream_id(f: TextIO) -> str:
    st = os.fstat(f.fileno())
    return f"{st.st_dev}:{st.st_ino}"


# -- the encoder, a pure function ---------------------------------------------------------


def test_encode_plain_fields() -> None:
    data = logs.encode_native([("MESSAGE", "hi there"), ("PRIORITY", "4"), ("X", b"\xff")])
    assert data == b"MESSAGE=hi there\nPRIORITY=4\nX=\xff\n"


def test_encode_binary_safe_form_for_a_newline() -> None:
    value = "Traceback\n  line 1\nError: é"
    data = logs.encode_native([("A", "1"), ("CHATD_EXCEPTION", value), ("B", "2")])
    raw = value.encode()
    assert data == (b"A=1\nCHATD_EXCEPTION\n" + struct.pack("<Q", len(raw)) + raw + b"\nB=2\n")
    assert decode_native(data) == [("A", b"1"), ("CHATD_EXCEPTION", raw), ("B", b"2")]


def test_encode_round_trips_awkward_values() -> None:
    values = ["", "=", "a=b", "\n", "x\n", "\n\n\n", "tab\there", "é" * 100, "end\n="]
    data = logs.encode_native([(f"K{i}", v) for i, v in enumerate(values)])
    assert decode_native(data) == [(f"K{i}", v.encode()) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("user", "CHATD_USER"),
        ("retry_after", "CHATD_RETRY_AFTER"),
        ("peer-addr", "CHATD_PEER_ADDR"),
        ("_secret", "CHATD__SECRET"),
        ("9lives", "CHATD_9LIVES"),
        ("ünïcode", "CHATD__N_CODE"),
        ("x" * 100, "CHATD_" + "X" * 58),
    ],
)
def test_field_names_are_valid_journal_fields(key: str, name: str) -> None:
    got = logs.journal_field_name(key)
    assert got == name
    assert len(got) <= 64 and got[0].isalpha()
    assert all(c.isupper() or c.isdigit() or c == "_" for c in got)


@pytest.mark.parametrize(
    ("level", "priority"),
    [("debug", "7"), ("info", "6"), ("warning", "4"), ("error", "3"), ("critical", "2")],
)
def test_priority_follows_the_level(level: str, priority: str) -> None:
    fields = dict(logs.journal_fields({"event": "x", "level": level}, "{}"))
    assert fields["PRIORITY"] == priority


def test_entry_fields() -> None:
    event = {
        "event": "user.banned",
        "level": "warning",
        "timestamp": "2026-11-29T00:00:00Z",
        "user": "bob",
        "by": ["r1", "r2"],
        "count": 3,
        "ok": True,
        "reason": None,
    }
    fields = logs.journal_fields(event, '{"event":"user.banned"}')
    assert fields == [
        ("MESSAGE", '{"event":"user.banned"}'),
        ("PRIORITY", "4"),
        ("SYSLOG_IDENTIFIER", "chatd"),
        ("CHATD_EVENT", "user.banned"),
        ("CHATD_USER", "bob"),
        ("CHATD_BY", '["r1","r2"]'),
        ("CHATD_COUNT", "3"),
        ("CHATD_OK", "true"),
        ("CHATD_REASON", "null"),
    ]


def test_a_str_enum_is_stored_as_its_value() -> None:
    class Code(enum.StrEnum):
        BANNED = "banned"

    fields = dict(logs.journal_fields({"event": "command.failed", "code": Code.BANNED}, "{}"))
    assert fields["CHATD_CODE"] == "banned"


# -- which output: journal, JSON lines or console ----------------------------------------


def test_journal_when_journal_stream_is_this_stream(out: TextIO) -> None:
    assert logs.output_kind("auto", out, {"JOURNAL_STREAM": stream_id(out)}) == "journal"


def test_json_when_journal_stream_names_another_file(out: TextIO, tmp_path: Path) -> None:
    # e.g. a child whose stdout was redirected inherits the variable, not the stream
    with open(tmp_path / "other", "w") as other:
        env = {"JOURNAL_STREAM": stream_id(other)}
    assert logs.output_kind("auto", out, env) == "json"


@pytest.mark.parametrize("value", ["", "1:2:3", "abc", "12", ":"])
def test_json_without_a_usable_journal_stream(out: TextIO, value: str) -> None:
    assert logs.output_kind("auto", out, {"JOURNAL_STREAM": value}) == "json"
    assert logs.output_kind("auto", out, {}) == "json"


def test_explicit_formats_win(out: TextIO) -> None:
    env = {"JOURNAL_STREAM": stream_id(out)}
    assert logs.output_kind("json", out, env) == "json"
    assert logs.output_kind("console", out, env) == "console"


def test_console_on_a_terminal() -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", closefd=False) as tty:
            assert logs.output_kind("auto", tty, {}) == "console"
    finally:
        os.close(master)
        os.close(slave)


# -- sending --------------------------------------------------------------------------------


def test_events_reach_the_journal_with_priority_and_fields(
    journald: FakeJournald, out: TextIO
) -> None:
    logs.configure(
        "info",
        "auto",
        stream=out,
        environ={"JOURNAL_STREAM": stream_id(out)},
        journal_socket=str(journald.path),
    )
    log = logs.get_logger("chatd.test")
    log.warning("user.banned", user="bob", by=["r1", "r2", "r3"])
    log.info("message.sent", user="alice", id=7)
    log.debug("hidden")  # below the level: nothing sent
    banned = as_dict(journald.receive())
    assert banned["PRIORITY"] == "4"
    assert banned["CHATD_EVENT"] == "user.banned"
    assert banned["CHATD_USER"] == "bob"
    assert banned["CHATD_BY"] == '["r1","r2","r3"]'
    assert banned["SYSLOG_IDENTIFIER"] == "chatd"
    line = json.loads(banned["MESSAGE"])  # the same JSON line as outside the journal
    assert line["event"] == "user.banned" and line["level"] == "warning"
    assert line["user"] == "bob" and "timestamp" in line
    sent = as_dict(journald.receive())
    assert (sent["PRIORITY"], sent["CHATD_ID"]) == ("6", "7")
    assert not journald.pending()
    out.seek(0)
    assert out.read() == ""  # nothing doubled on stdout


def test_an_exception_keeps_its_traceback_in_one_field(journald: FakeJournald, out: TextIO) -> None:
    logs.configure(
        "info",
        "auto",
        stream=out,
        environ={"JOURNAL_STREAM": stream_id(out)},
        journal_socket=str(journald.path),
    )
    try:
        raise RuntimeError("disk on fire")
    except RuntimeError:
        logs.get_logger("chatd.test").exception("timer.failed", timer="tick")
    entry = as_dict(journald.receive())
    assert entry["PRIORITY"] == "3"
    assert entry["CHATD_TIMER"] == "tick"
    tb = entry["CHATD_EXCEPTION"]
    assert tb.startswith("Traceback") and "RuntimeError: disk on fire" in tb
    assert tb.count("\n") >= 2


def test_without_the_journal_socket_json_lines_go_to_the_stream(
    tmp_path: Path, out: TextIO
) -> None:
    logs.configure(
        "info",
        "auto",
        stream=out,
        environ={"JOURNAL_STREAM": stream_id(out)},
        journal_socket=str(tmp_path / "missing.socket"),
    )
    logs.get_logger("chatd.test").error("config.reload_failed", error="bad")
    out.seek(0)
    line = json.loads(out.read())
    assert line["event"] == "config.reload_failed" and line["level"] == "error"


def test_json_lines_when_stdout_is_not_the_journal(journald: FakeJournald, out: TextIO) -> None:
    logs.configure("info", "auto", stream=out, environ={}, journal_socket=str(journald.path))
    logs.get_logger("chatd.test").warning("user.banned", user="bob")
    out.seek(0)
    assert json.loads(out.read())["user"] == "bob"
    assert not journald.pending()


def test_an_entry_too_big_for_a_datagram_goes_as_a_sealed_memfd(
    journald: FakeJournald, out: TextIO
) -> None:
    journal = logs.JournalLogger(str(journald.path), out, sndbuf=4096)
    datagram = logs.encode_native([("MESSAGE", "x" * 200_000), ("PRIORITY", "6")])
    journal.send(datagram, "the line")
    msg, fds, _, _ = socket.recv_fds(journald.sock, 1024, 4)
    try:
        assert msg == b"" and len(fds) == 1
        seals = fcntl.fcntl(fds[0], fcntl.F_GET_SEALS)
        for seal in (fcntl.F_SEAL_SHRINK, fcntl.F_SEAL_GROW, fcntl.F_SEAL_WRITE):
            assert seals & seal  # journald refuses an unsealed memfd
        assert os.pread(fds[0], len(datagram) + 1, 0) == datagram
    finally:
        for fd in fds:
            os.close(fd)
    out.seek(0)
    assert out.read() == ""
    journal.close()


def test_journald_gone_falls_back_to_the_stream(journald: FakeJournald, out: TextIO) -> None:
    journal = logs.JournalLogger(str(journald.path), out)
    journald.close()  # journald restarting: nobody at the address
    journal.send(b"MESSAGE=x\n", '{"event":"x"}')
    out.seek(0)
    assert out.read() == '{"event":"x"}\n'
    journal.close()


def test_reconnects_when_journald_restarts(tmp_path: Path, out: TextIO) -> None:
    path = tmp_path / "restarting.socket"
    first = FakeJournald(path)
    journal = logs.JournalLogger(str(path), out)
    journal.send(b"MESSAGE=one\n", "one")
    assert first.receive() == b"MESSAGE=one\n"
    first.close()
    second = FakeJournald(path)  # a new socket at the same path
    try:
        journal.send(b"MESSAGE=two\n", "two")
        assert second.receive() == b"MESSAGE=two\n"
        out.seek(0)
        assert out.read() == ""
    finally:
        second.close()
        journal.close()


# -- lines written before logging is set up ----------------------------------------------


def test_bad_config_line_gets_the_err_prefix_only_on_the_journal(
    out: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", stream_id(out))
    assert logs.syslog_prefixed("chatd: bad config: x", stream=out) == "<3>chatd: bad config: x"
    assert logs.syslog_prefixed("a\nb", "warning", stream=out) == "<4>a\n<4>b"
    monkeypatch.setenv("JOURNAL_STREAM", "0:0")
    assert logs.syslog_prefixed("chatd: bad config: x", stream=out) == "chatd: bad config: x"


def test_check_config_on_the_journal_writes_at_err(tmp_path: Path) -> None:
    # A real child whose stderr is "the journal": a file JOURNAL_STREAM names.
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nprot = 1\n")
    err_path = tmp_path / "stderr"
    with open(err_path, "w") as err:
        st = os.fstat(err.fileno())
        env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        code = subprocess.run(
            [sys.executable, "-m", "chatd", "check-config", str(bad)],
            stderr=err,
            stdout=subprocess.DEVNULL,
            env=env,
            timeout=30,
            check=False,
        ).returncode
    assert code == 2
    assert err_path.read_text().startswith("<3>chatd: bad config: ")
    assert "server.prot" in err_path.read_text()


# -- chatd reload: the unit's ExecReload= without /bin/kill ------------------------------


@pytest.mark.parametrize("via_env", [False, True])
def test_reload_sends_sighup_to_the_pid(via_env: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGHUP})\n"
            "print('ready', flush=True)\n"
            "print(signal.sigwait({signal.SIGHUP}).name, flush=True)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"
        if via_env:  # ExecReload= as systemd runs it: $MAINPID in the environment
            monkeypatch.setenv("MAINPID", str(child.pid))
            assert cli.main(["reload"]) == 0
        else:
            assert cli.main(["reload", str(child.pid)]) == 0
        out, _ = child.communicate(timeout=10)
        assert out == "SIGHUP\n"
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            child.wait()


def test_reload_without_a_pid_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAINPID", "")  # the service is not running: systemd passes nothing
    assert cli.main(["reload"]) == 2


@pytest.mark.parametrize("pid", ["abc", "0", "", "1.5"])
def test_reload_refuses_what_is_not_a_pid(pid: str) -> None:
    assert cli.main(["reload", pid]) == 2


def test_reload_of_a_gone_process_fails() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cli.main(["reload", str(child.pid)]) == 1
