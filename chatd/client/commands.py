"""What a typed line means: a message to the current chat, or a slash command.

`translate(line, chat)` is pure: it returns an Action value, and the app carries it out
(send a protocol line, switch chat, move a file, ask for a password). Every protocol
command has a slash form; one the table does not name passes through as typed
(`/stats` sends `stats`), so a server newer than this client stays usable. Raw protocol
lines (`--command`, `/raw`) go through `raw()`, which uses the server's own parser to
recognise sends, so the client can echo them with their id.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from chatd.protocol import commands as proto
from chatd.protocol.events import GENERAL


@dataclass(frozen=True, slots=True)
class Draft:
    """A chat message on its way: echoed with its id and time once the server says OK.
    `chat` is None for a comment, whose chat is the commented message's."""

    chat: str | None
    text: str
    reply_to: int | None = None


@dataclass(frozen=True, slots=True)
class Wire:
    """One protocol line to send; `draft` when it posts a message."""

    line: str
    draft: Draft | None = None


@dataclass(frozen=True, slots=True)
class Switch:
    chat: str


@dataclass(frozen=True, slots=True)
class Upload:
    path: str
    target: str


@dataclass(frozen=True, slots=True)
class Download:
    file_id: int
    dest: str | None


@dataclass(frozen=True, slots=True)
class ChangePassword:
    """`/passwd` alone asks for the passwords without echo; arguments are for scripts."""

    new: str | None
    old: str | None


@dataclass(frozen=True, slots=True)
class Help:
    topic: str | None


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Invalid:
    """A line the client refuses before sending anything; `message` says why."""

    message: str


@dataclass(frozen=True, slots=True)
class Nothing:
    pass


Action = Wire | Switch | Upload | Download | ChangePassword | Help | Quit | Invalid | Nothing


@dataclass(frozen=True, slots=True)
class Slash:
    """One row of the client's command table: what /help shows and Tab completes."""

    name: str
    usage: str
    summary: str


SLASH: tuple[Slash, ...] = (
    Slash("help", "/help [command]", "this list, or one command's usage"),
    Slash("join", "/join #room | /join <link>", "switch to a room; a join link asks to enter"),
    Slash("query", "/query <user>", "switch to a private chat with a user"),
    Slash("msg", "/msg <user|#room> <text>", "send one message without switching"),
    Slash("me", "/me <action>", "an action in the current chat: * alice waves"),
    Slash("who", "/who [#room]", "users online, or a room's members"),
    Slash("history", "/history [chat] [n] [before <id>]", "earlier messages (current chat)"),
    Slash("status", "/status", "server state, your chats and unread counts"),
    Slash("report", "/report <user> [reason]", "complain about a user (3 strikes ban)"),
    Slash("comment", "/comment <id> <text>", "comment on a message"),
    Slash("thread", "/thread <id>", "a message and its comments"),
    Slash("schedule", "/schedule <when> <text|/msg ...|/comment ...>", "send later (+10m, 18:00)"),
    Slash("scheduled", "/scheduled", "your pending scheduled messages"),
    Slash("cancel", "/cancel <schedule_id>", "cancel a scheduled message"),
    Slash("upload", "/upload <path> [target]", "send a file (to the current chat)"),
    Slash("download", "/download <file_id> [dest]", "save a file (here, by its name)"),
    Slash(
        "room",
        "/room create|invite|accept|decline|link|unlink|approve|deny|leave|kick|members ...",
        "rooms",
    ),
    Slash("rooms", "/rooms", "the rooms you belong to"),
    Slash("passwd", "/passwd", "set or change your password (asked without echo)"),
    Slash("raw", "/raw <protocol command>", "send a protocol line as is"),
    Slash("quit", "/quit", "leave (Ctrl-D too)"),
)
# Protocol commands without a row of their own; they pass through as typed.
PASSTHROUGH = ("send", "send_all", "ban", "ping", "unban", "kick", "announce", "stats")
# The client owns these: a second login or a mode switch would break its session.
_CLIENT_OWNED = ("login", "mode")


def slash_names() -> list[str]:
    """Every slash command, for Tab: the table plus the pass-through ones."""
    return sorted({s.name for s in SLASH} | set(PASSTHROUGH) | {"exit"})


def usage_of(name: str) -> str | None:
    name = name.lstrip("/").lower()
    for s in SLASH:
        if s.name == name:
            return s.usage
    spec = proto.lookup(name)
    return "/" + spec.usage if spec is not None else None


def chat_of(target: str) -> str:
    """A target as a chat: `#room` stays, `@bob` stays, a bare `bob` is `@bob`."""
    return target if target.startswith(("#", "@")) else "@" + target


def send_line(chat: str, text: str) -> str:
    """The protocol line that posts `text` to `chat` (send_all for #general)."""
    if chat.lower() == GENERAL:
        return f"send_all {text}"
    return f"send {chat} {text}"


def post(chat: str, text: str) -> Wire:
    return Wire(send_line(chat, text), Draft(chat, text))


def raw(line: str) -> Action:
    """A protocol line as typed; sends are recognised so their OK can be echoed."""
    line = line.strip()
    if not line:
        return Nothing()
    try:
        cmd = proto.parse(line)
    except proto.ParseError:
        return Wire(line)  # the server words the error
    if isinstance(cmd, proto.Login | proto.SetMode):
        return Invalid(f"the client handles {cmd.verb} itself")
    if isinstance(cmd, proto.Quit):
        return Quit()
    if isinstance(cmd, proto.SendAll):
        return Wire(line, Draft(GENERAL, cmd.text))
    if isinstance(cmd, proto.Send):
        return Wire(line, Draft(chat_of(cmd.target), cmd.text))
    if isinstance(cmd, proto.Comment):
        return Wire(line, Draft(None, cmd.text, cmd.message_id))
    return Wire(line)


def _usage(name: str) -> Invalid:
    return Invalid(f"usage: {usage_of(name)}")


def _int(word: str) -> int | None:
    word = word.lstrip("#[").rstrip("]")
    return int(word) if word.isdigit() and len(word) <= 18 else None


def translate(line: str, chat: str) -> Action:
    """A typed line, with `chat` the current chat, to what the client should do."""
    line = line.rstrip("\r\n")
    if not line.strip():
        return Nothing()
    if line.startswith("//"):  # a message that starts with a slash
        return post(chat, line[1:].strip())
    if not line.startswith("/"):
        return post(chat, line.strip())
    head, _, rest = line[1:].partition(" ")
    verb, rest = head.lower(), rest.strip()
    words = rest.split()
    handler = _HANDLERS.get(verb)
    if handler is not None:
        return handler(verb, rest, words, chat)
    if verb in _CLIENT_OWNED:
        return Invalid(f"the client handles {verb} itself")
    if proto.lookup(verb) is not None:
        return raw(f"{verb} {rest}")
    return Invalid(f"unknown command /{head}; try /help")


def _help(verb: str, rest: str, words: list[str], chat: str) -> Action:
    return Help(words[0].lstrip("/").lower() if words else None)


def _quit(verb: str, rest: str, words: list[str], chat: str) -> Action:
    return Quit()


def _join(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if len(words) != 1:
        return _usage("join")
    if words[0].startswith("#"):
        return Switch(words[0])
    return Wire(f"join {words[0]}")


def _query(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if len(words) != 1:
        return _usage("query")
    return Switch(chat_of(words[0]))


def _msg(verb: str, rest: str, words: list[str], chat: str) -> Action:
    target, _, text = rest.partition(" ")
    if not target or not text.strip():
        return _usage("msg")
    return post(chat_of(target), text.strip())


def _me(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if not rest:
        return _usage("me")
    return post(chat, f"/me {rest}")


def _history(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if not words or words[0].isdigit() or words[0].lower() == "before":
        words = [chat, *words]
    elif words[0].lower() == "general":
        words = [GENERAL, *words[1:]]
    else:
        words = [chat_of(words[0]), *words[1:]]
    return Wire("history " + " ".join(words))


def _report(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if not words:
        return _usage("report")
    return Wire(f"{verb} {rest}")


def _comment(verb: str, rest: str, words: list[str], chat: str) -> Action:
    ident, _, text = rest.partition(" ")
    mid = _int(ident)
    if mid is None or not text.strip():
        return _usage("comment")
    return Wire(f"comment {mid} {text.strip()}", Draft(None, text.strip(), mid))


def _by_id(verb: str, rest: str, words: list[str], chat: str) -> Action:
    ident = _int(words[0]) if len(words) == 1 else None
    if ident is None:
        return _usage(verb)
    return Wire(f"{verb} {ident}")


def _schedule(verb: str, rest: str, words: list[str], chat: str) -> Action:
    when, _, what = rest.partition(" ")
    if not when or not what.strip():
        return _usage("schedule")
    inner = translate(what.strip(), chat)
    if not isinstance(inner, Wire) or inner.draft is None or inner.line.startswith("join "):
        return Invalid("only messages and comments can be scheduled")
    return Wire(f"schedule {when} {inner.line}")


def _bare(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if words:
        return _usage(verb)
    return Wire(verb)


def _who(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if len(words) > 1:
        return _usage("who")
    return Wire(f"who {words[0]}" if words else "who")


def _split(rest: str) -> list[str] | None:
    """Shell-like words, so paths with spaces can be quoted."""
    try:
        return shlex.split(rest)
    except ValueError:
        return None


def _upload(verb: str, rest: str, words: list[str], chat: str) -> Action:
    args = _split(rest)
    if args is None or not 1 <= len(args) <= 2:
        return _usage("upload")
    target = chat_of(args[1]) if len(args) == 2 else chat
    return Upload(args[0], target)


def _download(verb: str, rest: str, words: list[str], chat: str) -> Action:
    args = _split(rest)
    if args is None or not 1 <= len(args) <= 2 or _int(args[0]) is None:
        return _usage("download")
    file_id = _int(args[0])
    assert file_id is not None
    return Download(file_id, args[1] if len(args) == 2 else None)


def _room(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if not words:
        return _usage("room")
    return Wire(f"room {rest}")


def _passwd(verb: str, rest: str, words: list[str], chat: str) -> Action:
    if len(words) > 2:
        return Invalid("usage: /passwd (asks), or /passwd <new> [old] in scripts")
    return ChangePassword(words[0] if words else None, words[1] if len(words) == 2 else None)


def _raw(verb: str, rest: str, words: list[str], chat: str) -> Action:
    return raw(rest) if rest else _usage("raw")


_HANDLERS = {
    "help": _help,
    "?": _help,
    "quit": _quit,
    "exit": _quit,
    "join": _join,
    "query": _query,
    "msg": _msg,
    "me": _me,
    "who": _who,
    "history": _history,
    "status": _bare,
    "scheduled": _bare,
    "rooms": _bare,
    "report": _report,
    "ban": _report,
    "comment": _comment,
    "thread": _by_id,
    "cancel": _by_id,
    "schedule": _schedule,
    "upload": _upload,
    "download": _download,
    "room": _room,
    "passwd": _passwd,
    "raw": _raw,
    "quote": _raw,
}
