"""State shared by every feature of the core, and the rules they all use.

Each feature (accounts, messaging, moderation, rooms, threads, schedules, files,
retention) is a mixin over ChatState in its own module, with one `cmd_<verb>` method
per command; `chat.Chat` puts them together with an explicit table from command type
to handler. All state is declared here, in `__init__`: the shared indexes, and each
feature's part (chatd/core/parts.py), so no feature depends on another's hidden
attributes or methods.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from chatd import logs
from chatd.config import Config
from chatd.core.flood import LoginThrottle, RateWindow
from chatd.core.index import MessageIndex, RecentWindow
from chatd.core.model import Account, Room, Session
from chatd.core.names import dm_key, key, looks
from chatd.core.outcome import Deferred, Outcome
from chatd.core.parts import FileIndex, ScheduleBook, SweepState
from chatd.core.snapshot import MessageRow, Snapshot
from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL, MAX_CLIENT_TAGS, Code, FileInfo, Message, Notice, Ok
from chatd.protocol.timefmt import rfc3339

log = logs.get_logger("chatd.core")

#: `Session.live_from` while a login's replay is still being sent: no live message yet.
REPLAYING = 1 << 62

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME_RULE = "names are 1-32 characters of A-Z a-z 0-9 _ . -"


class Refused(Exception):
    """A command refused with a stable error code; becomes `ERR <code> <message>`."""

    def __init__(self, code: Code, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def retry_after(seconds: float) -> int:
    """Whole seconds to wait, rounded up, never 0 while something is still refused."""
    return max(1, math.ceil(seconds))


class ChatState:
    """All chat state; features read and change it through these attributes."""

    def __init__(
        self,
        config: Config,
        snapshot: Snapshot,
        *,
        started: float,
        read: Callable[[Sequence[int]], list[Message]] | None = None,
    ) -> None:
        self.config = config
        self.started = started
        self.accounts: dict[str, Account] = {}
        self.online: dict[str, Account] = {}
        # Messages: an index without text, the newest whole, and `read` (the store's,
        # run off the event loop by the server) for the rest (core/index.py). Without a
        # store to read from, the window keeps everything.
        self.index = MessageIndex()
        self.recent = RecentWindow(config.chat.recent_bytes if read is not None else math.inf)
        self.read_bodies: Callable[[Sequence[int]], list[Message]] = read or _nothing
        self.topics: dict[str, set[Session]] = {GENERAL: set()}
        self.rooms: dict[str, Room] = {}
        self.link_rooms: dict[str, str] = {}  # join link token -> room key
        # Pending invitations by invitee: user key -> room keys (only users who have
        # some; each room holds the offers themselves, `Room.invites`).
        self.invitations: dict[str, set[str]] = {}
        self.files = FileIndex(snapshot.next_file_id)
        self.schedules = ScheduleBook(snapshot.next_schedule_id)
        self.retention = SweepState(at=started)  # the daemon ticks at start-up: a pass then
        # The server's own counters (bytes, commits, slow consumers) for `stats`; the
        # daemon sets it, the core only calls it.
        self.server_stats: Callable[[], Mapping[str, float]] = dict
        self._login_throttle = LoginThrottle(0, 0.0, 0.0)
        self.rates = RateWindow()  # every per-user and per-address limit (RATES)
        # Set by the server while the store cannot commit (disk full): commands that
        # write are refused with `unavailable` before they change anything.
        self.store_failing = False
        self.timed_paused_until = 0.0  # timed work waits for the store until then
        self.next_id = snapshot.next_id
        self.skeletons: dict[str, str] = {}  # looks(name) -> account key (names.py)
        for row in snapshot.accounts:
            for look in looks(row.name):
                self.skeletons.setdefault(look, row.key)
            self.accounts[row.key] = Account(
                key=row.key,
                name=row.name,
                pw_hash=row.pw_hash,
                created=row.created,
                cursor=row.cursor,
                saved_cursor=row.cursor,
                banned_until=row.banned_until,
                strikes=dict(row.strikes),
            )
        for stored in snapshot.messages:
            self._index_message(stored._replace(sender=key(stored.sender)))
            self.next_id = max(self.next_id, stored.id + 1)
        for msg in snapshot.recent:
            self.recent.add(msg)
        self.recent.durable = self.next_id - 1
        self.recent.trim()

    @property
    def login_throttle(self) -> LoginThrottle:
        """Failed logins per address and account, with the current limits (a reload
        changes them live)."""
        lim = self.config.limits
        return self._login_throttle.configure(
            lim.login_failures_before_throttle, lim.login_throttle_s, lim.login_failures_forget_s
        )

    # The one way a command runs (Chat implements it) ------------------------------

    def handle(self, s: Session, cmd: c.Command, now: float) -> Outcome:
        """Runs one command for a session; every refusal becomes an ERR reply."""
        raise NotImplementedError

    def run(self, verb: str, step: Callable[[], Outcome]) -> Outcome:
        """Runs one step of a command (the command, its resumption after slow work,
        the end of an upload), turning a refusal or a crash into its ERR reply."""
        raise NotImplementedError

    # Sessions ---------------------------------------------------------------------

    def is_admin(self, acct: Account | None) -> bool:
        """Admins are named in the config and must have a password."""
        return (
            acct is not None
            and acct.pw_hash is not None
            and acct.key in {key(n) for n in self.config.moderation.admins}
        )

    # Before login -----------------------------------------------------------------

    def _post(
        self,
        chat: str,
        sender: str,
        text: str,
        now: float,
        *,
        to: str | None = None,
        reply_to: int | None = None,
        file: FileInfo | None = None,
        tags: str = "",
        kind: str = "",
    ) -> Message:
        if tags and len(tags.encode()) > MAX_CLIENT_TAGS:  # the IRC door refuses first (417)
            raise Refused(Code.TOO_LARGE, f"client tags over {MAX_CLIENT_TAGS} bytes")
        msg = Message(self.next_id, chat, sender, text, now, reply_to, to, file, tags, kind)
        self.next_id += 1
        sender_key = key(sender)
        author = self.accounts.get(sender_key)
        if author is not None:
            author.sent += 1
        self._index_message(MessageRow(msg.id, chat, sender_key, now, reply_to, file))
        self.recent.add(msg)
        return msg

    def _index_message(self, row: MessageRow) -> None:
        """Indexes a message (its sender as a user key), and a private one's chat as
        each party's."""
        chat = row.chat
        first = chat not in self.index.chats
        self.index.add(row)
        if first and chat.startswith("@"):  # a private chat the parties may not list yet
            for party in chat[1:].split("|"):
                acct = self.accounts.get(party)
                if acct is not None:
                    acct.add_private_chat(chat)

    def with_bodies(
        self,
        ids: Sequence[int],
        then: Callable[[list[Message]], Outcome],
        *,
        paced: bool = False,
    ) -> Outcome:
        """`then(messages)` with the messages of `ids` (ascending) whole: at once when
        the recent window holds them all, else after the server read the rest from the
        store off the event loop (an Outcome with `deferred`; the command's later
        output, and the session's next commands, wait for it)."""
        found, missing = self.recent.split(ids)
        if not missing:
            return then([found[i] for i in ids])
        read = self.read_bodies

        def work() -> list[Message]:
            got = {m.id: m for m in read(missing)}
            got.update(found)
            return [got[i] for i in ids if i in got]

        return Outcome(deferred=Deferred(work, lambda msgs, now: then(msgs), paced))

    def _count_general(self, acct: Account, now: float) -> None:
        """Fixed window: N messages per window, the window starting at its first message."""
        self._limit(acct.key, "general", now)

    def _limit(self, who: str, kind: str, now: float, *, count: bool = True) -> None:
        """One more `kind` of action by `who` (a user key, or an address for accounts),
        counted in its fixed window (RATES names its settings); `rate-limited` with
        `retry_after` when the window is full. `count=False` only checks."""
        limit_name, window_name, what = RATES[kind]
        lim = self.config.limits
        limit: int = getattr(lim, limit_name)
        window: float = getattr(lim, window_name)
        check = self.rates.hit if count else self.rates.wait
        wait = check((who, kind), limit, window, now)
        if wait > 0:
            raise Refused(
                Code.RATE_LIMITED, f"at most {limit} {what} per {window:g}s", retry_after(wait)
            )

    def _chat_limit(self, acct: Account, chat: str, now: float, *, count: bool = True) -> None:
        """The rate limit of a message to this chat: #general's, a room's or private."""
        kind = "general" if chat == GENERAL else "private" if chat.startswith("@") else "room"
        self._limit(acct.key, kind, now, count=count)

    def _check_writable(self) -> None:
        """Refuses a change the store cannot save now (the server says when it can't)."""
        if self.store_failing:
            raise Refused(
                Code.UNAVAILABLE,
                "the server cannot save anything right now (its disk is full?); "
                "nothing was changed, try again later",
                retry_after(self.config.store.commit_retry_s),
            )

    def withdraw(self, message_ids: set[int], schedule_ids: set[int]) -> None:
        """Forgets messages and schedules whose commit was given up (their commands were
        answered `unavailable`, so they must never appear): they leave memory as if
        never made. Only for what nothing was acknowledged about."""
        scratch = Outcome()
        ids = sorted(message_ids)
        with_files = [i for i in ids if i in self.index.files]
        self.index.remove(ids)
        self.recent.remove(ids)
        if with_files:
            self.files.forget(with_files, scratch)  # their PutFile was withdrawn too
        for ident in schedule_ids:
            pending = self.schedules.by_id.get(ident)
            if pending is not None:
                self.schedules.forget(pending)
        log.warning("store.withdrawn", messages=len(message_ids), schedules=len(schedule_ids))

    def _check_not_banned(self, acct: Account, now: float) -> None:
        if acct.banned_until > now:
            raise Refused(
                Code.BANNED,
                f"you are banned from sending until {rfc3339(acct.banned_until)}",
                retry_after(acct.banned_until - now),
            )

    def _user(self, name: str) -> Account:
        acct = self.accounts.get(key(name.removeprefix("@")))
        if acct is None:
            raise Refused(Code.NO_SUCH_USER, f"no user {name}")
        return acct

    def chats_of(self, acct: Account) -> list[str]:
        """The chat keys a user reads: #general, their private chats, their rooms."""
        return [GENERAL, *sorted(acct.private_chats), *sorted(acct.rooms)]

    def _resolve_chat(self, acct: Account, name: str) -> str:
        """A chat name as typed (#general, #room, @user, user) to its chat key."""
        lowered = name.lower()
        if lowered == GENERAL or (lowered == "general" and "general" not in self.accounts):
            return GENERAL
        if name.startswith("#"):
            return self._member_room(acct, name).key
        other = self._user(name)
        return dm_key(acct.key, other.key)

    # Rooms and visibility (rooms.py owns the commands; sending and history need these)

    def _room(self, name: str) -> Room:
        """A room by `#name` or `name`, any case; `no-such-chat` if there is none."""
        room = self.rooms.get("#" + key(name.removeprefix("#")))
        if room is None:
            raise Refused(Code.NO_SUCH_CHAT, f"no room #{name.removeprefix('#')}")
        return room

    def _member_room(self, acct: Account, name: str) -> Room:
        """A room the user belongs to: only members may read, send or list it."""
        room = self._room(name)
        if acct.key not in room.members:
            raise Refused(Code.NOT_A_MEMBER, f"you are not a member of {room.key}")
        return room

    def _can_see(self, acct: Account, chat: str) -> bool:
        """Whether a chat is one of the user's (so they may see its messages)."""
        if chat == GENERAL:
            return True
        if chat.startswith("@"):
            return acct.key in chat[1:].split("|")
        room = self.rooms.get(chat)
        return room is not None and acct.key in room.members

    def _visible_message(self, acct: Account, ident: int) -> MessageRow:
        """A message the user can see (as the index knows it: no text, the sender as a
        user key); any other id reads as missing, so that a private message or a room's
        message does not reveal that it exists."""
        m = self.index.row(ident)
        if m is None or not self._can_see(acct, m.chat):
            raise Refused(Code.NO_SUCH_MESSAGE, f"no message {ident}")
        return m

    def _login_notices(self, acct: Account) -> list[Notice]:
        """Notices a session gets right after its login reply and replay (features
        extend this, e.g. rooms: pending join requests for their owner)."""
        return []

    def _display(self, chat: str, viewer: Account) -> str:
        if not chat.startswith("@"):
            return chat
        a, _, b = chat[1:].partition("|")
        other = self.accounts.get(b if a == viewer.key else a)
        return "@" + (other.name if other else b)


#: Rate-limited kinds of action -> (limit setting, window setting, what the ERR says)
#: in `[limits]`; each counted per user, `account` per address (chatd/core/flood.py).
RATES: dict[str, tuple[str, str, str]] = {
    "general": ("general_messages_per_window", "general_window_s", f"messages to {GENERAL}"),
    "private": ("private_messages_per_window", "private_window_s", "private messages"),
    "room": ("room_messages_per_window", "room_window_s", "messages to rooms"),
    "room-create": ("rooms_created_per_window", "rooms_created_window_s", "new rooms"),
    "invite": ("invites_per_window", "invites_window_s", "room invites"),
    "link": ("join_links_per_window", "join_links_window_s", "join links"),
    "join": ("join_requests_per_window", "join_requests_window_s", "join requests"),
    "account": (
        "accounts_per_address_per_window",
        "accounts_window_s",
        "new accounts from one address",
    ),
}


def _nothing(ids: Sequence[int]) -> list[Message]:
    return []


def account_of(s: Session) -> Account:
    assert s.account is not None, "handle() checks login first"
    return s.account


def reply(ok: Ok) -> Outcome:
    """An outcome that is just this reply."""
    return Outcome(replies=[ok])
