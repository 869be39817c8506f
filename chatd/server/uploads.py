"""Files on the event loop's side: upload mode, the file thread, downloads, bodies.

An `upload` line puts its connection in upload mode: the following framed lines go to
an `UploadSession` (not to the command parser) until the line `.`. The session feeds
them to the sans-I/O `UploadDecoder` (base64, running sha256, size cap) and hands the
decoded bytes, 256 KiB at a time, to the one file thread, which appends them to a temp
file; more than MAX_UNWRITTEN bytes waiting for the disk pause reading the socket, so
memory per upload stays bounded and a slow disk pushes back on the client, never on
the loop. At `.` the file thread fsyncs, verifies and renames the body to its content
address, then the core checks the upload again and sends the message; the
connection's later lines wait for that, so replies stay in order.

Every write, commit and delete runs on the same single file thread, in submission
order: a body is never deleted between an upload finding it already stored and its
message being created, because the loop decides deletions (no file row names the
body and no upload of it is finishing) and the thread runs them after what came first.
Downloads read and render on the worker threads: a body is immutable once stored.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections import Counter, deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chatd import logs
from chatd.config import Config
from chatd.core.chat import Chat
from chatd.core.outcome import Body, Outcome, UploadTicket
from chatd.protocol.commands import Download, ParseError, Upload
from chatd.protocol.events import Code, Error, Event, Mode, Ok
from chatd.protocol.framing import FrameError
from chatd.protocol.notices import UploadTimeout
from chatd.protocol.render import Rendered, download_reply
from chatd.protocol.upload import UploadDecoder
from chatd.server.blobs import BlobStore, BodyMissing, TempBody
from chatd.server.hub import Hub
from chatd.server.peer import Peer

log = logs.get_logger("chatd.files")

FILES_DIR = "files"
WRITE_CHUNK = 256 * 1024  # decoded bytes per append
MAX_UNWRITTEN = 1 << 20  # decoded bytes queued for the disk before reading pauses
_STORE_FAILED = "the server could not store the file; try again later"


class Files:
    """The daemon's file service: one per daemon, created at start-up."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        chat: Chat,
        hub: Hub,
        workers: concurrent.futures.Executor,
        clock: Callable[[], float],
        apply: Callable[[Peer | None, Outcome], None],
    ) -> None:
        self.loop = loop
        self._chat = chat
        self._hub = hub
        self._workers = workers
        self._clock = clock
        self.apply = apply  # the server's one way to queue an Outcome
        cfg = chat.config
        self.blobs = BlobStore(cfg.files.dir or Path(cfg.server.data_dir) / FILES_DIR)
        self.thread = concurrent.futures.ThreadPoolExecutor(1, "chatd-files")
        self._finishing: Counter[str] = Counter()  # sha256 -> uploads being committed
        self._pending: set[asyncio.Future[None]] = set()

    @property
    def config(self) -> Config:
        """The live config (a reload replaces it)."""
        return self._chat.config

    def start(self) -> None:
        """Start-up, before listening: forget file rows without a message, remove
        temp files and bodies that no row names (a crash's leftovers)."""
        self._hub.changes(self._chat.files.take_cleanup())
        temps, bodies = self.blobs.sweep_orphans(self._chat.files.in_use)
        if temps or bodies:
            log.info("files.swept", temp_files=temps, bodies=bodies)

    def upload(self, peer: Peer, cmd: Upload | ParseError) -> UploadSession:
        """An `upload` line (or one that failed to parse: its data follows anyway)."""
        if isinstance(cmd, ParseError):
            return UploadSession(self, peer, None, Error(cmd.code, cmd.message, cmd.cmd))
        began = self._chat.begin_upload(peer, cmd, self._clock())
        if isinstance(began, Error):
            return UploadSession(self, peer, None, began)
        return UploadSession(self, peer, began, None)

    def download(self, peer: Peer, cmd: Download) -> asyncio.Future[None]:
        """`download`: the core checks who may; the body is read, verified and rendered
        on a worker thread. The future is done once the reply is queued."""
        waiter: asyncio.Future[None] = self.loop.create_future()
        out = self._chat.handle(peer, cmd, self._clock())
        ok = out.replies[0] if len(out.replies) == 1 else None
        if not isinstance(ok, Ok):
            self.apply(peer, out)
            waiter.set_result(None)
            return waiter
        file: dict[str, Any] = dict(ok.fields["file"])
        fut = self.loop.run_in_executor(self._workers, self._render, ok.cmd, file, peer.mode)
        fut.add_done_callback(functools.partial(self._downloaded, peer, ok.cmd, file, waiter))
        return waiter

    def _render(self, cmd: str, file: dict[str, Any], mode: Mode) -> bytes:
        body = self.blobs.read(file["sha256"], file["size"])
        return download_reply(cmd, file, body, mode)

    def _downloaded(
        self,
        peer: Peer,
        cmd: str,
        file: dict[str, Any],
        waiter: asyncio.Future[None],
        fut: asyncio.Future[bytes],
    ) -> None:
        reply: Event
        try:
            reply = Rendered(fut.result())
        except BodyMissing:  # its message expired while the download started
            reply = Error(Code.NO_SUCH_MESSAGE, f"no file {file['id']}", cmd)
        except Exception as e:
            log.error("file.read_failed", file=file["id"], sha256=file["sha256"], error=str(e))
            reply = Error(Code.INTERNAL, "the file cannot be read; logged", cmd)
        if not peer.closing:  # a big reply raises the send-buffer limit (Hub._write)
            self.apply(peer, Outcome(replies=[reply]))
        waiter.set_result(None)

    # Bodies ------------------------------------------------------------------------

    def collect(self) -> None:
        """Deletes bodies that lost their last file row (after retention, a deleted
        room), unless an upload of the same content is being committed."""
        chat = self._chat
        for sha in chat.files.take_dead_bodies():
            if not self._finishing[sha] and not chat.files.in_use(sha):
                self._delete(sha)

    def _delete(self, sha256: str) -> None:
        log.info("file.body_deleted", sha256=sha256)
        self.thread.submit(self.blobs.delete, sha256)

    def committing(self, sha256: str, waiter: asyncio.Future[None]) -> None:
        """An upload of this content is being committed: keep its body meanwhile."""
        self._finishing[sha256] += 1
        self._pending.add(waiter)
        waiter.add_done_callback(self._pending.discard)

    def committed(self, ticket: UploadTicket, body: Body, peer: Peer, error: str | None) -> None:
        """The body is stored (or `error` says why not): the core finishes the upload,
        and the body goes if, refused, no file row names it."""
        if error is None:
            out = self._chat.finish_upload(peer, ticket, body, self._clock())
        else:
            out = Outcome(replies=[Error(Code.INTERNAL, _STORE_FAILED, ticket.verb)])
        self.apply(peer, out)
        sha256 = body.sha256
        self._finishing[sha256] -= 1
        if self._finishing[sha256] <= 0:
            del self._finishing[sha256]
            if not self._chat.files.in_use(sha256):
                self._delete(sha256)  # stored, then refused at finish: nobody names it
        self.collect()

    async def drain(self) -> None:
        """Waits for uploads whose data ended to be stored and answered."""
        while self._pending:
            await asyncio.wait(list(self._pending))

    def close(self) -> None:
        self.thread.shutdown(wait=True)


class UploadSession:
    """One connection's upload: the data lines up to `.`, then storing and answering.

    `refusal` is set when the `upload` line itself was refused: the data is then only
    skipped, and the refusal is the reply after the `.` (one command, one reply)."""

    def __init__(
        self, files: Files, peer: Peer, ticket: UploadTicket | None, refusal: Error | None
    ) -> None:
        self._files = files
        self._peer = peer
        self._ticket = ticket
        self._refusal = refusal
        self._loop = files.loop
        self._receiving = True
        self._unwritten = 0  # bytes handed to the file thread, not yet written
        self._behind = False  # the disk is behind: more than MAX_UNWRITTEN unwritten
        self._yielding = False  # reading skips a loop turn after each socket read
        self._paused = False  # reading is paused by this upload (one of the above)
        self._io_error = False
        # Data that stops coming: after `limits.upload_idle_s` without a line the
        # temporary file is deleted and the connection closed (`_idle`).
        self._last = self._loop.time()
        self._idle_timer: asyncio.TimerHandle | None = self._loop.call_later(
            files.config.limits.upload_idle_s, self._idle
        )
        if ticket is not None:
            self.decoder = UploadDecoder(ticket.limit, ticket.too_large)
            self._temp: TempBody | None = files.blobs.temp()
        else:
            assert refusal is not None
            self.decoder = UploadDecoder(0)
            self.decoder.fail(refusal.code, refusal.message)
            self._temp = None

    def feed(self, queue: deque[str | FrameError]) -> bool:
        """Takes the framed lines of the data from the left of `queue`; True when the
        terminating `.` was among them (the lines after it stay in `queue`)."""
        dec = self.decoder
        self._last = self._loop.time()
        if dec.feed_from(queue):
            return True
        if dec.buffered >= WRITE_CHUNK:
            self._write(dec.take())
        if not self._yielding:
            # uvloop reads a busy socket up to 32 times in a row: without this turn
            # off, megabytes of one upload would be handled before anyone else's line.
            self._yielding = True
            self._loop.call_soon(self._yielded)
        self._reading()
        return False

    def _yielded(self) -> None:
        self._yielding = False
        self._reading()

    def _reading(self) -> None:
        """Pauses or resumes reading the socket as the yield and the disk say, while
        the data is coming (after the `.`, the connection's wait owns reading)."""
        transport = self._peer.transport
        if not self._receiving or transport is None or self._peer.closing:
            return
        pause = self._yielding or self._behind
        if pause != self._paused:
            self._paused = pause
            if pause:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _write(self, data: bytes) -> None:
        temp = self._temp
        assert temp is not None
        self._unwritten += len(data)
        fut = self._loop.run_in_executor(self._files.thread, temp.write, data)
        fut.add_done_callback(functools.partial(self._written, len(data)))
        if self._unwritten > MAX_UNWRITTEN:
            self._behind = True

    def _written(self, n: int, fut: asyncio.Future[None]) -> None:
        self._unwritten -= n
        if not fut.cancelled() and fut.exception() is not None and not self._io_error:
            self._io_error = True
            log.error("file.write_failed", session=self._peer.id, error=str(fut.exception()))
            if self._receiving:
                self.decoder.fail(Code.INTERNAL, _STORE_FAILED)
        if self._behind and self._unwritten <= MAX_UNWRITTEN // 2:
            self._behind = False
            self._reading()

    def _resume(self) -> None:
        """The data ended without a wait: reading is the connection's again."""
        if self._paused:
            self._paused = False
            if self._peer.transport is not None and not self._peer.closing:
                self._peer.transport.resume_reading()

    def finish(self) -> asyncio.Future[None] | None:
        """The `.` arrived. Refused data is answered at once (None); otherwise the body
        is committed on the file thread and the future is done once the reply (or the
        ERR) is queued. Reading stays paused until then if the disk was behind."""
        self._receiving = False
        self._stop_idle_timer()
        files = self._files
        dec = self.decoder
        ticket = self._ticket
        error = self._refusal
        if error is None and dec.error is not None:
            error = Error(dec.error.code, dec.error.message, ticket.verb if ticket else None)
        if error is not None or ticket is None:
            assert error is not None
            self._discard()
            self._resume()
            files.apply(self._peer, Outcome(replies=[error]))
            return None
        data = dec.take()
        if data:
            self._write(data)
        temp = self._temp
        assert temp is not None
        self._temp = None
        body = Body(dec.size, dec.sha256)
        waiter: asyncio.Future[None] = self._loop.create_future()
        files.committing(body.sha256, waiter)
        fut = self._loop.run_in_executor(files.thread, temp.commit, body.size, body.sha256)
        fut.add_done_callback(functools.partial(self._stored, ticket, body, waiter))
        return waiter

    def _stored(
        self,
        ticket: UploadTicket,
        body: Body,
        waiter: asyncio.Future[None],
        fut: asyncio.Future[bool],
    ) -> None:
        error: str | None = None
        try:
            new = fut.result()
        except Exception as e:
            error = str(e)
            log.error("file.store_failed", session=self._peer.id, error=error)
        else:
            log.info("file.stored", sha256=body.sha256, size=body.size, new=new)
        # The upload counts from its `.` on, even if the connection closed since.
        self._files.committed(ticket, body, self._peer, error)
        waiter.set_result(None)

    def abort(self) -> None:
        """The connection closed before the `.`: nothing of the upload is kept."""
        if self._receiving:
            self._receiving = False
            self._stop_idle_timer()
            self._discard()

    def _idle(self) -> None:
        """No data line for `upload_idle_s`: the upload is dropped (its temporary file
        deleted, its quota released) and the connection closed with a notice."""
        self._idle_timer = None
        if not self._receiving or self._peer.closing:
            return
        limit = self._files.config.limits.upload_idle_s
        quiet = self._loop.time() - self._last
        if quiet < limit:  # data came meanwhile: look again when it could be idle
            self._idle_timer = self._loop.call_later(limit - quiet, self._idle)
            return
        log.info("file.upload_idle", session=self._peer.id, idle_s=round(quiet, 1))
        self.abort()
        self._files.apply(self._peer, Outcome(closes=[(self._peer, UploadTimeout(f"{limit:g}"))]))

    def _stop_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _discard(self) -> None:
        if self._temp is not None:
            self._files.thread.submit(self._temp.discard)
            self._temp = None
