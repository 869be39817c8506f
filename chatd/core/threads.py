"""Comments and threads: comment, thread (issue 5)."""

from __future__ import annotations

from chatd.core.state import ChatState


class ThreadCommands(ChatState):
    pass
