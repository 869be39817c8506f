"""systemd integration without libsystemd: the notify protocol, the watchdog, socket activation.

systemd's protocols are small enough to speak directly (a datagram of `KEY=value` lines to
$NOTIFY_SOCKET; inherited descriptors from fd 3 on), so chatd needs no extra dependency.
Everything here is a no-op when the variables are unset, so the daemon calls it
unconditionally and behaves the same outside systemd.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass

from chatd import logs

_log = logs.get_logger("chatd.systemd")

LISTEN_FDS_START = 3  # SD_LISTEN_FDS_START: systemd passes sockets from this descriptor on


class Notifier:
    """Sends sd_notify(3) state changes to systemd; does nothing when NOTIFY_SOCKET is unset.

    Sending never raises: a lost notification must not take the daemon down, so failures
    are logged instead. The socket is non-blocking because notifications are sent from the
    event loop, which must not stall on a full systemd queue.
    """

    __slots__ = ("_address", "_sock", "watchdog_interval_s")

    def __init__(self, address: str | None, watchdog_interval_s: float | None = None) -> None:
        """`address` as in $NOTIFY_SOCKET (a path, or `@name` for the abstract namespace)."""
        self._address: str | None = None
        self._sock: socket.socket | None = None
        #: The WatchdogSec= timeout in seconds; None when systemd expects no watchdog pings.
        self.watchdog_interval_s = watchdog_interval_s
        if not address:
            return
        if address.startswith("@"):
            self._address = "\0" + address[1:]
        elif address.startswith("/"):
            self._address = address
        else:
            _log.warning("systemd_notify_socket_unsupported", notify_socket=address)
            return
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        sock.setblocking(False)
        self._sock = sock

    @classmethod
    def from_env(
        cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True
    ) -> Notifier:
        """Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, then removes them (as
        sd_notify(unset_environment=1) does) so child processes do not talk to systemd
        on the daemon's behalf."""
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET")
        interval = _watchdog_interval(env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID"))
        if unset:
            for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
                env.pop(name, None)
        return cls(address, interval)

    @property
    def enabled(self) -> bool:
        """True when running under systemd with Type=notify."""
        return self._sock is not None

    def notify(self, *assignments: str) -> bool:
        """Sends `KEY=value` lines as one datagram; returns whether it was sent."""
        if self._sock is None or self._address is None:
            return False
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as e:
            _log.warning("systemd_notify_failed", error=str(e), message=assignments[0])
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: systemd finishes `systemctl start/reload`."""
        if status is None:
            return self.notify("READY=1")
        return self.notify("READY=1", _status(status))

    def status(self, text: str) -> bool:
        """A one-line state shown by `systemctl status`, e.g. the sessions online."""
        return self.notify(_status(text))

    def reloading(self) -> bool:
        """A reload began; MONOTONIC_USEC lets systemd tell this reload from an older one."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """Shutdown began, so systemd does not mistake the exit for a crash in progress."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Tells systemd the daemon is alive; sent from the event loop by `Watchdog`."""
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        """Releases the socket; later notifications are dropped silently."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _status(text: str) -> str:
    # One datagram line per assignment: a newline in the text would start a bogus key.
    return "STATUS=" + " ".join(text.splitlines())


def _watchdog_interval(usec: str | None, pid: str | None) -> float | None:
    if not usec:
        return None
    if pid and pid.strip() != str(os.getpid()):
        return None  # the watchdog is meant for another process (e.g. our parent)
    try:
        value = int(usec)
    except ValueError:
        _log.warning("systemd_watchdog_usec_invalid", watchdog_usec=usec)
        return None
    return value / 1_000_000 if value > 0 else None


class Watchdog:
    """Pings the systemd watchdog from the event loop every half WatchdogSec=.

    A `call_later` chain rather than a thread: if the loop is stuck, the pings stop and
    systemd kills and restarts the daemon, which is the point. An optional `status`
    callable refreshes STATUS= on the same tick (sent only when it changed).
    """

    __slots__ = ("_handle", "_last_status", "_loop", "_notifier", "_status", "period_s")

    def __init__(
        self,
        notifier: Notifier,
        *,
        status: Callable[[], str] | None = None,
        period_s: float | None = None,
    ) -> None:
        """`period_s` defaults to half the notifier's interval; None there means no pings
        (unless `status` is given, then the status alone is refreshed every 10 s)."""
        self._notifier = notifier
        self._status = status
        self._last_status: str | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        interval = notifier.watchdog_interval_s
        if period_s is None and interval is not None:
            period_s = interval / 2
        if period_s is None and status is not None and notifier.enabled:
            period_s = 10.0
        #: Seconds between ticks; None when there is nothing to send.
        self.period_s = period_s

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Pings once now and then every `period_s`; call from within the running loop."""
        if self._handle is not None or self.period_s is None:
            return
        self._loop = asyncio.get_running_loop()
        self._tick()

    def stop(self) -> None:
        """Stops the chain; idempotent. Call it last in shutdown so a hung stop still trips it."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _tick(self) -> None:
        if self._notifier.watchdog_interval_s is not None:
            self._notifier.watchdog()
        if self._status is not None:
            try:
                text = self._status()
            except Exception:
                _log.exception("systemd_status_failed")
            else:
                if text != self._last_status:
                    self._last_status = text
                    self._notifier.status(text)
        assert self._loop is not None and self.period_s is not None
        self._handle = self._loop.call_later(self.period_s, self._tick)


@dataclass(frozen=True, slots=True)
class ListenSocket:
    """A socket systemd opened for us, with its FileDescriptorName= ("unknown" if unnamed)."""

    name: str
    sock: socket.socket

    @property
    def fd(self) -> int:
        return self.sock.fileno()


def listen_fds(
    environ: MutableMapping[str, str] | None = None, *, unset: bool = True
) -> list[ListenSocket]:
    """The sockets passed by socket activation, as sd_listen_fds_with_names(3) finds them.

    Empty unless LISTEN_PID names this process (the variables may have leaked from a
    parent). The variables are removed afterwards, as with unset_environment=1, and the
    descriptors are marked close-on-exec, so children inherit neither. Raises ValueError
    when LISTEN_FDS is not a count.
    """
    env = os.environ if environ is None else environ
    pid, count, names = env.get("LISTEN_PID"), env.get("LISTEN_FDS"), env.get("LISTEN_FDNAMES")
    if unset:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            env.pop(name, None)
    if not pid or not count or pid.strip() != str(os.getpid()):
        return []
    try:
        n = int(count)
    except ValueError:
        raise ValueError(f"LISTEN_FDS is not a number: {count!r}") from None
    if n < 0:
        raise ValueError(f"LISTEN_FDS is negative: {n}")
    labels = names.split(":") if names else []
    if len(labels) != n:
        if names:
            _log.warning("systemd_listen_fdnames_mismatch", listen_fds=n, listen_fdnames=names)
        labels = ["unknown"] * n
    sockets = []
    for offset, label in enumerate(labels):
        fd = LISTEN_FDS_START + offset
        os.set_inheritable(fd, False)
        sockets.append(ListenSocket(label, socket.socket(fileno=fd)))
    return sockets
