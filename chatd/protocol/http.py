"""The HTTP door's wire rules, sans-I/O: routes, the error shape, request bodies to
commands, events and Server-Sent Events framing, static file names and types.

Nothing here touches a socket or the event loop: chatd/server/http/ runs h11 and wsproto
under an asyncio Protocol and calls these pure functions (docs/http.md, HTTP.md).
"""

from __future__ import annotations

import json
import mimetypes
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL, Code

# Codes of the HTTP layer itself, next to the line protocol's (Code).
NOT_FOUND = "not-found"
METHOD_NOT_ALLOWED = "method-not-allowed"
BAD_REQUEST = "bad-request"
TIMEOUT = "timeout"

# HTTP.md's table; codes it does not name are placed where a client expects them.
STATUS: dict[str, int] = {
    Code.BAD_ARGS: 400,
    Code.BAD_NAME: 400,
    Code.BAD_ENCODING: 400,
    Code.UNKNOWN_COMMAND: 400,
    BAD_REQUEST: 400,
    Code.NOT_LOGGED_IN: 401,
    Code.BAD_PASSWORD: 401,
    Code.FORBIDDEN: 403,
    Code.BANNED: 403,
    Code.NOT_A_MEMBER: 403,
    Code.NO_SUCH_USER: 404,
    Code.NO_SUCH_CHAT: 404,
    Code.NO_SUCH_MESSAGE: 404,
    Code.NO_SUCH_SCHEDULE: 404,
    NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    TIMEOUT: 408,
    "name-taken": 409,
    Code.ALREADY_LOGGED_IN: 409,
    Code.TOO_MANY_SESSIONS: 409,
    Code.TOO_LARGE: 413,
    Code.LINE_TOO_LONG: 413,
    Code.RATE_LIMITED: 429,
    Code.INTERNAL: 500,
    Code.SERVER_BUSY: 503,
    Code.UNAVAILABLE: 503,
}

MAX_WAIT_S = 60.0  # GET /events: the longest `timeout` (HTTP.md)
DEFAULT_WAIT_S = 25.0
MAX_EVENTS = 500  # events per long-poll answer; `next` continues from the last one


def status_for(code: str) -> int:
    return STATUS.get(code, 400)


class HttpError(Exception):
    """A request refused with a code of the error table; becomes the JSON error shape."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        allow: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.code = str(code)
        self.message = message
        self.status = status if status is not None else status_for(self.code)
        self.retry_after = retry_after
        self.allow = tuple(allow)


def error_body(code: str, message: str, retry_after: float | None = None) -> bytes:
    """`{"error": {"code", "message", "retry_after"?}}` (HTTP.md)."""
    err: dict[str, Any] = {"code": str(code), "message": message}
    if retry_after is not None:
        err["retry_after"] = retry_after
    return dumps({"error": err})


def error_headers(
    status: int, retry_after: float | None, allow: Sequence[str]
) -> list[tuple[str, str]]:
    headers = []
    if retry_after is not None and status in (429, 403, 503):
        headers.append(("Retry-After", str(max(1, round(retry_after)))))
    if allow:
        headers.append(("Allow", ", ".join(allow)))
    return headers


def dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# Routing ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Route:
    """What a request is for: an endpoint `name`, with `arg` from the path (a file id or
    a static file name) and the query string's parameters."""

    name: str
    arg: str = ""
    query: Mapping[str, str] = field(default_factory=dict)


# path -> method -> endpoint; HEAD is allowed wherever GET is.
_EXACT: dict[str, dict[str, str]] = {
    "/": {"GET": "index"},
    "/index.html": {"GET": "index"},
    "/connect": {"POST": "connect"},
    "/session": {"DELETE": "logout"},
    "/status": {"GET": "status"},
    "/send": {"POST": "send"},
    "/command": {"POST": "command"},
    "/events": {"GET": "events"},
    "/ws": {"GET": "ws"},
    "/files": {"POST": "upload"},
    "/openapi.json": {"GET": "openapi"},
}
_PREFIX: tuple[tuple[str, dict[str, str]], ...] = (
    ("/files/", {"GET": "download"}),
    ("/static/", {"GET": "static"}),
)
NO_AUTH = frozenset({"index", "static", "connect", "openapi", "ws"})


def route(method: str, target: str) -> Route:
    """The endpoint for a request line; HttpError 404 or 405 (with Allow) otherwise."""
    parts = urlsplit(target)
    path = parts.path or "/"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    methods = _EXACT.get(path)
    arg = ""
    if methods is None:
        for prefix, table in _PREFIX:
            if path.startswith(prefix) and len(path) > len(prefix):
                methods, arg = table, unquote(path[len(prefix) :])
                break
    if methods is None:
        raise HttpError(NOT_FOUND, f"no such path: {path}")
    name = methods.get("GET" if method == "HEAD" else method)
    if name is None:
        allow = sorted({*methods, *(["HEAD"] if "GET" in methods else [])})
        raise HttpError(METHOD_NOT_ALLOWED, f"{method} is not allowed on {path}", allow=allow)
    return Route(name, arg, query)


def bearer(headers: Iterable[tuple[bytes, bytes]]) -> str | None:
    """The token of `Authorization: Bearer <token>`, if any."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    return None


def header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    """One header's value (the first), decoded; None if absent. `wanted` is lower case."""
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


# Request bodies ----------------------------------------------------------------------


def json_object(body: bytes) -> dict[str, Any]:
    """A JSON object body; bad-args for anything else (bad JSON, not UTF-8, not {})."""
    try:
        obj = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise HttpError(Code.BAD_ENCODING, "the body is not valid UTF-8") from e
    except ValueError as e:
        raise HttpError(Code.BAD_ARGS, f"the body is not valid JSON: {e}") from e
    if not isinstance(obj, dict):
        raise HttpError(Code.BAD_ARGS, "the body must be a JSON object")
    return obj


def _string(obj: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise HttpError(Code.BAD_ARGS, f'"{key}" must be a non-empty string')
    return value


def _one_line(text: str, key: str) -> str:
    if "\n" in text or "\r" in text:
        raise HttpError(Code.BAD_ARGS, f'"{key}" must be one line (no CR or LF)')
    return text


def login_command(obj: Mapping[str, Any]) -> c.Login:
    """POST /connect's body: `{"name": str, "password": str?}`."""
    name = _one_line(_string(obj, "name") or "", "name")
    password = _string(obj, "password", required=False)
    if password is not None:
        _one_line(password, "password")
        if not password or " " in password:
            raise HttpError(Code.BAD_ARGS, '"password" must be one word')
    if " " in name:
        raise HttpError(Code.BAD_NAME, "names are 1-32 characters of A-Z a-z 0-9 _ . -")
    return c.Login(name, password, verb="login")


def send_command(obj: Mapping[str, Any]) -> c.Command:
    """POST /send's body: `{"to", "text", "reply_to"?}` as the line command it means:
    `send_all` for #general, `send` for a room or a user, `comment` with reply_to
    (a comment goes to the chat of the message it answers)."""
    to = _one_line(_string(obj, "to") or "", "to")
    text = _one_line(_string(obj, "text") or "", "text")
    reply_to = obj.get("reply_to")
    if reply_to is not None:
        if isinstance(reply_to, bool) or not isinstance(reply_to, int) or reply_to < 1:
            raise HttpError(Code.BAD_ARGS, '"reply_to" must be a message id')
        return c.Comment(reply_to, text, verb="comment")
    if to.lower() in (GENERAL, "general"):
        return c.SendAll(text, verb="send_all")
    if " " in to:
        raise HttpError(Code.BAD_ARGS, '"to" is #general, #room, @user or user')
    return c.Send(to, text, verb="send")


def command_line(obj: Mapping[str, Any]) -> str:
    """POST /command's body: `{"line": "<any line-protocol command>"}`."""
    line = _string(obj, "line") or ""
    return _one_line(line, "line")


# Events --------------------------------------------------------------------------------


def events_body(events: Sequence[bytes], next_cursor: int) -> bytes:
    """`{"events": [...], "next": <cursor>}` from already rendered JSON objects."""
    return b'{"events":[' + b",".join(events) + b'],"next":' + str(next_cursor).encode() + b"}"


def sse_event(data: bytes, cursor: int | None) -> bytes:
    """One Server-Sent Event: `id: <cursor>` for a message (a reconnect's Last-Event-ID),
    none for a notice (the browser keeps the last id), then `data: <json>`."""
    head = b"id: %d\n" % cursor if cursor is not None else b""
    return head + b"data: " + data + b"\n\n"


SSE_KEEPALIVE = b": keep-alive\n\n"
SSE_RETRY = b"retry: 2000\n\n"  # the browser's reconnect delay


def cursor_param(value: str | None, what: str) -> int | None:
    """A `since` or `Last-Event-ID` value: a message id (>= 0), or None when absent."""
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise HttpError(Code.BAD_ARGS, f"{what} must be a message id (an integer >= 0)")
    return int(value)


def wait_param(value: str | None) -> float:
    """`timeout` seconds for a long poll: default 25, at most 60."""
    if value is None or value == "":
        return DEFAULT_WAIT_S
    try:
        seconds = float(value)
    except ValueError as e:
        raise HttpError(Code.BAD_ARGS, "timeout must be a number of seconds") from e
    if not seconds >= 0:
        raise HttpError(Code.BAD_ARGS, "timeout must be a number of seconds")
    return min(seconds, MAX_WAIT_S)


def file_id_param(arg: str) -> int:
    if not arg.isdigit():
        raise HttpError(NOT_FOUND, f"no such file: {arg}")
    return int(arg)


# Static files and downloads -------------------------------------------------------------

_STATIC_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*(/[A-Za-z0-9_][A-Za-z0-9_.-]*)*")
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
    ".webmanifest": "application/manifest+json",
}


def static_name(name: str) -> str:
    """A static file's relative path, or HttpError 404: only plain names and
    subdirectories, never `..`, absolute paths, backslashes or hidden files."""
    if not _STATIC_NAME.fullmatch(name) or ".." in name:
        raise HttpError(NOT_FOUND, "no such file")
    return name


def content_type(name: str) -> str:
    """The Content-Type for a file name: the web client's types, else mimetypes."""
    dot = name.rfind(".")
    known = _TYPES.get(name[dot:].lower()) if dot >= 0 else None
    if known is not None:
        return known
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


_SAFE_DOWNLOADS = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


def download_type(name: str) -> str:
    """The Content-Type a download is served with: plain text, common images, PDF,
    audio and video by their type, anything else (HTML, SVG, scripts: what a browser
    would run in this origin) as application/octet-stream."""
    kind = content_type(name)
    if kind.startswith("text/plain") or kind in _SAFE_DOWNLOADS:
        return kind
    if kind.startswith(("audio/", "video/")):
        return kind
    return "application/octet-stream"


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback and the RFC 5987 UTF-8 name."""
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\' else "_" for ch in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    """Whether `If-None-Match` names this ETag (or `*`)."""
    if if_none_match is None:
        return False
    tags = [t.strip().removeprefix("W/") for t in if_none_match.split(",")]
    return "*" in tags or etag in tags
