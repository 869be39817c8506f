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
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, cast

from chatd import logs
from chatd.core.chat import Chat
from chatd.core.model import Session
from chatd.core.outcome import (
    Change,
    DeleteFile,
    DeleteMessages,
    Outcome,
    PutFile,
    PutMessage,
    PutSchedule,
    SetCursor,
)
from chatd.protocol.events import Code, Error, Event, Message, Mode, Notice, Ok, Push
from chatd.protocol.notices import SlowConsumer
from chatd.protocol.render import Renderer
from chatd.server.counters import ServerMetrics, chat_kind
from chatd.server.peer import Peer
from chatd.store.base import LeaseLost, Store

log = logs.get_logger("chatd.hub")


@dataclass(slots=True)
class _Pending:
    chunks: list[bytes] = field(default_factory=list)
    top_id: int = 0
    size: int = 0  # bytes in chunks


class _Write(NamedTuple):
    """A command of the batch that writes: where its replies are, and what it made. If
    the batch cannot be committed in time, a message or schedule command is answered
    `unavailable` and what it made is withdrawn (see `_give_up`). A NamedTuple: one is
    built per message sent, and a frozen dataclass costs three times as much."""

    peer: Peer
    verb: str | None
    start: int  # its replies are chunks [start, end) of the peer's _Pending
    end: int
    message_ids: tuple[int, ...]
    schedule_ids: tuple[int, ...] = ()


# Changes nothing was promised about: if never committed, only replays are longer
# (cursors) or rows the sweep already forgot stay until it looks again.
_DROPPABLE = frozenset({SetCursor, DeleteMessages, DeleteFile})
_MESSAGE_CHANGES = frozenset({PutMessage, PutFile})


@dataclass(slots=True)
class _Batch:
    changes: list[Change] = field(default_factory=list)
    direct: dict[Peer, _Pending] = field(default_factory=dict)
    topics: dict[str, list[tuple[Message, Session | None]]] = field(default_factory=dict)
    closes: list[Peer] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    # For a commit that fails (disk full): the writing commands, each live message
    # push (peer, chunk index, message id), whether anything else must be committed
    # before output may go (then the batch waits for the disk), when it first failed.
    writes: list[_Write] = field(default_factory=list)
    pushed: list[tuple[Peer, int, int]] = field(default_factory=list)
    binding: bool = False  # the whole batch waits for the disk
    held: set[Peer] = field(default_factory=set)  # these sessions' output waits for it
    failed_since: float | None = None
    top_id: int = 0  # every message id up to here is in this batch or an earlier one

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
        self._later: list[Change] = []  # droppable changes made while a commit is stuck
        self._probe_handle: asyncio.TimerHandle | None = None
        self.commits = 0
        self.slow_consumers = 0
        self.commits_given_up = 0
        #: Called when the store says another node holds the lease (the daemon stops).
        self.on_lease_lost: Callable[[LeaseLost], None] | None = None

    # Input side: what the core produced ------------------------------------------

    def apply(self, peer: Peer | None, out: Outcome) -> None:
        """Queues an outcome for the open batch; `peer` is the acting session."""
        batch = self._open
        start = -1
        binds = False
        if out.changes:
            batch.changes.extend(out.changes)
            if peer is not None and not peer.closing:
                pending = batch.direct.get(peer)
                start = len(pending.chunks) if pending is not None else 0
            else:
                binds = not _DROPPABLE.issuperset(map(type, out.changes))
        if peer is not None:
            for event in out.replies:
                if type(event) is Error:
                    self._m.error(event.code)
                self._direct(batch, peer, event, self._renderer.render(event, peer.mode))
            if start >= 0:
                binds = self._note_write(batch, peer, out, start)
            if out.acked and not peer.closing:
                # The sender's own message counts as received with its reply, also when
                # a door writes no reply for it (an IRC client without echo-message).
                pending = batch.direct.get(peer)
                if pending is None:
                    pending = batch.direct[peer] = _Pending()
                if out.acked > pending.top_id:
                    pending.top_id = out.acked
        if binds:  # what it wrote to anyone waits for its commit, whatever happens
            if out.broadcasts:
                batch.binding = True  # e.g. a scheduled message: the whole batch waits
            else:
                if peer is not None:
                    batch.held.add(peer)
                for _, sessions in out.pushes:
                    batch.held.update(cast("Sequence[Peer]", sessions))
                batch.held.update(cast("Peer", s) for s, _ in out.closes)
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
            stuck = self._inflight is not None and self._inflight.failed_since is not None
            droppable = _DROPPABLE.issuperset(map(type, changes))
            if stuck and droppable:
                self._later.extend(changes)  # not behind the stuck batch: see _turn_end
                return
            self._open.changes.extend(changes)
            if not droppable:
                self._open.binding = True  # e.g. an HTTP token: handed out once durable
            self._schedule()

    def _note_write(self, batch: _Batch, peer: Peer, out: Outcome, start: int) -> bool:
        """Records a writing command of the batch (`_Write`); True if it binds (its
        changes are not all a message's or a new schedule's: it waits for the disk)."""
        changes = out.changes
        pending = batch.direct.get(peer)
        end = len(pending.chunks) if pending is not None else start
        first = changes[0]
        if len(changes) == 1 and type(first) is PutMessage:  # a send: the hot path
            replies = out.replies
            verb = replies[0].cmd if replies and isinstance(replies[0], Ok | Error) else None
            batch.writes.append(_Write(peer, verb, start, end, (first.message.id,)))
            return False
        kinds = set(map(type, changes))
        messages: tuple[int, ...] = ()
        schedules: tuple[int, ...] = ()
        if kinds <= _MESSAGE_CHANGES:
            messages = tuple(ch.message.id for ch in changes if isinstance(ch, PutMessage))
        elif kinds == {PutSchedule}:
            schedules = tuple(ch.id for ch in changes if isinstance(ch, PutSchedule))
        else:
            return True
        verb = next((e.cmd for e in out.replies if isinstance(e, Ok | Error)), None)
        batch.writes.append(_Write(peer, verb, start, end, messages, schedules))
        return False

    def _direct(self, batch: _Batch, peer: Peer, event: Event, data: bytes) -> None:
        if peer.closing:
            return
        pending = batch.direct.get(peer)
        if pending is None:
            pending = batch.direct[peer] = _Pending()
        pending.chunks.append(data)
        pending.size += len(data)
        if isinstance(event, Push):
            if not event.replay:
                batch.pushed.append((peer, len(pending.chunks) - 1, event.message.id))
            if event.message.id > pending.top_id:
                pending.top_id = event.message.id

    def _push(self, batch: _Batch, event: Event, sessions: Sequence[Session]) -> None:
        if type(event) is Push and not event.replay:
            ident = event.message.id
            if any(s.live_from > ident for s in sessions):  # still replaying: it comes then
                sessions = [s for s in sessions if s.live_from <= ident]
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
        peer.settle()  # the socket is still open: what the client acknowledged
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
            if self._inflight.failed_since is not None:
                self._release_around(self._inflight)  # ping, who, history go on
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
        batch.top_id = self._chat.next_id - 1
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

    # A commit that fails (disk full) -------------------------------------------------
    #
    # Nothing of a batch is written before its commit, so nothing in it was acknowledged.
    # The batch is tried again every `store.commit_retry_s`; meanwhile the core refuses
    # every command that writes (`Chat.store_failing`: `unavailable` before it changes
    # anything) and output that does not depend on the stuck batch goes out (ping, who,
    # history: `_release_around`). After `store.commit_timeout_s` the batch is given up
    # if nothing in it binds (`_give_up`): its messages and schedules are withdrawn from
    # memory and their commands answered `unavailable`, so a refused message never
    # appears later and an acknowledged one was committed. A batch that binds (a new
    # account, a room change, a scheduled message firing, an HTTP token) waits for the
    # disk instead: it is small, and it went to the store before the refusals began.
    # The first commit that succeeds ends it all (`_after_commit`); with nothing to
    # commit, a probe (`_probe`) tries a harmless write every `commit_retry_s`.

    def _commit_failed(self, batch: _Batch, error: BaseException) -> None:
        if isinstance(error, LeaseLost) and self.on_lease_lost is not None:
            self.on_lease_lost(error)  # another node writes now: this one stops
        now = time.monotonic()
        store = self._chat.config.store
        if batch.failed_since is None:
            batch.failed_since = now
            log.error("store.commit_failed", error=str(error), changes=len(batch.changes))
        if not self._chat.store_failing:
            self._chat.store_failing = True
            log.error("store.unavailable", error=str(error))
        if now - batch.failed_since >= store.commit_timeout_s and self._give_up(batch):
            return
        self._loop.call_later(store.commit_retry_s, self._start_commit, batch)
        self._release_around(batch)

    def _release_around(self, stuck: _Batch) -> None:
        """Releases the open batch while `stuck` waits for the disk, if it has nothing to
        commit; a session that also has output in `stuck` gets this after it (in order)."""
        batch = self._open
        if batch.changes or batch.empty():
            return
        self._open = _Batch()
        moved = False
        for peer in [p for p in batch.direct if p in stuck.direct]:
            src, dst = batch.direct.pop(peer), stuck.direct[peer]
            dst.chunks.extend(src.chunks)
            dst.size += src.size
            dst.top_id = max(dst.top_id, src.top_id)
            moved = True
        closes = [p for p in batch.closes if p in stuck.direct]
        if closes:
            stuck.closes.extend(closes)
            batch.closes = [p for p in batch.closes if p not in stuck.direct]
        if moved or closes:  # callbacks may wait for what moved: they wait with it
            stuck.after.extend(batch.after)
            batch.after = []
        self._release(batch)

    def _give_up(self, batch: _Batch) -> bool:
        """The batch could not be committed in time: answer its message and schedule
        commands `unavailable`, withdraw what they made, and write its output, but for
        the sessions `held` by a change that binds: those changes go on being tried,
        with that output. False (keep trying it all) if the whole batch binds."""
        if batch.binding:
            log.warning("store.commit_waiting", changes=len(batch.changes))
            return False
        messages: set[int] = set()
        schedules: set[int] = set()
        for w in batch.writes:
            messages.update(w.message_ids)
            schedules.update(w.schedule_ids)
        retry = max(1, math.ceil(self._chat.config.store.commit_retry_s))
        for w in batch.writes:
            pending = batch.direct.get(w.peer)
            if pending is None or w.end <= w.start:
                continue
            refusal = Error(
                Code.UNAVAILABLE,
                "the server could not save this (its disk is full?); nothing was sent "
                "or changed, try again later",
                w.verb,
                retry,
            )
            self._m.error(refusal.code)
            pending.chunks[w.start] = self._renderer.render(refusal, w.peer.mode)
            for i in range(w.start + 1, w.end):
                pending.chunks[i] = b""
        for peer, index, ident in batch.pushed:
            if ident in messages:
                batch.direct[peer].chunks[index] = b""
        for pending in batch.direct.values():
            pending.size = sum(map(len, pending.chunks))
            if pending.top_id in messages:
                pending.top_id = 0  # nothing of it is received; older pushes were
        for topic, items in list(batch.topics.items()):
            kept = [item for item in items if item[0].id not in messages]
            if kept:
                batch.topics[topic] = kept
            else:
                del batch.topics[topic]
        files = {
            ch.message.file.id
            for ch in batch.changes
            if isinstance(ch, PutMessage) and ch.message.id in messages and ch.message.file
        }
        self._chat.withdraw(messages, schedules)
        self.commits_given_up += 1
        log.error(
            "store.commit_given_up",
            changes=len(batch.changes),
            messages=len(messages),
            schedules=len(schedules),
            held=len(batch.held),
        )
        if not batch.held:
            batch.changes = []  # droppable, all of them
            self._inflight = None
            self._release(batch)
            self._schedule_probe()
            self._turn_end()
            return True
        keep = _Batch(binding=True, failed_since=batch.failed_since)
        keep.changes = [
            ch
            for ch in batch.changes
            if not (
                (isinstance(ch, PutMessage) and ch.message.id in messages)
                or (isinstance(ch, PutFile) and ch.id in files)
                or (isinstance(ch, PutSchedule) and ch.id in schedules)
            )
        ]
        for peer in batch.held:
            pending = batch.direct.pop(peer, None)
            if pending is not None:
                keep.direct[peer] = pending
        keep.closes = [p for p in batch.closes if p in batch.held]
        batch.closes = [p for p in batch.closes if p not in batch.held]
        keep.after, batch.after = batch.after, []  # callbacks may be theirs: they wait
        batch.changes = []
        self._inflight = keep
        self._release(batch)
        self._loop.call_later(self._chat.config.store.commit_retry_s, self._start_commit, keep)
        return True

    def _schedule_probe(self) -> None:
        if self._probe_handle is None:
            delay = self._chat.config.store.commit_retry_s
            self._probe_handle = self._loop.call_later(delay, self._probe)

    def _probe(self) -> None:
        """While the store is failing and no batch is being tried: a harmless write
        (a cursor as it already is, and the cursor saves put aside meanwhile)."""
        self._probe_handle = None
        if not self._chat.store_failing:
            return
        if self._inflight is not None:
            self._schedule_probe()
            return
        later, self._later = self._later, []
        acct = next(iter(self._chat.accounts.values()), None)
        if acct is None and not later:
            self._chat.store_failing = False  # nothing to write with: let commands try
            return
        probe = [SetCursor(acct.key, acct.saved_cursor)] if acct is not None else []
        self._open.changes.extend([*later, *probe])
        self._schedule()

    def _after_commit(self, batch: _Batch, seconds: float) -> None:
        if self._chat.store_failing:
            log.warning("store.available")
            self._chat.store_failing = False
        if self._later:  # cursor saves put aside while the batch was stuck
            self._open.changes.extend(self._later)
            self._later = []
            self._schedule()
        self.commits += 1
        m = self._m
        m.chatd.store_commit_seconds.observe(seconds)
        for change in batch.changes:
            if type(change) is PutMessage:
                m.sent[chat_kind(change.message.chat)].value += 1
        recent = self._chat.recent
        if batch.top_id > recent.durable:  # the window may now let these go
            recent.durable = batch.top_id
            recent.trim()
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
        # Newest first: a sender's `OK` was queued before the pushes to its recipients,
        # and the order between two sockets is free, so the recipients (who wait for the
        # message) are written before the sender (who waits only for its `OK`).
        for peer, pending in reversed(batch.direct.items()):
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
            acks = peer.acks
            if acks is not None:
                acks.mark(top_id)  # received once the client's TCP acknowledges it
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
        if data:
            transport.write(data)
            self._m.bytes_out.value += len(data)
        if top_id > peer.written_id:
            peer.written_id = top_id
            if peer.acks is not None:
                peer.acks.mark(top_id)
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
        peer.settle()
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
