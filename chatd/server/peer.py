"""A session as the server holds it: the core's Session plus its transport and the
write-side bookkeeping the hub keeps per recipient (what was handed to the kernel,
whether the kernel still holds unsent bytes, when to give up on a slow reader)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from chatd.core.model import Session
from chatd.server.acks import Acks


@dataclass(slots=True, eq=False)
class Peer(Session):
    """A session with its transport and write-side bookkeeping."""

    transport: asyncio.Transport | None = None
    written_id: int = 0  # highest message id handed to the transport
    paused: bool = False  # the transport holds unsent bytes (see set_write_buffer_limits)
    buffer_limit: int = 0
    closing: bool = False
    # Where the door has a plain socket: what the client's TCP acknowledged
    # (server/acks.py) sets `acked_id`, which is what read positions are saved from.
    acks: Acks | None = None

    def settle(self) -> None:
        """Asks the kernel what the client acknowledged (a session with `acks`)."""
        if self.acks is not None:
            self.acked_id = self.acks.settle()

    def drained(self, buffer_limit: int) -> None:
        """The kernel took everything written (resume_writing): all of it counts as
        sent, and the send-buffer limit is the configured one again."""
        self.paused = False
        if self.written_id > self.sent_id:
            self.sent_id = self.written_id
        self.settle()
        self.buffer_limit = buffer_limit

    def lost(self, clean: bool) -> None:
        """The connection is gone. After a clean close with nothing left unsent, what
        was written was received; otherwise only what the kernel had taken. (With
        `acks`, the saved position is what the client acknowledged when last asked.)"""
        if clean and not self.paused and self.written_id > self.sent_id:
            self.sent_id = self.written_id
        self.transport = None
        self.closing = True
