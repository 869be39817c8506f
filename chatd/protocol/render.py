"""Events to bytes, for people (text) or programs (JSON Lines).

`Renderer.render(event, mode)` is called once per event and mode; the server writes the
same bytes to every session that shares the mode. Text replies that carry items write
them first, indented by two spaces, then the closing `OK` line (PROTOCOL.md).
"""

from __future__ import annotations

import binascii
import functools
import json
import textwrap
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, cast

from chatd.protocol.events import Error, Event, Message, Mode, Notice, Ok, Push
from chatd.protocol.irc import IRC_MODES, IrcRenderer
from chatd.protocol.replies import SendAllOk, SentOk
from chatd.protocol.terminal import inert
from chatd.protocol.timefmt import rfc3339


def chat_for(message: Message, viewer: str | None) -> str:
    """How a message's chat reads for `viewer`: `@<the other party>` in private."""
    if message.to is None:
        return message.chat
    if viewer is not None and message.sender.lower() == viewer:
        return "@" + message.to
    return "@" + message.sender


def message_dict(push: Push) -> dict[str, Any]:
    m = push.message
    d: dict[str, Any] = {
        "type": "message",
        "id": m.id,
        "chat": chat_for(m, push.viewer),
        "from": m.sender,
        "text": m.text,
        "ts": rfc3339(m.ts),
        "reply_to": m.reply_to,
        "replay": push.replay,
    }
    if m.to is not None:
        d["to"] = m.to
    if m.file is not None:
        f = m.file
        d["file"] = {"id": f.id, "name": f.name, "size": f.size, "sha256": f.sha256}
    return d


def _obj(o: object) -> object:
    if isinstance(o, Push):
        return message_dict(o)
    raise TypeError(f"cannot encode {type(o).__name__}")


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=_obj)
#: The replies to a sent message, whose text is `OK sent [id]` (`_sent` below).
_SENT = frozenset({SentOk, SendAllOk})


class Renderer:
    """Renders events; holds the time zone used for the HH:MM:SS of text lines."""

    __slots__ = ("_clock", "_tz", "irc")

    def __init__(self, tz: tzinfo | None = None) -> None:
        self._tz = tz
        self.irc = IrcRenderer()  # the IRC door sets its server name and file links
        self._clock = functools.lru_cache(maxsize=4)(self._format_clock)

    def render(self, event: Event, mode: Mode) -> bytes:
        if mode is Mode.TEXT:
            kind = type(event)
            if kind is Push:  # the hot path: fan-out
                return (self.message_line(cast(Push, event)) + "\n").encode()
            if kind in _SENT:  # the sender's OK: what _ok_text makes, without its fields
                return b"OK sent [%d]\n" % cast(SentOk, event).id
        if isinstance(event, Rendered):
            return event.data
        if mode in IRC_MODES:
            return self.irc.render(event, mode)
        if mode is Mode.JSON:
            return self.json(event)
        return self.text(event)

    # JSON Lines -------------------------------------------------------------------

    def json(self, event: Event) -> bytes:
        if isinstance(event, Push):
            obj: dict[str, Any] = message_dict(event)
        elif isinstance(event, Ok):
            obj = {"type": "ok", "cmd": event.cmd, **event.fields}
        elif isinstance(event, Error):
            obj = {
                "type": "error",
                "cmd": event.cmd,
                "code": str(event.code),
                "message": event.message,
            }
            if event.retry_after is not None:
                obj["retry_after"] = event.retry_after
        elif isinstance(event, Notice):
            obj = {"type": "notice", "event": event.event, **event.fields}
        else:  # pragma: no cover - every Event subclass is handled above
            raise TypeError(type(event).__name__)
        return (_json.encode(obj) + "\n").encode()

    # Text -------------------------------------------------------------------------

    def text(self, event: Event) -> bytes:
        if isinstance(event, Push):
            return (self.message_line(event) + "\n").encode()
        if isinstance(event, Ok):
            return self._ok_text(event).encode()
        if isinstance(event, Error):
            retry = f" (retry in {event.retry_after}s)" if event.retry_after is not None else ""
            return f"ERR {event.code} {inert(event.message)}{retry}\n".encode()
        if isinstance(event, Notice):
            return f"* {inert(notice_text(event))}\n".encode()
        raise TypeError(type(event).__name__)  # pragma: no cover

    def clock(self, ts: float) -> str:
        """HH:MM:SS in the server's zone (cached per second, like rfc3339)."""
        return self._clock(int(ts))

    def _format_clock(self, second: int) -> str:
        return f"{datetime.fromtimestamp(second, self._tz):%H:%M:%S}"

    def message_line(self, push: Push) -> str:
        """`HH:MM:SS [id] chat <sender> text`, with reply and file markers; the text
        made inert for a terminal (chatd.protocol.terminal)."""
        m = push.message
        text = m.text if m.text.isprintable() else inert(m.text)
        if m.reply_to is None and m.file is None and text:  # most of them
            chat = m.chat if m.to is None else chat_for(m, push.viewer)
            return f"{self._clock(int(m.ts))} [{m.id}] {chat} <{m.sender}> {text}"
        parts = [self.clock(m.ts), f"[{m.id}]", chat_for(m, push.viewer), f"<{m.sender}>"]
        if m.reply_to is not None:
            parts.append(f"(re [{m.reply_to}])")
        if m.file is not None:
            parts.append(f"[file {m.file.id} {inert(m.file.name)} {m.file.size} bytes]")
        if text and (m.file is None or m.text != m.file.name):
            parts.append(text)
        return " ".join(parts)

    def _ok_text(self, ok: Ok) -> str:
        if ok.name == "download":  # the OK line first, then the data, then `.`
            f = ok.fields["file"]
            data = ok.fields.get("data", "")
            lines = "".join(data[i : i + B64_LINE] + "\n" for i in range(0, len(data), B64_LINE))
            return f"{_download_head(f)}{lines}.\n"
        layout = _TEXT_OK.get(ok.name)
        items, summary = layout(self, ok.fields) if layout else ((), "")
        summary = inert(summary)
        if not items:
            return f"OK {summary}\n" if summary else "OK\n"
        head = "".join(f"  {inert(item)}\n" for item in items)
        return f"{head}OK {summary}\n" if summary else f"{head}OK\n"


# Downloads: big replies, rendered off the event loop. --------------------------------

B64_LINE = 76  # characters per base64 line of a text-mode download
_B64_CHUNK = 57 * 1024  # bytes per base64 call: 1024 whole lines


@dataclass(frozen=True, slots=True)
class Rendered(Event):
    """A reply already rendered for its session's mode: a download, rendered by a
    worker thread (base64 and JSON of 5 MiB take tens of milliseconds)."""

    data: bytes


def _download_head(f: Mapping[str, Any]) -> str:
    return f"OK file {f['id']} {f['name']} {f['size']} {f['sha256']}\n"


def download_reply(cmd: str, file: Mapping[str, Any], body: bytes, mode: Mode) -> bytes:
    """The bytes `render(Ok("download", cmd, {"file": file, "data": b64(body)}), mode)`
    would give, built in slices so that the worker thread doing it lets the event loop
    run in between (a binascii call holds the GIL for its whole input)."""
    view = memoryview(body)
    chunks = (
        binascii.b2a_base64(view[i : i + _B64_CHUNK], newline=False)
        for i in range(0, len(body), _B64_CHUNK)
    )
    if mode is Mode.JSON:
        head = _json.encode({"type": "ok", "cmd": cmd, "file": dict(file)})[:-1]
        return b"".join([(head + ',"data":"').encode(), *chunks, b'"}\n'])
    parts = [_download_head(file).encode()]
    for enc in chunks:
        parts.append(b"\n".join([enc[j : j + B64_LINE] for j in range(0, len(enc), B64_LINE)]))
        parts.append(b"\n")
    parts.append(b".\n")
    return b"".join(parts)


# Text layouts of OK replies, one per canonical command: (items, closing summary). ------

_Layout = Callable[[Renderer, Mapping[str, Any]], tuple[Iterable[str], str]]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _lines(r: Renderer, pushes: Sequence[Push]) -> list[str]:
    return [r.message_line(p) for p in pushes]


HELP_COLUMN = 32  # usages up to this long share a column; a longer one gets its own line
HELP_WIDTH = 80  # help items, with their two-space indent, fit an 80-column terminal


def _help(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    """Usage and summary in two aligned columns within 80 columns: a summary too long for
    its column wraps under itself, a usage too long for its column has a line of its own."""
    cmds = f["commands"]
    pad = " " * (HELP_COLUMN + 2)
    items: list[str] = []
    for c in cmds:
        usage, summary = str(c["usage"]), str(c["summary"])
        lines = textwrap.wrap(summary, HELP_WIDTH - 2 - len(pad)) or [""]
        if len(usage) <= HELP_COLUMN:
            items.append(f"{usage:<{HELP_COLUMN}}  {lines.pop(0)}".rstrip())
        else:
            items.append(usage)
        items += [pad + line for line in lines]
    return items, _plural(len(cmds), "command")


def _login(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    new = " (new account)" if f["new"] else ""
    return (), f"welcome {f['user']}{new}, {f['unread']} unread"


def _sent(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    return (), f"sent [{f['id']}]"


def _comment(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    return (), f"sent [{f['id']}] re [{f['reply_to']}]"


def _ban(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    until = f["banned_until"]
    tail = f", banned until {until}" if until else ""
    return (), f"{f['user']} has {_plural(f['strikes'], 'strike')}{tail}"


def _who(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    users = f["users"]
    items = [f"{u['name']} ({_plural(u['sessions'], 'session')})" for u in users]
    where = f" in {f['room']}" if f.get("room") else " online"
    return items, f"{_plural(len(users), 'user')}{where}"


def _status(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    s = f["server"]
    items = [f"server chatd {s['version']}, up {s['uptime_s']}s, {s['online']} online"]
    if "user" in f:
        items.append(f"you are {f['user']} with {_plural(f['sessions'], 'session')}")
        items += [f"{c['chat']}: {c['unread']} unread, last [{c['last_id']}]" for c in f["chats"]]
    return items, "status"


def _history(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    msgs = f["messages"]
    return _lines(r, msgs), f"{_plural(len(msgs), 'message')} in {f['chat']}"


def _thread(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    comments = f["comments"]
    return _lines(r, [f["message"], *comments]), f"thread [{f['message'].message.id}], " + (
        _plural(len(comments), "comment")
    )


def _schedule(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    return (), f"scheduled {f['schedule_id']} at {f['at']}"


def _scheduled(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    rows = f["scheduled"]
    items = [f"{s['schedule_id']} at {s['at']}: {s['command']}" for s in rows]
    return items, f"{_plural(len(rows), 'scheduled message')}"


def _cancel(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    return (), f"cancelled {f['schedule_id']}"


def _upload(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    fi = f["file"]
    return (), f"sent [{f['id']}] file {fi['id']} {fi['name']} {fi['size']} {fi['sha256']}"


def _room(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    if "members" in f:
        return list(f["members"]), f"{_plural(len(f['members']), 'member')} in {f['room']}"
    if "link" in f:
        return (), f"link {f['link']} for {f['room']} expires {f['expires']}"
    if "status" in f and "user" in f:  # room invite with rooms.invite_consent
        until = f" until {f['expires']}" if "expires" in f else ""
        return (), f"{f['status']} {f['user']} to {f['room']}{until}"
    if "status" in f:
        return (), f"{f['status']}: asked to join {f['room']}"
    if "user" in f:
        return (), f"{f['room']} {f['user']}"
    return (), f"{f['room']}"


def _rooms(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    rooms = f["rooms"]
    items = [f"{x['room']} (owner {x['owner']}, {_plural(x['members'], 'member')})" for x in rooms]
    invites = f.get("invites") or ()
    if not invites:
        return items, _plural(len(rooms), "room")
    items += [
        f"{x['room']} (invited by {x['by']} until {x['expires']}: room accept|decline {x['room']})"
        for x in invites
    ]
    return items, f"{_plural(len(rooms), 'room')}, {_plural(len(invites), 'invitation')}"


def _stats(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    return [f"{k} {v}" for k, v in f.items()], "stats"


def _fixed(summary: str) -> _Layout:
    return lambda r, f: ((), summary)


def _user(r: Renderer, f: Mapping[str, Any]) -> tuple[Iterable[str], str]:
    return (), f["user"]


_TEXT_OK: dict[str, _Layout] = {
    "help": _help,
    "mode": lambda r, f: ((), f"mode {f['mode']}"),
    "ping": _fixed("pong"),
    "login": _login,
    "passwd": _fixed("password set"),
    "send_all": _sent,
    "send": _sent,
    "ban": _ban,
    "who": _who,
    "status": _status,
    "history": _history,
    "comment": _comment,
    "thread": _thread,
    "schedule": _schedule,
    "scheduled": _scheduled,
    "cancel": _cancel,
    "upload": _upload,
    "room": _room,
    "join": _room,
    "rooms": _rooms,
    "unban": _user,
    "kick": _user,
    "announce": _fixed("announced"),
    "stats": _stats,
    "quit": _fixed("bye"),
}


# Notices for people. ---------------------------------------------------------------

_NOTICE_TEXT: dict[str, str] = {
    "warned": "you were reported: {strikes} of {limit} strikes",
    "banned": "you are banned from sending until {until}",
    "unbanned": "your ban was lifted",
    "shutdown": "the server is shutting down",
    "slow-consumer": "closing: you stopped reading and {pending} bytes piled up",
    "login-timeout": "closing: no login within {timeout_s}s",
    "upload-timeout": "closing: no upload data for {timeout_s}s; the upload was dropped",
    "password-changed": "closing: your password was changed; log in again with the new one",
    "kicked": "you were kicked by {by}",
    "announce": "announcement from {from}: {text}",
    "invited": "{by} added you to {room}",
    "invitation": "{by} invites you to {room}: room accept {room} or room decline {room} "
    "(until {expires})",
    "declined": "{user} declined the invitation to {room}",
    "uninvited": "{by} withdrew the invitation to {room}",
    "join-request": "{user} asks to join {room}: room approve {room} {user}",
    "joined": "{user} joined {room}",
    "left": "{user} left {room}",
    "denied": "your request to join {room} was denied",
    "removed": "you were removed from {room}",
    "owner": "{user} now owns {room}",
    "scheduled-sent": "scheduled {schedule_id} sent as [{id}]",
    "scheduled-failed": "scheduled {schedule_id} dropped: {reason}",
}


def notice_text(notice: Notice) -> str:
    template = _NOTICE_TEXT.get(notice.event)
    if template is not None:
        try:
            return template.format_map(notice.fields)
        except (KeyError, IndexError, ValueError):
            pass
    extra = " ".join(f"{k}={v}" for k, v in notice.fields.items())
    return f"{notice.event} {extra}".rstrip()
