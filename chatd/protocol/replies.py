"""The success replies, one frozen dataclass per kind (h11's _events.py is the model).

The core builds these; each door's renderer shows them (text and JSON in render.py,
IRC in irc.py, HTTP's JSON bodies). Field order is the JSON order. Times are Unix
seconds here and RFC 3339 on the wire (`TIME` metadata); `OPTIONAL` fields are left
out of the wire while None. `AnyOk` is a reply known only by name and fields: what a
client decodes when it does not need the kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chatd.protocol.events import OPTIONAL, OPTIONAL_TIME, TIME, FileInfo, Ok, Push
from chatd.protocol.timefmt import rfc3339

# Rows inside replies ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CommandRow:
    name: str
    usage: str
    summary: str


@dataclass(frozen=True, slots=True)
class ServerRow:
    version: str
    uptime_s: int
    online: int


@dataclass(frozen=True, slots=True)
class ChatRow:
    chat: str
    unread: int
    last_id: int


@dataclass(frozen=True, slots=True)
class UserRow:
    name: str
    sessions: int


@dataclass(frozen=True, slots=True)
class ScheduledRow:
    schedule_id: int
    at: float = field(metadata=TIME)
    command: str


@dataclass(frozen=True, slots=True)
class RoomRow:
    room: str
    owner: str
    members: int


@dataclass(frozen=True, slots=True)
class InvitationRow:
    """A pending invitation to you (`rooms`, with rooms.invite_consent)."""

    room: str
    by: str
    expires: float = field(metadata=TIME)


# Sessions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class HelpOk(Ok):
    kind: ClassVar[str] = "help"
    cmd: str
    commands: tuple[CommandRow, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ModeOk(Ok):
    kind: ClassVar[str] = "mode"
    cmd: str
    mode: str


@dataclass(frozen=True, slots=True, eq=False)
class PingOk(Ok):
    kind: ClassVar[str] = "ping"
    cmd: str


@dataclass(frozen=True, slots=True, eq=False)
class QuitOk(Ok):
    kind: ClassVar[str] = "quit"
    cmd: str


@dataclass(frozen=True, slots=True, eq=False)
class StatusOk(Ok):
    """Before login only `server`."""

    kind: ClassVar[str] = "status"
    cmd: str
    server: ServerRow
    user: str | None = field(default=None, metadata=OPTIONAL)
    sessions: int | None = field(default=None, metadata=OPTIONAL)
    chats: tuple[ChatRow, ...] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, slots=True, eq=False)
class LoginOk(Ok):
    kind: ClassVar[str] = "login"
    cmd: str
    user: str
    new: bool
    unread: int


@dataclass(frozen=True, slots=True, eq=False)
class PasswdOk(Ok):
    kind: ClassVar[str] = "passwd"
    cmd: str


# Messages ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class SentOk(Ok):
    """A message was stored: its id and time. The hot path, so its wire fields are
    spelled out rather than derived."""

    kind: ClassVar[str] = "send"
    cmd: str
    id: int
    ts: float = field(metadata=TIME)

    @property
    def fields(self) -> Mapping[str, Any]:
        return {"id": self.id, "ts": rfc3339(self.ts)}


@dataclass(frozen=True, slots=True, eq=False)
class SendAllOk(SentOk):
    kind: ClassVar[str] = "send_all"


@dataclass(frozen=True, slots=True, eq=False)
class CommentOk(Ok):
    kind: ClassVar[str] = "comment"
    cmd: str
    id: int
    ts: float = field(metadata=TIME)
    reply_to: int


@dataclass(frozen=True, slots=True, eq=False)
class WhoOk(Ok):
    kind: ClassVar[str] = "who"
    cmd: str
    users: tuple[UserRow, ...]
    room: str | None = field(default=None, metadata=OPTIONAL)

    @property
    def fields(self) -> Mapping[str, Any]:
        users = [{"name": u.name, "sessions": u.sessions} for u in self.users]
        return {"room": self.room, "users": users} if self.room else {"users": users}


@dataclass(frozen=True, slots=True, eq=False)
class HistoryOk(Ok):
    kind: ClassVar[str] = "history"
    cmd: str
    chat: str
    messages: tuple[Push, ...]


@dataclass(frozen=True, slots=True, eq=False)
class ThreadOk(Ok):
    kind: ClassVar[str] = "thread"
    cmd: str
    message: Push
    comments: tuple[Push, ...]


# Moderation -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class BanOk(Ok):
    kind: ClassVar[str] = "ban"
    cmd: str
    user: str
    strikes: int
    banned_until: float | None = field(metadata=TIME)


@dataclass(frozen=True, slots=True, eq=False)
class UnbanOk(Ok):
    kind: ClassVar[str] = "unban"
    cmd: str
    user: str


@dataclass(frozen=True, slots=True, eq=False)
class KickOk(Ok):
    kind: ClassVar[str] = "kick"
    cmd: str
    user: str


@dataclass(frozen=True, slots=True, eq=False)
class AnnounceOk(Ok):
    kind: ClassVar[str] = "announce"
    cmd: str


@dataclass(frozen=True, slots=True, eq=False)
class StatsOk(Ok):
    """Server counters, flat: the wire fields are the counters themselves."""

    kind: ClassVar[str] = "stats"
    cmd: str
    counters: Mapping[str, float]

    @property
    def fields(self) -> Mapping[str, Any]:
        return dict(self.counters)


# Schedules --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class ScheduleOk(Ok):
    kind: ClassVar[str] = "schedule"
    cmd: str
    schedule_id: int
    at: float = field(metadata=TIME)


@dataclass(frozen=True, slots=True, eq=False)
class ScheduledOk(Ok):
    kind: ClassVar[str] = "scheduled"
    cmd: str
    scheduled: tuple[ScheduledRow, ...]


@dataclass(frozen=True, slots=True, eq=False)
class CancelOk(Ok):
    kind: ClassVar[str] = "cancel"
    cmd: str
    schedule_id: int


# Files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class UploadOk(Ok):
    kind: ClassVar[str] = "upload"
    cmd: str
    id: int
    ts: float = field(metadata=TIME)
    file: FileInfo


@dataclass(frozen=True, slots=True, eq=False)
class DownloadOk(Ok):
    """Who may download, and what; the server adds the body (render.download_reply)."""

    kind: ClassVar[str] = "download"
    cmd: str
    file: FileInfo


# Rooms ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class RoomOk(Ok):
    """Every `room` subcommand: the room, and what the subcommand is about."""

    kind: ClassVar[str] = "room"
    cmd: str
    room: str
    user: str | None = field(default=None, metadata=OPTIONAL)
    members: tuple[str, ...] | None = field(default=None, metadata=OPTIONAL)
    link: str | None = field(default=None, metadata=OPTIONAL)
    expires: float | None = field(default=None, metadata=OPTIONAL_TIME)
    status: str | None = field(default=None, metadata=OPTIONAL)  # invite: "invited"/"added"


@dataclass(frozen=True, slots=True, eq=False)
class RoomsOk(Ok):
    kind: ClassVar[str] = "rooms"
    cmd: str
    rooms: tuple[RoomRow, ...]
    # Invitations waiting for your answer; left out while there are none.
    invites: tuple[InvitationRow, ...] | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True, slots=True, eq=False)
class JoinOk(Ok):
    kind: ClassVar[str] = "join"
    cmd: str
    room: str
    status: str


# Known only by name -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class AnyOk(Ok):
    """A reply known by its name and wire fields only (a client's decoding, a door's
    own reply)."""

    name_: str
    cmd: str
    wire: Mapping[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.name_

    @property
    def fields(self) -> Mapping[str, Any]:
        return self.wire
