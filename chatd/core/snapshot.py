"""The durable state as the store hands it back at start-up."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from chatd.protocol.events import FileInfo, Message


class MessageRow(NamedTuple):
    """A stored message without its text: what the core indexes (core/index.py).
    From the store `sender` is the name as sent; from `MessageIndex.row` the user key."""

    id: int
    chat: str
    sender: str
    ts: float
    reply_to: int | None = None
    file: FileInfo | None = None


@dataclass(frozen=True, slots=True)
class AccountRow:
    key: str
    name: str
    pw_hash: str | None
    created: float
    cursor: int = 0
    banned_until: float = 0.0
    strikes: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True, slots=True)
class RoomRow:
    key: str
    name: str
    owner: str
    created: float


@dataclass(frozen=True, slots=True)
class MemberRow:
    room: str
    user: str
    since: float


@dataclass(frozen=True, slots=True)
class LinkRow:
    token: str
    room: str
    expires: float


@dataclass(frozen=True, slots=True)
class JoinRequestRow:
    room: str
    user: str
    ts: float


@dataclass(frozen=True, slots=True)
class InviteRow:
    """A pending invitation (`rooms.invite_consent`): `user` may accept it until
    `expires`; `by` is the inviting owner's key."""

    room: str
    user: str
    by: str
    ts: float
    expires: float


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    id: int
    user: str
    at: float
    command: str  # the wrapped command line, parsed again when it fires
    created: float


@dataclass(frozen=True, slots=True)
class FileRow:
    id: int
    sha256: str
    name: str
    size: int
    owner: str
    created: float


@dataclass(frozen=True, slots=True)
class TokenRow:
    """A bearer token of the HTTP door (core/tokens.py): only its sha256 is stored."""

    digest: str
    user: str
    created: float
    pw_tag: str  # which password it was issued under: a new password revokes it


@dataclass(frozen=True, slots=True)
class Snapshot:
    accounts: tuple[AccountRow, ...] = ()
    # Every message, oldest first, without text: read once, as the core indexes it (a
    # store may hand a generator over its rows, so that no list of them is built).
    messages: Iterable[MessageRow] = ()
    recent: tuple[Message, ...] = ()  # the newest ones whole, oldest first (load's `recent`)
    next_id: int = 1
    rooms: tuple[RoomRow, ...] = ()
    members: tuple[MemberRow, ...] = ()
    links: tuple[LinkRow, ...] = ()
    requests: tuple[JoinRequestRow, ...] = ()
    schedules: tuple[ScheduleRow, ...] = ()
    next_schedule_id: int = 1
    files: tuple[FileRow, ...] = ()
    next_file_id: int = 1
    invites: tuple[InviteRow, ...] = ()
