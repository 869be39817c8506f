"""Messages with their text, for a door that reads outside a command.

The core holds only an index of messages and the newest ones whole (core/index.py);
a command that needs older ones gets them through `Chat.with_bodies`, inside the
pipeline. The HTTP door's long-poll and event streams answer outside any command:
they ask here, from the recent window when it holds every message (the common case:
a waiter woken by a new message), otherwise from the store on a worker thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures

from chatd.core.chat import Chat
from chatd.core.model import Account
from chatd.protocol.events import Message


class MessageReader:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        chat: Chat,
        workers: concurrent.futures.Executor,
    ) -> None:
        self._loop = loop
        self._chat = chat
        self._workers = workers

    def ids_after(self, acct: Account, since: int, top: int, limit: int) -> list[int]:
        """Ids of the user's messages (every chat of theirs) with since < id <= top,
        oldest first, at most `limit`."""
        chat = self._chat
        return chat.index.after(chat.chats_of(acct), since, upto=top, limit=limit)

    def recent_after(self, acct: Account, since: int, top: int, limit: int) -> list[Message] | None:
        """Those messages from memory, or None when some must be read from the store."""
        ids = self.ids_after(acct, since, top, limit)
        found, missing = self._chat.recent.split(ids)
        if missing:
            return None
        return [found[i] for i in ids]

    async def after(self, acct: Account, since: int, top: int, limit: int) -> list[Message]:
        """Those messages, from memory or the store."""
        ids = self.ids_after(acct, since, top, limit)
        return await self.read(ids)

    async def read(self, ids: list[int]) -> list[Message]:
        """Messages by id (ascending), from memory or the store; gone ones left out."""
        found, missing = self._chat.recent.split(ids)
        if missing:
            got = await self._loop.run_in_executor(self._workers, self._chat.read_bodies, missing)
            found.update((m.id, m) for m in got)
        return [found[i] for i in ids if i in found]
