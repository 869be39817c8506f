"""Scheduled messages: schedule, scheduled, cancel, and firing them on time (issue 5).

A schedule stores the wrapped command line and runs it at its time as its user, through
`Chat.handle` like a typed command, so it obeys every rule a live send does (ban,
membership, rate limit) as of that moment. Pending schedules live in the ScheduleBook
(chatd/core/parts.py): `schedules_wakeup()` is its earliest due time and
`run_due_schedules()` pops only what is due.

Durability: the store row goes in the batch that creates the schedule, and is deleted in
the batch that carries the message it produced, so a restart neither loses nor repeats
one. Those that fell due while the server was down go out at the first ticks, in slices
of `limits.schedules_per_tick`.
"""

from __future__ import annotations

from datetime import tzinfo
from zoneinfo import ZoneInfo

from chatd.core.model import Account, Session
from chatd.core.outcome import DeleteSchedule, Outcome, PutSchedule
from chatd.core.parts import Pending
from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState, Refused, account_of, log, reply, retry_after
from chatd.core.timespec import WhenError, parse_when
from chatd.protocol import commands as c
from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.events import GENERAL, Code, Error, Notice
from chatd.protocol.timefmt import rfc3339

_LATE_S = 1.0  # fired this much after its time: logged as late (e.g. due while down)
_SCHEDULABLE = (c.SendAll, c.Send, c.Comment)


class ScheduleCommands(ChatState):
    def load_schedules(self, snapshot: Snapshot) -> None:
        """Rebuilds the pending schedules from the store."""
        name = self.config.server.timezone
        self.schedule_zone: tzinfo | None = ZoneInfo(name) if name else None
        for row in snapshot.schedules:
            self.schedules.add(Pending(row.id, row.user, row.at, row.command, row.created))

    # Commands ----------------------------------------------------------------------

    def cmd_schedule(self, s: Session, cmd: c.Schedule, now: float) -> Outcome:
        """schedule <when> <send_all …|send …|comment …>: runs that command later, as
        you; checked now (time, target, membership) and again when it runs."""
        acct = account_of(s)
        try:
            at = parse_when(cmd.when, now, self.schedule_zone)
        except WhenError as e:
            raise Refused(Code.BAD_ARGS, str(e)) from None
        if at <= now:
            raise Refused(Code.BAD_ARGS, f"{cmd.when} is not in the future")
        horizon = self.config.schedule.horizon_s
        if at > now + horizon:
            raise Refused(Code.BAD_ARGS, f"{cmd.when} is more than {horizon / 86400:g} days ahead")
        mine = self.schedules.of(acct.key)
        cap = self.config.schedule.max_pending_per_user
        if len(mine) >= cap:
            first = min((p.at for p in mine.values()), default=now)
            raise Refused(
                Code.RATE_LIMITED,
                f"at most {cap} pending scheduled messages; cancel one or wait",
                retry_after(first - now),
            )
        self._check_schedulable(acct, cmd.inner, at, now)
        pending = Pending(self.schedules.next_id, acct.key, at, cmd.inner_line, now)
        self.schedules.add(pending)
        out = reply(r.ScheduleOk(cmd.verb, pending.id, at))
        out.changes.append(PutSchedule(pending.id, acct.key, at, pending.command, now))
        out.rearm = True
        log.info("schedule.created", schedule_id=pending.id, user=acct.name, at=rfc3339(at))
        return out

    def cmd_scheduled(self, s: Session, cmd: c.Scheduled, now: float) -> Outcome:
        """scheduled: your pending scheduled messages, soonest first."""
        acct = account_of(s)
        mine = sorted(self.schedules.of(acct.key).values(), key=_due)
        rows = tuple(r.ScheduledRow(p.id, p.at, p.command) for p in mine)
        return reply(r.ScheduledOk(cmd.verb, rows))

    def cmd_cancel(self, s: Session, cmd: c.Cancel, now: float) -> Outcome:
        """cancel <schedule_id>: drops one of your pending scheduled messages."""
        acct = account_of(s)
        pending = self.schedules.by_id.get(cmd.schedule_id)
        if pending is None or pending.user != acct.key:
            raise Refused(Code.NO_SUCH_SCHEDULE, f"no pending scheduled message {cmd.schedule_id}")
        self.schedules.forget(pending)
        out = reply(r.CancelOk(cmd.verb, pending.id))
        out.changes.append(DeleteSchedule(pending.id))
        out.rearm = True
        log.info("schedule.cancelled", schedule_id=pending.id, user=acct.name)
        return out

    # Timed work --------------------------------------------------------------------

    def run_due_schedules(self, now: float, out: Outcome) -> None:
        """Fires the schedules due at `now` into `out`, oldest first, at most
        `limits.schedules_per_tick` of them: with more due, `schedules_wakeup()` stays
        at or before `now`, so the daemon ticks again at once, after the event loop has
        served connections (30,000 due in the same second never hold it for long)."""
        for pending in self.schedules.due(now, self.config.limits.schedules_per_tick):
            out.changes.append(DeleteSchedule(pending.id))
            self._fire(pending, now, out)

    def schedules_wakeup(self) -> float | None:
        """When the next schedule is due."""
        return self.schedules.wakeup()

    def _fire(self, pending: Pending, now: float, out: Outcome) -> None:
        """Runs the stored command as its user, from none of their connections, through
        `handle` like any command: every session of theirs gets the message and none
        an OK. They get `scheduled-sent` first; a refusal at this point drops it with
        `scheduled-failed`."""
        acct = self.accounts.get(pending.user)
        if acct is None:  # pragma: no cover - accounts are never deleted
            return
        late_s = round(max(0.0, now - pending.at), 3)
        fields = {"schedule_id": pending.id, "user": acct.name, "late_s": late_s}
        try:
            cmd = c.parse(pending.command)
        except c.ParseError as e:
            cmd, code, detail = None, e.code, e.message
        if cmd is not None and not isinstance(cmd, _SCHEDULABLE):
            cmd, code, detail = None, Code.BAD_ARGS, f"cannot schedule {pending.command!r}"
        if cmd is None:
            out.notify(acct.sessions, _failed(pending, str(code)))
            log.info("schedule.failed", **fields, reason=str(code), detail=detail)
            return
        inner = self.handle(Session(0, "schedule", now, account=acct), cmd, now)
        error = next((x for x in inner.replies if isinstance(x, Error)), None)
        if error is not None:
            out.notify(acct.sessions, _failed(pending, str(error.code)))
            log.info("schedule.failed", **fields, reason=str(error.code), detail=error.message)
            return
        ident = next((x.id for x in inner.replies if isinstance(x, r.SentOk | r.CommentOk)), None)
        out.changes.extend(inner.changes)
        # The notice first: the hub writes a batch's pushes before its broadcasts, so
        # this is the order the sender sees for every kind of chat.
        out.notify(acct.sessions, n.ScheduledSent(pending.id, ident))
        out.pushes.extend(inner.pushes)
        out.broadcasts.extend(inner.broadcasts)
        if late_s > _LATE_S:
            log.warning("schedule.late", **fields, id=ident)
        else:
            log.info("schedule.sent", **fields, id=ident)

    # Helpers -----------------------------------------------------------------------

    def _check_schedulable(self, acct: Account, inner: c.Command, at: float, now: float) -> None:
        """What can be known now about the command's fate at `at`: its target exists
        and the user may post there, and no ban will still stop it."""
        if acct.banned_until > at:
            raise Refused(
                Code.BANNED,
                f"you are banned from sending until {rfc3339(acct.banned_until)}",
                retry_after(acct.banned_until - now),
            )
        if isinstance(inner, c.Send):
            target = inner.target
            if target.lower() == GENERAL:
                return
            if target.startswith("#"):
                self._member_room(acct, target)
            else:
                self._user(target)
        elif isinstance(inner, c.Comment):
            self._visible_message(acct, inner.message_id)


def _due(p: Pending) -> tuple[float, int]:
    return (p.at, p.id)


def _failed(pending: Pending, reason: str) -> Notice:
    return n.ScheduledFailed(pending.id, reason)
