"""Read-only views of the chat for the IRC door: chathistory pages, targets, channel
members and read markers.

IRC asks questions the line protocol's `history` cannot answer (messages after or
around a point, by timestamp, the chats active in a time range). These functions only
read the core's state and apply its visibility rule (`_resolve_chat`: a room's
messages are for its members, a private chat for its two parties); they change
nothing, so they add no rule. Refusals come out as `Refused`, like a command's.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from chatd.core.chat import Chat
from chatd.core.model import Account
from chatd.core.state import Refused
from chatd.protocol.events import GENERAL, Code, Message


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


def _messages(chat: Chat, key: str) -> list[Message]:
    return chat.chats.get(key, [])


def _index(msgs: Sequence[Message], ref: Ref, *, after: bool) -> int:
    """Where `ref` falls in `msgs`: the first index past it (`after`) or at it."""
    if ref.id is not None:
        ident = ref.id
        if after:
            return bisect.bisect_right(msgs, ident, key=lambda m: m.id)
        return bisect.bisect_left(msgs, ident, key=lambda m: m.id)
    # Times compare in whole milliseconds: a client's timestamp comes from a `time`
    # tag, which is the message's time rounded to the millisecond.
    ms = _ms(ref.ts if ref.ts is not None else 0.0)
    if after:
        return bisect.bisect_right(msgs, ms, key=lambda m: _ms(m.ts))
    return bisect.bisect_left(msgs, ms, key=lambda m: _ms(m.ts))


def _ms(ts: float) -> int:
    return round(ts * 1000)


def before(chat: Chat, key: str, ref: Ref, limit: int) -> list[Message]:
    msgs = _messages(chat, key)
    end = len(msgs) if ref.star else _index(msgs, ref, after=False)
    return msgs[max(0, end - limit) : end]


def after(chat: Chat, key: str, ref: Ref, limit: int) -> list[Message]:
    msgs = _messages(chat, key)
    start = 0 if ref.star else _index(msgs, ref, after=True)
    return msgs[start : start + limit]


def latest(chat: Chat, key: str, ref: Ref, limit: int) -> list[Message]:
    """The newest `limit` messages, only those after `ref` unless it is `*`."""
    msgs = _messages(chat, key)
    start = 0 if ref.star else _index(msgs, ref, after=True)
    return msgs[max(start, len(msgs) - limit) :]


def around(chat: Chat, key: str, ref: Ref, limit: int) -> list[Message]:
    msgs = _messages(chat, key)
    mid = _index(msgs, ref, after=False)
    start = max(0, mid - limit // 2)
    return msgs[start : start + limit]


def between(chat: Chat, key: str, a: Ref, b: Ref, limit: int) -> list[Message]:
    """Messages strictly between two points, in either order; from the first point on
    when it is the earlier one, else the latest ones before it (IRCv3 semantics)."""
    msgs = _messages(chat, key)
    lo_first = _point(msgs, a) <= _point(msgs, b)
    lo, hi = (a, b) if lo_first else (b, a)
    start = _index(msgs, lo, after=True)
    end = _index(msgs, hi, after=False)
    page = msgs[start:end] if end > start else []
    return page[:limit] if lo_first else page[-limit:]


def _point(msgs: Sequence[Message], ref: Ref) -> float:
    if ref.ts is not None:
        return _ms(ref.ts)
    m = next((x for x in msgs if x.id == ref.id), None)
    return _ms(m.ts) if m is not None else float(ref.id or 0)


def targets(chat: Chat, acct: Account, a: float, b: float, limit: int) -> list[tuple[str, float]]:
    """The user's chats with a message between times a and b (either order), as (IRC
    target, time of the latest such message), oldest activity first."""
    lo, hi = min(a, b), max(a, b)
    found: list[tuple[str, float]] = []
    for key in [GENERAL, *sorted(acct.private_chats), *sorted(acct.rooms)]:
        msgs = chat.chats.get(key, [])
        end = bisect.bisect_left(msgs, hi, key=lambda m: m.ts)
        if end and msgs[end - 1].ts > lo:
            found.append((irc_target(chat, acct, key), msgs[end - 1].ts))
    found.sort(key=lambda t: t[1])
    return found[:limit]


def irc_target(chat: Chat, acct: Account, key: str) -> str:
    """A chat key as the IRC target `acct` knows it: the channel, or the other nick."""
    if not key.startswith("@"):
        return key
    a, _, b = key[1:].partition("|")
    other = chat.accounts.get(b if a == acct.key else a)
    return other.name if other is not None else b


def read_marker(chat: Chat, acct: Account, key: str) -> Message | None:
    """The last message of a chat the user has received (chatd keeps one read position
    per user, which every chat's marker derives from); None if none was."""
    msgs = chat.chats.get(key, [])
    i = bisect.bisect_right(msgs, acct.received(), key=lambda m: m.id)
    return msgs[i - 1] if i else None


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
