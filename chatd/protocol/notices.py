"""The notices, one frozen dataclass per kind: everything pushed that is not a message.

`event` names the kind on the wire; the fields are the JSON fields in order (times as
Unix seconds here, RFC 3339 on the wire). Text mode words them in render.py; IRC in
irc.py. `AnyNotice` is one known only by name and fields (a client's decoding).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chatd.protocol.events import OPTIONAL, TIME, Notice

# Moderation -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Warned(Notice):
    """You were reported; never by whom (knowing invites retaliation)."""

    event: ClassVar[str] = "warned"
    strikes: int
    limit: int


@dataclass(frozen=True, slots=True, eq=False)
class Banned(Notice):
    event: ClassVar[str] = "banned"
    until: float = field(metadata=TIME)
    retry_after: int = 0
    reason: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, slots=True, eq=False)
class Unbanned(Notice):
    event: ClassVar[str] = "unbanned"


@dataclass(frozen=True, slots=True, eq=False)
class Kicked(Notice):
    event: ClassVar[str] = "kicked"
    by: str


@dataclass(frozen=True, slots=True, eq=False)
class Announce(Notice):
    event: ClassVar[str] = "announce"
    from_: str
    text: str

    @property
    def fields(self) -> Mapping[str, Any]:
        return {"from": self.from_, "text": self.text}


# The server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Shutdown(Notice):
    event: ClassVar[str] = "shutdown"


@dataclass(frozen=True, slots=True, eq=False)
class SlowConsumer(Notice):
    event: ClassVar[str] = "slow-consumer"
    pending: int


@dataclass(frozen=True, slots=True, eq=False)
class LoginTimeout(Notice):
    event: ClassVar[str] = "login-timeout"
    timeout_s: str  # as configured, e.g. "60"


@dataclass(frozen=True, slots=True, eq=False)
class PasswordChanged(Notice):
    """With `auth.require_password`: the user's password changed on another session,
    so this one is closed (log in again with the new password)."""

    event: ClassVar[str] = "password-changed"


@dataclass(frozen=True, slots=True, eq=False)
class UploadTimeout(Notice):
    """An upload whose data stopped coming: its temporary file is deleted and the
    connection closed (its next lines would otherwise be read as data)."""

    event: ClassVar[str] = "upload-timeout"
    timeout_s: str


# Rooms ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class Invited(Notice):
    event: ClassVar[str] = "invited"
    room: str
    by: str


@dataclass(frozen=True, slots=True, eq=False)
class Invitation(Notice):
    """With rooms.invite_consent: an owner offers you a room; answer with `room
    accept|decline` before `expires`. Not `invited`, which means you are a member."""

    event: ClassVar[str] = "invitation"
    room: str
    by: str
    expires: float = field(metadata=TIME)


@dataclass(frozen=True, slots=True, eq=False)
class Declined(Notice):
    """The invitee declined the owner's invitation."""

    event: ClassVar[str] = "declined"
    room: str
    user: str


@dataclass(frozen=True, slots=True, eq=False)
class Uninvited(Notice):
    """The owner withdrew a pending invitation (`room kick` of the invitee)."""

    event: ClassVar[str] = "uninvited"
    room: str
    by: str


@dataclass(frozen=True, slots=True, eq=False)
class JoinRequest(Notice):
    event: ClassVar[str] = "join-request"
    room: str
    user: str


@dataclass(frozen=True, slots=True, eq=False)
class Joined(Notice):
    event: ClassVar[str] = "joined"
    room: str
    user: str


@dataclass(frozen=True, slots=True, eq=False)
class Left(Notice):
    event: ClassVar[str] = "left"
    room: str
    user: str


@dataclass(frozen=True, slots=True, eq=False)
class Denied(Notice):
    event: ClassVar[str] = "denied"
    room: str


@dataclass(frozen=True, slots=True, eq=False)
class Removed(Notice):
    event: ClassVar[str] = "removed"
    room: str
    by: str


@dataclass(frozen=True, slots=True, eq=False)
class Owner(Notice):
    event: ClassVar[str] = "owner"
    room: str
    user: str


# Schedules --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ScheduledSent(Notice):
    event: ClassVar[str] = "scheduled-sent"
    schedule_id: int
    id: int | None


@dataclass(frozen=True, slots=True, eq=False)
class ScheduledFailed(Notice):
    event: ClassVar[str] = "scheduled-failed"
    schedule_id: int
    reason: str


# Known only by name -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AnyNotice(Notice):
    """A notice known by its name and wire fields only (a client's decoding)."""

    event_: str
    wire: Mapping[str, Any] = field(default_factory=dict)

    @property
    def event(self) -> str:  # type: ignore[override]
        return self.event_

    @property
    def fields(self) -> Mapping[str, Any]:
        return self.wire
