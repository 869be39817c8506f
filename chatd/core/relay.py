"""Relays: client-only tags (IRC's TAGMSG: typing, reactions) pushed to a chat's
members and never stored.

The rules are the ones a message to the same target meets, from the same helpers:
the target must exist and the sender must be a member (a room) or it must be a user
(private); a banned sender, or one whose messages to that chat are rate-limited, is
refused. A relay does not count against the message windows (typing would use them
up); the pipeline's flood guard bounds it like any command. Nothing is committed: the
Outcome has no change, so the push leaves with the batch without waiting for a disk.
"""

from __future__ import annotations

from collections.abc import Iterable

from chatd.core.model import Session
from chatd.core.names import dm_key
from chatd.core.outcome import Outcome
from chatd.core.state import ChatState, account_of, log
from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL
from chatd.protocol.relay import RELAY_MODES, Relayed, RelayOk


class RelayCommands(ChatState):
    def cmd_relay(self, s: Session, cmd: c.Relay, now: float) -> Outcome:
        """A door's relay (TAGMSG <target>): to the target's sessions that can carry
        it, the sender's other sessions included, never to the sending session (its
        door echoes it, or not, as it negotiated)."""
        acct = account_of(s)
        sessions: Iterable[Session]
        if cmd.target.lower() == GENERAL:
            chat = shown = GENERAL
            sessions = self.topics.get(GENERAL, ())
        elif cmd.target.startswith("#"):
            room = self._member_room(acct, cmd.target)
            chat = shown = room.key
            sessions = self.topics.get(room.key, ())
        else:
            other = self._user(cmd.target)
            chat, shown = dm_key(acct.key, other.key), other.name
            sessions = acct.sessions if other is acct else (*other.sessions, *acct.sessions)
        self._check_not_banned(acct, now)
        self._chat_limit(acct, chat, now, count=False)
        to = tuple(x for x in sessions if x is not s and x.mode in RELAY_MODES)
        out = Outcome(replies=[RelayOk(cmd.verb, shown, now, cmd.ref)])
        if to:
            out.pushes.append((Relayed(acct.name, shown, cmd.tags, now, cmd.ref), to))
        log.debug("relay.sent", user=acct.name, chat=chat, sessions=len(to))
        return out
