"""What the server says: replies, pushed messages and notices, as plain values.

The core produces these; a renderer per door turns each into bytes once per output
mode. Message and FileInfo are also the values the store persists, so every layer
shares one spelling. The kinds of replies and notices are in replies.py and notices.py.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple, cast

from chatd.protocol.timefmt import rfc3339

GENERAL = "#general"


class Code(StrEnum):
    """Stable error tokens of the wire contract (PROTOCOL.md); more may be added."""

    UNKNOWN_COMMAND = "unknown-command"
    BAD_ARGS = "bad-args"
    NOT_LOGGED_IN = "not-logged-in"
    ALREADY_LOGGED_IN = "already-logged-in"
    BAD_NAME = "bad-name"
    BAD_PASSWORD = "bad-password"
    NO_SUCH_USER = "no-such-user"
    NO_SUCH_CHAT = "no-such-chat"
    NO_SUCH_MESSAGE = "no-such-message"
    NO_SUCH_SCHEDULE = "no-such-schedule"
    NOT_A_MEMBER = "not-a-member"
    FORBIDDEN = "forbidden"
    BANNED = "banned"
    RATE_LIMITED = "rate-limited"
    TOO_LARGE = "too-large"
    LINE_TOO_LONG = "line-too-long"
    BAD_ENCODING = "bad-encoding"
    TOO_MANY_SESSIONS = "too-many-sessions"
    SERVER_BUSY = "server-busy"
    INTERNAL = "internal"
    UNAVAILABLE = "unavailable"  # the server cannot save now (disk full); retry_after


class Mode(StrEnum):
    TEXT = "text"
    JSON = "json"
    # IRC sessions (chatd/protocol/irc.py), one per output shape: plain, with the
    # server-time tag only, with all message tags (time, msgid, account, +draft/reply).
    IRC = "irc"
    IRC_TIME = "irc-time"
    IRC_TAGS = "irc-tags"


@dataclass(frozen=True, slots=True)
class FileInfo:
    id: int
    name: str
    size: int
    sha256: str


class Message(NamedTuple):
    """A stored chat message.

    `chat` is the internal chat key: `#general`, `#<room>` in lower case, or for a
    private message `@<a>|<b>` with both user keys lower-cased and sorted, so that the
    same pair always shares one key. `to` is the recipient's display name for private
    messages; how the chat reads for a given viewer is decided at render time.

    `tags` and `kind` come from the IRC door only (docs/irc.md): `tags` are the client-
    only tags sent with it, in IRC's message-tags form (`+name=escaped value`, `;`
    between them, at most MAX_CLIENT_TAGS bytes), `kind` is NOTICE_KIND for an IRC
    NOTICE. Both are "" for every other message: IRC renders them (tags only for
    clients with message-tags); the line protocol and HTTP show neither.

    A NamedTuple, not a frozen dataclass like the other values: one is built for every
    message sent, and a frozen dataclass's `__init__` costs three times as much.
    """

    id: int
    chat: str
    sender: str
    text: str
    ts: float
    reply_to: int | None = None
    to: str | None = None
    file: FileInfo | None = None
    tags: str = ""
    kind: str = ""


#: `Message.kind` of an IRC NOTICE ("" is an ordinary message).
NOTICE_KIND = "notice"
#: The most client-only tag data a message may carry, in bytes (IRCv3 message-tags: a
#: client's tags, without the `@` and the space, are at most 4094 bytes).
MAX_CLIENT_TAGS = 4094


class Event:
    """Base of everything the server writes after the greeting."""

    __slots__ = ()


class Ok(Event):
    """Base of the success replies: one frozen dataclass per kind (chatd/protocol/
    replies.py), with `cmd`, the verb as typed (`report` for the alias of `ban`), as
    its first field. `name` is the canonical command (it selects the text layout) and
    `fields` what JSON mode shows, timestamps as RFC 3339. Two replies are equal when
    they read the same on the wire."""

    __slots__ = ()
    kind: ClassVar[str] = ""
    cmd: str

    @property
    def name(self) -> str:
        return self.kind

    @property
    def fields(self) -> Mapping[str, Any]:
        return wire_fields(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ok):
            return NotImplemented
        return (self.name, self.cmd, dict(self.fields)) == (
            other.name,
            other.cmd,
            dict(other.fields),
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Error(Event):
    code: Code
    message: str
    cmd: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Push(Event):
    """A message as one viewer sees it: `viewer` (a user key) decides `@other` for
    private chats; `replay` marks unread messages replayed at login and history."""

    message: Message
    viewer: str | None = None
    replay: bool = False


class Notice(Event):
    """Base of everything pushed that is not a message (chatd/protocol/notices.py has
    one frozen dataclass per kind): `event` names it, `fields` is what JSON mode shows.
    Two notices are equal when they read the same on the wire."""

    __slots__ = ()
    event: ClassVar[str] = ""

    @property
    def fields(self) -> Mapping[str, Any]:
        return wire_fields(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Notice):
            return NotImplemented
        return (self.event, dict(self.fields)) == (other.event, dict(other.fields))

    __hash__ = None  # type: ignore[assignment]


# Fields as the wire shows them ------------------------------------------------------

#: dataclass field metadata: a Unix time, shown as RFC 3339 (`field(metadata=TIME)`).
TIME = {"time": True}
#: dataclass field metadata: left out of the wire fields while None.
OPTIONAL = {"optional": True}
#: both at once.
OPTIONAL_TIME = {"time": True, "optional": True}


@functools.cache
def _plan(cls: Hashable) -> tuple[tuple[str, bool, bool], ...]:
    return tuple(
        (f.name, bool(f.metadata.get("time")), bool(f.metadata.get("optional")))
        for f in dataclasses.fields(cast(Any, cls))
        if f.name != "cmd"
    )


def wire_fields(value: object) -> dict[str, Any]:
    """A reply's, notice's or row's fields in wire form: times as RFC 3339, rows and
    FileInfo as objects, tuples as lists; messages (Push) stay for the renderer."""
    out: dict[str, Any] = {}
    for name, is_time, optional in _plan(cast(Hashable, type(value))):
        v = getattr(value, name)
        if v is None:
            if not optional:
                out[name] = None
            continue
        out[name] = rfc3339(v) if is_time else _wire(v)
    return out


def _wire(v: Any) -> Any:
    if isinstance(v, str | int | float | bool | Push):
        return v
    if isinstance(v, tuple | list):
        return [_wire(x) for x in v]
    if isinstance(v, Mapping):
        return {k: _wire(x) for k, x in v.items()}
    if dataclasses.is_dataclass(v):
        return wire_fields(v)
    return v
