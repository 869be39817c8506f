"""Private rooms: room create/invite/link/unlink/approve/deny/leave/kick/members, rooms,
join (issue 5)."""

from __future__ import annotations

from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState


class RoomCommands(ChatState):
    def load_rooms(self, snapshot: Snapshot) -> None:
        """Rebuilds rooms, members, links and join requests from the store."""
