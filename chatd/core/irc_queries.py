"""Read-only views of the chat for the IRC door: chathistory pages, targets, channel
members and read markers.

IRC asks questions the line protocol's `history` cannot answer (messages after or
around a point, by timestamp, the chats active in a time range). These functions
answer from the core's message index (ids; the door reads the bodies), only
read the core's state and apply its visibility rule (`_resolve_chat`: a room's
messages are for its members, a private chat for its two parties); they change
nothing, so they add no rule. Refusals come out as `Refused`, like a command's.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from chatd.core.chat import Chat
from chatd.core.index import ChatLog
from chatd.core.model import Account
from chatd.core.state import Refused
from chatd.protocol.events import GENERAL, Code


@dataclass(frozen=True, slots=True)
class Ref:
    """A point in a chat: a message id (`msgid=`) or a time (`timestamp=`), or `*`."""

    id: int | None = None
    ts: float | None = None

    @property
    def star(self) -> bool:
        return self.id is None and self.ts is None


def chat_key(chat: Chat, acct: Account, target: str) -> str:
    """The chat key of an IRC target as `acct` may read it (refused otherwise)."""
    return chat._resolve_chat(acct, target)


_EMPTY = ChatLog()


def _log(chat: Chat, key: str) -> ChatLog:
    return chat.index.chats.get(key, _EMPTY)


def _index(log: ChatLog, ref: Ref, *, after: bool) -> int:
    """Where `ref` falls in the chat: the first position past it (`after`) or at it."""
    if ref.id is not None:
        find = bisect.bisect_right if after else bisect.bisect_left
        return find(log.ids, ref.id)
    # Times compare in whole milliseconds: a client's timestamp comes from a `time`
    # tag, which is the message's time rounded to the millisecond.
    ms = _ms(ref.ts if ref.ts is not None else 0.0)
    if after:
        return bisect.bisect_right(log.times, ms, key=_ms)
    return bisect.bisect_left(log.times, ms, key=_ms)


def _ms(ts: float) -> int:
    return round(ts * 1000)


def _ids(log: ChatLog, start: int, end: int) -> list[int]:
    return list(log.ids[start:end]) if end > start else []


def before(chat: Chat, key: str, ref: Ref, limit: int) -> list[int]:
    """Ids of the newest `limit` messages before `ref` (all: `*`), oldest first. The
    door reads their bodies (chatd/server/reader.py); so do the others below."""
    log = _log(chat, key)
    end = len(log) if ref.star else _index(log, ref, after=False)
    return _ids(log, max(0, end - limit), end)


def after(chat: Chat, key: str, ref: Ref, limit: int) -> list[int]:
    log = _log(chat, key)
    start = 0 if ref.star else _index(log, ref, after=True)
    return _ids(log, start, start + limit)


def latest(chat: Chat, key: str, ref: Ref, limit: int) -> list[int]:
    """The newest `limit` messages, only those after `ref` unless it is `*`."""
    log = _log(chat, key)
    start = 0 if ref.star else _index(log, ref, after=True)
    return _ids(log, max(start, len(log) - limit), len(log))


def around(chat: Chat, key: str, ref: Ref, limit: int) -> list[int]:
    log = _log(chat, key)
    mid = _index(log, ref, after=False)
    start = max(0, mid - limit // 2)
    return _ids(log, start, start + limit)


def between(chat: Chat, key: str, a: Ref, b: Ref, limit: int) -> list[int]:
    """Messages strictly between two points, in either order; from the first point on
    when it is the earlier one, else the latest ones before it (IRCv3 semantics)."""
    log = _log(chat, key)
    lo_first = _point(log, a) <= _point(log, b)
    lo, hi = (a, b) if lo_first else (b, a)
    page = _ids(log, _index(log, lo, after=True), _index(log, hi, after=False))
    return page[:limit] if lo_first else page[-limit:]


def _point(log: ChatLog, ref: Ref) -> float:
    if ref.ts is not None:
        return _ms(ref.ts)
    i = bisect.bisect_left(log.ids, ref.id or 0)
    if i < len(log.ids) and log.ids[i] == ref.id:
        return _ms(log.times[i])
    return float(ref.id or 0)


def targets(chat: Chat, acct: Account, a: float, b: float, limit: int) -> list[tuple[str, float]]:
    """The user's chats whose latest message falls strictly between times a and b (either
    order), as (IRC target, time of that message), oldest activity first. The latest
    message overall: a chat active in the window but again after it is not listed
    (draft/chathistory TARGETS). Times compare in whole milliseconds, as clients send
    them."""
    lo, hi = _ms(min(a, b)), _ms(max(a, b))
    found: list[tuple[str, float]] = []
    for key in chat.chats_of(acct):
        times = _log(chat, key).times
        if times and lo < _ms(times[-1]) < hi:
            found.append((irc_target(chat, acct, key), times[-1]))
    found.sort(key=lambda t: t[1])
    return found[:limit]


def irc_target(chat: Chat, acct: Account, key: str) -> str:
    """A chat key as the IRC target `acct` knows it: the channel, or the other nick."""
    if not key.startswith("@"):
        return key
    a, _, b = key[1:].partition("|")
    other = chat.accounts.get(b if a == acct.key else a)
    return other.name if other is not None else b


def read_marker(chat: Chat, acct: Account, key: str) -> tuple[int, float] | None:
    """The last message of a chat the user has received, as (id, time) (chatd keeps one
    read position per user, which every chat's marker derives from); None if none was."""
    log = _log(chat, key)
    i = bisect.bisect_right(log.ids, acct.received())
    return (log.ids[i - 1], log.times[i - 1]) if i else None


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    sessions: int
    op: bool


def members(chat: Chat, acct: Account, channel: str) -> tuple[str, list[Member]]:
    """The channel's key and its nicks: #general's are the users online (admins as
    ops), a room's are its members (the owner as op); a room needs membership."""
    if channel.lower() == GENERAL:
        users = sorted(chat.online.values(), key=lambda a: a.key)
        named = {n.lower() for n in chat.config.moderation.admins}  # is_admin's first test,
        return GENERAL, [  # once per call rather than once per user
            Member(u.name, len(u.sessions), u.key in named and chat.is_admin(u)) for u in users
        ]
    room = chat.rooms.get(channel.lower())
    if room is None:
        raise Refused(Code.NO_SUCH_CHAT, f"no room {channel}")
    if acct.key not in room.members:
        raise Refused(Code.NOT_A_MEMBER, f"you are not a member of {room.key}")
    out = []
    for k in sorted(room.members, key=lambda k: (room.members[k], k)):
        member = chat.accounts.get(k)
        if member is not None:
            out.append(Member(member.name, len(member.sessions), k == room.owner))
    return room.key, out


def channels(chat: Chat, acct: Account) -> list[tuple[str, int, str]]:
    """(channel, members, owner) of every channel the user is in: #general, then rooms."""
    rows = [(GENERAL, len(chat.online), "")]
    for rk in sorted(acct.rooms):
        room = chat.rooms.get(rk)
        if room is not None:
            owner = chat.accounts.get(room.owner)
            rows.append((rk, len(room.members), owner.name if owner else room.owner))
    return rows
