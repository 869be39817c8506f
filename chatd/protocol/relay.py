"""Client-only tags relayed and never stored: IRC's TAGMSG (typing notifications,
reactions), as the core pushes them and the doors that can carry them render them.

A relay is not a message: it has no id from the store, it is not committed, replayed,
counted as received or kept in history, and it reaches only sessions whose render mode
carries client-only tags (`RELAY_MODES`). The core leaves every other session out, so a
line-protocol, HTTP or plain IRC session never gets one (IRCv3 message-tags: only
clients that negotiated `message-tags` may be sent TAGMSG).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from chatd.protocol.events import TIME, Event, Mode, Ok

#: Render modes whose sessions may be sent a relay: IRC with message tags. (A client in
#: that mode with `account-tag` alone has its TAGMSG lines dropped by the IRC door.)
RELAY_MODES = frozenset({Mode.IRC_TAGS})


@dataclass(frozen=True, slots=True)
class Relayed(Event):
    """Client-only tags from `sender` (a display name) to `target`: a channel, or for
    a private relay the recipient's display name (as a private message's `to`, right
    for the recipient and the sender's other sessions alike). `tags` keep their `+`;
    `ref` is the id the door gave it (IRC's msgid), `ts` when the core relayed it."""

    sender: str
    target: str
    tags: tuple[tuple[str, str], ...]
    ts: float
    ref: str


@dataclass(frozen=True, slots=True, eq=False)
class RelayOk(Ok):
    """The sender's reply: where it went, when, and its ref (the door's echo)."""

    kind: ClassVar[str] = "relay"
    cmd: str
    target: str
    ts: float = field(metadata=TIME)
    ref: str = ""
