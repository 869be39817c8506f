"""The one path a command takes, whatever door it came in by.

A door turns its bytes into items (a line to parse, a framing error, a Command it built
itself, or a `Submit` that also wants the command's reply) and feeds them to its
session's Pipeline. The pipeline runs them strictly in order: the flood guard, the
parser, the core (`Chat.handle`), slow work off the loop (password hashing, a download
being read, an upload being stored), then `Context.apply`, which hands the outcome to
the hub (commit, then write). While one command waits off the loop, later items wait
too and reading pauses, so replies always come in command order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import cast

from chatd import logs
from chatd.core.flood import TokenBucket
from chatd.core.outcome import Deferred, Outcome
from chatd.protocol.commands import Command, Download, ParseError, Upload, parse
from chatd.protocol.events import Code, Error, Event
from chatd.protocol.framing import FrameError
from chatd.server.context import Context
from chatd.server.peer import Peer
from chatd.server.uploads import UploadSession

log = logs.get_logger("chatd.pipeline")


@dataclass(frozen=True, slots=True)
class Submit:
    """A command from a door that answers in its own words.

    `reply` maps each reply event of this command (Ok, Error, Rendered) before it is
    queued: return the event to write (`Rendered(bytes)` for door-specific bytes), or
    None to write nothing. `done` is called once the command's output is committed and
    written (an HTTP response must not claim what a crash could still lose)."""

    command: Command | str
    reply: Callable[[Event], Event | None] | None = None
    done: Callable[[], None] | None = None


@dataclass(frozen=True, slots=True)
class Query:
    """A door's own read of the chat, answered in order with the session's commands:
    `run()` is called when every earlier item has run and returns the Outcome to write
    (its replies usually `Rendered` bytes); it may read message bodies from the store
    (`Chat.with_bodies`), like `history` does. IRC's CHATHISTORY is one."""

    run: Callable[[], Outcome]
    verb: str = "query"


class End:
    """The client will send nothing more (it half-closed): once everything before
    is answered, the session closes."""

    __slots__ = ()


END = End()

Item = str | FrameError | Command | Submit | Query | End


#: Commands one session runs in one event-loop turn; the rest wait for the next turn,
#: so a paste of 10,000 costly commands never holds the loop away from others.
COMMANDS_PER_TURN = 64


class Pipeline:
    """One session's commands, in order, through the core and the hub.

    Fair to the others: at most COMMANDS_PER_TURN commands per loop turn, and none at
    all while the session's unsent output (its transport buffer plus replies waiting
    for a commit) passes `limits.send_buffer_bytes`: a client that pipelines costly
    commands and never reads is simply not read any further (TCP pushes back on it)
    until it reads, instead of piling up replies in memory.
    """

    __slots__ = (
        "_blocked",
        "_ctx",
        "_flood",
        "_flood_timer",
        "_paced",
        "_queue",
        "_upload",
        "_waiting",
        "flood_holds",
        "peer",
    )

    def __init__(self, ctx: Context, peer: Peer) -> None:
        self._ctx = ctx
        self.peer = peer
        self._queue: deque[Item] = deque()
        self._waiting = False  # a command is off the loop; later items wait
        limits = ctx.config.limits
        self._flood = TokenBucket(limits.flood_burst, limits.flood_rate_per_s, ctx.loop.time())
        self._flood_timer: asyncio.TimerHandle | None = None
        self.flood_holds = 0  # times this session was paused by the flood guard
        self._upload: UploadSession | None = None  # upload mode: lines are its data
        self._blocked = False  # waiting for the client to read its output
        self._paced: tuple[Deferred, Submit | None] | None = None  # ...then this runs

    @property
    def idle(self) -> bool:
        """Nothing queued and nothing off the loop: every command fed so far has its
        reply queued (the IRC door pings an idle client only then)."""
        return not self._queue and not self._waiting and self._upload is None

    def feed(self, items: Iterable[Item]) -> None:
        self._queue.extend(items)
        if not self._waiting:
            self._run()

    def drained(self) -> None:
        """The transport took everything written (the client read it): go on."""
        if self._blocked:
            self._blocked = False
            paced, self._paced = self._paced, None
            if paced is not None:
                self._defer(*paced)
                return
            self._resume()

    def set_flood(self, burst: int, rate_per_s: float) -> None:
        """New flood-guard limits (a config reload); the tokens held stay."""
        self._flood.capacity, self._flood.rate = float(burst), float(rate_per_s)

    def close(self) -> None:
        """The connection is gone: drop what was queued, abandon an upload."""
        self._queue.clear()
        self._paced = None
        if self._flood_timer is not None:
            self._flood_timer.cancel()
            self._flood_timer = None
        if self._upload is not None:
            self._upload.abort()
            self._upload = None

    # The loop over queued items ---------------------------------------------------

    def _run(self) -> None:
        peer, ctx, queue = self.peer, self._ctx, self._queue
        budget = COMMANDS_PER_TURN
        while queue:
            if peer.closing:
                queue.clear()
                return
            if self._upload is not None:  # data lines, exempt from the flood guard
                if self._upload_lines():
                    return
                continue
            if budget <= 0:
                self._next_turn()
                return
            budget -= 1
            if self._backlogged():
                return
            if not self._flood.take(ctx.loop.time()):
                self._hold()
                return
            item = queue.popleft()
            if item is END:
                queue.clear()
                ctx.apply(peer, Outcome(closes=[(peer, None)]))
                return
            if type(item) is Query:
                if self._apply(ctx.chat.run(item.verb, item.run), None):
                    return
                continue
            submit = item if isinstance(item, Submit) else None
            what = (
                submit.command if submit is not None else cast("str | FrameError | Command", item)
            )
            if isinstance(what, FrameError):
                self._apply(_refused(what.code, what.message, None), submit)
                continue
            if isinstance(what, str):
                try:
                    what = parse(what)
                except ParseError as e:
                    if e.cmd == "upload":  # its data follows anyway: skip it, answer after `.`
                        self._upload = ctx.files.upload(peer, e)
                        continue
                    self._apply(_refused(e.code, e.message, e.cmd), submit)
                    continue
            if type(what) is Upload:
                self._upload = ctx.files.upload(peer, what)
                continue
            if type(what) is Download:
                self._wait_for(ctx.files.download(peer, what))
                return
            out = ctx.chat.handle(peer, what, ctx.clock())
            if self._apply(out, submit):
                return

    def _apply(self, out: Outcome, submit: Submit | None) -> bool:
        """Queues a command's outcome; True when it continues off the loop (then the
        pipeline waits for it)."""
        deferred = out.deferred
        if submit is not None and submit.reply is not None:
            mapped = (submit.reply(event) for event in out.replies)
            out.replies = [event for event in mapped if event is not None]
        self._ctx.apply(self.peer, out)
        if deferred is not None:
            self._defer(deferred, submit)
            return True
        if submit is not None and submit.done is not None:
            self._ctx.hub.after(submit.done)
        return False

    # Waiting: later items are held, and reading pauses, until slow work is done ---

    def _next_turn(self) -> None:
        """This turn's share is used: the rest waits for the next loop turn."""
        self._park()
        self._ctx.loop.call_soon(self._resume)

    def _backlogged(self) -> bool:
        """Over its output limit: wait until the client reads (Connection's
        resume_writing calls `drained`) or the waiting replies are written."""
        if not self._over_limit():
            return False
        self._park()
        self._wait_for_reader()
        return True

    def _over_limit(self) -> bool:
        transport = self.peer.transport
        if transport is None:
            return False
        unsent = transport.get_write_buffer_size() + self._ctx.hub.queued(self.peer)
        return unsent > self._ctx.config.limits.send_buffer_bytes

    def _wait_for_reader(self) -> None:
        self._blocked = True
        if not self.peer.paused:  # nothing in the kernel's way yet: look again once
            self._ctx.hub.after(self.drained)  # the waiting replies are written

    def _park(self) -> None:
        self._waiting = True
        transport = self.peer.transport
        if transport is not None and transport.is_reading():
            transport.pause_reading()

    def _resume(self) -> None:
        self._waiting = False
        peer = self.peer
        if peer.closing:
            return
        if peer.transport is not None:
            peer.transport.resume_reading()
        self._run()

    def _defer(self, deferred: Deferred, submit: Submit | None) -> None:
        """Runs slow work (password hashing, reading messages) on the worker threads;
        paced work (the next page of a replay) only once the client has read enough."""
        self._park()
        ctx = self._ctx
        if deferred.paced and self._over_limit():
            self._paced = (deferred, submit)
            self._wait_for_reader()
            return
        fut = ctx.loop.run_in_executor(ctx.workers, deferred.work)

        def done(f: asyncio.Future[object]) -> None:
            if self.peer.closing:
                return
            out = deferred.resume(f.result(), ctx.clock())
            if not self._apply(out, submit):  # again deferred: e.g. the name was taken
                self._resume()

        fut.add_done_callback(done)

    def _wait_for(self, waiter: asyncio.Future[None]) -> None:
        """Holds later items until `waiter` is done (an upload being stored, a download
        being read)."""
        self._park()
        waiter.add_done_callback(lambda _: self._resume())

    def _upload_lines(self) -> bool:
        """Gives the upload its data lines; True when the pipeline now waits for the
        upload to be stored (its `.` came)."""
        upload = self._upload
        assert upload is not None
        queue = self._queue
        end = queue.pop() if queue and queue[-1] is END else None
        # Upload mode only ever follows a line door's `upload` line: the queue holds
        # framed lines there (and END last, set aside meanwhile).
        finished = upload.feed(cast("deque[str | FrameError]", queue))
        if end is not None:
            queue.append(end)
            if not finished:  # the client ended mid-upload: nothing of it is kept
                upload.abort()
                self._upload = None
                return False
        if not finished:
            return False
        self._upload = None
        waiter = upload.finish()
        if waiter is None:
            return False
        self._wait_for(waiter)
        return True

    def _hold(self) -> None:
        """Flood guard: over its command budget, a session is slowed, not refused.
        Reading pauses (TCP pushes back on the client) until the bucket has refilled
        for the queued items, or a tenth of a burst, so no session keeps the loop busy
        and the wake-ups stay few."""
        self.flood_holds += 1
        self._park()
        loop = self._ctx.loop
        need = min(len(self._queue), max(1, int(self._flood.capacity) // 10))
        self._flood_timer = loop.call_later(self._flood.wait(loop.time(), need), self._unhold)

    def _unhold(self) -> None:
        self._flood_timer = None
        self._resume()


def _refused(code: Code, message: str, cmd: str | None) -> Outcome:
    log.info("command.failed", cmd=cmd, code=str(code))
    return Outcome(replies=[Error(code, message, cmd)])
