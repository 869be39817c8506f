"""What the core keeps of messages: an index without their text, and a bounded window of
the newest ones whole.

Message bodies live in the store (issue 13: memory must not grow with retained
history). Every rule still needs to know, synchronously, which messages exist, in which
chat, from whom and when: unread counts, who may see a message, what retention may
delete. `MessageIndex` keeps exactly that, in flat arrays per chat (about 40 bytes a
message, whatever its length), plus the rare fields (comments) in small dicts.

`RecentWindow` keeps the newest messages whole, up to a byte budget: a login that
missed little, a history of the last few lines, an HTTP long-poll woken by a new
message, all read it without touching the store. It never lets go of a message the
store may not hold yet (ids above `durable`), so anything not in the window can be read
from the store.
"""

from __future__ import annotations

import bisect
import heapq
import sys
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence

from chatd.core.snapshot import MessageRow
from chatd.protocol.events import FileInfo, Message


class ChatLog:
    """One chat's messages, oldest first: ids, senders (user keys, interned), times.
    `key` is the chat key, the one string every message of the chat refers to."""

    __slots__ = ("ids", "key", "senders", "times")

    def __init__(self, key: str = "") -> None:
        self.key = key
        self.ids = array("q")
        self.senders: list[str] = []
        self.times = array("d")

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def last_id(self) -> int:
        return self.ids[-1] if self.ids else 0

    def after(self, after: int) -> int:
        """The position of the first message with id > after."""
        return bisect.bisect_right(self.ids, after)


class MessageIndex:
    """Every stored message's id, chat, sender key and time, by chat and by id."""

    __slots__ = ("_all_chats", "_all_ids", "_dead", "chats", "comments", "files", "reply_to")

    def __init__(self) -> None:
        self.chats: dict[str, ChatLog] = {}
        # By id, for "which chat is message N in": parallel arrays in id order; a removed
        # message leaves a hole (chat None) until the next compaction.
        self._all_ids = array("q")
        self._all_chats: list[str | None] = []
        self._dead = 0
        self.reply_to: dict[int, int] = {}  # comment id -> the message it comments on
        self.comments: dict[int, list[int]] = {}  # message id -> its comments, in order
        self.files: dict[int, FileInfo] = {}  # message id -> the file it carries

    def __len__(self) -> int:
        return len(self._all_ids) - self._dead

    def add(self, m: MessageRow) -> None:
        """Indexes a message (`m.sender`: the user key); ids only ever grow."""
        log = self.chats.get(m.chat)
        if log is None:
            chat = sys.intern(m.chat)
            log = self.chats[chat] = ChatLog(chat)
        log.ids.append(m.id)
        log.senders.append(sys.intern(m.sender))
        log.times.append(m.ts)
        self._all_ids.append(m.id)
        self._all_chats.append(log.key)  # one string per chat, not one per message
        if m.reply_to is not None:
            self.reply_to[m.id] = m.reply_to
            self.comments.setdefault(m.reply_to, []).append(m.id)
        if m.file is not None:
            self.files[m.id] = m.file

    # Lookups ----------------------------------------------------------------------

    def chat_of(self, ident: int) -> str | None:
        """The chat of message `ident`, or None if there is no such message."""
        i = bisect.bisect_left(self._all_ids, ident)
        if i < len(self._all_ids) and self._all_ids[i] == ident:
            return self._all_chats[i]
        return None

    def row(self, ident: int) -> MessageRow | None:
        """Everything the index knows of message `ident` (its sender as a user key)."""
        chat = self.chat_of(ident)
        if chat is None:
            return None
        log = self.chats[chat]
        i = bisect.bisect_left(log.ids, ident)
        return MessageRow(
            ident,
            chat,
            log.senders[i],
            log.times[i],
            self.reply_to.get(ident),
            self.files.get(ident),
        )

    def ids(self) -> Iterator[int]:
        """Every message id, in order."""
        chats = self._all_chats
        return (ident for i, ident in enumerate(self._all_ids) if chats[i] is not None)

    def count_after(self, chat: str, after: int, but: str | None = None) -> int:
        """Messages of `chat` with id > after, not counting those sent by `but`."""
        log = self.chats.get(chat)
        if log is None:
            return 0
        start = log.after(after)
        if but is None:
            return len(log.ids) - start
        senders = log.senders
        return sum(1 for i in range(start, len(senders)) if senders[i] != but)

    def last(self, chat: str, n: int, before: int | None = None) -> list[int]:
        """The ids of the newest `n` messages of `chat` (below `before`), oldest first."""
        log = self.chats.get(chat)
        if log is None or n <= 0:
            return []
        end = len(log.ids) if before is None else bisect.bisect_left(log.ids, before)
        return list(log.ids[max(0, end - n) : end])

    def after(
        self,
        chats: Iterable[str],
        after: int,
        *,
        upto: int | None = None,
        but: str | None = None,
        but_upto: int = 0,
        limit: int | None = None,
    ) -> list[int]:
        """Ids of these chats' messages with after < id <= upto, oldest first, at most
        `limit`; a message sent by `but` with id <= `but_upto` is left out (your own
        messages are never unread)."""
        runs: list[Iterator[int]] = []
        for chat in chats:
            log = self.chats.get(chat)
            if log is None:
                continue
            start = log.after(after)
            if start < len(log.ids):
                runs.append(_run(log, start, but, but_upto))
        merged: Iterable[int] = runs[0] if len(runs) == 1 else heapq.merge(*runs)
        out: list[int] = []
        for ident in merged:
            if upto is not None and ident > upto:
                break
            out.append(ident)
            if limit is not None and len(out) >= limit:
                break
        return out

    # Forgetting -------------------------------------------------------------------

    def drop_prefix(self, chat: str, n: int) -> list[int]:
        """Forgets the chat's oldest `n` messages (retention); returns their ids."""
        log = self.chats[chat]
        ids = list(log.ids[:n])
        del log.ids[:n]
        del log.senders[:n]
        del log.times[:n]
        if not log.ids:
            del self.chats[chat]
        self._unlist(ids)
        return ids

    def drop_chat(self, chat: str) -> list[int]:
        """Forgets a whole chat (a deleted room); returns its ids."""
        log = self.chats.pop(chat, None)
        if log is None:
            return []
        ids = list(log.ids)
        self._unlist(ids)
        return ids

    def remove(self, ids: Iterable[int]) -> None:
        """Forgets single messages wherever they are (a withdrawn commit)."""
        gone = []
        for ident in ids:
            chat = self.chat_of(ident)
            if chat is None:
                continue
            log = self.chats[chat]
            i = bisect.bisect_left(log.ids, ident)
            del log.ids[i]
            del log.senders[i]
            del log.times[i]
            if not log.ids:
                del self.chats[chat]
            gone.append(ident)
        self._unlist(gone)

    def _unlist(self, ids: Sequence[int]) -> None:
        all_ids, chats = self._all_ids, self._all_chats
        for ident in ids:
            i = bisect.bisect_left(all_ids, ident)
            if i < len(all_ids) and all_ids[i] == ident and chats[i] is not None:
                chats[i] = None
                self._dead += 1
            parent = self.reply_to.pop(ident, None)
            if parent is not None:
                siblings = self.comments.get(parent)
                if siblings is not None and ident in siblings:
                    siblings.remove(ident)
                    if not siblings:
                        del self.comments[parent]
            self.comments.pop(ident, None)
            self.files.pop(ident, None)
        if self._dead > 1024 and self._dead * 2 > len(all_ids):
            self._compact()

    def _compact(self) -> None:
        keep = [i for i, chat in enumerate(self._all_chats) if chat is not None]
        self._all_ids = array("q", (self._all_ids[i] for i in keep))
        self._all_chats = [self._all_chats[i] for i in keep]
        self._dead = 0


def _run(log: ChatLog, start: int, but: str | None, but_upto: int) -> Iterator[int]:
    ids, senders = log.ids, log.senders
    for i in range(start, len(ids)):
        ident = ids[i]
        if but is not None and ident <= but_upto and senders[i] == but:
            continue
        yield ident


class RecentWindow:
    """The newest messages whole, oldest first, within `budget` bytes of text; never
    dropping one the store may not have yet (id > `durable`)."""

    __slots__ = ("_by_id", "_size", "budget", "durable")

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.durable = 0  # the server raises it as commits return; 0 keeps everything
        # Ordered by id, oldest first. An OrderedDict, not a dict: finding a dict's first
        # key after many deletions at its front walks over their holes (7.9 us a
        # message measured, against 0.24).
        self._by_id: OrderedDict[int, Message] = OrderedDict()
        self._size = 0

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, ident: int) -> bool:
        return ident in self._by_id

    def add(self, m: Message) -> None:
        self._by_id[m.id] = m
        self._size += _cost(m)
        self.trim()

    def trim(self) -> None:
        by_id = self._by_id
        while self._size > self.budget and by_id:
            oldest = next(iter(by_id))
            if oldest > self.durable:
                break
            self._size -= _cost(by_id.popitem(last=False)[1])

    def get(self, ident: int) -> Message | None:
        return self._by_id.get(ident)

    def remove(self, ids: Iterable[int]) -> None:
        for ident in ids:
            m = self._by_id.pop(ident, None)
            if m is not None:
                self._size -= _cost(m)

    def split(self, ids: Iterable[int]) -> tuple[dict[int, Message], list[int]]:
        """The messages held among `ids`, and the ids that must be read from the store."""
        found: dict[int, Message] = {}
        missing: list[int] = []
        by_id = self._by_id
        for ident in ids:
            m = by_id.get(ident)
            if m is None:
                missing.append(ident)
            else:
                found[ident] = m
        return found, missing


def _cost(m: Message) -> int:
    """Bytes a held message is counted for: its text, its client tags (IRC; usually
    none) and a fixed overhead."""
    return len(m.text) + len(m.tags) + 200
