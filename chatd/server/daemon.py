"""The daemon: wires config, store, core and hub together and owns the event loop's
side of things — listeners, connection limits, periodic work, signals, shutdown."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, MutableMapping
from pathlib import Path
from typing import cast
from zoneinfo import ZoneInfo

from chatd import logs
from chatd.cluster.forward import Standby
from chatd.config import Config, ConfigError, load
from chatd.core.chat import Chat
from chatd.core.flood import address_key
from chatd.core.model import Account
from chatd.core.outcome import Outcome
from chatd.protocol.events import GENERAL
from chatd.protocol.notices import Shutdown
from chatd.protocol.render import Renderer
from chatd.server import http as http_door
from chatd.server import irc as irc_door
from chatd.server.connection import Connection, DoorConnection
from chatd.server.context import Context
from chatd.server.counters import ServerMetrics
from chatd.server.hub import Hub
from chatd.server.listeners import Operations
from chatd.server.peer import Peer
from chatd.server.reader import MessageReader
from chatd.server.reload import ReloadResult, reconcile
from chatd.server.uploads import Files
from chatd.store.base import LeaseLost, Store
from chatd.store.open import cluster_address, open_store

log = logs.get_logger("chatd.daemon")

#: Messages read whole at start-up into the recent window (the rest is indexed only;
#: the window then trims to chat.recent_bytes).
RECENT_AT_START = 500

CURSOR_SAVE_INTERVAL_S = 1.0
#: How often what survived young collections is frozen, and how often a full collection
#: looks at everything frozen since (see `_freeze_survivors`).
GC_FREEZE_INTERVAL_S = 1.0
GC_FULL_INTERVAL_S = 3600.0


def _settle(acct: Account) -> None:
    """Each session of `acct`: what its client acknowledged (server/acks.py)."""
    for s in acct.sessions:
        assert isinstance(s, Peer)
        s.settle()


class Daemon:
    """One chatd process. `start()` listens; `stop()` drains and closes cleanly."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.time,
        store: Store | None = None,
        config_path: str | Path | None = None,
        overrides: Mapping[str, object] | None = None,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        """`config_path` and `overrides` (dotted keys, as from the command line) are
        what `reload` reads again; `environ` is where systemd's variables are read
        (default os.environ)."""
        self.config = config
        self.config_path = config_path
        self.overrides: dict[str, object] = dict(overrides or {})
        self.metrics = ServerMetrics()
        self.ops = Operations(self.metrics, environ)
        self.clock = clock
        self._store = store
        self._connections: set[DoorConnection] = set()
        self._per_ip: Counter[str] = Counter()
        self._session_ids = 0
        self._servers: list[asyncio.Server] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._stopped = asyncio.Event()
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self.port = 0
        self._wake_at: float | None = None
        self._wake_handle: asyncio.TimerHandle | None = None
        self._lost: LeaseLost | None = None

    # Life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        self.loop = asyncio.get_running_loop()
        self.ops.prepare(cfg)  # a bad TLS file fails before the database is opened
        store = self._store or await self._open_store(cfg)  # [store] backend
        self._store = store
        snapshot = store.load(recent=RECENT_AT_START)
        self.chat = Chat(cfg, snapshot, started=self.clock(), read=store.read)
        self.chat.server_stats = self.metrics.snapshot
        tz = ZoneInfo(cfg.server.timezone) if cfg.server.timezone else None
        self.renderer = Renderer(tz)
        self.hub = Hub(
            self.loop,
            self.chat,
            store,
            self.renderer,
            self.clock,
            metrics=self.metrics,
            inline_commit=cfg.store.synchronous == "normal",
        )
        self.hub.on_lease_lost = self._lease_lost
        self.workers = concurrent.futures.ThreadPoolExecutor(2, "chatd-work")
        # File bodies under data_dir/files, with an I/O thread of their own.
        self.files = Files(
            loop=self.loop,
            chat=self.chat,
            hub=self.hub,
            workers=self.workers,
            clock=self.clock,
            apply=self.apply,
        )
        self.files.start()
        self.ctx = Context(
            loop=self.loop,
            chat=self.chat,
            hub=self.hub,
            files=self.files,
            workers=self.workers,
            clock=self.clock,
            metrics=self.metrics,
            renderer=self.renderer,
            apply=self.apply,
            reader=MessageReader(self.loop, self.chat, self.workers),
        )
        self.metrics.watch(
            connections=lambda: len(self._connections),
            sessions=lambda: len(self.chat.topics.get(GENERAL, ())),
            users=lambda: len(self.chat.online),
            messages=lambda: len(self.chat.index),
            accounts=lambda: len(self.chat.accounts),
            slow_consumers=lambda: self.hub.slow_consumers,
        )
        self._servers.extend(await self.ops.listen(cfg, self._line_door))
        self.port = self.ops.port
        self._servers.extend(await self._listen_doors(cfg))
        self._servers.extend(await self.ops.listen_cluster(cfg))  # [cluster] port
        self._every(CURSOR_SAVE_INTERVAL_S, self._save_cursors)
        self._every(GC_FREEZE_INTERVAL_S, self._freeze_survivors)
        self._every(GC_FULL_INTERVAL_S, self._full_collection)
        self.tick()
        log.info(
            "server.listening",
            host=cfg.server.host,
            port=self.port,
            accounts=len(self.chat.accounts),
            messages=len(self.chat.index),
        )

    async def _open_store(self, cfg: Config) -> Store:
        """The configured store. On PostgreSQL with `[cluster] port`, a node that finds
        another holding the lease is a standby meanwhile: its doors pass every client
        on to that node (chatd/cluster/forward.py) until the lease is its own."""
        if cfg.store.backend != "postgres" or not cfg.cluster.port or self.ops.activated:
            return open_store(cfg)
        standby = Standby(cfg, self.ops.tls_context)
        loop = self.loop
        opened: asyncio.Future[Store] = loop.create_future()

        def settle(store: Store | None, error: BaseException | None) -> None:
            if opened.done():
                if store is not None:
                    store.close()
            elif error is not None:
                opened.set_exception(error)
            else:
                opened.set_result(cast(Store, store))

        def wait_for_lease() -> None:  # a thread: the loop serves the standby meanwhile
            def heard(writer: str) -> None:
                loop.call_soon_threadsafe(standby.writer_is, writer)

            store: Store | None = None
            error: BaseException | None = None
            try:
                store = open_store(cfg, on_standby=heard)
            except BaseException as e:  # handed to the loop as it is
                error = e
            try:
                loop.call_soon_threadsafe(settle, store, error)
            except RuntimeError:  # the loop is gone: the process is ending
                if store is not None:
                    store.close()

        threading.Thread(target=wait_for_lease, name="chatd-lease", daemon=True).start()
        try:
            return await opened
        finally:
            await standby.close(cluster_address(cfg))

    async def _listen_doors(self, cfg: Config) -> list[asyncio.Server]:
        """The other doors onto the same chat, each off while its port is 0."""
        host = cfg.server.host
        servers = await self.ops.listen_door(
            "telnet",
            cfg.telnet.host or host,
            cfg.telnet.port,
            lambda: Connection(self.ctx, self, telnet=True),
        )
        servers += await irc_door.listen(self.ctx, self, self.ops)  # [irc]
        assert self._store is not None
        servers += await http_door.listen(self.ctx, self._store, self.ops, cfg)  # [http]
        return servers

    def _line_door(self) -> Connection:
        """A connection of the main port (plain or TLS): byte-clean for nc and bots;
        a user whose telnet mangles 8-bit text is told about the telnet door."""
        return Connection(self.ctx, self, telnet_port=self.door_port("telnet"))

    def door_port(self, name: str) -> int:
        """The bound port of a door (`telnet`, `http`, `irc`, `http-tls`, ...), 0 if off."""
        return self.ops.door_ports.get(name, 0)

    async def serve_forever(self) -> None:
        """Handles signals (SIGHUP: reload) and tells systemd it is ready, until stopped."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self._on_signal, sig)
        self.loop.add_signal_handler(signal.SIGHUP, self._on_sighup)
        self.ops.ready(self.status_text)
        await self._stopped.wait()
        if self._lost is not None:
            raise self._lost  # the command line exits with status 1

    def _on_sighup(self) -> None:
        log.info("server.signal", signal="SIGHUP")
        self.reload()

    def status_text(self) -> str:
        """systemd's STATUS= line."""
        return (
            f"{len(self.chat.topics.get(GENERAL, ()))} sessions online, "
            f"{len(self.chat.online)} users, {len(self._connections)} connections"
        )

    def reload(self) -> ReloadResult:
        """Re-reads the config file with the start-up overrides and applies what can
        change live; a bad file keeps the running config (SIGHUP, `systemctl reload`)."""
        if self._stopping:
            return ReloadResult(False, error="shutting down")
        self.ops.reloading()
        try:
            new = load(self.config_path).with_overrides(self.overrides)
        except ConfigError as e:
            log.error("config.reload_failed", path=str(self.config_path), error=str(e))
            self.ops.reloaded(self.config, self.status_text())
            return ReloadResult(False, error=str(e))
        cfg, result = reconcile(self.config, new)
        if result.ignored:
            log.warning("config.reload_ignored", keys=list(result.ignored), reason="restart")
        self.config = self.chat.config = cfg
        logs.set_level(cfg.log.level)
        limits = cfg.limits
        for conn in self._connections:
            conn.set_limits(limits.max_line_bytes, limits.flood_burst, limits.flood_rate_per_s)
            peer = conn.peer
            if peer is not None and not peer.paused:  # paused: a raised limit until drained
                peer.buffer_limit = cfg.limits.send_buffer_bytes
        self.rearm()
        log.info("config.reloaded", path=str(self.config_path), applied=list(result.applied))
        self.ops.reloaded(cfg, self.status_text())
        return result

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("server.signal", signal=sig.name)
        task = asyncio.ensure_future(self.stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop accepting, tell every session, commit everything, close, within the
        configured shutdown timeout."""
        if self._stopping:
            return
        self._stop_accepting()
        notice = Shutdown()
        for conn in list(self._connections):
            if conn.peer is not None:
                self.apply(conn.peer, Outcome(closes=[(conn.peer, notice)]))
        self.hub.changes(self.chat.save_cursors())
        deadline = self.config.server.shutdown_timeout_s
        try:
            await asyncio.wait_for(self._drain_all(), deadline)
        except TimeoutError:
            log.warning("server.shutdown_timeout", connections=len(self._connections))
            self._abort_all()
            await asyncio.wait_for(self.hub.drain(), deadline)
        self.hub.close()
        self.files.close()
        self.workers.shutdown(wait=False)
        assert self._store is not None
        self._store.close()
        await self.ops.close()
        log.info("server.stopped")
        self._stopped.set()

    def _lease_lost(self, error: LeaseLost) -> None:
        """Another node took PostgreSQL's lease while this one's connection was down:
        nothing this node commits counts any more. Its clients are cut off at once
        (they come back through the balancer to the node that writes now) and the
        process ends with status 1, for its supervisor to start it again as a standby."""
        if self._stopping:
            return
        log.error("store.lease_lost", error=str(error))
        self._lost = error
        self._stop_accepting()
        self._abort_all()
        self._stopped.set()

    def _stop_accepting(self) -> None:
        """The first step of every stop: no new connections, no more timed work."""
        self._stopping = True
        self.ops.stopping()
        for server in self._servers:
            server.close()
        for timer in self._timers:
            timer.cancel()
        if self._wake_handle is not None:
            self._wake_handle.cancel()

    def _abort_all(self) -> None:
        """Cuts every connection at once, whatever it still had to send."""
        for conn in list(self._connections):
            if conn.peer is not None and conn.peer.transport is not None:
                conn.peer.transport.abort()

    async def _drain_all(self) -> None:
        await self.hub.drain()
        await self._all_closed.wait()
        await self.files.drain()
        await self.hub.drain()

    # Connections -----------------------------------------------------------------

    def admit(self, ip: str) -> str | None:
        """Why a new connection from `ip` is refused, or None to accept it."""
        limits = self.config.limits
        if self._stopping:
            return "the server is shutting down"
        if len(self._connections) >= limits.max_connections:
            return f"the server is full ({limits.max_connections} connections)"
        if self._per_ip[address_key(ip)] >= limits.max_connections_per_ip:  # IPv6: per /64
            return f"too many connections from {ip} (at most {limits.max_connections_per_ip})"
        return None

    def next_session_id(self) -> int:
        self._session_ids += 1
        return self._session_ids

    def opened(self, conn: DoorConnection) -> None:
        self._connections.add(conn)
        self.metrics.connections_accepted.value += 1
        self._all_closed.clear()
        self._per_ip[address_key(conn.ip)] += 1

    def closed(self, conn: DoorConnection) -> None:
        self._connections.discard(conn)
        if not self._connections:
            self._all_closed.set()
        unit = address_key(conn.ip)
        self._per_ip[unit] -= 1
        if self._per_ip[unit] <= 0:
            del self._per_ip[unit]
        assert conn.peer is not None
        self.apply(None, self.chat.close(conn.peer, self.clock()))

    def apply(self, peer: Peer | None, out: Outcome) -> None:
        """The one way an Outcome reaches the hub; `peer` is the acting session."""
        self.hub.apply(peer, out)
        if out.rearm:
            self.rearm()

    @property
    def connections(self) -> int:
        return len(self._connections)

    # Periodic work ---------------------------------------------------------------

    def _every(self, interval: float, fn: Callable[[], None]) -> None:
        def tick() -> None:
            try:
                fn()
            except Exception:
                log.exception("timer.failed", timer=fn.__name__)
            self._timers[index] = self.loop.call_later(interval, tick)

        index = len(self._timers)
        self._timers.append(self.loop.call_later(interval, tick))

    def _save_cursors(self) -> None:
        """Once a second: what each client acknowledged (server/acks.py), then the
        read positions that moved."""
        for acct in self.chat.online.values():
            _settle(acct)
        self.hub.changes(self.chat.save_cursors())

    @staticmethod
    def _freeze_survivors() -> None:
        """Moves what survived the young collections out of the cyclic GC's reach.

        Stored messages pile up in the old generation, and Python's full collection,
        due whenever it grew by a quarter, walks all of it on the loop: 20-65 ms pauses
        with a few tens of thousands of messages (issue 17), growing with the heap.
        Freezing is O(1); refcounting still frees what is frozen, only reference cycles
        in it wait for `_full_collection` (none showed up: collections here found 0).
        Only in a process that froze its start-up state (chatd/cli.py), not in tests."""
        if gc.get_freeze_count():
            gc.freeze()

    @staticmethod
    def _full_collection() -> None:
        """Once an hour, the cycles frozen since: one full collection, timed."""
        if not gc.get_freeze_count():
            return
        started = time.perf_counter()
        gc.unfreeze()
        found = gc.collect()
        gc.freeze()
        log.info("gc.full", collected=found, ms=round((time.perf_counter() - started) * 1000, 1))

    def tick(self) -> None:
        """Runs the core's due work (schedules, retention) and sleeps until the next.

        Tests with a fake clock move it and call this directly."""
        self._wake_at = self._wake_handle = None
        if self._stopping:
            return
        try:
            self.apply(None, self.chat.tick(self.clock()))
            self.files.collect()
        except Exception:
            log.exception("timer.failed", timer="tick")
        self.rearm()

    def rearm(self) -> None:
        """Re-aims the wake-up timer at the core's next due time, if that moved."""
        wake = self.chat.next_wakeup()
        if wake == self._wake_at or self._stopping:
            return
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_at = wake
        self._wake_handle = (
            None if wake is None else self.loop.call_later(max(0.0, wake - self.clock()), self.tick)
        )
