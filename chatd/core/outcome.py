"""What handling a command yields: replies, deliveries and durable changes.

The core never does I/O. It returns an Outcome; the server renders and writes the
events, hands the changes to the store, and releases everything only after the store
has committed them (so an `OK` for a message means it is on disk).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatd.core.model import Session
from chatd.core.snapshot import (
    FileRow,
    InviteRow,
    JoinRequestRow,
    LinkRow,
    MemberRow,
    RoomRow,
    ScheduleRow,
    TokenRow,
)
from chatd.protocol.events import Event, Message, Notice


@dataclass(frozen=True, slots=True)
class PutAccount:
    """Creates an account (with its starting read position) or updates name/password."""

    key: str
    name: str
    pw_hash: str | None
    created: float
    cursor: int = 0  # only used when the account is created


@dataclass(frozen=True, slots=True)
class PutMessage:
    message: Message


@dataclass(frozen=True, slots=True)
class DeleteMessages:
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class SetCursor:
    user: str
    cursor: int


@dataclass(frozen=True, slots=True)
class SetBan:
    user: str
    until: float  # 0: not banned


@dataclass(frozen=True, slots=True)
class SetStrikes:
    """The whole strike set of a user (reporter key -> when), replacing the old one."""

    user: str
    strikes: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class PutRoom(RoomRow):
    """Creates or replaces a room row (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteRoom:
    key: str


@dataclass(frozen=True, slots=True)
class PutMember(MemberRow):
    """Creates or replaces a member row (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteMember:
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class PutLink(LinkRow):
    """Creates or replaces a link row (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteLinks:
    """Revokes one link (`token`) or every link of a room (`token` None)."""

    room: str
    token: str | None = None


@dataclass(frozen=True, slots=True)
class PutJoinRequest(JoinRequestRow):
    """Creates or replaces a join-request row (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteJoinRequest:
    room: str
    user: str


@dataclass(frozen=True, slots=True)
class PutInvite(InviteRow):
    """Creates or replaces a pending invitation (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteInvite:
    """Drops a pending invitation (accepted, declined, withdrawn, expired)."""

    room: str
    user: str


@dataclass(frozen=True, slots=True)
class PutSchedule(ScheduleRow):
    """Creates or replaces a schedule row (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteSchedule:
    id: int


@dataclass(frozen=True, slots=True)
class PutFile(FileRow):
    """Creates or replaces a file row (the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteFile:
    id: int


@dataclass(frozen=True, slots=True)
class PutToken(TokenRow):
    """Stores a bearer token (core/tokens.py; the fields are the row's)."""


@dataclass(frozen=True, slots=True)
class DeleteToken:
    """Revokes one bearer token (DELETE /session)."""

    digest: str


@dataclass(frozen=True, slots=True)
class DeleteTokensOf:
    """Revokes every bearer token of a user (a password change)."""

    user: str


Change = (
    PutAccount
    | PutMessage
    | DeleteMessages
    | SetCursor
    | SetBan
    | SetStrikes
    | PutRoom
    | DeleteRoom
    | PutMember
    | DeleteMember
    | PutLink
    | DeleteLinks
    | PutJoinRequest
    | DeleteJoinRequest
    | PutInvite
    | DeleteInvite
    | PutSchedule
    | DeleteSchedule
    | PutFile
    | DeleteFile
    | PutToken
    | DeleteToken
    | DeleteTokensOf
)


@dataclass(frozen=True, slots=True)
class Deferred:
    """Slow work (password hashing, reading messages from the store) the server runs
    off the event loop; then it calls `resume(result, now)` and treats that Outcome as
    the command's. `paced`: start only once the session's client has read what it was
    sent (a login's replay, page after page)."""

    work: Callable[[], Any]
    resume: Callable[[Any, float], Outcome]
    paced: bool = False


@dataclass(frozen=True, slots=True)
class UploadTicket:
    """An accepted `upload` line: what the data may be and where it goes."""

    user: str  # account key of the sender
    target: str  # as typed; resolved again by finish_upload
    name: str  # sanitised
    limit: int  # the most bytes the data may decode to
    too_large: str  # the ERR text when it does not fit
    verb: str


@dataclass(frozen=True, slots=True)
class Body:
    """What the server stored: the decoded size and its SHA-256 (hex)."""

    size: int
    sha256: str


@dataclass(slots=True)
class Outcome:
    replies: list[Event] = field(default_factory=list)
    pushes: list[tuple[Event, Sequence[Session]]] = field(default_factory=list)
    broadcasts: list[tuple[Message, Session | None]] = field(default_factory=list)
    changes: list[Change] = field(default_factory=list)
    closes: list[tuple[Session, Notice | None]] = field(default_factory=list)
    acked: int = 0  # id of a message the acting session sent (its OK counts as received)
    rearm: bool = False  # timed work moved (a schedule added or cancelled): re-aim the timer
    deferred: Deferred | None = None
    upload: UploadTicket | None = None  # an accepted `upload`: the door takes the data

    def notify(self, sessions: Sequence[Session], notice: Notice) -> None:
        if sessions:
            self.pushes.append((notice, tuple(sessions)))

    def extend(self, more: Outcome) -> Outcome:
        """Appends `more` (what came after this); its deferred work becomes this one's."""
        self.replies.extend(more.replies)
        self.pushes.extend(more.pushes)
        self.broadcasts.extend(more.broadcasts)
        self.changes.extend(more.changes)
        self.closes.extend(more.closes)
        self.acked = max(self.acked, more.acked)
        self.rearm = self.rearm or more.rearm
        if more.deferred is not None:
            assert self.deferred is None, "one deferred step at a time"
            self.deferred = more.deferred
        return self
