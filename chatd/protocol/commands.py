"""Text commands: one typed value per command, and `parse(line)` to make them.

The COMMANDS table reads like the contract: each entry's usage line is what `help`
shows and what `ERR bad-args` quotes. Parsing checks shape only (arity, numbers, the
`before` keyword); whether a user or room exists is the core's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from chatd.protocol.events import Code


class ParseError(Exception):
    """A line that is not a well-formed command. `cmd` is the verb as typed, if any."""

    def __init__(self, code: Code, message: str, cmd: str | None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.cmd = cmd


@dataclass(frozen=True, slots=True, kw_only=True)
class Command:
    """Base of all commands. `verb` is the first word as typed, lower-cased."""

    verb: str


@dataclass(frozen=True, slots=True)
class Help(Command):
    topic: str | None


@dataclass(frozen=True, slots=True)
class SetMode(Command):
    mode: str


@dataclass(frozen=True, slots=True)
class Ping(Command):
    pass


@dataclass(frozen=True, slots=True)
class Login(Command):
    name: str
    password: str | None
    after: int | None = None  # replay everything after this id (the last one the client saw)


@dataclass(frozen=True, slots=True)
class Passwd(Command):
    new: str
    old: str | None


@dataclass(frozen=True, slots=True)
class SendAll(Command):
    text: str
    tags: str = ""  # IRC's client-only tags and NOTICE kind (Message.tags/.kind): doors only
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Send(Command):
    target: str
    text: str
    tags: str = ""  # as SendAll's
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Ban(Command):
    """`ban`/`report`; `rest` is the optional duration (admins) and reason."""

    user: str
    rest: str


@dataclass(frozen=True, slots=True)
class Who(Command):
    room: str | None


@dataclass(frozen=True, slots=True)
class Status(Command):
    pass


@dataclass(frozen=True, slots=True)
class History(Command):
    chat: str
    count: int | None
    before: int | None


@dataclass(frozen=True, slots=True)
class Comment(Command):
    message_id: int
    text: str
    tags: str = ""  # as SendAll's
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Thread(Command):
    message_id: int


@dataclass(frozen=True, slots=True)
class Schedule(Command):
    """`when` is parsed by the core (it needs the clock and time zone); `inner` is the
    command to run later and `inner_line` its text, shown by `scheduled`."""

    when: str
    inner: SendAll | Send | Comment
    inner_line: str


@dataclass(frozen=True, slots=True)
class Scheduled(Command):
    pass


@dataclass(frozen=True, slots=True)
class Cancel(Command):
    schedule_id: int


@dataclass(frozen=True, slots=True)
class Upload(Command):
    target: str
    filename: str


@dataclass(frozen=True, slots=True)
class Download(Command):
    file_id: int


@dataclass(frozen=True, slots=True)
class Room(Command):
    """`room <action> …`: `room` is the `#name` argument, `user` the member argument."""

    action: str
    room: str
    user: str | None


@dataclass(frozen=True, slots=True)
class Rooms(Command):
    pass


@dataclass(frozen=True, slots=True)
class Join(Command):
    link: str


@dataclass(frozen=True, slots=True)
class Unban(Command):
    user: str


@dataclass(frozen=True, slots=True)
class Kick(Command):
    user: str


@dataclass(frozen=True, slots=True)
class Announce(Command):
    text: str


@dataclass(frozen=True, slots=True)
class Stats(Command):
    pass


@dataclass(frozen=True, slots=True)
class Quit(Command):
    pass


@dataclass(frozen=True, slots=True)
class Relay(Command):
    """Client-only tags (IRC's TAGMSG: typing, reactions) for a chat's members, pushed
    and never stored. Doors build it (`ref` is their id for it); no text line parses
    to it (its row is in DOOR_COMMANDS)."""

    target: str
    tags: tuple[tuple[str, str], ...]
    ref: str


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of the command table."""

    name: str
    usage: str
    summary: str
    parse: Callable[[str, str], Command]
    before_login: bool = False
    admin: bool = False


def _words(rest: str) -> list[str]:
    return rest.split()


def _split2(rest: str) -> tuple[str, str]:
    """First word and the untouched remainder (message text keeps inner spaces)."""
    parts = rest.split(None, 1)
    if not parts:
        return "", ""
    return parts[0], parts[1].strip() if len(parts) > 1 else ""


def _int(word: str) -> int:
    if not word.isdigit() or len(word) > 18:
        raise ValueError(word)
    return int(word)


def _no_args(cls: Callable[..., Command]) -> Callable[[str, str], Command]:
    def parse(verb: str, rest: str) -> Command:
        if rest.strip():
            raise ValueError("takes no arguments")
        return cls(verb=verb)

    return parse


def _p_help(verb: str, rest: str) -> Command:
    w = _words(rest)
    if len(w) > 1:
        raise ValueError
    return Help(w[0].lower() if w else None, verb=verb)


def _p_mode(verb: str, rest: str) -> Command:
    w = _words(rest)
    if len(w) != 1 or w[0].lower() not in ("text", "json"):
        raise ValueError
    return SetMode(w[0].lower(), verb=verb)


def _p_login(verb: str, rest: str) -> Command:
    """login <name> [password] [after <id>]: `after` is chatd's extension for clients
    that track the last id they saw (a password `after` needs `after <id>` behind it)."""
    w = _words(rest)
    after = None
    if len(w) >= 3 and w[-2].lower() == "after":
        after = _int(w[-1])
        w = w[:-2]
    if not 1 <= len(w) <= 2:
        raise ValueError
    return Login(w[0], w[1] if len(w) == 2 else None, after, verb=verb)


def _p_passwd(verb: str, rest: str) -> Command:
    w = _words(rest)
    if not 1 <= len(w) <= 2:
        raise ValueError
    return Passwd(w[0], w[1] if len(w) == 2 else None, verb=verb)


def _p_send_all(verb: str, rest: str) -> Command:
    text = rest.strip()
    if not text:
        raise ValueError
    return SendAll(text, verb=verb)


def _p_send(verb: str, rest: str) -> Command:
    target, text = _split2(rest)
    if not target or not text:
        raise ValueError
    return Send(target, text, verb=verb)


def _p_ban(verb: str, rest: str) -> Command:
    user, more = _split2(rest)
    if not user:
        raise ValueError
    return Ban(user, more, verb=verb)


def _p_who(verb: str, rest: str) -> Command:
    w = _words(rest)
    if len(w) > 1:
        raise ValueError
    return Who(w[0] if w else None, verb=verb)


def _p_history(verb: str, rest: str) -> Command:
    w = _words(rest)
    if not w:
        raise ValueError
    chat, args = w[0], w[1:]
    count: int | None = None
    before: int | None = None
    if args and args[0].lower() != "before":
        count = _int(args.pop(0))
        if count == 0:
            raise ValueError
    if args:
        if len(args) != 2 or args[0].lower() != "before":
            raise ValueError
        before = _int(args[1])
    return History(chat, count, before, verb=verb)


def _p_comment(verb: str, rest: str) -> Command:
    ident, text = _split2(rest)
    if not text:
        raise ValueError
    return Comment(_int(ident), text, verb=verb)


def _p_id(cls: Callable[..., Command]) -> Callable[[str, str], Command]:
    def parse(verb: str, rest: str) -> Command:
        w = _words(rest)
        if len(w) != 1:
            raise ValueError
        return cls(_int(w[0].lstrip("#")), verb=verb)

    return parse


def _p_schedule(verb: str, rest: str) -> Command:
    when, line = _split2(rest)
    if not when or not line:
        raise ValueError
    if line.split(None, 1)[0].lower() not in ("send_all", "send", "comment"):
        raise ValueError("only send_all, send and comment can be scheduled")
    inner = parse(line)
    if not isinstance(inner, SendAll | Send | Comment):
        raise ValueError("only send_all, send and comment can be scheduled")
    return Schedule(when, inner, line, verb=verb)


def _p_upload(verb: str, rest: str) -> Command:
    w = _words(rest)
    if len(w) != 2:
        raise ValueError
    return Upload(w[0], w[1], verb=verb)


_ROOM_ARITY = {
    "create": 1,
    "invite": 2,
    "link": 1,
    "unlink": 1,
    "approve": 2,
    "deny": 2,
    "accept": 1,
    "decline": 1,
    "leave": 1,
    "kick": 2,
    "members": 1,
}


def _p_room(verb: str, rest: str) -> Command:
    w = _words(rest)
    if not w or w[0].lower() not in _ROOM_ARITY:
        raise ValueError
    action = w[0].lower()
    if len(w) - 1 != _ROOM_ARITY[action]:
        raise ValueError
    return Room(action, w[1], w[2] if len(w) > 2 else None, verb=verb)


def _p_one(cls: Callable[..., Command]) -> Callable[[str, str], Command]:
    def parse(verb: str, rest: str) -> Command:
        w = _words(rest)
        if len(w) != 1:
            raise ValueError
        return cls(w[0], verb=verb)

    return parse


def _p_text(cls: Callable[..., Command]) -> Callable[[str, str], Command]:
    def parse(verb: str, rest: str) -> Command:
        text = rest.strip()
        if not text:
            raise ValueError
        return cls(text, verb=verb)

    return parse


_SPECS = (
    Spec("help", "help [command]", "list commands, or show one command's usage", _p_help, True),
    Spec("mode", "mode text|json", "switch this connection's output mode", _p_mode, True),
    Spec("ping", "ping", "keep-alive; answers OK pong", _no_args(Ping), True),
    Spec(
        "login",
        "login <name> [password]",
        "log in; the first login creates the account ([after <id>]: replay after that id)",
        _p_login,
        True,
    ),
    Spec("passwd", "passwd <new> [old]", "set or change your password", _p_passwd),
    Spec("send_all", "send_all <text>", "send a message to #general", _p_send_all),
    Spec(
        "send", "send <user|@user|#room> <text>", "private message, or a message to a room", _p_send
    ),
    Spec(
        "ban",
        "ban <user> [reason]",
        "complain about a user; 3 strikes ban them from sending",
        _p_ban,
    ),
    Spec("who", "who [#room]", "users online, or a room's members", _p_who),
    Spec(
        "status",
        "status",
        "server state, and after login your chats and unread counts",
        _no_args(Status),
        True,
    ),
    Spec(
        "history",
        "history <chat> [n] [before <id>]",
        "earlier messages of a chat, oldest first",
        _p_history,
    ),
    Spec(
        "comment", "comment <id> <text>", "comment on a message, in that message's chat", _p_comment
    ),
    Spec("thread", "thread <id>", "a message and its comments", _p_id(Thread)),
    Spec(
        "schedule",
        "schedule <when> send_all|send|comment ...",
        "run a send later; when is +30s, +10m, +2h, +1d, HH:MM or an ISO 8601 time",
        _p_schedule,
    ),
    Spec("scheduled", "scheduled", "your pending scheduled messages", _no_args(Scheduled)),
    Spec("cancel", "cancel <schedule_id>", "cancel a pending scheduled message", _p_id(Cancel)),
    Spec(
        "upload",
        "upload <target> <filename>",
        "send a file: then base64 lines, then a line with a single dot",
        _p_upload,
    ),
    Spec(
        "download",
        "download <file_id>",
        "fetch a file as base64 lines ended by a dot",
        _p_id(Download),
    ),
    Spec(
        "room",
        "room <action> <#room> [user]",
        "private rooms; <action> is create, invite, link, unlink, approve, deny, accept, "
        "decline, leave, kick or members",
        _p_room,
    ),
    Spec("rooms", "rooms", "the rooms you belong to", _no_args(Rooms)),
    Spec("join", "join <link>", "ask to enter a room with a join link", _p_one(Join)),
    Spec("unban", "unban <user>", "admin: lift a ban and clear strikes", _p_one(Unban), admin=True),
    Spec("kick", "kick <user>", "admin: close all of a user's sessions", _p_one(Kick), admin=True),
    Spec(
        "announce",
        "announce <text>",
        "admin: a notice to everyone online",
        _p_text(Announce),
        admin=True,
    ),
    Spec("stats", "stats", "admin: server counters", _no_args(Stats), admin=True),
    Spec("quit", "quit", "say goodbye and close the connection", _no_args(Quit), True),
)

COMMANDS: dict[str, Spec] = {s.name: s for s in _SPECS}
ALIASES: dict[str, str] = {"report": "ban"}


def _door_only(verb: str, rest: str) -> Command:
    raise ValueError("built by a door, not typed")


#: Rows of the commands only doors build: the core's gates read them like any row, but
#: no text line parses to them and `help` does not list them.
DOOR_COMMANDS: dict[str, Spec] = {
    "relay": Spec(
        "relay", "TAGMSG <target> (IRC)", "client-only tags to a chat, not stored", _door_only
    ),
}


def lookup(verb: str) -> Spec | None:
    """The table row for a verb or alias, case-insensitively."""
    verb = verb.lower()
    return COMMANDS.get(ALIASES.get(verb, verb))


def parse(line: str) -> Command:
    """One decoded line to a Command; raises ParseError with the usage on bad input."""
    head, _, rest = line.strip().partition(" ")
    if "\t" in head:
        head, _, more = head.partition("\t")
        rest = more + " " + rest
    verb = head.lower()
    spec = COMMANDS.get(ALIASES.get(verb, verb))  # lookup(verb), lowered once
    if spec is None:
        raise ParseError(Code.UNKNOWN_COMMAND, f"unknown command {head!r}; try help", verb)
    try:
        return spec.parse(verb, rest)
    except (ValueError, ParseError) as e:
        detail = e.message if isinstance(e, ParseError) else (str(e) if e.args else "")
        hint = f" ({detail})" if " " in detail else ""
        raise ParseError(Code.BAD_ARGS, f"usage: {spec.usage}{hint}", verb) from None
