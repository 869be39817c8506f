"""Moderation: complaints and strikes, bans, and the admin commands."""

from __future__ import annotations

import re

from chatd.core.model import Account, Session
from chatd.core.outcome import (
    Outcome,
    SetBan,
    SetStrikes,
)
from chatd.core.state import ChatState, Refused, account_of, log, reply, retry_after
from chatd.core.timespec import WhenError, relative_seconds
from chatd.protocol import commands as c
from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.events import GENERAL, Code
from chatd.protocol.timefmt import rfc3339

_DURATION_LIKE = re.compile(r"[+\-]?\.?\d")  # a first word that means to be a duration
MAX_BAN_S = 3650 * 86400.0  # ten years: "for ever" without overflowing a timestamp


def _duration(rest: str, default: float) -> tuple[float, str]:
    """An admin's `[duration] [reason]`: `90`, `90s`, `30m`, `4h`, `7d`, `1h30m`, or none
    (the configured ban duration); the rest is the reason. A first word that starts like
    a number is a duration and must parse: `ban bob 4x` is refused, not a silent 4 h."""
    parts = rest.split(None, 1)
    if not parts or _DURATION_LIKE.match(parts[0]) is None:
        return default, rest.strip()
    try:
        seconds = relative_seconds("+" + parts[0])
    except WhenError:
        seconds = -1.0
    if not 0 < seconds <= MAX_BAN_S:
        raise Refused(
            Code.BAD_ARGS,
            f"bad duration {parts[0]!r}: a ban lasts from 1s to 3650d, such as 90, 30m, 4h, "
            "7d or 1h30m: ban <user> [duration] [reason]",
        )
    return seconds, parts[1].strip() if len(parts) > 1 else ""


class ModerationCommands(ChatState):
    def cmd_ban(self, s: Session, cmd: c.Ban, now: float) -> Outcome:
        """ban <user> [reason] (alias report): one strike per distinct reporter; admins
        ban at once with ban <user> [duration] [reason]."""
        acct = account_of(s)
        target = self._user(cmd.user)
        if target is acct:
            raise Refused(Code.BAD_ARGS, "you cannot report yourself")
        mod = self.config.moderation
        out = Outcome()
        if self.is_admin(acct):
            duration, reason = _duration(cmd.rest, mod.ban_duration_s)
            self._ban(target, now + duration, now, out, by=acct.name, reason=reason)
        else:
            min_age = mod.complaint_min_account_age_s
            if min_age and now - acct.created < min_age:
                raise Refused(
                    Code.FORBIDDEN,
                    f"your account is too new to report others; it can in "
                    f"{retry_after(acct.created + min_age - now)}s",
                )
            min_sent = mod.complaint_min_messages
            if acct.sent < min_sent:
                raise Refused(
                    Code.FORBIDDEN,
                    f"take part before you report others: your complaints count once "
                    f"you have sent {min_sent} messages ({acct.sent} so far)",
                )
            self._strike(acct, target, cmd.rest, now, out)
        strikes = len(target.strikes)
        until = target.banned_until if target.banned_until > now else None
        out.replies.append(r.BanOk(cmd.verb, target.name, strikes, until))
        return out

    def _strike(self, by: Account, target: Account, reason: str, now: float, out: Outcome) -> None:
        """One strike per distinct reporter; strikes older than the window no longer
        count; a user with `strikes_to_ban` current strikes who is not banned is banned.
        (Strikes are not cleared by a ban: while three reports from the last window
        stand, the next report after the ban ends bans again.)"""
        mod = self.config.moderation
        window = mod.strike_window_s
        before = target.strikes
        target.strikes = {r: t for r, t in before.items() if now - t < window}
        changed = len(target.strikes) != len(before)
        if by.key not in target.strikes:
            target.strikes[by.key] = now
            changed = True
            log.info(
                "user.reported",
                user=target.name,
                by=by.name,
                strikes=len(target.strikes),
                reason=reason or None,
            )
            # Never who reported: knowing would invite retaliation (the log has it).
            out.notify(target.sessions, n.Warned(len(target.strikes), mod.strikes_to_ban))
        if changed:
            out.changes.append(SetStrikes(target.key, tuple(target.strikes.items())))
        if (
            len(target.strikes) >= mod.strikes_to_ban
            and target.banned_until <= now
            and not self.is_admin(target)  # complaints cannot silence an admin
        ):
            self._ban(target, now + mod.ban_duration_s, now, out, by=None, reason="strikes")

    def _ban(
        self,
        target: Account,
        until: float,
        now: float,
        out: Outcome,
        *,
        by: str | None,
        reason: str,
    ) -> None:
        target.banned_until = until
        out.changes.append(SetBan(target.key, until))
        banned = n.Banned(until, retry_after(until - now), reason or None)
        out.notify(target.sessions, banned)
        log.info("user.banned", user=target.name, until=rfc3339(until), by=by, reason=reason)

    def cmd_unban(self, s: Session, cmd: c.Unban, now: float) -> Outcome:
        """unban <user>: admin; lifts a ban and clears strikes."""
        target = self._user(cmd.user)
        target.banned_until = 0.0
        target.strikes.clear()
        out = reply(r.UnbanOk(cmd.verb, target.name))
        out.changes += [SetBan(target.key, 0.0), SetStrikes(target.key, ())]
        out.notify(target.sessions, n.Unbanned())
        log.info("user.unbanned", user=target.name, by=account_of(s).name)
        return out

    def cmd_kick(self, s: Session, cmd: c.Kick, now: float) -> Outcome:
        """kick <user>: admin; closes all of that user's sessions with a notice."""
        target = self._user(cmd.user)
        out = reply(r.KickOk(cmd.verb, target.name))
        notice = n.Kicked(account_of(s).name)
        out.closes.extend((x, notice) for x in target.sessions)
        log.info("user.kicked", user=target.name, by=account_of(s).name)
        return out

    def cmd_announce(self, s: Session, cmd: c.Announce, now: float) -> Outcome:
        """announce <text>: admin; a notice to every session online."""
        out = reply(r.AnnounceOk(cmd.verb))
        out.notify(tuple(self.topics[GENERAL]), n.Announce(account_of(s).name, cmd.text))
        return out

    def cmd_stats(self, s: Session, cmd: c.Stats, now: float) -> Outcome:
        """stats: admin; counters of the chat state, and the server's if it gave any."""
        counters = {
            **self.server_stats(),
            "accounts": len(self.accounts),
            "users_online": len(self.online),
            "sessions": len(self.topics[GENERAL]),
            "messages_stored": len(self.index),
            "last_message_id": self.next_id - 1,
            "uptime_s": int(now - self.started),
        }
        return reply(r.StatsOk(cmd.verb, counters))

    # Reading ----------------------------------------------------------------------
