"""A store that keeps the durable state in dicts: for unit tests and throwaway servers.

It applies the same changes as the SQLite store, so a core rebuilt from `load()` after
some commits sees what a restarted server would.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from chatd.core import outcome as o
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
    TokenRow,
)
from chatd.protocol.events import Message


class MemoryStore:
    def __init__(self) -> None:
        self.accounts: dict[str, AccountRow] = {}
        self.messages: dict[int, Message] = {}
        self.rooms: dict[str, RoomRow] = {}
        self.members: dict[tuple[str, str], MemberRow] = {}
        self.links: dict[str, LinkRow] = {}
        self.requests: dict[tuple[str, str], JoinRequestRow] = {}
        self.invites: dict[tuple[str, str], InviteRow] = {}
        self.schedules: dict[int, ScheduleRow] = {}
        self.files: dict[int, FileRow] = {}
        self.tokens: dict[str, TokenRow] = {}
        self.next_id = self.next_schedule_id = self.next_file_id = 1
        self.commits = 0
        self._lock = threading.Lock()  # `read` runs on worker threads, commits on another

    def load(self, recent: int = 0) -> Snapshot:
        ordered = [self.messages[i] for i in sorted(self.messages)]
        return Snapshot(
            accounts=tuple(self.accounts.values()),
            messages=tuple(
                MessageRow(m.id, m.chat, m.sender, m.ts, m.reply_to, m.file) for m in ordered
            ),
            recent=tuple(ordered[-recent:]) if recent > 0 else (),
            next_id=self.next_id,
            rooms=tuple(self.rooms.values()),
            members=tuple(self.members.values()),
            links=tuple(self.links.values()),
            requests=tuple(self.requests.values()),
            schedules=tuple(sorted(self.schedules.values(), key=lambda s: (s.at, s.id))),
            next_schedule_id=self.next_schedule_id,
            files=tuple(self.files.values()),
            next_file_id=self.next_file_id,
            invites=tuple(self.invites.values()),
        )

    def load_tokens(self) -> tuple[TokenRow, ...]:
        return tuple(self.tokens.values())

    def commit(self, changes: Sequence[o.Change]) -> None:
        with self._lock:
            self.commits += 1
            for ch in changes:
                self._apply(ch)

    def read(self, ids: Sequence[int]) -> list[Message]:
        with self._lock:
            found = (self.messages.get(i) for i in sorted(ids))
            return [m for m in found if m is not None]

    def _apply(self, ch: o.Change) -> None:
        match ch:
            case o.PutAccount(key, name, pw_hash, created, cursor):
                old = self.accounts.get(key)
                self.accounts[key] = (
                    replace(old, name=name, pw_hash=pw_hash)
                    if old
                    else AccountRow(key, name, pw_hash, created, cursor)
                )
            case o.PutMessage(message):
                self.messages[message.id] = message
                self.next_id = max(self.next_id, message.id + 1)
            case o.DeleteMessages(ids):
                for i in ids:
                    self.messages.pop(i, None)
            case o.SetCursor(user, cursor):
                row = self.accounts.get(user)
                if row is not None:
                    self.accounts[user] = replace(row, cursor=max(row.cursor, cursor))
            case o.SetBan(user, until):
                self._update(user, banned_until=until)
            case o.SetStrikes(user, strikes):
                self._update(user, strikes=strikes)
            case o.PutRoom(key, name, owner, created):
                self.rooms[key] = RoomRow(key, name, owner, created)
            case o.DeleteRoom(key):
                self.rooms.pop(key, None)
            case o.PutMember(room, user, since):
                self.members[room, user] = MemberRow(room, user, since)
            case o.DeleteMember(room, user):
                self.members.pop((room, user), None)
            case o.PutLink(token, room, expires):
                self.links[token] = LinkRow(token, room, expires)
            case o.DeleteLinks(room, token):
                for t, link in list(self.links.items()):
                    if link.room == room and token in (None, t):
                        del self.links[t]
            case o.PutJoinRequest(room, user, ts):
                self.requests[room, user] = JoinRequestRow(room, user, ts)
            case o.DeleteJoinRequest(room, user):
                self.requests.pop((room, user), None)
            case o.PutInvite(room, user, by, ts, expires):
                self.invites[room, user] = InviteRow(room, user, by, ts, expires)
            case o.DeleteInvite(room, user):
                self.invites.pop((room, user), None)
            case o.PutSchedule(ident, user, at, command, created):
                self.schedules[ident] = ScheduleRow(ident, user, at, command, created)
                self.next_schedule_id = max(self.next_schedule_id, ident + 1)
            case o.DeleteSchedule(ident):
                self.schedules.pop(ident, None)
            case o.PutFile(ident, sha256, name, size, owner, created):
                self.files[ident] = FileRow(ident, sha256, name, size, owner, created)
                self.next_file_id = max(self.next_file_id, ident + 1)
            case o.DeleteFile(ident):
                self.files.pop(ident, None)
            case o.PutToken(digest, user, created, pw_tag):
                self.tokens[digest] = TokenRow(digest, user, created, pw_tag)
            case o.DeleteToken(digest):
                self.tokens.pop(digest, None)
            case o.DeleteTokensOf(user):
                for digest in [d for d, t in self.tokens.items() if t.user == user]:
                    del self.tokens[digest]

    def _update(self, user: str, **values: object) -> None:
        row = self.accounts.get(user)
        if row is not None:
            self.accounts[user] = replace(row, **values)  # type: ignore[arg-type]

    def close(self) -> None:
        pass
