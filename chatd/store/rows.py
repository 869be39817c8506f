"""What each change writes, in the order the SQL stores bind it: one table for SQLite and
PostgreSQL (each keeps only its own statement text per change type), so a field added
to a change is added once."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
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
from chatd.core.snapshot import (
    AccountRow,
    FileRow,
    InviteRow,
    JoinRequestRow,
    LinkRow,
    MemberRow,
    MessageRow,
    RoomRow,
    ScheduleRow,
    Snapshot,
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


def load_snapshot(
    query: Callable[[str], Iterable[Sequence[Any]]],
    *,
    user: str,
    files_known: Callable[[dict[int, FileInfo]], None],
    newest: Callable[[], tuple[Message, ...]],
) -> Snapshot:
    """Everything but message text, by the SQL both stores share (`query` runs one
    statement; `user` is the user-key column's name). The message rows come as a
    generator: the core indexes them as they come, with no list of them all. The
    store hears the file rows (`files_known`) before it reads the `newest` whole."""
    accounts = tuple(
        AccountRow(key, name, pw, created, cursor, banned, strikes_of(strikes))
        for key, name, pw, created, cursor, banned, strikes in query(
            "SELECT key, name, pw_hash, created, cursor, banned_until, strikes FROM accounts"
        )
    )
    files = tuple(
        FileRow(*row) for row in query("SELECT id, sha256, name, size, owner, created FROM files")
    )
    info = {f.id: FileInfo(f.id, f.name, f.size, f.sha256) for f in files}
    files_known(info)
    messages = (
        MessageRow(i, chat, sender, ts, reply_to, info.get(fid) if fid else None)
        for i, chat, sender, ts, reply_to, fid in query(
            "SELECT id, chat, sender, ts, reply_to, file_id FROM messages ORDER BY id"
        )
    )
    ((top,),) = query("SELECT max(id) FROM messages")
    meta = {str(k): int(v) for k, v in query("SELECT key, value FROM meta")}
    next_id = meta["next_id"] if top is None else max(meta["next_id"], int(top) + 1)
    return Snapshot(
        accounts=accounts,
        messages=messages,
        recent=newest(),
        next_id=next_id,
        rooms=tuple(RoomRow(*r) for r in query("SELECT key, name, owner, created FROM rooms")),
        members=tuple(MemberRow(*r) for r in query(f"SELECT room, {user}, since FROM members")),
        links=tuple(LinkRow(*r) for r in query("SELECT token, room, expires FROM links")),
        requests=tuple(
            JoinRequestRow(*r) for r in query(f"SELECT room, {user}, ts FROM join_requests")
        ),
        schedules=tuple(
            ScheduleRow(*r)
            for r in query(
                f"SELECT id, {user}, at, command, created FROM schedules ORDER BY at, id"
            )
        ),
        next_schedule_id=meta["next_schedule_id"],
        files=files,
        next_file_id=meta["next_file_id"],
        invites=tuple(
            InviteRow(*r) for r in query(f"SELECT room, {user}, by_user, ts, expires FROM invites")
        ),
    )
