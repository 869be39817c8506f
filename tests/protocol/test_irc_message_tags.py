"""A stored message's client-only tags and NOTICE kind as IRC renders them: the tags
only for message-tags clients (after the server's own), NOTICE in every IRC mode; the
line protocol and JSON render such a message exactly as an ordinary one."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chatd.protocol.events import NOTICE_KIND, Message, Mode, Push
from chatd.protocol.irc import (
    MAX_BODY,
    REPLY_TAG,
    IrcRenderer,
    client_tags,
    keep_tags,
    parse,
    parse_client_tags,
)
from chatd.protocol.render import Renderer

_r = IrcRenderer(server="srv", host="srv")
TS = 1_800_000_000.5


def lines(m: Message, mode: Mode, viewer: str | None = None) -> list[str]:
    return _r.render(Push(m, viewer), mode).decode().split("\r\n")[:-1]


def test_client_tags_keep_the_plus_tags_but_draft_reply_escaped() -> None:
    sent = parse(r"@label=x;+a=b\sc;+draft/reply=4;+flag;time=t;+r=\:) PRIVMSG #c :hi").tags
    kept = client_tags(sent)
    assert kept == r"+a=b\sc;+flag;+r=\:)"
    assert parse_client_tags(kept) == {"+a": "b c", "+flag": "", "+r": ";)"}
    assert client_tags({"label": "x", REPLY_TAG: "1"}) == "" == client_tags({})


_names = st.from_regex(r"\+[a-z][a-z0-9/.-]{0,12}", fullmatch=True).filter(lambda n: n != REPLY_TAG)


@given(st.dictionaries(_names, st.text(max_size=20), max_size=5))
def test_client_tags_round_trip_any_values(tags: dict[str, str]) -> None:
    assert parse_client_tags(client_tags(tags)) == tags


def test_tags_only_in_the_tags_mode_after_the_servers() -> None:
    m = Message(5, "#general", "ann", "hello", TS, reply_to=3, tags=r"+draft/react=\:)")
    (tagged,) = lines(m, Mode.IRC_TAGS)
    assert tagged.startswith("@time=2027-01-15T08:00:00.500Z;msgid=5;account=ann;")
    got = parse(tagged)
    assert got.tags["+draft/react"] == ";)" and got.tags[REPLY_TAG] == "3"
    assert got.command == "PRIVMSG" and got.params == ("#general", "hello")
    timed = "@time=2027-01-15T08:00:00.500Z :ann!ann@srv PRIVMSG #general :hello"
    assert lines(m, Mode.IRC_TIME) == [timed]
    assert lines(m, Mode.IRC) == [":ann!ann@srv PRIVMSG #general :hello"]
    # An account-tag client shares the tags mode; its connection keeps no `+` tag.
    only = keep_tags(tagged.encode(), frozenset({b"account", b"time"})).decode()
    assert parse(only).tags == {"time": "2027-01-15T08:00:00.500Z", "account": "ann"}


def test_a_notice_is_rendered_as_notice_in_every_irc_mode_and_split_as_one() -> None:
    m = Message(6, "@ann|bob", "ann", "psst", TS, to="bob", kind=NOTICE_KIND, tags="+x")
    assert lines(m, Mode.IRC, "bob") == [":ann!ann@srv NOTICE bob :psst"]
    timed = parse(lines(m, Mode.IRC_TIME, "ann")[0])
    assert (timed.command, timed.params, set(timed.tags)) == ("NOTICE", ("bob", "psst"), {"time"})
    tagged = parse(lines(m, Mode.IRC_TAGS, "bob")[0])
    assert tagged.command == "NOTICE" and tagged.tags["+x"] == "" and tagged.tags["msgid"] == "6"
    long = m._replace(text="word " * 300)
    pieces = lines(long, Mode.IRC_TAGS, "bob")
    assert len(pieces) > 1
    for line in pieces:
        got = parse(line)
        assert got.command == "NOTICE" and got.tags["+x"] == ""
        assert len(line.split(" ", 2)[2].encode()) + 2 <= MAX_BODY  # minus tags, source
    batch = _r.push(Push(m, "bob"), Mode.IRC, prefix="[08:00:00] ", batch="b1")
    assert batch == b"@batch=b1 :ann!ann@srv NOTICE bob :[08:00:00] psst\r\n"


def test_line_protocol_and_json_show_neither() -> None:
    plain = Message(7, "#general", "ann", "hi", TS, reply_to=2)
    marked = plain._replace(tags="+a=b", kind=NOTICE_KIND)
    r = Renderer()
    for mode in (Mode.TEXT, Mode.JSON):
        assert r.render(Push(marked), mode) == r.render(Push(plain), mode)
