"""Output: group commit, then fan-out of rendered bytes, once per event-loop turn.

Everything the core emits while a batch is open lands in that batch: replies and pushes
per session, broadcast messages per chat topic, and the durable changes. At the end of
the loop turn the batch is sealed and committed; only when the commit returns are its
bytes written, so no one ever sees a message that could vanish in a crash. While a
threaded commit runs, the next batch keeps filling (group commit).

Where a commit runs: on the writer thread when each commit ends in an fsync. Without
fsync (`inline_commit`), a batch that carries messages is committed inline on the loop:
its fan-out waits for the commit, and the WAL `write()` costs less than two thread
hand-offs. Other batches (a login storm's new accounts, cursor saves) still go to the
writer thread, so the loop keeps accepting and handling while they commit.

The hot path is the topic release: each broadcast message is rendered once per mode,
the batch's messages are joined once, and every subscribed session gets the same bytes
in one `transport.write`. No per-recipient rendering, allocation, log call or await.
"""

from __future__ import annotations

import asyncio
import bisect
import concurrent.futures
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from chatd import logs
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import Change, Outcome, PutMessage
from chatd.protocol.events import Error, Event, Message, Mode, Notice, Push
from chatd.protocol.notices import SlowConsumer
from chatd.protocol.render import Renderer
from chatd.server.counters import ServerMetrics, chat_kind
from chatd.server.peer import Peer
from chatd.store.base import Store

log = logs.get_logger("chatd.hub")


@dataclass(slots=True)
class _Pending:
    chunks: list[bytes] = field(default_factory=list)
    top_id: int = 0
    size: int = 0  # bytes in chunks


@dataclass(slots=True)
class _Batch:
    changes: list[Change] = field(default_factory=list)
    direct: dict[Peer, _Pending] = field(default_factory=dict)
    topics: dict[str, list[tuple[Message, Session | None]]] = field(default_factory=dict)
    closes: list[Peer] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.changes or self.direct or self.topics or self.closes or self.after)


class Hub:
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        chat: Chat,
        store: Store,
        renderer: Renderer,
        clock: Callable[[], float],
        *,
        metrics: ServerMetrics | None = None,
        inline_commit: bool = False,
    ) -> None:
        self._loop = loop
        self._inline = inline_commit
        # Counted per batch, per topic or per write, never per recipient (module doc).
        self._m = metrics if metrics is not None else ServerMetrics()
        self._chat = chat
        self._store = store
        self._renderer = renderer
        self._clock = clock
        self._writer = concurrent.futures.ThreadPoolExecutor(1, "chatd-store")
        self._open = _Batch()
        self._inflight: _Batch | None = None
        self._turn_scheduled = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.commits = 0
        self.slow_consumers = 0

    # Input side: what the core produced ------------------------------------------

    def apply(self, peer: Peer | None, out: Outcome) -> None:
        """Queues an outcome for the open batch; `peer` is the acting session."""
        batch = self._open
        if out.changes:
            batch.changes.extend(out.changes)
        if peer is not None:
            for event in out.replies:
                if type(event) is Error:
                    self._m.error(event.code)
                self._direct(batch, peer, event, self._renderer.render(event, peer.mode))
            if out.acked:
                pending = batch.direct.get(peer)
                if pending is not None and out.acked > pending.top_id:
                    pending.top_id = out.acked
        for event, sessions in out.pushes:
            self._push(batch, event, sessions)
        for msg, sender in out.broadcasts:
            batch.topics.setdefault(msg.chat, []).append((msg, sender))
        for session, notice in out.closes:
            assert isinstance(session, Peer)
            self._close_later(batch, session, notice)
        self._schedule()

    def queued(self, peer: Peer) -> int:
        """Bytes of replies for `peer` not yet handed to its transport (they wait for a
        commit): with the transport's own buffer, what a door weighs before it runs
        more of that session's commands."""
        total = 0
        for batch in (self._open, self._inflight):
            pending = batch.direct.get(peer) if batch is not None else None
            if pending is not None:
                total += pending.size
        return total

    def after(self, callback: Callable[[], None]) -> None:
        """Calls `callback` once everything queued so far is committed and written."""
        self._open.after.append(callback)
        self._schedule()

    def changes(self, changes: list[Change]) -> None:
        if changes:
            self._open.changes.extend(changes)
            self._schedule()

    def _direct(self, batch: _Batch, peer: Peer, event: Event, data: bytes) -> None:
        if peer.closing:
            return
        pending = batch.direct.get(peer)
        if pending is None:
            pending = batch.direct[peer] = _Pending()
        pending.chunks.append(data)
        pending.size += len(data)
        if isinstance(event, Push) and event.message.id > pending.top_id:
            pending.top_id = event.message.id

    def _push(self, batch: _Batch, event: Event, sessions: Sequence[Session]) -> None:
        if type(event) is Push and not event.replay:
            self._m.delivered[chat_kind(event.message.chat)].value += len(sessions)
        rendered: dict[Mode, bytes] = {}
        for s in sessions:
            assert isinstance(s, Peer)
            data = rendered.get(s.mode)
            if data is None:
                data = rendered[s.mode] = self._renderer.render(event, s.mode)
            self._direct(batch, s, event, data)

    def _close_later(self, batch: _Batch, peer: Peer, notice: Notice | None) -> None:
        if peer.closing:
            return
        if notice is not None:
            self._direct(batch, peer, notice, self._renderer.render(notice, peer.mode))
        peer.closing = True
        self.changes(self._chat.close(peer, self._clock()).changes)
        batch.closes.append(peer)

    # The pipeline ------------------------------------------------------------------

    def _schedule(self) -> None:
        if not self._turn_scheduled:
            self._turn_scheduled = True
            self._idle.clear()
            self._loop.call_soon(self._turn_end)

    def _turn_end(self) -> None:
        self._turn_scheduled = False
        if self._inflight is not None:
            return  # the commit in flight calls back; the open batch keeps growing
        batch = self._open
        if batch.empty():
            self._idle.set()
            return
        self._open = _Batch()
        if not batch.changes:
            self._release(batch)
            self._turn_end()
            return
        self._inflight = batch
        self._start_commit(batch)

    def _start_commit(self, batch: _Batch) -> None:
        """Inline or on the writer thread (module doc)."""
        if self._inline and any(type(change) is PutMessage for change in batch.changes):
            self._commit_inline(batch)
        else:
            self._commit(batch)

    def _commit_inline(self, batch: _Batch) -> None:
        try:
            seconds = self._timed_commit(batch.changes)
        except Exception as e:
            self._commit_failed(batch, e)
            return
        self._after_commit(batch, seconds)

    def _commit(self, batch: _Batch) -> None:
        fut = self._loop.run_in_executor(self._writer, self._timed_commit, batch.changes)
        fut.add_done_callback(lambda f: self._committed(batch, f))

    def _timed_commit(self, changes: list[Change]) -> float:
        """The commit, and how long it took (on the writer thread, or inline)."""
        started = time.perf_counter()
        self._store.commit(changes)
        return time.perf_counter() - started

    def _committed(self, batch: _Batch, fut: asyncio.Future[float]) -> None:
        error = fut.exception()
        if error is not None:
            self._commit_failed(batch, error)
            return
        self._after_commit(batch, fut.result())

    def _commit_failed(self, batch: _Batch, error: BaseException) -> None:
        # Nothing of this batch was acknowledged; keep it and try again, so that a full
        # disk stalls replies instead of losing acknowledged messages.
        log.error("store.commit_failed", error=str(error), changes=len(batch.changes))
        self._loop.call_later(1.0, self._start_commit, batch)

    def _after_commit(self, batch: _Batch, seconds: float) -> None:
        self.commits += 1
        m = self._m
        m.chatd.store_commit_seconds.observe(seconds)
        for change in batch.changes:
            if type(change) is PutMessage:
                m.sent[chat_kind(change.message.chat)].value += 1
        self._inflight = None
        self._release(batch)
        self._turn_end()

    async def drain(self) -> None:
        """Waits until every queued change is committed and its output written."""
        while not self._idle.is_set() or self._inflight is not None:
            await self._idle.wait()
            await asyncio.sleep(0)

    def close(self) -> None:
        self._writer.shutdown(wait=True)

    # Output side: writing a committed batch ------------------------------------------

    def _release(self, batch: _Batch) -> None:
        dropped: list[Peer] = []
        for peer, pending in batch.direct.items():
            self._write(peer, b"".join(pending.chunks), pending.top_id, dropped)
        for topic, items in batch.topics.items():
            self._fan_out(topic, items, dropped)
        for peer in batch.closes:
            if peer.transport is not None:
                peer.transport.close()
        for peer in dropped:
            self._drop_slow(peer)
        for callback in batch.after:
            try:
                callback()
            except Exception:
                log.exception("hub.after_failed")

    def _fan_out(
        self, topic: str, items: list[tuple[Message, Session | None]], dropped: list[Peer]
    ) -> None:
        # Every session the core holds here is one of ours (Peer): no check per recipient.
        subscribers = cast("set[Peer] | None", self._chat.topics.get(topic))
        if not subscribers:
            return
        first_id = items[0][0].id
        top_id = items[-1][0].id
        own: dict[Session, list[int]] = {}  # sender -> indexes of its items
        for i, (_, sender) in enumerate(items):
            if sender is not None:
                own.setdefault(sender, []).append(i)
        blobs: dict[Mode, tuple[bytes, list[int]]] = {}
        fast_bytes = 0  # a local add per recipient; the counter is updated once below
        for peer in subscribers:
            mode = peer.mode
            rendered = blobs.get(mode)
            if rendered is None:
                rendered = blobs[mode] = self._render_items(items, mode)
            blob = rendered[0]
            skip = own.get(peer)
            if skip is not None or peer.live_from > first_id:
                # Rare: this session sent some of these, or logged in mid-batch.
                start = 0
                if peer.live_from > first_id:
                    start = bisect.bisect_left(items, peer.live_from, key=_item_id)
                data = _without(blob, rendered[1], start, skip or ())
                if data:
                    self._write(peer, data, top_id, dropped)
                continue
            transport = peer.transport
            if transport is None:
                continue
            transport.write(blob)
            fast_bytes += len(blob)
            peer.written_id = top_id
            if peer.paused:
                if transport.get_write_buffer_size() > peer.buffer_limit:
                    dropped.append(peer)
            else:
                peer.sent_id = top_id
        m = self._m
        m.bytes_out.value += fast_bytes
        mine = sum(len(indexes) for sender, indexes in own.items() if sender in subscribers)
        m.delivered[chat_kind(topic)].value += len(subscribers) * len(items) - mine

    def _render_items(
        self, items: list[tuple[Message, Session | None]], mode: Mode
    ) -> tuple[bytes, list[int]]:
        """The batch's messages of a topic rendered once, joined, and where each ends."""
        render = self._renderer.render
        parts = [render(Push(m), mode) for m, _ in items]
        return b"".join(parts), list(itertools.accumulate(map(len, parts)))

    def _write(self, peer: Peer, data: bytes, top_id: int, dropped: list[Peer]) -> None:
        transport = peer.transport
        if transport is None:
            return
        base = self._chat.config.limits.send_buffer_bytes
        if len(data) > base:
            # A long unread replay or history page is not a slow reader: allow it on top
            # of the usual limit until the transport drains (resume_writing resets it).
            peer.buffer_limit = max(peer.buffer_limit, len(data) + base)
        transport.write(data)
        self._m.bytes_out.value += len(data)
        if top_id > peer.written_id:
            peer.written_id = top_id
        if peer.paused:
            if transport.get_write_buffer_size() > peer.buffer_limit:
                dropped.append(peer)
        elif peer.written_id > peer.sent_id:
            peer.sent_id = peer.written_id

    def _drop_slow(self, peer: Peer) -> None:
        """A reader that stopped reading: close it, never wait for it. What it had
        not received stays unread and is replayed at its next login."""
        if peer.closing or peer.transport is None:
            return
        self.slow_consumers += 1
        transport = peer.transport
        log.warning(
            "session.slow_consumer",
            session=peer.id,
            user=peer.account.name if peer.account else None,
            buffered=transport.get_write_buffer_size(),
        )
        notice = SlowConsumer(transport.get_write_buffer_size())
        data = self._renderer.render(notice, peer.mode)
        transport.write(data)
        self._m.bytes_out.value += len(data)
        peer.closing = True
        self.changes(self._chat.close(peer, self._clock()).changes)
        transport.close()
        self._loop.call_later(2.0, transport.abort)


def _item_id(item: tuple[Message, Session | None]) -> int:
    return item[0].id


def _without(blob: bytes, ends: list[int], first: int, skip: Sequence[int]) -> bytes:
    """`blob` from item `first` on, minus the items at the indexes `skip` (ascending);
    `ends[i]` is where item i ends in `blob`. A few slices, not a pass over the items."""
    pos = ends[first - 1] if first else 0
    parts = []
    for i in skip:
        if i < first:
            continue
        start = ends[i - 1] if i else 0
        if start > pos:
            parts.append(blob[pos:start])
        pos = ends[i]
    parts.append(blob[pos:])
    return b"".join(parts)
