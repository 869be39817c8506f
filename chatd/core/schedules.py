"""Scheduled messages: schedule, scheduled, cancel, and firing them on time (issue 5)."""

from __future__ import annotations

from chatd.core.outcome import Outcome
from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState


class ScheduleCommands(ChatState):
    def load_schedules(self, snapshot: Snapshot) -> None:
        """Rebuilds the pending schedules from the store."""

    def run_due_schedules(self, now: float, out: Outcome) -> None:
        """Fires every schedule due at `now` into `out`."""

    def schedules_wakeup(self) -> float | None:
        """When the next schedule is due."""
        return None
