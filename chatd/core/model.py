"""The core's in-memory state: accounts, sessions, and what each knows of delivery.

Memory is the working copy; the store holds the durable copy (every change the core
makes is also emitted as a `Change`), and the state is rebuilt from it at start-up.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from chatd.protocol.events import Mode


@dataclass(slots=True, eq=False)
class Session:
    """One connection's view in the core. The server subclasses it to add its I/O.

    `live_from` is the first message id this session gets live (earlier ones reached it
    by replay); `sent_id` is the highest message id known to have been written to it,
    which is what "received" means while it is connected (a login elsewhere counts
    unread from it). `acked_id`, where the server can tell, is what the client's TCP
    acknowledged: read positions are saved from it, so a client that dies without
    reading gets back what it never acknowledged.
    """

    id: int
    peer: str
    opened: float
    mode: Mode = Mode.TEXT
    account: Account | None = None
    live_from: int = 0
    sent_id: int = 0
    acked_id: int | None = None  # what the client acknowledged, where the server can tell

    def kept_id(self) -> int:
        """The read position to save for this session: what its client acknowledged
        where the server can tell (a plain TCP socket), else what was sent."""
        return self.sent_id if self.acked_id is None else min(self.sent_id, self.acked_id)


@dataclass(slots=True, eq=False)
class Account:
    key: str
    name: str
    pw_hash: str | None
    created: float
    cursor: int = 0  # highest message id received by any session, as last saved
    saved_cursor: int = 0
    banned_until: float = 0.0
    strikes: dict[str, float] = field(default_factory=dict)  # reporter key -> when
    sessions: list[Session] = field(default_factory=list)
    # Chat keys of the user's private chats and rooms. Most users of a big server have
    # neither, so both start as one shared empty frozenset (a set costs 216 bytes).
    private_chats: AbstractSet[str] = frozenset()
    rooms: AbstractSet[str] = frozenset()
    # When the user was last known online (memory only: derived at start-up from the
    # stored messages and cursor, then kept by login and the retention sweep).
    last_seen: float = 0.0
    # Messages the user sent that the server holds or sent since it started (memory
    # only: counted at start-up from the stored messages): complaint_min_messages.
    sent: int = 0

    def add_private_chat(self, chat: str) -> None:
        if chat not in self.private_chats:
            self.private_chats = {*self.private_chats, chat}

    def add_room(self, room: str) -> None:
        if room not in self.rooms:
            self.rooms = {*self.rooms, room}

    def drop_room(self, room: str) -> None:
        if room in self.rooms:
            self.rooms = {r for r in self.rooms if r != room}

    def received(self) -> int:
        """Highest message id this user has received on any session."""
        best = self.cursor
        for s in self.sessions:
            if s.sent_id > best:
                best = s.sent_id
        return best

    def acknowledged(self) -> int:
        """Highest message id to save as received: as `received`, but from what the
        clients acknowledged where the server can tell (`Session.kept_id`)."""
        best = self.cursor
        for s in self.sessions:
            kept = s.kept_id()
            if kept > best:
                best = kept
        return best


@dataclass(slots=True, eq=False)
class Room:
    """A private room. `key` is `#` + the lower-cased name, which is also its chat key
    and topic; members map user key -> when they joined."""

    key: str
    name: str
    owner: str
    created: float
    members: dict[str, float] = field(default_factory=dict)
    links: dict[str, float] = field(default_factory=dict)  # token -> expires
    requests: dict[str, float] = field(default_factory=dict)  # user key -> when asked
    # Pending invitations (rooms.invite_consent): invitee key -> the offer.
    invites: dict[str, Invitation] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Invitation:
    """An owner's offer of membership, waiting for the invitee's `room accept`."""

    by: str  # the inviting owner's key
    ts: float
    expires: float
