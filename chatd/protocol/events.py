"""What the server says: replies, pushed messages and notices, as plain values.

The core produces these; `render` turns each into bytes once per output mode. Message
and FileInfo are also the values the store persists, so every layer shares one spelling.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

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

    @property
    def private(self) -> bool:
        return self.to is not None


class Event:
    """Base of everything the server writes after the greeting."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class Ok(Event):
    """Success. `name` is the canonical command (selects the text layout); `cmd` is the
    verb as typed (`report` for the alias of `ban`), echoed in JSON."""

    name: str
    cmd: str
    fields: Mapping[str, Any] = field(default_factory=dict)


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


@dataclass(frozen=True, slots=True)
class Notice(Event):
    """Anything pushed that is not a message: `warned`, `banned`, `shutdown`, …"""

    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)
