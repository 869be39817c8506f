"""The rules of chatd, synchronous and pure: one `cmd_<verb>` method per command.

`Chat.handle(session, command, now)` returns an Outcome; nothing here touches a socket,
the event loop or the database, and time only enters as the `now` argument, so the
tests drive it with plain calls and a moved clock. The commands live in one module per
feature; this class puts them together and adds dispatch, session close and timed work.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from chatd.config import Config
from chatd.core.accounts import AccountCommands
from chatd.core.files import FileCommands
from chatd.core.messaging import MessagingCommands
from chatd.core.model import Session
from chatd.core.moderation import ModerationCommands
from chatd.core.outcome import Change, Deferred, Outcome, SetCursor
from chatd.core.relay import RelayCommands
from chatd.core.retention import Retention
from chatd.core.rooms import RoomCommands
from chatd.core.schedules import ScheduleCommands
from chatd.core.snapshot import Snapshot
from chatd.core.state import Refused, log
from chatd.core.threads import ThreadCommands
from chatd.protocol import commands as c
from chatd.protocol.events import GENERAL, Code, Error, Message

Handler = Callable[[Any, Session, Any, float], Outcome]


class Chat(
    AccountCommands,
    MessagingCommands,
    ModerationCommands,
    ThreadCommands,
    RoomCommands,
    ScheduleCommands,
    FileCommands,
    RelayCommands,
    Retention,
):
    """All chat state and the rules that change it."""

    def __init__(
        self,
        config: Config,
        snapshot: Snapshot,
        *,
        started: float,
        read: Callable[[Sequence[int]], list[Message]] | None = None,
    ) -> None:
        super().__init__(config, snapshot, started=started, read=read)
        self.load_rooms(snapshot)
        self.load_schedules(snapshot)
        self.load_files(snapshot)
        self.derive_last_seen()

    def handle(self, s: Session, cmd: c.Command, now: float) -> Outcome:
        """Runs one command for a session, whatever door it came in by: the login and
        admin gates, then its handler, found by the command's type (HANDLERS)."""
        return self.run(cmd.verb, lambda: self._gated(s, cmd, now))

    def _gated(self, s: Session, cmd: c.Command, now: float) -> Outcome:
        spec, handler = HANDLERS[type(cmd)]
        if s.account is None and not spec.before_login:
            raise Refused(Code.NOT_LOGGED_IN, "log in first: login <name> [password]")
        if spec.admin and not self.is_admin(s.account):
            raise Refused(Code.FORBIDDEN, f"{spec.name} is for admins only")
        if self.store_failing and not _needs_no_disk(cmd):
            self._check_writable()
        return handler(self, s, cmd, now)

    def run(self, verb: str, step: Callable[[], Outcome]) -> Outcome:
        """The one place a refusal becomes its ERR reply and a crash becomes `internal`
        (logged, the connection and the server go on), for a command, its resumption
        after slow work (password hashing) and the end of an upload."""
        try:
            out = step()
        except Refused as e:
            log.info("command.failed", cmd=verb, code=str(e.code))
            return Outcome(replies=[Error(e.code, e.message, verb, e.retry_after)])
        except Exception:
            log.exception("command.failed", cmd=verb, code=str(Code.INTERNAL))
            return Outcome(replies=[Error(Code.INTERNAL, "internal error; logged", verb)])
        deferred = out.deferred
        if deferred is not None:
            resume = deferred.resume
            out.deferred = Deferred(
                deferred.work,
                lambda result, now: self.run(verb, lambda: resume(result, now)),
                deferred.paced,
            )
        return out

    def close(self, s: Session, now: float) -> Outcome:
        """A connection ended: detach the session and save what it received."""
        acct = s.account
        out = Outcome()
        if acct is None:
            return out
        s.account = None
        acct.last_seen = now
        self.files.release(acct.key, s.id)  # an upload cut off by the close
        acct.sessions.remove(s)
        for topic in (GENERAL, *acct.rooms):
            self.topics.get(topic, set()).discard(s)
        kept = s.kept_id()  # what its client acknowledged, where the server can tell
        if kept > acct.cursor:
            acct.cursor = kept
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
            received = acct.acknowledged()
            if received > acct.saved_cursor:
                acct.cursor = acct.saved_cursor = received
                changes.append(SetCursor(acct.key, received))
        return changes

    # Timed work -----------------------------------------------------------------------

    def tick(self, now: float) -> Outcome:
        """Everything due at `now`: scheduled messages, retention sweeps (not while the
        store cannot commit: they wait, nothing is lost)."""
        out = Outcome()
        if self.store_failing:  # look again a retry later, not in a spin
            self.timed_paused_until = now + self.config.store.commit_retry_s
            return out
        self.run_due_schedules(now, out)
        self.sweep(now, out)
        return out

    def next_wakeup(self) -> float | None:
        """When `tick` next has something to do (None: nothing pending)."""
        times = [t for t in (self.schedules_wakeup(), self.sweep_wakeup()) if t is not None]
        if not times:
            return None
        if self.store_failing:
            return max(min(times), self.timed_paused_until)
        return min(times)


#: Commands that never write to the store: they keep working while it cannot commit.
#: `login` writes only for a new account (checked there), `room` only for `members`.
_NO_DISK = (
    c.Help,
    c.SetMode,
    c.Ping,
    c.Login,
    c.Status,
    c.Quit,
    c.Who,
    c.History,
    c.Thread,
    c.Rooms,
    c.Scheduled,
    c.Download,
    c.Relay,
)


def _needs_no_disk(cmd: c.Command) -> bool:
    if isinstance(cmd, c.Room):
        return cmd.action == "members"
    return isinstance(cmd, _NO_DISK)


def _row(name: str, handler: Handler) -> tuple[c.Spec, Handler]:
    return c.COMMANDS[name], handler


#: Command type -> its row of the command table (gates) and its handler.
HANDLERS: dict[type[c.Command], tuple[c.Spec, Handler]] = {
    c.Help: _row("help", AccountCommands.cmd_help),
    c.SetMode: _row("mode", AccountCommands.cmd_mode),
    c.Ping: _row("ping", AccountCommands.cmd_ping),
    c.Login: _row("login", AccountCommands.cmd_login),
    c.Passwd: _row("passwd", AccountCommands.cmd_passwd),
    c.Status: _row("status", AccountCommands.cmd_status),
    c.Quit: _row("quit", AccountCommands.cmd_quit),
    c.SendAll: _row("send_all", MessagingCommands.cmd_send_all),
    c.Send: _row("send", MessagingCommands.cmd_send),
    c.Who: _row("who", MessagingCommands.cmd_who),
    c.History: _row("history", MessagingCommands.cmd_history),
    c.Ban: _row("ban", ModerationCommands.cmd_ban),
    c.Unban: _row("unban", ModerationCommands.cmd_unban),
    c.Kick: _row("kick", ModerationCommands.cmd_kick),
    c.Announce: _row("announce", ModerationCommands.cmd_announce),
    c.Stats: _row("stats", ModerationCommands.cmd_stats),
    c.Comment: _row("comment", ThreadCommands.cmd_comment),
    c.Thread: _row("thread", ThreadCommands.cmd_thread),
    c.Room: _row("room", RoomCommands.cmd_room),
    c.Rooms: _row("rooms", RoomCommands.cmd_rooms),
    c.Join: _row("join", RoomCommands.cmd_join),
    c.Schedule: _row("schedule", ScheduleCommands.cmd_schedule),
    c.Scheduled: _row("scheduled", ScheduleCommands.cmd_scheduled),
    c.Cancel: _row("cancel", ScheduleCommands.cmd_cancel),
    c.Upload: _row("upload", FileCommands.cmd_upload),
    c.Download: _row("download", FileCommands.cmd_download),
    c.Relay: (c.DOOR_COMMANDS["relay"], RelayCommands.cmd_relay),
}
