"""Server JSON objects to lines for a person: local time, message id, chat, sender, text.

Pure functions of (object, Theme): no I/O, no clock unless `now` is left out, so the
tests pin every layout. Fields are read defensively (`.get`): a newer server may add or
drop fields, and the client must show what it can instead of crashing. Layouts of `OK`
replies that carry no messages reuse the server's own text layouts (`chatd.protocol`),
so a person sees the same words from `nc` and from the client.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TextIO

from chatd.protocol import replies as rp
from chatd.protocol.events import Ok
from chatd.protocol.notices import AnyNotice
from chatd.protocol.render import Renderer, notice_text
from chatd.protocol.terminal import UNSAFE
from chatd.protocol.wire import WireError, notice_from_json, reply_from_json

Obj = Mapping[str, Any]

DIM, BOLD, RED, GREEN, YELLOW, CYAN, MAGENTA = "2", "1", "31", "32", "33", "36", "35"
_NAME_COLORS = ("31", "32", "33", "34", "35", "36", "91", "92", "93", "94", "95", "96")
QUOTE_CHARS = 32


# What a terminal would act on (chatd.protocol.terminal: C0 and C1 controls, bidi
# overrides, zero-width characters): JSON carries text as sent, and nothing a server
# sends may drive the terminal. Shown as U+FFFD, so a person sees something was there.
_CONTROLS = dict.fromkeys(UNSAFE, "\ufffd") | {0x09: " ", 0x0A: "\ufffd", 0x0D: "\ufffd"}


def clean(value: object) -> str:
    """Server-provided text made safe to print."""
    return str(value).translate(_CONTROLS)


@dataclass(frozen=True, slots=True)
class Theme:
    """How to paint: ANSI colours or plain text, and the zone for local times."""

    color: bool = False
    tz: tzinfo | None = None  # None: the machine's local zone

    def paint(self, text: str, *styles: str) -> str:
        if not self.color or not styles:
            return text
        return f"\x1b[{';'.join(styles)}m{text}\x1b[0m"

    def name(self, name: str) -> str:
        """A user name in a colour of its own, stable across runs (crc32, not hash())."""
        color = _NAME_COLORS[zlib.crc32(name.lower().encode()) % len(_NAME_COLORS)]
        return self.paint(name, BOLD, color)


def use_color(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Colours only on a terminal, and never when NO_COLOR is set (no-color.org)."""
    return stream.isatty() and not environ.get("NO_COLOR") and environ.get("TERM") != "dumb"


@dataclass(frozen=True, slots=True)
class Quote:
    """What the client remembers of a message, to show replies and comments in context."""

    chat: str
    sender: str
    text: str


def parse_ts(ts: str) -> datetime | None:
    try:
        return datetime.fromisoformat(ts)
    except (TypeError, ValueError):
        return None


def clock(ts: str, theme: Theme, now: datetime | None = None) -> str:
    """RFC 3339 UTC to local `HH:MM:SS`, with the date when it is not today."""
    dt = parse_ts(ts)
    if dt is None:
        return "--:--:--"
    local = dt.astimezone(theme.tz)
    today = (now or datetime.now(local.tzinfo)).astimezone(local.tzinfo).date()
    return f"{local:%H:%M:%S}" if local.date() == today else f"{local:%Y-%m-%d %H:%M:%S}"


def format_size(n: int) -> str:
    """Bytes for people: 512 B, 1.5 KiB, 4.8 MiB."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def _shorten(text: str, limit: int = QUOTE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chat_label(chat: str, theme: Theme) -> str:
    return theme.paint(chat, MAGENTA if chat.startswith("@") else CYAN)


def message_line(
    m: Obj,
    theme: Theme,
    *,
    quotes: Mapping[int, Quote] | None = None,
    mark_replay: bool = True,
    now: datetime | None = None,
) -> str:
    """`HH:MM:SS [id] chat <sender> text`; replies, files and `/me` shown as such.

    A message replayed at login is prefixed `[unread]` (`mark_replay`); history replies
    pass False, since everything in them is old on purpose.
    """
    sender = clean(m.get("from", "?"))
    text = clean(m.get("text", ""))
    parts = []
    if mark_replay and m.get("replay"):
        parts.append(theme.paint("[unread]", YELLOW))
    parts += [
        theme.paint(clock(str(m.get("ts", "")), theme, now), DIM),
        theme.paint(f"[{clean(m.get('id', '?'))}]", DIM),
        chat_label(clean(m.get("chat", "?")), theme),
    ]
    action = text.startswith("/me ")
    parts.append(f"* {theme.name(sender)}" if action else f"<{theme.name(sender)}>")
    reply_to = m.get("reply_to")
    if reply_to is not None:
        q = (quotes or {}).get(reply_to) if isinstance(reply_to, int) else None
        context = f' {q.sender}: "{_shorten(q.text)}"' if q is not None and q.text else ""
        parts.append(theme.paint(clean(f"(re [{reply_to}]{context})"), DIM))
    f = m.get("file")
    if isinstance(f, Mapping):
        size = f.get("size")
        size_text = format_size(size) if isinstance(size, int) else "?"
        label = clean(f"[file {f.get('id')}: {f.get('name')}, {size_text}]")
        parts.append(theme.paint(label, GREEN))
        if text == f.get("name"):  # the server's text for a bare file is its name
            text = ""
    if action:
        parts.append(text[4:])
    elif text:
        parts.append(text)
    return " ".join(parts)


def notice_line(n: Obj, theme: Theme) -> str:
    """`* text`, worded by the server's own notice templates."""
    event = str(n.get("event", "notice"))
    if event == "raw":  # a text line from a server that did not speak JSON yet
        return theme.paint(clean(n.get("text", "")), YELLOW)
    try:
        notice = notice_from_json(n)
    except WireError:  # a notice that does not fit its kind: words of its own
        fields = {k: v for k, v in n.items() if k not in ("type", "event")}
        notice = AnyNotice(event, fields)
    return theme.paint(clean(f"* {notice_text(notice)}"), YELLOW)


def info_line(text: str, theme: Theme) -> str:
    """The client's own remarks (connection state, progress), set apart from chat."""
    return theme.paint(f"* {text}", DIM)


def error_line(e: Obj, theme: Theme) -> str:
    """`error: <human text> [<code>]`, plus when to retry for rate limits and bans."""
    retry = e.get("retry_after")
    tail = f" (retry in {retry:g}s)" if isinstance(retry, int | float) else ""
    code = e.get("code", "error")
    return theme.paint(clean(f"error: {e.get('message', '')} [{code}]{tail}"), RED)


def reply_lines(
    r: Obj,
    theme: Theme,
    *,
    quotes: Mapping[int, Quote] | None = None,
    now: datetime | None = None,
) -> list[str]:
    """An `ok` reply as lines, by its kind (chatd.protocol.wire decodes it into the
    server's own reply classes). Sends are echoed by the caller, who knows the text."""
    if r.get("type") == "error":
        return [error_line(r, theme)]
    try:
        reply = reply_from_json(r)
    except WireError:  # a reply that does not fit its kind: show what it says
        extra = {k: v for k, v in r.items() if k not in ("type", "cmd")}
        dump = json.dumps(extra, ensure_ascii=False) if extra else ""
        return [info_line(clean(f"ok {r.get('cmd') or ''} {dump}".rstrip()), theme)]

    def msg(m: Obj) -> str:
        return message_line(m, theme, quotes=quotes, mark_replay=False, now=now)

    match reply:
        case rp.HistoryOk():
            msgs: list[Obj] = list(r["messages"])  # as sent: the chat as this user sees it
            n = len(msgs)
            footer = f"{n} message{'s' * (n != 1)} in {reply.chat}"
            return [*map(msg, msgs), info_line(footer, theme)]
        case rp.ThreadOk():
            comments: list[Obj] = list(r["comments"])
            lines = [msg(r["message"]), *("  ↳ " + msg(c) for c in comments)]
            n = len(comments)
            return [*lines, info_line(f"{n} comment{'s' * (n != 1)}", theme)]
        case rp.ScheduleOk():
            at = clock(str(r["at"]), theme, now)
            return [info_line(f"scheduled {reply.schedule_id} for {at}", theme)]
        case rp.ScheduledOk():
            lines = [
                f"  {row.schedule_id} at {clock(str(raw['at']), theme, now)}: {row.command}"
                for row, raw in zip(reply.scheduled, r["scheduled"], strict=True)
            ]
            return [*lines, info_line(f"{len(reply.scheduled)} scheduled", theme)]
        case rp.SentOk() | rp.CommentOk():
            return [info_line(f"sent [{reply.id}]", theme)]
        case rp.UploadOk():
            f = reply.file
            return [info_line(f"sent [{reply.id}] file {f.id} {clean(f.name)}", theme)]
    return _server_layout(reply, theme)


def _server_layout(reply: Ok, theme: Theme) -> list[str]:
    """The server's text layout for this reply (items, then `OK summary`), quieter."""
    text = Renderer().text(reply).decode()
    lines = [clean(line) for line in text.rstrip("\n").split("\n")]
    summary = lines.pop().removeprefix("OK").strip() or f"ok {reply.cmd}"
    return [*lines, info_line(summary, theme)]


HELP_COLUMN = 34  # usages up to this long share a column; a longer one stands alone


def help_lines(rows: Sequence[tuple[str, str]], theme: Theme) -> list[str]:
    """Usage and summary in two aligned columns, like the server's `help`: a usage too
    long for the column gets a line of its own, its summary under the column."""
    width = max((len(u) for u, _ in rows if len(u) <= HELP_COLUMN), default=0)
    lines = []
    for usage, summary in rows:
        if len(usage) <= width:
            lines.append(f"  {theme.paint(usage.ljust(width), BOLD)}  {summary}")
        else:
            lines.append(f"  {theme.paint(usage, BOLD)}")
            lines.append(f"  {' ' * width}  {summary}")
    return lines
