"""Message lifetime: the sweep that deletes delivered and expired messages (issue 4)."""

from __future__ import annotations

from chatd.core.outcome import Outcome
from chatd.core.state import ChatState


class Retention(ChatState):
    def sweep(self, now: float, out: Outcome) -> None:
        """Deletes what retention says is due at `now`, in small batches."""

    def sweep_wakeup(self) -> float | None:
        """When the next sweep is due."""
        return None
