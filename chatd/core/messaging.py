"""Messages: send_all, send, who, history."""

from __future__ import annotations

from chatd.core.model import Session
from chatd.core.names import dm_key
from chatd.core.outcome import (
    Outcome,
    PutMessage,
)
from chatd.core.state import ChatState, account_of, log, reply
from chatd.protocol import commands as c
from chatd.protocol import replies as r
from chatd.protocol.events import GENERAL, Message, Push


class MessagingCommands(ChatState):
    def cmd_send_all(self, s: Session, cmd: c.SendAll, now: float) -> Outcome:
        """send_all <text>: a message to #general, rate-limited per user."""
        acct = account_of(s)
        self._check_not_banned(acct, now)
        self._count_general(acct, now)
        msg = self._post(GENERAL, acct.name, cmd.text, now, tags=cmd.tags, kind=cmd.kind)
        return self._sent(r.SendAllOk(cmd.verb, msg.id, msg.ts), s, msg, broadcast=True)

    def cmd_send(self, s: Session, cmd: c.Send, now: float) -> Outcome:
        """send <user|@user|#room> <text>: a private message, or to a room."""
        acct = account_of(s)
        if cmd.target.lower() == GENERAL:
            general = c.SendAll(cmd.text, cmd.tags, cmd.kind, verb=cmd.verb)
            return self.cmd_send_all(s, general, now)
        if cmd.target.startswith("#"):
            room = self._member_room(acct, cmd.target)
            self._check_not_banned(acct, now)
            self._limit(acct.key, "room", now)
            msg = self._post(room.key, acct.name, cmd.text, now, tags=cmd.tags, kind=cmd.kind)
            return self._sent(r.SentOk(cmd.verb, msg.id, msg.ts), s, msg, broadcast=True)
        other = self._user(cmd.target.removeprefix("@"))
        self._check_not_banned(acct, now)
        self._limit(acct.key, "private", now)
        chat = dm_key(acct.key, other.key)
        msg = self._post(
            chat, acct.name, cmd.text, now, to=other.name, tags=cmd.tags, kind=cmd.kind
        )
        out = self._sent(r.SentOk(cmd.verb, msg.id, msg.ts), s, msg, broadcast=False)
        if other is not acct:
            out.pushes.append((Push(msg, other.key), tuple(other.sessions)))
        mine = tuple(x for x in acct.sessions if x is not s)
        if mine:
            out.pushes.append((Push(msg, acct.key), mine))
        return out

    def _sent(self, ok: r.SentOk, s: Session, msg: Message, *, broadcast: bool) -> Outcome:
        out = Outcome(
            replies=[ok],
            broadcasts=[(msg, s)] if broadcast else [],
            changes=[PutMessage(msg)],
            acked=msg.id,
        )
        log.info("message.sent", user=msg.sender, chat=msg.chat, id=msg.id)
        return out

    def cmd_who(self, s: Session, cmd: c.Who, now: float) -> Outcome:
        """who [#room]: users online, or a room's members."""
        if cmd.room is not None and cmd.room.lower() != GENERAL:
            room = self._member_room(account_of(s), cmd.room)
            members = sorted(room.members.items(), key=lambda kv: (kv[1], kv[0]))
            accts = [a for a in (self.accounts.get(k) for k, _ in members) if a is not None]
            users = tuple(r.UserRow(a.name, len(a.sessions)) for a in accts)
            return reply(r.WhoOk(cmd.verb, users, room.key))
        online = sorted(self.online.values(), key=lambda a: a.key)
        return reply(r.WhoOk(cmd.verb, tuple(r.UserRow(a.name, len(a.sessions)) for a in online)))

    def cmd_history(self, s: Session, cmd: c.History, now: float) -> Outcome:
        """history <chat> [n] [before <id>]: earlier messages, oldest first."""
        acct = account_of(s)
        chat = self._resolve_chat(acct, cmd.chat)
        n = min(cmd.count or 20, self.config.chat.history_max)
        display = self._display(chat, acct)

        def then(page: list[Message]) -> Outcome:
            pushes = tuple(Push(m, acct.key) for m in page)
            return reply(r.HistoryOk(cmd.verb, display, pushes))

        return self.with_bodies(self.index.last(chat, n, cmd.before), then)
