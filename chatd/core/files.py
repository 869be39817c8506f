"""Files: upload and download metadata and permissions (issue 6)."""

from __future__ import annotations

from chatd.core.snapshot import Snapshot
from chatd.core.state import ChatState


class FileCommands(ChatState):
    def load_files(self, snapshot: Snapshot) -> None:
        """Rebuilds file metadata from the store."""
