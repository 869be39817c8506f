"""What each change writes, in the order the SQL stores bind it: one table for SQLite and
PostgreSQL (each keeps only its own statement text per change type), so a field added
to a change is added once."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from chatd.core.outcome import (
    DeleteFile,
    DeleteInvite,
    DeleteJoinRequest,
    DeleteLinks,
    DeleteMember,
    DeleteRoom,
    DeleteSchedule,
    DeleteToken,
    DeleteTokensOf,
    PutAccount,
    PutFile,
    PutInvite,
    PutJoinRequest,
    PutLink,
    PutMember,
    PutRoom,
    PutSchedule,
    PutToken,
    SetBan,
    SetCursor,
    SetStrikes,
)
from chatd.protocol.events import FileInfo, Message

#: Change type -> its statement's parameters (messages have their own, `message_row`).
PARAMS: dict[type, Callable[[Any], Sequence[Any]]] = {
    PutAccount: lambda c: (c.key, c.name, c.pw_hash, c.created, c.cursor),
    SetCursor: lambda c: (c.cursor, c.user),
    SetBan: lambda c: (c.until, c.user),
    SetStrikes: lambda c: (json.dumps(c.strikes), c.user),
    PutRoom: lambda c: (c.key, c.name, c.owner, c.created),
    DeleteRoom: lambda c: (c.key,),
    PutMember: lambda c: (c.room, c.user, c.since),
    DeleteMember: lambda c: (c.room, c.user),
    PutLink: lambda c: (c.token, c.room, c.expires),
    DeleteLinks: lambda c: (c.room, c.token, c.token),
    PutJoinRequest: lambda c: (c.room, c.user, c.ts),
    DeleteJoinRequest: lambda c: (c.room, c.user),
    PutInvite: lambda c: (c.room, c.user, c.by, c.ts, c.expires),
    DeleteInvite: lambda c: (c.room, c.user),
    PutSchedule: lambda c: (c.id, c.user, c.at, c.command, c.created),
    DeleteSchedule: lambda c: (c.id,),
    PutFile: lambda c: (c.id, c.sha256, c.name, c.size, c.owner, c.created),
    DeleteFile: lambda c: (c.id,),
    PutToken: lambda c: (c.digest, c.user, c.created, c.pw_tag),
    DeleteToken: lambda c: (c.digest,),
    DeleteTokensOf: lambda c: (c.user,),
}

#: Counters kept in `meta` so ids are never reused, even after every row is deleted:
#: change type -> (counter, the id it uses).
COUNTERS: dict[type, tuple[str, Callable[[Any], int]]] = {
    PutSchedule: ("next_schedule_id", lambda c: c.id),
    PutFile: ("next_file_id", lambda c: c.id),
}


def message_row(m: Message) -> tuple[Any, ...]:
    """A message's parameters for the full INSERT (id, chat, sender, text, ts, reply_to,
    recipient, file_id, tags, kind); NULL for no client tags and an ordinary kind."""
    file_id = m.file.id if m.file is not None else None
    return (
        m.id,
        m.chat,
        m.sender,
        m.text,
        m.ts,
        m.reply_to,
        m.to,
        file_id,
        m.tags or None,
        m.kind or None,
    )


def message_of(row: Sequence[Any], file: FileInfo | None) -> Message:
    """A message back from a row of MESSAGE_COLUMNS (its file looked up by the store)."""
    i, chat, sender, text, ts, reply_to, to, _fid, tags, kind = row
    return Message(i, chat, sender, text, ts, reply_to, to, file, tags or "", kind or "")


#: The message columns every full INSERT and SELECT names, in `message_row`'s order.
MESSAGE_COLUMNS = "id, chat, sender, text, ts, reply_to, recipient, file_id, tags, kind"


def strikes_of(raw: str) -> tuple[tuple[str, float], ...]:
    """A strike set as stored (`SetStrikes`' JSON) back to (reporter, when) pairs."""
    return tuple((str(r), float(t)) for r, t in json.loads(raw))
