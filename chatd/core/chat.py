"""The rules of chatd, synchronous and pure: one `cmd_<verb>` method per command.

`Chat.handle(session, command, now)` returns an Outcome; nothing here touches a socket,
the event loop or the database, and time only enters as the `now` argument, so the
tests drive it with plain calls and a moved clock. The commands live in one module per
feature; this class puts them together and adds dispatch, session close and timed work.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from chatd.config import Config
from chatd.core.accounts import AccountCommands
from chatd.core.files import FileCommands
from chatd.core.messaging import MessagingCommands
from chatd.core.model import Session
from chatd.core.moderation import ModerationCommands
from chatd.core.outcome import Change, Deferred, Outcome, SetCursor
from chatd.core.retention import Retention
from chatd.core.rooms import RoomCommands
from chatd.core.schedules import ScheduleCommands
from chatd.core.snapshot import Snapshot
from chatd.core.state import Refused, log
from chatd.core.threads import ThreadCommands
from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL, Code, Error

Handler = Callable[[Session, Any, float], Outcome]


class Chat(
    AccountCommands,
    MessagingCommands,
    ModerationCommands,
    ThreadCommands,
    RoomCommands,
    ScheduleCommands,
    FileCommands,
    Retention,
):
    """All chat state and the rules that change it."""

    def __init__(self, config: Config, snapshot: Snapshot, *, started: float) -> None:
        super().__init__(config, snapshot, started=started)
        self.load_rooms(snapshot)
        self.load_schedules(snapshot)
        self.load_files(snapshot)

    def handle(self, s: Session, cmd: c.Command, now: float) -> Outcome:
        """Runs one command for a session; every refusal becomes an ERR reply."""
        spec, method = self._dispatch[cmd.verb]
        try:
            if s.account is None and not spec.before_login:
                raise Refused(Code.NOT_LOGGED_IN, "log in first: login <name> [password]")
            if spec.admin and not self.is_admin(s.account):
                raise Refused(Code.FORBIDDEN, f"{spec.name} is for admins only")
            if method is None:
                raise Refused(Code.UNKNOWN_COMMAND, f"{spec.name} is not available yet")
            out = method(s, cmd, now)
        except Refused as e:
            log.info("command.failed", cmd=cmd.verb, code=str(e.code), session=s.id)
            return Outcome(replies=[Error(e.code, e.message, cmd.verb, e.retry_after)])
        except Exception:
            return self._failed(cmd.verb)
        if out.deferred is not None:
            self._guard_resume(cmd.verb, out)
        return out

    def _failed(self, verb: str) -> Outcome:
        log.exception("command.failed", cmd=verb, code=str(Code.INTERNAL))
        return Outcome(replies=[Error(Code.INTERNAL, "internal error; logged", verb)])

    def _guard_resume(self, verb: str, out: Outcome) -> None:
        """Deferred work resumes later; its refusals and crashes become replies too."""
        assert out.deferred is not None
        work, resume = out.deferred.work, out.deferred.resume

        def guarded(result: Any, now: float) -> Outcome:
            try:
                after = resume(result, now)
            except Refused as e:
                log.info("command.failed", cmd=verb, code=str(e.code))
                return Outcome(replies=[Error(e.code, e.message, verb, e.retry_after)])
            except Exception:
                return self._failed(verb)
            if after.deferred is not None:
                self._guard_resume(verb, after)
            return after

        out.deferred = Deferred(work, guarded)

    @functools.cached_property
    def _dispatch(self) -> dict[str, tuple[c.Spec, Handler | None]]:
        """Verb or alias -> its table row and handler, resolved once."""
        table: dict[str, tuple[c.Spec, Handler | None]] = {}
        for verb in (*c.COMMANDS, *c.ALIASES):
            spec = c.lookup(verb)
            assert spec is not None
            table[verb] = (spec, getattr(self, "cmd_" + spec.name, None))
        return table

    def close(self, s: Session, now: float) -> Outcome:
        """A connection ended: detach the session and save what it received."""
        acct = s.account
        out = Outcome()
        if acct is None:
            return out
        s.account = None
        acct.last_seen = now
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

    # Timed work -----------------------------------------------------------------------

    def tick(self, now: float) -> Outcome:
        """Everything due at `now`: scheduled messages, retention sweeps."""
        out = Outcome()
        self.run_due_schedules(now, out)
        self.sweep(now, out)
        return out

    def next_wakeup(self) -> float | None:
        """When `tick` next has something to do (None: nothing pending)."""
        times = [t for t in (self.schedules_wakeup(), self.sweep_wakeup()) if t is not None]
        return min(times) if times else None
