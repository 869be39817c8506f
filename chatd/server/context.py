"""What a door needs from the server, in one small explicit value.

A door (the line protocol, telnet, HTTP, IRC) gets a Context, not the Daemon: the
core, the hub, the file service, the thread pool, the clock, the counters, the
message reader, and `apply`, the one way an Outcome reaches the hub (it also re-aims
the timer when timed work moved). The Daemon builds it once at start-up.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass

from chatd.config import Config
from chatd.core.chat import Chat
from chatd.core.outcome import Outcome
from chatd.protocol.render import Renderer
from chatd.server.counters import ServerMetrics
from chatd.server.hub import Hub
from chatd.server.peer import Peer
from chatd.server.reader import MessageReader
from chatd.server.uploads import Files

Apply = Callable[[Peer | None, Outcome], None]


@dataclass(frozen=True, slots=True, eq=False)
class Context:
    loop: asyncio.AbstractEventLoop
    chat: Chat
    hub: Hub
    files: Files
    workers: concurrent.futures.Executor  # slow pure work: password hashing, rendering
    clock: Callable[[], float]
    metrics: ServerMetrics
    renderer: Renderer  # events to bytes per mode (a door may set up its own part)
    apply: Apply  # queue an outcome (and re-aim the timer); `peer`: the acting session
    reader: MessageReader  # messages with their text outside a command (HTTP long-poll)

    @property
    def config(self) -> Config:
        """The live config (a reload replaces it)."""
        return self.chat.config
