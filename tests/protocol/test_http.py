"""The HTTP door's pure parts: routes, error shape and statuses, request bodies to
commands, SSE framing, static names and types, and the WebSocket text frames (read back
by wsproto, not by our code)."""

from __future__ import annotations

import json

import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage

from chatd.protocol import commands as c
from chatd.protocol.events import Code
from chatd.protocol.http import (
    STATUS,
    HttpError,
    content_disposition,
    content_type,
    cursor_param,
    download_type,
    error_body,
    error_headers,
    etag_matches,
    events_body,
    login_command,
    route,
    send_command,
    sse_event,
    static_name,
    status_for,
    wait_param,
)
from chatd.server.http.websocket import FrameCache, text_frames


def test_routes_and_their_refusals() -> None:
    assert route("GET", "/events?since=5&timeout=1").query == {"since": "5", "timeout": "1"}
    assert route("HEAD", "/").name == "index"
    assert (route("GET", "/files/12").name, route("GET", "/files/12").arg) == ("download", "12")
    assert route("GET", "/static/app.js").arg == "app.js"
    with pytest.raises(HttpError) as e:
        route("GET", "/nope")
    assert (e.value.status, e.value.code) == (404, "not-found")
    with pytest.raises(HttpError) as e:
        route("PUT", "/send")
    assert e.value.status == 405 and e.value.allow == ("POST",)
    with pytest.raises(HttpError) as e:
        route("POST", "/events")
    assert e.value.allow == ("GET", "HEAD")


def test_status_table_of_the_contract() -> None:
    table = {
        400: ["bad-args", "bad-name", "bad-encoding"],
        401: ["not-logged-in", "bad-password"],
        403: ["forbidden", "banned", "not-a-member"],
        404: ["no-such-user", "no-such-chat", "no-such-message", "no-such-schedule"],
        409: ["name-taken"],
        413: ["too-large", "line-too-long"],
        429: ["rate-limited"],
        503: ["server-busy"],
        500: ["internal"],
    }
    for status, codes in table.items():
        for code in codes:
            assert status_for(code) == status, code
    assert all(
        status_for(str(code)) in (400, 401, 403, 404, 409, 413, 429, 500, 503) for code in Code
    )
    assert set(STATUS.values()) >= {400, 401, 403, 404, 405, 409, 413, 429, 500, 503}


def test_error_shape_and_headers() -> None:
    body = json.loads(error_body("rate-limited", "slow down", 12))
    assert body == {"error": {"code": "rate-limited", "message": "slow down", "retry_after": 12}}
    assert json.loads(error_body("bad-args", "no")) == {
        "error": {"code": "bad-args", "message": "no"}
    }
    assert error_headers(429, 11.2, ()) == [("Retry-After", "11")]
    assert error_headers(405, None, ("GET", "HEAD")) == [("Allow", "GET, HEAD")]


def test_bodies_become_commands() -> None:
    assert send_command({"to": "#general", "text": "hi"}) == c.SendAll("hi", verb="send_all")
    assert send_command({"to": "general", "text": "hi"}) == c.SendAll("hi", verb="send_all")
    assert send_command({"to": "@bob", "text": "yo"}) == c.Send("@bob", "yo", verb="send")
    assert send_command({"to": "#den", "text": "x", "reply_to": 4}) == c.Comment(
        4, "x", verb="comment"
    )
    assert login_command({"name": "alice", "password": "pw"}) == c.Login(
        "alice", "pw", verb="login"
    )
    for bad in (
        {"to": "#general"},
        {"to": "#general", "text": ""},
        {"to": "#general", "text": "a\nb"},
        {"to": "#general", "text": "x", "reply_to": "3"},
        {"to": "#general", "text": "x", "reply_to": True},
        {"to": 5, "text": "x"},
    ):
        with pytest.raises(HttpError) as e:
            send_command(bad)
        assert e.value.status == 400, bad
    with pytest.raises(HttpError) as e:
        login_command({"name": "alice", "password": "two words"})
    assert e.value.code == "bad-args"


def test_events_and_sse_framing() -> None:
    assert json.loads(events_body([b'{"a":1}', b'{"b":2}'], 7)) == {
        "events": [{"a": 1}, {"b": 2}],
        "next": 7,
    }
    assert json.loads(events_body([], 0)) == {"events": [], "next": 0}
    assert sse_event(b'{"id":3}', 3) == b'id: 3\ndata: {"id":3}\n\n'
    assert sse_event(b'{"type":"notice"}', None) == b'data: {"type":"notice"}\n\n'
    assert cursor_param("12", "since") == 12 and cursor_param(None, "since") is None
    with pytest.raises(HttpError):
        cursor_param("-1", "since")
    assert wait_param(None) == 25 and wait_param("600") == 60 and wait_param("0.5") == 0.5
    with pytest.raises(HttpError):
        wait_param("soon")
    with pytest.raises(HttpError):
        wait_param("nan")


def test_static_names_types_and_downloads() -> None:
    assert static_name("app.js") == "app.js" and static_name("img/logo.svg") == "img/logo.svg"
    for bad in ("../x", "a/../../b", ".env", "/etc/passwd", "a\\b", "", "a//b"):
        with pytest.raises(HttpError):
            static_name(bad)
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("x.mjs").startswith("text/javascript")
    assert content_type("photo.JPG") == "image/jpeg"
    assert content_type("noext") == "application/octet-stream"
    assert download_type("page.html") == download_type("x.svg") == "application/octet-stream"
    assert download_type("a.png") == "image/png" and download_type("n.txt").startswith("text/plain")
    cd = content_disposition('résumé "final".pdf')
    assert cd.startswith('attachment; filename="r_sum_ _final_.pdf"')
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf" in cd
    assert etag_matches('"a", W/"b"', '"b"') and etag_matches("*", '"x"')
    assert not etag_matches(None, '"x"') and not etag_matches('"a"', '"b"')


def test_text_frames_read_back_by_wsproto() -> None:
    client = Connection(ConnectionType.CLIENT)
    lines = [b'{"type":"ok"}', b"x" * 200, "ü".encode() * 40000]
    data = b"\n".join(lines) + b"\n"
    cache = FrameCache()
    frames = cache.frames(data)
    assert cache.frames(data) is frames  # the same bytes are framed once
    client.receive_data(frames)
    got = [e.data for e in client.events() if isinstance(e, TextMessage)]
    assert [g.encode() for g in got] == lines
    assert text_frames(b"\n\n") == b""


def test_unavailable_is_503_with_retry_after() -> None:
    # a full disk (issue 13): writes are refused with a time to come back
    assert status_for(Code.UNAVAILABLE) == 503 and STATUS[Code.UNAVAILABLE] == 503
    assert ("Retry-After", "1") in error_headers(503, 1.0, ())
