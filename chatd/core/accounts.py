"""Accounts and sessions: help, mode, ping, quit, status, login, passwd."""

from __future__ import annotations

from collections.abc import Iterable

from chatd import __version__
from chatd.core import passwords
from chatd.core.flood import address_key, in_networks
from chatd.core.model import Account, Session
from chatd.core.names import key, looks, valid_name
from chatd.core.outcome import (
    Deferred,
    DeleteTokensOf,
    Outcome,
    PutAccount,
)
from chatd.core.state import REPLAYING, ChatState, Refused, account_of, log, reply, retry_after
from chatd.protocol import commands as c
from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.events import GENERAL, Code, Message, Mode, Push

_NAME_RULE = "names are 1-32 characters of A-Z a-z 0-9 _ . -"


class AccountCommands(ChatState):
    def cmd_help(self, s: Session, cmd: c.Help, now: float) -> Outcome:
        """help [command]: the command table, or one row of it."""
        specs: Iterable[c.Spec] = c.COMMANDS.values()
        if cmd.topic is not None:
            spec = c.lookup(cmd.topic)
            if spec is None:
                raise Refused(Code.BAD_ARGS, f"no command {cmd.topic!r}; help lists them")
            specs = (spec,)
        rows = tuple(r.CommandRow(x.name, self._usage(x), x.summary) for x in specs)
        return reply(r.HelpOk(cmd.verb, rows))

    def _usage(self, spec: c.Spec) -> str:
        """A usage line as this server takes it: with `auth.require_password`, new
        accounts need a password, and `help login` says so."""
        if spec.name == "login" and self.config.auth.require_password:
            return "login <name> <password>"
        return spec.usage

    def cmd_mode(self, s: Session, cmd: c.SetMode, now: float) -> Outcome:
        """mode text|json: the reply already comes in the new mode."""
        s.mode = Mode(cmd.mode)
        return reply(r.ModeOk(cmd.verb, cmd.mode))

    def cmd_ping(self, s: Session, cmd: c.Ping, now: float) -> Outcome:
        """ping: keep-alive."""
        return reply(r.PingOk(cmd.verb))

    def cmd_quit(self, s: Session, cmd: c.Quit, now: float) -> Outcome:
        """quit: OK bye, then the server closes the connection."""
        out = reply(r.QuitOk(cmd.verb))
        out.closes.append((s, None))
        return out

    def cmd_status(self, s: Session, cmd: c.Status, now: float) -> Outcome:
        """status: server state; after login also the user's chats and unread counts."""
        server = r.ServerRow(__version__, int(now - self.started), len(self.online))
        acct = s.account
        if acct is None:
            return reply(r.StatusOk(cmd.verb, server))
        received = acct.received()
        chats = []
        index = self.index
        for chat in self.chats_of(acct):
            unread = index.count_after(chat, received, but=acct.key)
            log = index.chats.get(chat)
            last = log.last_id if log is not None else 0
            chats.append(r.ChatRow(self._display(chat, acct), unread, last))
        return reply(r.StatusOk(cmd.verb, server, acct.name, len(acct.sessions), tuple(chats)))

    def cmd_login(self, s: Session, cmd: c.Login, now: float) -> Outcome:
        """login <name> [password]: the first login creates the account."""
        if s.account is not None:
            raise Refused(Code.ALREADY_LOGGED_IN, f"already logged in as {s.account.name}")
        if not valid_name(cmd.name):
            raise Refused(Code.BAD_NAME, _NAME_RULE)
        acct = self.accounts.get(key(cmd.name))
        password = cmd.password
        if acct is None:
            if password is None and self.config.auth.require_password:
                raise Refused(
                    Code.BAD_PASSWORD, "this server needs a password: login <name> <password>"
                )
            self._check_new_name(cmd.name)
            self._check_writable()
            self._count_new_account(s, now)
            if password is None:
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
        wait = self.login_throttle.check(_throttle_keys(s, acct.key), now)
        if wait > 0:
            raise Refused(
                Code.RATE_LIMITED, "too many failed logins; try again later", retry_after(wait)
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
        self._check_new_name(cmd.name)  # or a name like it
        return self._attach(s, self._create(cmd.name, hashed, now), cmd, now, new=True)

    def _login_checked(self, s: Session, cmd: c.Login, ok: bool, now: float) -> Outcome:
        if not ok:
            self.login_throttle.failed(_throttle_keys(s, key(cmd.name)), now)
            log.info("user.login_failed", user=cmd.name, session=s.id, peer=s.peer)
            raise Refused(Code.BAD_PASSWORD, "wrong password")
        self.login_throttle.succeeded(_throttle_keys(s, key(cmd.name))[1])
        acct = self.accounts.get(key(cmd.name))
        if s.account is not None or acct is None:
            return self.cmd_login(s, cmd, now)
        self._check_sessions(acct)
        return self._attach(s, acct, cmd, now)

    def _check_new_name(self, name: str) -> None:
        """A new account's name may not be reserved, nor look like a reserved name or an
        existing account's (`skeleton`): `aIice` next to `alice` is refused."""
        mod = self.config.moderation
        mine = looks(name)
        admin_name = key(name) in {key(a) for a in mod.admins}
        if admin_name and mod.provisioned_admins:
            raise Refused(
                Code.BAD_NAME,
                f"{name} is an admin's name; the operator creates it (chatd admin add {name})",
            )
        if not admin_name:
            for reserved in (*mod.reserved_names, *mod.admins):
                if mine & looks(reserved):
                    raise Refused(Code.BAD_NAME, f"the name {name} is reserved; pick another name")
        for look in mine:
            other = self.accounts.get(self.skeletons.get(look, ""))
            if other is not None and other.key != key(name):
                raise Refused(
                    Code.BAD_NAME,
                    f"{name} looks too much like the user {other.name}; pick another name",
                )

    def _count_new_account(self, s: Session, now: float) -> None:
        """New accounts per address (an IPv6 address per /64), unless it is exempt."""
        lim = self.config.limits
        if not in_networks(s.peer, lim.accounts_exempt_networks):
            self._limit(address_key(s.peer), "account", now)

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
        for look in looks(name):
            self.skeletons.setdefault(look, acct.key)
        log.info("user.created", user=name, password=pw_hash is not None)
        return acct

    def _attach(
        self, s: Session, acct: Account, cmd: c.Login, now: float, *, new: bool = False
    ) -> Outcome:
        out = Outcome()
        upto = self.next_id - 1  # replayed: up to here; later ones are live
        first: list[int] | None = None
        if new:
            out.changes.append(
                PutAccount(acct.key, acct.name, acct.pw_hash, acct.created, acct.cursor)
            )
            first = self.index.last(GENERAL, self.config.chat.history_on_join)
            after, count = upto, len(first)
        else:  # your own messages are never unread, whichever session sent them
            # A client that tracks what it saw says so (`after <id>`): it gets what
            # came after that, whatever the server believed it had received.
            after = acct.received() if cmd.after is None else min(cmd.after, upto)
            count = sum(
                self.index.count_after(chat, after, but=acct.key) for chat in self.chats_of(acct)
            )
        s.account = acct
        s.live_from = REPLAYING
        acct.last_seen = now
        acct.sessions.append(s)
        self.online[acct.key] = acct
        out.replies.append(r.LoginOk(cmd.verb, acct.name, new, count))
        log.info("user.login", user=acct.name, session=s.id, new=new, unread=count)
        return out.extend(self._replay(s, acct, after, upto, first))

    def _replay(
        self, s: Session, acct: Account, after: int, upto: int, page: list[int] | None
    ) -> Outcome:
        """The login's replay, a page at a time, read from the store off the loop when
        the recent window does not hold it, each page once the client has read the last
        (`Deferred.paced`): a client owed megabytes of unread messages costs about a
        page of memory, not the backlog. Messages with id <= `upto` are the replay (`replay: true`,
        your own left out); newer ones that came meanwhile follow as live. When no page
        is left the session goes live (`_go_live`); until then live fan-out skips it
        (`live_from`), so nothing is out of order or twice."""
        if page is None:
            page = self.index.after(
                self.chats_of(acct),
                after,
                but=acct.key,
                but_upto=upto,
                limit=self.config.chat.replay_page,
            )
        if not page:
            return self._go_live(s, acct)
        nxt = max(after, page[-1])

        def then(msgs: list[Message]) -> Outcome:
            out = Outcome(replies=[Push(m, acct.key, m.id <= upto) for m in msgs])
            if s.account is not acct:  # closed meanwhile
                return out
            return out.extend(self._replay(s, acct, nxt, upto, None))

        return self.with_bodies(page, then, paced=True)

    def _go_live(self, s: Session, acct: Account) -> Outcome:
        """The replay caught up: from the next message on, the session gets everything
        live, then its notices (e.g. join requests waiting for a room owner)."""
        s.live_from = self.next_id
        for topic in (GENERAL, *acct.rooms):
            self.topics.setdefault(topic, set()).add(s)
        return Outcome(replies=list(self._login_notices(acct)))

    # Sending ----------------------------------------------------------------------

    def cmd_passwd(self, s: Session, cmd: c.Passwd, now: float) -> Outcome:
        """passwd <new> [old]: sets a password, or changes it given the old one."""
        acct = account_of(s)
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
            out = reply(r.PasswdOk(cmd.verb))
            out.changes.append(PutAccount(acct.key, acct.name, hashed, acct.created))
            out.changes.append(DeleteTokensOf(acct.key))  # HTTP tokens end with the old password
            if self.config.auth.require_password:  # accounts are closed: so are the others
                notice = n.PasswordChanged()
                out.closes.extend((x, notice) for x in acct.sessions if x is not s)
            log.info("user.password_set", user=acct.name)
            return out

        return Outcome(deferred=Deferred(work, resume))

    # Helpers ----------------------------------------------------------------------


def _throttle_keys(s: Session, user_key: str) -> tuple[str, str]:
    """Failed logins count per address and per account (LoginThrottle)."""
    return f"ip:{s.peer}", f"user:{user_key}"
