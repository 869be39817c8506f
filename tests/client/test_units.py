"""The client's pure parts: rendering, slash commands, completion, files, small helpers."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import itertools
import os
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from chatd.client import commands as c
from chatd.client.app import View
from chatd.client.complete import ROOM_ACTIONS, Known, candidates
from chatd.client.connection import (
    Endpoint,
    backoff,
    decode,
    parse_server,
    parse_servers,
    upload_chunks,
)
from chatd.client.files import FileProblem, Progress, destination, read_upload, save_download
from chatd.client.main import _parser, endpoints, main
from chatd.client.render import (
    Quote,
    Theme,
    clock,
    error_line,
    format_size,
    message_line,
    notice_line,
    reply_lines,
    use_color,
)
from chatd.client.terminal import (
    LineTerminal,
    _prompt_bytes,
    _visible,
    display_width,
    history_path,
)
from chatd.protocol.commands import COMMANDS

PLAIN = Theme(color=False, tz=UTC)
NOW = datetime(2026, 11, 26, 12, 30, tzinfo=UTC)


def msg(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "message",
        "id": 17,
        "chat": "#general",
        "from": "bob",
        "text": "hello",
        "ts": "2026-11-26T12:00:01.123Z",
        "reply_to": None,
        "replay": False,
    }
    return base | fields


# Rendering ------------------------------------------------------------------------------


def test_a_message_shows_local_time_id_chat_sender_and_text() -> None:
    assert message_line(msg(), PLAIN, now=NOW) == "12:00:01 [17] #general <bob> hello"
    cet = Theme(tz=timezone(timedelta(hours=1)))
    assert message_line(msg(), cet, now=NOW).startswith("13:00:01 [17]")
    yesterday = msg(ts="2026-11-25T08:00:00.000Z")
    assert message_line(yesterday, PLAIN, now=NOW).startswith("2026-11-25 08:00:00 [17]")


def test_replies_files_actions_and_replays_are_marked() -> None:
    quotes = {16: Quote("#general", "alice", "a question that goes on and on and on")}
    reply = message_line(msg(reply_to=16), PLAIN, quotes=quotes, now=NOW)
    assert reply == (
        '12:00:01 [17] #general <bob> (re [16] alice: "a question that goes on and on …") hello'
    )
    assert "(re [99]) hello" in message_line(msg(reply_to=99), PLAIN, now=NOW)
    file = {"id": 3, "name": "report.pdf", "size": 1_300_000, "sha256": "ab"}
    shown = message_line(msg(text="report.pdf", file=file), PLAIN, now=NOW)
    assert shown.endswith("<bob> [file 3: report.pdf, 1.2 MiB]")
    assert message_line(msg(text="/me waves"), PLAIN, now=NOW).endswith("#general * bob waves")
    private = message_line(msg(chat="@bob", replay=True), PLAIN, now=NOW)
    assert private == "[unread] 12:00:01 [17] @bob <bob> hello"


def test_nothing_from_the_server_can_drive_the_terminal() -> None:
    evil = msg(text="hi\x1b[2J\x9b31m\tthere", **{"from": "b\x1b]0;x\x07ob"})
    shown = message_line(evil, PLAIN, now=NOW)
    assert "\x1b" not in shown and "\x9b" not in shown and "\x07" not in shown
    assert shown.endswith("<b\ufffd]0;x\ufffdob> hi\ufffd[2J\ufffd31m there")
    notice = notice_line({"type": "notice", "event": "kicked", "by": "\x1b[5mroot"}, PLAIN)
    assert "\x1b" not in notice


def test_colours_only_when_asked() -> None:
    coloured = message_line(msg(), Theme(color=True, tz=UTC), now=NOW)
    assert "\x1b[" in coloured and "hello" in coloured
    assert "\x1b[" not in message_line(msg(), PLAIN, now=NOW)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert use_color(Tty(), {"TERM": "xterm"})
    assert not use_color(Tty(), {"TERM": "xterm", "NO_COLOR": "1"})
    assert not use_color(io.StringIO(), {"TERM": "xterm"})


def test_notices_errors_and_replies() -> None:
    notice = {"type": "notice", "event": "joined", "user": "bob", "room": "#den"}
    assert notice_line(notice, PLAIN) == "* bob joined #den"
    assert notice_line({"type": "notice", "event": "new-thing", "x": 1}, PLAIN) == "* new-thing x=1"
    err = {"type": "error", "code": "rate-limited", "message": "slow down", "retry_after": 30}
    assert error_line(err, PLAIN) == "error: slow down [rate-limited] (retry in 30s)"
    who = {"type": "ok", "cmd": "who", "users": [{"name": "bob", "sessions": 2}]}
    assert reply_lines(who, PLAIN) == ["  bob (2 sessions)", "* 1 user online"]
    history = {"type": "ok", "cmd": "history", "chat": "#general", "messages": [msg(replay=True)]}
    assert reply_lines(history, PLAIN, now=NOW) == [
        "12:00:01 [17] #general <bob> hello",  # history is not marked as unread
        "* 1 message in #general",
    ]
    thread = {"type": "ok", "cmd": "thread", "message": msg(), "comments": [msg(id=18)]}
    assert reply_lines(thread, PLAIN, now=NOW)[1].startswith("  ↳ 12:00:01 [18]")
    # A reply whose fields this client does not know still shows, without a crash.
    odd = {"type": "ok", "cmd": "rooms", "something": "else"}
    assert reply_lines(odd, PLAIN) == ['* ok rooms {"something": "else"}']


def test_sizes_and_bad_times() -> None:
    assert [format_size(n) for n in (0, 1023, 1536, 5 * 2**20)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
    ]
    assert clock("not a time", PLAIN) == "--:--:--"


# Slash commands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "chat", "action"),
    [
        (
            "hello there",
            "#general",
            c.Wire("send_all hello there", c.Draft("#general", "hello there")),
        ),
        ("hi", "@bob", c.Wire("send @bob hi", c.Draft("@bob", "hi"))),
        (
            "//etc/passwd is a path",
            "#den",
            c.Wire("send #den /etc/passwd is a path", c.Draft("#den", "/etc/passwd is a path")),
        ),
        ("   ", "#general", c.Nothing()),
        ("/join #den", "#general", c.Switch("#den")),
        ("/join abc123", "#general", c.Wire("join abc123")),
        ("/query @bob", "#general", c.Switch("@bob")),
        ("/query bob", "#general", c.Switch("@bob")),
        ("/msg bob see you", "#den", c.Wire("send @bob see you", c.Draft("@bob", "see you"))),
        ("/msg #general hi all", "@bob", c.Wire("send_all hi all", c.Draft("#general", "hi all"))),
        ("/me waves", "#den", c.Wire("send #den /me waves", c.Draft("#den", "/me waves"))),
        ("/history", "#den", c.Wire("history #den")),
        ("/history 5 before 40", "@bob", c.Wire("history @bob 5 before 40")),
        ("/history bob 5", "#general", c.Wire("history @bob 5")),
        ("/history general", "@bob", c.Wire("history #general")),
        ("/comment 17 nice", "#general", c.Wire("comment 17 nice", c.Draft(None, "nice", 17))),
        ("/thread [17]", "#general", c.Wire("thread 17")),
        ("/schedule +10m standup", "#den", c.Wire("schedule +10m send #den standup")),
        ("/schedule 18:00 /msg bob bye", "#general", c.Wire("schedule 18:00 send @bob bye")),
        (
            "/schedule +1m /who",
            "#general",
            c.Invalid("only messages and comments can be scheduled"),
        ),
        ("/cancel 4", "#general", c.Wire("cancel 4")),
        ("/upload 'my file.txt' bob", "#den", c.Upload("my file.txt", "@bob")),
        ("/upload a.txt", "#den", c.Upload("a.txt", "#den")),
        ("/download 3 /tmp", "#general", c.Download(3, "/tmp")),
        ("/room create den", "#general", c.Wire("room create den")),
        ("/report bob spam", "#general", c.Wire("report bob spam")),
        ("/passwd", "#general", c.ChangePassword(None, None)),
        ("/passwd new old", "#general", c.ChangePassword("new", "old")),
        ("/stats", "#general", c.Wire("stats")),
        ("/raw send bob hi", "#general", c.Wire("send bob hi", c.Draft("@bob", "hi"))),
        ("/login bob", "#general", c.Invalid("the client handles login itself")),
        ("/QUIT", "#general", c.Quit()),
        ("/bogus", "#general", c.Invalid("unknown command /bogus; try /help")),
    ],
)
def test_translate(line: str, chat: str, action: c.Action) -> None:
    assert c.translate(line, chat) == action


def test_bad_arguments_quote_the_usage() -> None:
    for line in ("/msg bob", "/comment x hi", "/download", "/query", "/thread 1 2"):
        action = c.translate(line, "#general")
        assert isinstance(action, c.Invalid) and action.message.startswith("usage: /"), line


def test_every_protocol_command_has_a_slash_form() -> None:
    for name in COMMANDS:
        action = c.translate(f"/{name} x y", "#general")
        if name in ("login", "mode"):
            assert action == c.Invalid(f"the client handles {name} itself")
        else:
            assert "unknown command" not in str(action), name
        assert c.usage_of(name) is not None, name
        assert name in c.slash_names() or name in ("login", "mode"), name


def test_raw_lines_are_recognised_as_sends() -> None:
    assert c.raw("send_all hi there") == c.Wire(
        "send_all hi there", c.Draft("#general", "hi there")
    )
    assert c.raw("comment 4 ok") == c.Wire("comment 4 ok", c.Draft(None, "ok", 4))
    assert c.raw("who") == c.Wire("who")
    assert c.raw("nonsense words") == c.Wire("nonsense words")  # the server says why not
    assert c.raw("mode text") == c.Invalid("the client handles mode itself")


# Completion -----------------------------------------------------------------------------

KNOWN = Known(tuple(c.slash_names()), ("bob", "Bea", "carol"), ("#den",))


@pytest.mark.parametrize(
    ("line", "word", "expected"),
    [
        ("/wh", "/wh", ["/who"]),
        ("/q", "/q", ["/query", "/quit"]),
        ("/query b", "b", ["Bea", "bob"]),
        ("/msg @c", "@c", ["@carol"]),
        ("/msg #", "#", ["#den", "#general"]),
        ("/join #", "#", ["#den", "#general"]),
        ("/room ", "", list(ROOM_ACTIONS)),
        ("/room invite #d", "#d", ["#den"]),
        ("/room invite #den c", "c", ["carol"]),
        ("hi @b", "@b", ["@Bea", "@bob"]),
        ("see you in #d", "#d", ["#den"]),
        ("ca", "ca", ["carol"]),
        ("", "", []),
    ],
)
def test_candidates(line: str, word: str, expected: list[str]) -> None:
    assert candidates(line, len(line) - len(word), word, KNOWN) == sorted(expected, key=str.lower)


def test_paths_complete_for_upload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "nested").mkdir()
    monkeypatch.chdir(tmp_path)
    assert candidates("/upload n", 8, "n", KNOWN) == ["nested/", "notes.txt"]


# Connection helpers ---------------------------------------------------------------------


def test_backoff_doubles_to_thirty_times_the_base() -> None:
    assert list(itertools.islice(backoff(), 7)) == [1, 2, 4, 8, 16, 30, 30]
    assert list(itertools.islice(backoff(0.05), 7))[-1] == pytest.approx(1.5)


def test_decode_accepts_json_and_text_lines() -> None:
    assert decode('{"type":"ok","cmd":"ping"}') == {"type": "ok", "cmd": "ping"}
    assert decode("ERR server-busy too many connections") == {
        "type": "error",
        "cmd": None,
        "code": "server-busy",
        "message": "too many connections",
    }
    assert decode("* hello")["event"] == "raw"
    assert decode("[1, 2]")["type"] == "notice"  # valid JSON, but not an object


def test_upload_chunks_never_end_in_a_command_word() -> None:
    b64 = "A" * 76 + "QUIT"
    assert upload_chunks(b64) == ["A" * 76 + "QUIT"]
    assert upload_chunks("A" * 160) == ["A" * 76, "A" * 76, "A" * 8]
    assert "".join(upload_chunks("B" * 1000)) == "B" * 1000


def test_endpoint_tls_context() -> None:
    assert Endpoint().ssl_context() is None
    ctx = Endpoint(tls=True).ssl_context()
    assert ctx is not None and ctx.check_hostname
    assert str(Endpoint("::1", 7)) == "[::1]:7"


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("chat1", ("chat1", 8000)),
        ("chat1.example:9000", ("chat1.example", 9000)),
        (" 10.0.0.2:7 ", ("10.0.0.2", 7)),
        ("[::1]", ("::1", 8000)),
        ("[2001:db8::7]:65535", ("2001:db8::7", 65535)),
    ],
)
def test_a_server_is_host_and_port_the_port_defaulting(text: str, want: tuple[str, int]) -> None:
    assert parse_server(text, 8000) == want


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("::1", "in brackets"),
        ("2001:db8::7:8000", "in brackets"),
        ("[::1", "no ']'"),
        ("[::1]8000", "expected ':PORT'"),
        ("[]:8000", "no host"),
        (":8000", "no host"),
        ("", "no host"),
        ("chat1:", "the port must be"),
        ("chat1:0", "the port must be"),
        ("chat1:65536", "the port must be"),
        ("chat1:http", "the port must be"),
        ("chat1:-5", "the port must be"),
    ],
)
def test_a_bad_server_says_what_is_wrong(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=re.escape(why)):
        parse_server(text, 8000)


def test_servers_keep_their_order_lists_split_and_repeats_go() -> None:
    values = ["chat1,chat2:8001", "[::1]:9", "chat1", " chat3 , chat2:8001"]
    assert parse_servers(values, 7000) == [
        ("chat1", 7000),
        ("chat2", 8001),
        ("::1", 9),
        ("chat3", 7000),
    ]
    with pytest.raises(ValueError, match="an empty server"):
        parse_servers(["chat1,,chat2"], 8000)
    with pytest.raises(ValueError, match="'chat2:x'"):
        parse_servers(["chat1", "chat2:x"], 8000)


def test_server_options_give_the_endpoints_and_tls_applies_to_all() -> None:
    def parsed(*argv: str) -> list[Endpoint]:
        return endpoints(_parser().parse_args(list(argv)))

    assert parsed() == [Endpoint("127.0.0.1", 8000)]
    assert parsed("--host", "chat1", "--port", "9") == [Endpoint("chat1", 9)]
    # --server replaces --host; a port-less one takes --port.
    assert parsed("--port", "9", "--server", "a", "--server", "b:10,[::1]", "--cafile", "ca") == [
        Endpoint("a", 9, True, "ca"),
        Endpoint("b", 10, True, "ca"),
        Endpoint("::1", 9, True, "ca"),
    ]
    assert {e.tls for e in parsed("--tls", "--server", "a,b")} == {True}
    with pytest.raises(ValueError, match="--host and --server do not mix"):
        parsed("--host", "a", "--server", "b")


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--host", "a", "--server", "b"], "--host and --server do not mix"),
        (["--server", "::1"], "an IPv6 address goes in brackets"),
    ],
)
def test_bad_server_options_exit_2_with_the_reason(
    argv: list[str], why: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--user", "alice", "--command", "ping"])
    assert info.value.code == 2
    assert why in capsys.readouterr().err


# Files ----------------------------------------------------------------------------------


def reply_for(name: str, data: bytes, *, sent: bytes | None = None) -> dict[str, Any]:
    info = {"id": 1, "name": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    payload = base64.b64encode(data if sent is None else sent).decode()
    return {"type": "ok", "cmd": "download", "file": info, "data": payload}


def test_downloads_are_checked_and_never_escape_or_overwrite(tmp_path: Path) -> None:
    path, n = save_download(reply_for("../../etc/passwd", b"abc"), None, tmp_path)
    assert path == tmp_path / "passwd" and n == 3 and path.read_bytes() == b"abc"
    path, _ = save_download(reply_for("passwd", b"xyz"), None, tmp_path)
    assert path == tmp_path / "passwd (1)"
    named = tmp_path / "mine.bin"
    named.write_bytes(b"old")
    path, _ = save_download(reply_for("x", b"new"), str(named), tmp_path)
    assert path == named and named.read_bytes() == b"new"  # a file the user named
    with pytest.raises(FileProblem, match="checksum"):
        save_download(reply_for("y", b"good", sent=b"evil"), None, tmp_path)
    with pytest.raises(FileProblem, match="expected 4"):
        save_download(reply_for("y", b"good", sent=b"goo"), None, tmp_path)
    assert not (tmp_path / "y").exists()
    assert destination(".", ".hidden", tmp_path) == (tmp_path / "hidden", False)


def test_uploads_read_a_file_as_one_word_name(tmp_path: Path) -> None:
    (tmp_path / "two words.txt").write_bytes(b"x" * 100)
    out = read_upload(str(tmp_path / "two words.txt"))
    assert out.name == "two_words.txt" and out.size == 100
    assert base64.b64decode("".join(out.chunks)) == b"x" * 100
    with pytest.raises(FileProblem, match="cannot read"):
        read_upload(str(tmp_path / "missing"))
    with pytest.raises(FileProblem, match="directory"):
        read_upload(str(tmp_path))


def test_progress_reports_tenths_and_unknown_totals() -> None:
    said: list[str] = []
    p = Progress("up", 1000, said.append, shown=750)
    p(250)
    p(999)
    p.finish()
    assert said[0] == "up: 10% of 750 B" and said[1] == "up: 20% of 750 B"
    assert said[-1] == "up: 100% of 750 B" and len(said) == 10
    said.clear()
    q = Progress("down", None, said.append)
    q(500_000)
    q(3 * 2**20)
    assert said == ["down: 3.0 MiB so far"]
    assert Progress.wanted(2 * 2**20) and not Progress.wanted(1000)


# Terminal and view helpers --------------------------------------------------------------


def test_history_path_follows_xdg(tmp_path: Path) -> None:
    assert history_path({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "chatd" / "history"
    default = Path.home() / ".local" / "state" / "chatd" / "history"
    assert history_path({}) == default
    assert history_path({"XDG_STATE_HOME": "relative"}) == default


def test_prompt_escapes_are_invisible_to_readline() -> None:
    wrapped = _prompt_bytes("\x1b[36m#den\x1b[0m> ")
    assert wrapped == b"\x01\x1b[36m\x02#den\x01\x1b[0m\x02> "
    assert _visible(wrapped) == "#den> "
    assert display_width("ab漢字e\u0301") == 7  # wide characters take two columns


def test_view_learns_names_for_completion() -> None:
    view = View(PLAIN, "alice")
    view.learn(
        {
            "type": "ok",
            "cmd": "who",
            "users": [{"name": "Bob", "sessions": 1}, {"name": "alice", "sessions": 1}],
        }
    )
    view.remember(msg(**{"from": "carol", "chat": "#den", "id": 5}))
    known = view.known()
    assert sorted(known.users) == ["Bob", "carol"]  # not yourself
    assert known.rooms == ("#den",)
    assert view.quotes[5] == Quote("#den", "carol", "hello")
    assert os.sep not in "".join(known.commands)


async def test_the_fallback_terminal_reads_cooked_lines() -> None:
    """Without GNU readline: whole lines from the fd, output printed before the prompt."""
    read_end, write_end = os.pipe()
    out = io.StringIO()
    lines: list[str] = []
    eof = asyncio.Event()
    term = LineTerminal(out=out, fd=read_end)
    term.start("> ", lines.append, eof.set)
    try:
        os.write(write_end, "héllo\nworld\n".encode())
        os.close(write_end)
        await asyncio.wait_for(eof.wait(), 5)
        term.write(["* news"])
    finally:
        term.stop()
        os.close(read_end)
    assert lines == ["héllo", "world"]
    assert out.getvalue().endswith("\r* news\n> ")
