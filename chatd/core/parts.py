"""The features' own state, as small named parts that ChatState declares in one place.

Each part keeps its indexes consistent through its own methods, so a feature that
needs another's state (retention and room deletion forget files; files count against
quotas) calls the part instead of reaching for a sibling mixin's method. The rules that
decide what to change stay in the feature modules.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from chatd import logs
from chatd.core.outcome import Change, DeleteFile, Outcome
from chatd.protocol.events import FileInfo

log = logs.get_logger("chatd.core")


# Files ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One uploaded file: its metadata, who sent it, and the message that carries it."""

    info: FileInfo
    owner: str  # account key
    created: float
    message_id: int


class FileIndex:
    """Uploaded files by id and by message, how many file rows name each body, and
    the bytes each user's files take (their quota)."""

    __slots__ = (
        "_dead",
        "by_id",
        "by_message",
        "bytes_of",
        "cleanup",
        "next_id",
        "refs",
        "uploading",
    )

    def __init__(self, next_id: int) -> None:
        self.by_id: dict[int, StoredFile] = {}
        self.by_message: dict[int, int] = {}  # message id -> file id
        self.refs: dict[str, int] = {}  # sha256 -> file rows naming it
        self.bytes_of: dict[str, int] = {}  # account key -> bytes of their files
        self.next_id = next_id
        self.cleanup: list[Change] = []  # start-up: rows no message carries
        self._dead: set[str] = set()
        # Uploads in progress: user key -> session id -> (bytes it may reach, since when).
        self.uploading: dict[str, dict[int, tuple[int, float]]] = {}

    def keep(self, f: StoredFile) -> None:
        self.by_id[f.info.id] = f
        self.by_message[f.message_id] = f.info.id
        self.refs[f.info.sha256] = self.refs.get(f.info.sha256, 0) + 1
        self.bytes_of[f.owner] = self.bytes_of.get(f.owner, 0) + f.info.size

    def forget(self, message_ids: Iterable[int], out: Outcome) -> None:
        """Messages are being deleted (retention, a deleted room): drop their files'
        rows and quota; bodies no row names any more go to `take_dead_bodies`."""
        for mid in message_ids:
            fid = self.by_message.pop(mid, None)
            if fid is None:
                continue
            f = self.by_id.pop(fid)
            out.changes.append(DeleteFile(fid))
            left = self.bytes_of.get(f.owner, 0) - f.info.size
            if left > 0:
                self.bytes_of[f.owner] = left
            else:
                self.bytes_of.pop(f.owner, None)
            sha = f.info.sha256
            refs = self.refs.get(sha, 0) - 1
            if refs > 0:
                self.refs[sha] = refs
            else:
                self.refs.pop(sha, None)
                self._dead.add(sha)
            log.info("file.forgotten", file=fid, message=mid)

    def take_dead_bodies(self) -> list[str]:
        """SHA-256s that lost their last file row since the last call (the server
        deletes those bodies unless an upload of the same content is finishing)."""
        dead = [sha for sha in self._dead if sha not in self.refs]
        self._dead.clear()
        return dead

    def reserve(self, user: str, session: int, size: int, now: float) -> None:
        """An upload began on this session: its data may take `size` bytes on disk until
        it ends (one upload per session at a time: a new one replaces the last)."""
        self.uploading.setdefault(user, {})[session] = (size, now)

    def release(self, user: str, session: int) -> None:
        """The session's upload ended (finished, refused, or the session closed)."""
        mine = self.uploading.get(user)
        if mine is not None and mine.pop(session, None) is not None and not mine:
            del self.uploading[user]

    def in_progress(self, user: str, now: float, ttl: float, *, but: int) -> tuple[int, int]:
        """The user's other uploads in progress and the bytes they may reach; those that
        began more than `ttl` seconds ago are forgotten (their session failed without
        ending them, or is stuck: the quota does not stay held for ever)."""
        mine = self.uploading.get(user)
        if not mine:
            return 0, 0
        for session, (_, since) in list(mine.items()):
            if now - since >= ttl:
                del mine[session]
        if not mine:
            del self.uploading[user]
            return 0, 0
        others = [size for session, (size, _) in mine.items() if session != but]
        return len(others), sum(others)

    def in_use(self, sha256: str) -> bool:
        return sha256 in self.refs

    def take_cleanup(self) -> list[Change]:
        """Start-up: deletions of file rows that no message carries (once)."""
        out, self.cleanup = self.cleanup, []
        return out


# Schedules --------------------------------------------------------------------------

_STALE_SLACK = 64  # cancelled heap entries tolerated beyond the live ones


@dataclass(frozen=True, slots=True)
class Pending:
    """One scheduled command: `command` is the line as typed after `when`."""

    id: int
    user: str
    at: float
    command: str
    created: float


class ScheduleBook:
    """Pending schedules by id and by user, and a heap by due time. A cancelled entry
    stays in the heap and is skipped when it surfaces (the heap is rebuilt when such
    leftovers dominate), so nothing ever walks all of them."""

    __slots__ = ("by_id", "by_user", "heap", "next_id")

    def __init__(self, next_id: int) -> None:
        self.by_id: dict[int, Pending] = {}
        self.by_user: dict[str, dict[int, Pending]] = {}
        self.heap: list[tuple[float, int]] = []
        self.next_id = next_id

    def add(self, pending: Pending) -> None:
        self.by_id[pending.id] = pending
        self.by_user.setdefault(pending.user, {})[pending.id] = pending
        heapq.heappush(self.heap, (pending.at, pending.id))
        self.next_id = max(self.next_id, pending.id + 1)

    def forget(self, pending: Pending) -> None:
        """Out of the indexes; its heap entry is skipped when it surfaces."""
        del self.by_id[pending.id]
        mine = self.by_user[pending.user]
        del mine[pending.id]
        if not mine:
            del self.by_user[pending.user]
        if len(self.heap) > 2 * len(self.by_id) + _STALE_SLACK:
            self.heap = [(p.at, p.id) for p in self.by_id.values()]
            heapq.heapify(self.heap)

    def of(self, user: str) -> dict[int, Pending]:
        return self.by_user.get(user, {})

    def due(self, now: float, limit: int = 0) -> Iterator[Pending]:
        """Pops and yields the schedules due at `now`, oldest first: at most `limit` of
        them (0: all); the rest stay in the heap, still due."""
        heap = self.heap
        left = limit or -1
        while left and heap and heap[0][0] <= now:
            left -= 1
            _, ident = heapq.heappop(heap)
            pending = self.by_id.get(ident)
            if pending is not None:
                self.forget(pending)
                yield pending

    def wakeup(self) -> float | None:
        """When the next schedule is due."""
        heap = self.heap
        while heap and heap[0][1] not in self.by_id:
            heapq.heappop(heap)
        return heap[0][0] if heap else None


# Retention --------------------------------------------------------------------------

Mark = tuple[int, float]  # (frontier id, first sweep time it was seen delivered to all)


@dataclass(slots=True)
class SweepState:
    """Where the retention sweep is: its marks per chat, when it runs next, and the
    chats left in an unfinished pass."""

    at: float  # the next sweep
    marks: dict[str, list[Mark]] = field(default_factory=dict)
    chats_left: list[str] = field(default_factory=list)
    general_frontier: int | float = 0
