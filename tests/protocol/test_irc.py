"""The IRC message parser, framer and renderer: bytes in, messages out."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatd.protocol.events import FileInfo, Message, Mode, Push
from chatd.protocol.irc import (
    MAX_BODY,
    MAX_LINE,
    IrcFrameError,
    IrcFramer,
    IrcMessage,
    IrcRenderer,
    escape_tag,
    keep_tags,
    parse,
    render,
    split_text,
    unescape_tag,
)
from chatd.protocol.notices import AnyNotice
from chatd.protocol.relay import Relayed
from chatd.protocol.render import Renderer


def test_parse_full_message() -> None:
    m = parse("@time=2026-01-01T00:00:00.000Z;+draft/reply=7;flag :nick!u@h PRIVMSG #c :hi there")
    assert m.tags == {"time": "2026-01-01T00:00:00.000Z", "+draft/reply": "7", "flag": ""}
    assert m.source == "nick!u@h"
    assert m.command == "PRIVMSG"
    assert m.params == ("#c", "hi there")


def test_parse_plain_and_odd_spacing() -> None:
    assert parse("nick  alice").params == ("alice",)
    assert parse("privmsg #c ::)").params == ("#c", ":)")
    assert parse("USER a 0 * :").params == ("a", "0", "*", "")
    assert parse("PING").params == ()
    assert parse("CAP REQ :a b").params == ("REQ", "a b")


def test_tag_escapes() -> None:
    assert unescape_tag(r"a\:b\sc\\d\re\nf") == "a;b c\\d\re\nf"
    assert unescape_tag("trail\\") == "trail"
    assert unescape_tag(r"\x") == "x"
    assert escape_tag("a;b c\\") == r"a\:b\sc\\"


def test_render_trailing_rules() -> None:
    assert render("PRIVMSG", ("#c", "hi")) == b"PRIVMSG #c hi\r\n"
    assert render("PRIVMSG", ("#c", "hi there"), "s") == b":s PRIVMSG #c :hi there\r\n"
    assert render("PRIVMSG", ("#c", "")) == b"PRIVMSG #c :\r\n"
    assert render("PRIVMSG", ("#c", ":)")) == b"PRIVMSG #c ::)\r\n"
    assert render("X", (), None, {"a": "b c", "k": ""}) == b"@a=b\\sc;k X\r\n"


def test_framer_splits_crlf_lf_and_too_long() -> None:
    f = IrcFramer()
    assert f.feed(b"NICK a\r\nUSER a 0 * :A\nPI") == ["NICK a", "USER a 0 * :A"]
    assert f.feed(b"NG x\r\n") == ["PING x"]
    out = f.feed(b"X" * (MAX_LINE + 10))
    assert out == [IrcFrameError("Input line was too long")]
    assert f.feed(b"still the long line\r\nPING y\r\n") == ["PING y"]
    assert f.feed(b"\xe9t\xe9\r\n") == ["été"]  # Latin-1 fallback


def test_split_text_keeps_characters_whole() -> None:
    text = "é" * 300
    pieces = split_text(text, 101)
    assert "".join(pieces) == text
    assert all(len(p.encode()) <= 101 for p in pieces)


_r = IrcRenderer(server="srv", host="srv", file_url="http://h:1/files/")


def test_renderer_modes_for_a_channel_message() -> None:
    m = Message(5, "#general", "ann", "hello", 1_800_000_000.5, reply_to=3)
    plain = parse(_r.render(Push(m), Mode.IRC).decode().rstrip())
    assert plain.tags == {} and plain.params == ("#general", "hello")
    timed = parse(_r.render(Push(m), Mode.IRC_TIME).decode().rstrip())
    assert timed.tags == {"time": "2027-01-15T08:00:00.500Z"}
    tagged = parse(_r.render(Push(m), Mode.IRC_TAGS).decode().rstrip())
    assert tagged.tags["msgid"] == "5" and tagged.tags["+draft/reply"] == "3"
    assert tagged.tags["account"] == "ann" and tagged.params == ("#general", "hello")
    assert tagged.source == "ann!ann@srv"


def test_renderer_private_message_targets_the_recipient_for_everyone() -> None:
    m = Message(6, "@ann|bob", "ann", "psst", 0.0, to="bob")
    for viewer in ("ann", "bob"):
        line = parse(_r.render(Push(m, viewer), Mode.IRC).decode().rstrip())
        assert line.params == ("bob", "psst")


def test_renderer_files_long_text_and_notices() -> None:
    f = FileInfo(9, "a.txt", 12, "00")
    m = Message(7, "#general", "ann", "a.txt", 0.0, file=f)
    line = parse(_r.render(Push(m), Mode.IRC).decode().rstrip())
    assert line.params[1] == "[file 9 a.txt 12 bytes] http://h:1/files/9"
    long = Message(8, "#general", "ann", "word " * 300, 0.0)
    data = _r.render(Push(long), Mode.IRC_TAGS)
    lines = data.split(b"\r\n")[:-1]
    assert len(lines) > 1
    assert all(len(x.split(b" ", 2)[2]) + 2 <= MAX_BODY for x in lines)  # minus tags, source
    joined = parse(
        _r.render(AnyNotice("joined", {"room": "#r", "user": "bob"}), Mode.IRC).decode().rstrip()
    )
    assert joined == IrcMessage("JOIN", ("#r",), "bob!bob@srv")
    warned = _r.render(AnyNotice("warned", {"strikes": 1, "limit": 3}), Mode.IRC)
    assert warned.startswith(b":srv NOTICE \0 :you were reported")


def test_a_clients_longest_line_is_relayed_in_one_piece() -> None:
    # `PRIVMSG bob <word>`: 512 bytes with CR LF, the most a client can send
    text = "a" * (MAX_BODY - len("PRIVMSG bob \r\n"))
    m = Message(9, "@ann|bob", "ann", text, 0.0, to="bob")
    lines = _r.render(Push(m, "bob"), Mode.IRC).split(b"\r\n")[:-1]
    assert len(lines) == 1 and parse(lines[0].decode()).params == ("bob", text)
    longer = Message(10, "@ann|bob", "ann", text + "b", 0.0, to="bob")
    assert _r.render(Push(longer, "bob"), Mode.IRC).count(b"\r\n") == 2


def test_keep_tags_drops_the_others_per_line() -> None:
    data = (
        b"@time=t;msgid=1;account=ann :ann!ann@h PRIVMSG #c :hi @there\r\n"
        b"@msgid=2 :ann!ann@h PRIVMSG #c :no tags left\r\n"
        b":srv NOTICE ann :untagged\r\n"
    )
    assert keep_tags(data, frozenset({b"account", b"time"})) == (
        b"@time=t;account=ann :ann!ann@h PRIVMSG #c :hi @there\r\n"
        b":ann!ann@h PRIVMSG #c :no tags left\r\n"
        b":srv NOTICE ann :untagged\r\n"
    )


def test_keep_tags_drops_tagmsg_lines_whole() -> None:
    data = (
        b"@time=t;msgid=t1-1;account=ann;+typing=active :ann!ann@h TAGMSG #c\r\n"
        b"@time=t;msgid=3 :ann!ann@h PRIVMSG #c :TAGMSG as text\r\n"
    )
    assert keep_tags(data, frozenset({b"account", b"time"})) == (
        b"@time=t :ann!ann@h PRIVMSG #c :TAGMSG as text\r\n"
    )


def test_a_relay_is_a_tagmsg_with_every_tag_in_the_tags_mode_only() -> None:
    relayed = Relayed("ann", "#c", (("+typing", "active"), ("+draft/react", "a;b c")), 0.5, "t1-2")
    line = _r.render(relayed, Mode.IRC_TAGS)
    m = parse(line.decode().rstrip("\r\n"))
    assert (m.command, m.params, m.source) == ("TAGMSG", ("#c",), "ann!ann@srv")
    assert m.tags == {
        "time": "1970-01-01T00:00:00.500Z",
        "msgid": "t1-2",
        "account": "ann",
        "+typing": "active",
        "+draft/react": "a;b c",
    }
    assert _r.render(relayed, Mode.IRC) == _r.render(relayed, Mode.IRC_TIME) == b""


def test_room_notices_carry_the_account_tag_in_the_tags_mode() -> None:
    notice = AnyNotice("joined", {"room": "#r", "user": "bob"})
    assert parse(_r.render(notice, Mode.IRC_TAGS).decode().rstrip()).tags == {"account": "bob"}
    assert parse(_r.render(notice, Mode.IRC_TIME).decode().rstrip()).tags == {}


def test_renderer_dispatches_irc_modes() -> None:
    m = Message(1, "#general", "ann", "hi", 0.0)
    assert Renderer().render(Push(m), Mode.IRC).startswith(b":ann!ann@chatd PRIVMSG")
    assert Renderer().render(Push(m), Mode.TEXT).endswith(b"<ann> hi\n")


_tag_text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=40)
_word = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Cc"), blacklist_characters=":"),
    min_size=1,
    max_size=10,
)


@given(_tag_text)
def test_any_tag_value_round_trips(value: str) -> None:
    assert unescape_tag(escape_tag(value)) == value


@given(
    st.dictionaries(
        st.from_regex(r"\+?[a-z][a-z0-9/-]{0,8}", fullmatch=True), _tag_text, max_size=4
    ),
    st.lists(_word, max_size=5),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=50),
)
def test_any_message_round_trips(tags: dict[str, str], middle: list[str], last: str) -> None:
    msg = IrcMessage("PRIVMSG", (*middle, last), "n!u@h", tags)
    data = msg.render()
    assert data.endswith(b"\r\n") and data.count(b"\n") == 1
    back = parse(data[:-2].decode())
    assert back == msg


@given(st.lists(st.integers(min_value=1, max_value=40), max_size=10))
def test_any_split_gives_the_same_lines(cuts: list[int]) -> None:
    data = b"@a=b\\sc :s PRIVMSG #c :hello there\r\nPING x\nNICK \xc3\xa9\r\n" * 3
    f = IrcFramer()
    out: list[str | IrcFrameError] = []
    pos = 0
    for cut in cuts:
        out += f.feed(data[pos : pos + cut])
        pos += cut
    out += f.feed(data[pos:])
    assert out == ["@a=b\\sc :s PRIVMSG #c :hello there", "PING x", "NICK é"] * 3
