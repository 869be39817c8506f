"""The rules of chatd, synchronous and pure: one `cmd_<verb>` method per command.

`Chat.handle(session, command, now)` returns an Outcome; nothing here touches a socket,
the event loop or the database, and time only enters as the `now` argument, so the
tests drive it with plain calls and a moved clock.
"""

from __future__ import annotations

import bisect
import heapq
import math
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import structlog

from chatd import __version__
from chatd.config import Config
from chatd.core import passwords
from chatd.core.model import Account, Session
from chatd.core.names import dm_key, key, valid_name
from chatd.core.outcome import (
    Change,
    Deferred,
    Outcome,
    PutAccount,
    PutMessage,
    SetBan,
    SetCursor,
    SetStrikes,
)
from chatd.core.snapshot import Snapshot
from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL, Code, Error, Message, Mode, Notice, Ok, Push
from chatd.protocol.render import rfc3339

log = structlog.get_logger("chatd.core")

_DURATION = re.compile(r"(\d+)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_NAME_RULE = "names are 1-32 characters of A-Z a-z 0-9 _ . -"


class Refused(Exception):
    """A command refused with a stable error code; becomes `ERR <code> <message>`."""

    def __init__(self, code: Code, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


def retry_after(seconds: float) -> int:
    """Whole seconds to wait, rounded up, never 0 while something is still refused."""
    return max(1, math.ceil(seconds))


class Chat:
    """All chat state and the rules that change it."""

    def __init__(self, config: Config, snapshot: Snapshot, *, started: float) -> None:
        self.config = config
        self.started = started
        self.accounts: dict[str, Account] = {}
        self.online: dict[str, Account] = {}
        self.chats: dict[str, list[Message]] = {GENERAL: []}
        self.messages: dict[int, Message] = {}
        self.topics: dict[str, set[Session]] = {GENERAL: set()}
        self.next_id = snapshot.next_id
        for row in snapshot.accounts:
            self.accounts[row.key] = Account(
                key=row.key,
                name=row.name,
                pw_hash=row.pw_hash,
                created=row.created,
                cursor=row.cursor,
                saved_cursor=row.cursor,
                banned_until=row.banned_until,
                strikes=dict(row.strikes),
            )
        for m in snapshot.messages:
            self._remember(m)
            self.next_id = max(self.next_id, m.id + 1)

    # Sessions ---------------------------------------------------------------------

    def handle(self, s: Session, cmd: c.Command, now: float) -> Outcome:
        """Runs one command for a session; every refusal becomes an ERR reply."""
        spec = c.lookup(cmd.verb)
        assert spec is not None, cmd.verb
        method: Callable[[Session, Any, float], Outcome] = getattr(self, "cmd_" + spec.name)

        def run() -> Outcome:
            if s.account is None and not spec.before_login:
                raise Refused(Code.NOT_LOGGED_IN, "log in first: login <name> [password]")
            if spec.admin and not self.is_admin(s.account):
                raise Refused(Code.FORBIDDEN, f"{spec.name} is for admins only")
            return method(s, cmd, now)

        return self._guard(cmd.verb, run)

    def _guard(self, verb: str, run: Callable[[], Outcome]) -> Outcome:
        try:
            out = run()
        except Refused as e:
            return Outcome(replies=[Error(e.code, e.message, verb, e.retry_after)])
        except Exception:
            log.exception("command.failed", cmd=verb)
            return Outcome(replies=[Error(Code.INTERNAL, "internal error; logged", verb)])
        if out.deferred is not None:
            inner = out.deferred.resume
            out.deferred = Deferred(
                out.deferred.work, lambda result, t: self._guard(verb, lambda: inner(result, t))
            )
        return out

    def close(self, s: Session, now: float) -> Outcome:
        """A connection ended: detach the session and save what it received."""
        acct = s.account
        out = Outcome()
        if acct is None:
            return out
        s.account = None
        acct.sessions.remove(s)
        for topic in (GENERAL, *acct.rooms):
            self.topics.get(topic, set()).discard(s)
        if s.sent_id > acct.cursor:
            acct.cursor = s.sent_id
        if not acct.sessions:
            del self.online[acct.key]
        if acct.cursor > acct.saved_cursor:
            acct.saved_cursor = acct.cursor
            out.changes.append(SetCursor(acct.key, acct.cursor))
        log.info("user.logout", user=acct.name, session=s.id)
        return out

    def save_cursors(self) -> list[Change]:
        """Read positions of online users that moved since they were last saved."""
        changes: list[Change] = []
        for acct in self.online.values():
            received = acct.received()
            if received > acct.saved_cursor:
                acct.cursor = acct.saved_cursor = received
                changes.append(SetCursor(acct.key, received))
        return changes

    def is_admin(self, acct: Account | None) -> bool:
        """Admins are named in the config and must have a password."""
        return (
            acct is not None
            and acct.pw_hash is not None
            and acct.key in {key(n) for n in self.config.moderation.admins}
        )

    # Before login -----------------------------------------------------------------

    def cmd_help(self, s: Session, cmd: c.Help, now: float) -> Outcome:
        """help [command]: the command table, or one row of it."""
        specs: Iterable[c.Spec] = c.COMMANDS.values()
        if cmd.topic is not None:
            spec = c.lookup(cmd.topic)
            if spec is None:
                raise Refused(Code.BAD_ARGS, f"no command {cmd.topic!r}; help lists them")
            specs = (spec,)
        rows = [{"name": x.name, "usage": x.usage, "summary": x.summary} for x in specs]
        return _ok("help", cmd, commands=rows)

    def cmd_mode(self, s: Session, cmd: c.SetMode, now: float) -> Outcome:
        """mode text|json: the reply already comes in the new mode."""
        s.mode = Mode(cmd.mode)
        return _ok("mode", cmd, mode=cmd.mode)

    def cmd_ping(self, s: Session, cmd: c.Ping, now: float) -> Outcome:
        """ping: keep-alive."""
        return _ok("ping", cmd)

    def cmd_quit(self, s: Session, cmd: c.Quit, now: float) -> Outcome:
        """quit: OK bye, then the server closes the connection."""
        out = _ok("quit", cmd)
        out.closes.append((s, None))
        return out

    def cmd_status(self, s: Session, cmd: c.Status, now: float) -> Outcome:
        """status: server state; after login also the user's chats and unread counts."""
        fields: dict[str, Any] = {
            "server": {
                "version": __version__,
                "uptime_s": int(now - self.started),
                "online": len(self.online),
            }
        }
        acct = s.account
        if acct is not None:
            received = acct.received()
            chats = []
            for chat in self._chats_of(acct):
                msgs = self.chats.get(chat, [])
                unread = len(msgs) - bisect.bisect_right(msgs, received, key=_id)
                chats.append(
                    {
                        "chat": self._display(chat, acct),
                        "unread": unread,
                        "last_id": msgs[-1].id if msgs else 0,
                    }
                )
            fields.update(user=acct.name, sessions=len(acct.sessions), chats=chats)
        return _ok("status", cmd, **fields)

    def cmd_login(self, s: Session, cmd: c.Login, now: float) -> Outcome:
        """login <name> [password]: the first login creates the account."""
        if s.account is not None:
            raise Refused(Code.ALREADY_LOGGED_IN, f"already logged in as {s.account.name}")
        if not valid_name(cmd.name):
            raise Refused(Code.BAD_NAME, _NAME_RULE)
        acct = self.accounts.get(key(cmd.name))
        password = cmd.password
        if acct is None:
            if password is None:
                if self.config.auth.require_password:
                    raise Refused(
                        Code.BAD_PASSWORD, "this server needs a password: login <name> <password>"
                    )
                return self._attach(s, self._create(cmd.name, None, now), cmd, now, new=True)
            return Outcome(
                deferred=Deferred(
                    lambda: passwords.hash_password(password),
                    lambda hashed, t: self._login_new(s, cmd, hashed, t),
                )
            )
        self._check_sessions(acct)
        if acct.pw_hash is None:
            return self._attach(s, acct, cmd, now)
        if password is None:
            raise Refused(
                Code.BAD_PASSWORD, f"{acct.name} has a password: login {acct.name} <password>"
            )
        stored = acct.pw_hash
        return Outcome(
            deferred=Deferred(
                lambda: passwords.verify_password(password, stored),
                lambda ok, t: self._login_checked(s, cmd, bool(ok), t),
            )
        )

    def _login_new(self, s: Session, cmd: c.Login, hashed: str, now: float) -> Outcome:
        if s.account is not None or key(cmd.name) in self.accounts:
            return self.cmd_login(s, cmd, now)  # someone took the name meanwhile: verify
        return self._attach(s, self._create(cmd.name, hashed, now), cmd, now, new=True)

    def _login_checked(self, s: Session, cmd: c.Login, ok: bool, now: float) -> Outcome:
        if not ok:
            log.info("user.login_failed", user=cmd.name, session=s.id, peer=s.peer)
            raise Refused(Code.BAD_PASSWORD, "wrong password")
        acct = self.accounts.get(key(cmd.name))
        if s.account is not None or acct is None:
            return self.cmd_login(s, cmd, now)
        self._check_sessions(acct)
        return self._attach(s, acct, cmd, now)

    def _check_sessions(self, acct: Account) -> None:
        limit = self.config.chat.max_sessions_per_user
        if len(acct.sessions) >= limit:
            raise Refused(
                Code.TOO_MANY_SESSIONS, f"{acct.name} already has {limit} sessions; quit one"
            )

    def _create(self, name: str, pw_hash: str | None, now: float) -> Account:
        acct = Account(key(name), name, pw_hash, now, cursor=self.next_id - 1)
        acct.saved_cursor = acct.cursor
        self.accounts[acct.key] = acct
        log.info("user.created", user=name, password=pw_hash is not None)
        return acct

    def _attach(
        self, s: Session, acct: Account, cmd: c.Login, now: float, *, new: bool = False
    ) -> Outcome:
        out = Outcome()
        if new:
            out.changes.append(PutAccount(acct.key, acct.name, acct.pw_hash, acct.created))
            out.changes.append(SetCursor(acct.key, acct.cursor))
            n = self.config.chat.history_on_join
            replay = self.chats[GENERAL][-n:] if n else []
        else:
            replay = list(self._unread(acct, acct.received()))
        s.account = acct
        s.live_from = self.next_id
        acct.sessions.append(s)
        self.online[acct.key] = acct
        for topic in (GENERAL, *acct.rooms):
            self.topics.setdefault(topic, set()).add(s)
        out.replies.append(
            Ok("login", cmd.verb, {"user": acct.name, "new": new, "unread": len(replay)})
        )
        out.replies.extend(Push(m, acct.key, True) for m in replay)
        log.info("user.login", user=acct.name, session=s.id, new=new, unread=len(replay))
        return out

    # Sending ----------------------------------------------------------------------

    def cmd_send_all(self, s: Session, cmd: c.SendAll, now: float) -> Outcome:
        """send_all <text>: a message to #general, rate-limited per user."""
        acct = _account(s)
        self._check_not_banned(acct, now)
        self._count_general(acct, now)
        msg = self._post(GENERAL, acct.name, cmd.text, now)
        return self._sent("send_all", cmd, s, msg, broadcast=True)

    def cmd_send(self, s: Session, cmd: c.Send, now: float) -> Outcome:
        """send <user|@user|#room> <text>: a private message, or to a room."""
        acct = _account(s)
        if cmd.target.lower() == GENERAL:
            return self.cmd_send_all(s, c.SendAll(cmd.text, verb=cmd.verb), now)
        if cmd.target.startswith("#"):
            raise Refused(Code.NO_SUCH_CHAT, f"no room {cmd.target}")
        other = self._user(cmd.target.removeprefix("@"))
        self._check_not_banned(acct, now)
        chat = dm_key(acct.key, other.key)
        msg = self._post(chat, acct.name, cmd.text, now, to=other.name)
        out = self._sent("send", cmd, s, msg, broadcast=False)
        if other is not acct:
            out.pushes.append((Push(msg, other.key), tuple(other.sessions)))
        mine = tuple(x for x in acct.sessions if x is not s)
        if mine:
            out.pushes.append((Push(msg, acct.key), mine))
        return out

    def _sent(
        self, name: str, cmd: c.Command, s: Session, msg: Message, *, broadcast: bool
    ) -> Outcome:
        out = _ok(name, cmd, id=msg.id, ts=rfc3339(msg.ts))
        out.changes.append(PutMessage(msg))
        out.acked = msg.id
        if broadcast:
            out.broadcasts.append((msg, s))
        log.info("message.sent", user=msg.sender, chat=msg.chat, id=msg.id)
        return out

    def _post(
        self,
        chat: str,
        sender: str,
        text: str,
        now: float,
        *,
        to: str | None = None,
        reply_to: int | None = None,
    ) -> Message:
        msg = Message(self.next_id, chat, sender, text, now, reply_to=reply_to, to=to)
        self.next_id += 1
        self._remember(msg)
        return msg

    def _remember(self, m: Message) -> None:
        self.messages[m.id] = m
        self.chats.setdefault(m.chat, []).append(m)
        if m.to is not None:
            for party in m.chat[1:].split("|"):
                acct = self.accounts.get(party)
                if acct is not None:
                    acct.private_chats.add(m.chat)

    def _check_not_banned(self, acct: Account, now: float) -> None:
        if acct.banned_until > now:
            raise Refused(
                Code.BANNED,
                f"you are banned from sending until {rfc3339(acct.banned_until)}",
                retry_after(acct.banned_until - now),
            )

    def _count_general(self, acct: Account, now: float) -> None:
        """Fixed window: N messages per window, the window starting at its first message."""
        lim = self.config.limits
        if now >= acct.window_start + lim.general_window_s:
            acct.window_start, acct.window_count = now, 0
        if acct.window_count >= lim.general_messages_per_window:
            wait = acct.window_start + lim.general_window_s - now
            raise Refused(
                Code.RATE_LIMITED,
                f"at most {lim.general_messages_per_window} messages to {GENERAL} per "
                f"{lim.general_window_s:g}s",
                retry_after(wait),
            )
        acct.window_count += 1

    # Moderation -------------------------------------------------------------------

    def cmd_ban(self, s: Session, cmd: c.Ban, now: float) -> Outcome:
        """ban <user> [reason] (alias report): one strike per distinct reporter; admins
        ban at once with ban <user> [duration] [reason]."""
        acct = _account(s)
        target = self._user(cmd.user)
        if target is acct:
            raise Refused(Code.BAD_ARGS, "you cannot report yourself")
        mod = self.config.moderation
        out = Outcome()
        if self.is_admin(acct):
            duration = mod.ban_duration_s
            first = cmd.rest.split(None, 1)[0] if cmd.rest else ""
            m = _DURATION.fullmatch(first)
            if m:
                duration = float(int(m.group(1)) * _UNITS[m.group(2)])
            self._ban(target, now + duration, now, out, by=acct.name)
        else:
            window = mod.strike_window_s
            target.strikes = {r: t for r, t in target.strikes.items() if now - t < window}
            if acct.key not in target.strikes:
                target.strikes[acct.key] = now
                log.info(
                    "user.reported", user=target.name, by=acct.name, strikes=len(target.strikes)
                )
                out.notify(
                    target.sessions,
                    Notice("warned", {"strikes": len(target.strikes), "limit": mod.strikes_to_ban}),
                )
            strikes = len(target.strikes)
            out.changes.append(SetStrikes(target.key, tuple(target.strikes.items())))
            if strikes >= mod.strikes_to_ban and target.banned_until <= now:
                self._ban(target, now + mod.ban_duration_s, now, out, by=None)
        strikes = len(target.strikes)
        until = rfc3339(target.banned_until) if target.banned_until > now else None
        out.replies.append(
            Ok("ban", cmd.verb, {"user": target.name, "strikes": strikes, "banned_until": until})
        )
        return out

    def _ban(
        self, target: Account, until: float, now: float, out: Outcome, *, by: str | None
    ) -> None:
        target.banned_until = until
        out.changes.append(SetBan(target.key, until))
        out.notify(
            target.sessions,
            Notice("banned", {"until": rfc3339(until), "retry_after": retry_after(until - now)}),
        )
        log.info("user.banned", user=target.name, until=rfc3339(until), by=by)

    def cmd_unban(self, s: Session, cmd: c.Unban, now: float) -> Outcome:
        """unban <user>: admin; lifts a ban and clears strikes."""
        target = self._user(cmd.user)
        target.banned_until = 0.0
        target.strikes.clear()
        out = _ok("unban", cmd, user=target.name)
        out.changes += [SetBan(target.key, 0.0), SetStrikes(target.key, ())]
        out.notify(target.sessions, Notice("unbanned", {}))
        log.info("user.unbanned", user=target.name, by=_account(s).name)
        return out

    def cmd_kick(self, s: Session, cmd: c.Kick, now: float) -> Outcome:
        """kick <user>: admin; closes all of that user's sessions with a notice."""
        target = self._user(cmd.user)
        out = _ok("kick", cmd, user=target.name)
        notice = Notice("kicked", {"by": _account(s).name})
        out.closes.extend((x, notice) for x in target.sessions)
        log.info("user.kicked", user=target.name, by=_account(s).name)
        return out

    def cmd_announce(self, s: Session, cmd: c.Announce, now: float) -> Outcome:
        """announce <text>: admin; a notice to every session online."""
        out = _ok("announce", cmd)
        out.notify(
            tuple(self.topics[GENERAL]),
            Notice("announce", {"from": _account(s).name, "text": cmd.text}),
        )
        return out

    def cmd_stats(self, s: Session, cmd: c.Stats, now: float) -> Outcome:
        """stats: admin; counters of the chat state."""
        return _ok(
            "stats",
            cmd,
            accounts=len(self.accounts),
            users_online=len(self.online),
            sessions=len(self.topics[GENERAL]),
            messages_stored=len(self.messages),
            last_message_id=self.next_id - 1,
            uptime_s=int(now - self.started),
        )

    # Reading ----------------------------------------------------------------------

    def cmd_who(self, s: Session, cmd: c.Who, now: float) -> Outcome:
        """who [#room]: users online, or a room's members."""
        if cmd.room is not None and cmd.room.lower() != GENERAL:
            raise Refused(Code.NO_SUCH_CHAT, f"no room {cmd.room}")
        users = [
            {"name": a.name, "sessions": len(a.sessions)}
            for a in sorted(self.online.values(), key=lambda a: a.key)
        ]
        return _ok("who", cmd, users=users)

    def cmd_history(self, s: Session, cmd: c.History, now: float) -> Outcome:
        """history <chat> [n] [before <id>]: earlier messages, oldest first."""
        acct = _account(s)
        chat = self._resolve_chat(acct, cmd.chat)
        n = min(cmd.count or 20, self.config.chat.history_max)
        msgs = self.chats.get(chat, [])
        end = len(msgs) if cmd.before is None else bisect.bisect_left(msgs, cmd.before, key=_id)
        page = msgs[max(0, end - n) : end]
        return _ok(
            "history",
            cmd,
            chat=self._display(chat, acct),
            messages=[Push(m, acct.key) for m in page],
        )

    def cmd_passwd(self, s: Session, cmd: c.Passwd, now: float) -> Outcome:
        """passwd <new> [old]: sets a password, or changes it given the old one."""
        acct = _account(s)
        stored, old, new = acct.pw_hash, cmd.old, cmd.new
        if stored is not None and old is None:
            raise Refused(Code.BAD_PASSWORD, "give your current password: passwd <new> <old>")

        def work() -> str | None:
            if stored is not None and not passwords.verify_password(old or "", stored):
                return None
            return passwords.hash_password(new)

        def resume(hashed: str | None, t: float) -> Outcome:
            if hashed is None:
                raise Refused(Code.BAD_PASSWORD, "wrong current password")
            acct.pw_hash = hashed
            out = _ok("passwd", cmd)
            out.changes.append(PutAccount(acct.key, acct.name, hashed, acct.created))
            log.info("user.password_set", user=acct.name)
            return out

        return Outcome(deferred=Deferred(work, resume))

    # Helpers ----------------------------------------------------------------------

    def _user(self, name: str) -> Account:
        acct = self.accounts.get(key(name.removeprefix("@")))
        if acct is None:
            raise Refused(Code.NO_SUCH_USER, f"no user {name}")
        return acct

    def _chats_of(self, acct: Account) -> list[str]:
        return [GENERAL, *sorted(acct.private_chats), *sorted(acct.rooms)]

    def _unread(self, acct: Account, after: int) -> Iterator[Message]:
        """Messages of the user's chats with id > after, oldest first."""
        slices = []
        for chat in self._chats_of(acct):
            msgs = self.chats.get(chat)
            if msgs:
                i = bisect.bisect_right(msgs, after, key=_id)
                if i < len(msgs):
                    slices.append(msgs[i:])
        if len(slices) == 1:
            return iter(slices[0])
        return heapq.merge(*slices, key=_id)

    def _resolve_chat(self, acct: Account, name: str) -> str:
        """A chat name as typed (#general, #room, @user, user) to its chat key."""
        lowered = name.lower()
        if lowered == GENERAL or (lowered == "general" and "general" not in self.accounts):
            return GENERAL
        if name.startswith("#"):
            raise Refused(Code.NO_SUCH_CHAT, f"no room {name}")
        other = self._user(name)
        return dm_key(acct.key, other.key)

    def _display(self, chat: str, viewer: Account) -> str:
        if not chat.startswith("@"):
            return chat
        a, _, b = chat[1:].partition("|")
        other = self.accounts.get(b if a == viewer.key else a)
        return "@" + (other.name if other else b)


def _id(m: Message) -> int:
    return m.id


def _account(s: Session) -> Account:
    assert s.account is not None, "handle() checks login first"
    return s.account


def _ok(name: str, cmd: c.Command, **fields: Any) -> Outcome:
    return Outcome(replies=[Ok(name, cmd.verb, fields)])
