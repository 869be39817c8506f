"""Prometheus metrics without a client library: a registry, an event-loop lag probe, and a
tiny HTTP endpoint serving the text exposition format 0.0.4.

The hot path is the daemon's message fan-out, so recording must cost next to nothing:
`counter.value += 1` (or `counter.inc()`) is a plain attribute add with no lock (everything
runs on the event loop thread) and no allocation. Labelled children are looked up once with
`family.labels(...)` and kept by the caller; formatting happens only when scraped.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import resource
import socket
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from chatd import logs

_log = logs.get_logger("chatd.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds; spans a fast group commit (sub-millisecond) to a disk stall.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


class Counter:
    """Only goes up; `value += n` directly is the cheapest way to count."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


class Gauge:
    """A value that goes up and down, e.g. connections open."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0

    def set(self, value: float) -> None:
        self.value = value

    def inc(self, amount: float = 1) -> None:
        self.value += amount

    def dec(self, amount: float = 1) -> None:
        self.value -= amount


class Histogram:
    """Counts observations into fixed buckets; cumulated only when rendered."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: Sequence[float] = LATENCY_BUCKETS) -> None:
        upper = tuple(float(b) for b in buckets)
        if not upper or list(upper) != sorted(set(upper)) or math.isinf(upper[-1]):
            raise ValueError("histogram buckets must be finite, increasing and not empty")
        self.buckets = upper
        #: Non-cumulative: counts[i] holds observations in (buckets[i-1], buckets[i]];
        #: the last slot is the +Inf bucket.
        self.counts = [0] * (len(upper) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


M = TypeVar("M", Counter, Gauge, Histogram)


class Family(Generic[M]):
    """One metric with labels: a child per distinct label-value tuple.

    Keep label values to a small fixed set (chat kinds, error codes); every distinct tuple
    is a time series kept forever.
    """

    __slots__ = ("_children", "_factory", "labelnames")

    def __init__(self, labelnames: Sequence[str], factory: Callable[[], M]) -> None:
        self.labelnames = tuple(labelnames)
        self._factory: Callable[[], M] = factory
        self._children: dict[tuple[str, ...], tuple[M, str]] = {}

    def labels(self, *values: str) -> M:
        """The child for these label values (in `labelnames` order), created on first use."""
        entry = self._children.get(values)
        if entry is None:
            if len(values) != len(self.labelnames):
                raise ValueError(f"expected labels {self.labelnames}, got {values!r}")
            rendered = ",".join(
                f'{n}="{_escape_label(v)}"' for n, v in zip(self.labelnames, values, strict=True)
            )
            entry = (self._factory(), rendered)
            self._children[values] = entry
        return entry[0]

    def children(self) -> Iterator[tuple[str, M]]:
        """(rendered labels, child) in creation order."""
        for child, rendered in self._children.values():
            yield rendered, child


_Source = Counter | Gauge | Histogram | Family[Counter] | Family[Gauge] | Family[Histogram]
_S = TypeVar("_S", Counter, Gauge, Histogram, Family[Counter], Family[Gauge], Family[Histogram])


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str
    help: str
    type: str  # "counter" | "gauge" | "histogram"
    source: _Source | Callable[[], float]


@dataclass(slots=True)
class Registry:
    """The metrics one endpoint exposes, rendered in registration order."""

    _entries: dict[str, _Entry] = field(default_factory=dict)

    def counter(self, name: str, help: str) -> Counter:
        return self._add(name, help, "counter", Counter())

    def gauge(self, name: str, help: str) -> Gauge:
        return self._add(name, help, "gauge", Gauge())

    def histogram(
        self, name: str, help: str, buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> Histogram:
        return self._add(name, help, "histogram", Histogram(buckets))

    def counter_family(self, name: str, help: str, labelnames: Sequence[str]) -> Family[Counter]:
        return self._add(name, help, "counter", Family(_labels(labelnames), Counter))

    def gauge_family(self, name: str, help: str, labelnames: Sequence[str]) -> Family[Gauge]:
        return self._add(name, help, "gauge", Family(_labels(labelnames), Gauge))

    def histogram_family(
        self,
        name: str,
        help: str,
        labelnames: Sequence[str],
        buckets: Sequence[float] = LATENCY_BUCKETS,
    ) -> Family[Histogram]:
        names = _labels(labelnames)
        if "le" in names:
            raise ValueError("'le' is reserved for histogram buckets")
        Histogram(buckets)  # validates the buckets now rather than on first use
        return self._add(name, help, "histogram", Family(names, lambda: Histogram(buckets)))

    def gauge_callback(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A gauge read at scrape time (sessions online, queue depth): zero hot-path cost."""
        self._register(_Entry(name, help, "gauge", read))

    def counter_callback(self, name: str, help: str, read: Callable[[], float]) -> None:
        """A counter kept elsewhere (e.g. CPU seconds) and read at scrape time."""
        self._register(_Entry(name, help, "counter", read))

    def _add(self, name: str, help: str, type_: str, source: _S) -> _S:
        self._register(_Entry(name, help, type_, source))
        return source

    def _register(self, entry: _Entry) -> None:
        if not _NAME.match(entry.name):
            raise ValueError(f"invalid metric name {entry.name!r}")
        if entry.name in self._entries:
            raise ValueError(f"metric {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def render(self) -> str:
        """The whole registry in the Prometheus text format 0.0.4."""
        lines: list[str] = []
        for entry in self._entries.values():
            lines.append(f"# HELP {entry.name} {_escape_help(entry.help)}")
            lines.append(f"# TYPE {entry.name} {entry.type}")
            _render_source(lines, entry.name, entry.source)
        lines.append("")
        return "\n".join(lines)


def _render_source(lines: list[str], name: str, source: _Source | Callable[[], float]) -> None:
    if isinstance(source, Counter | Gauge):
        lines.append(f"{name} {_fmt(source.value)}")
    elif isinstance(source, Histogram):
        _render_histogram(lines, name, "", source)
    elif isinstance(source, Family):
        for labels, child in source.children():
            if isinstance(child, Histogram):
                _render_histogram(lines, name, labels, child)
            else:
                lines.append(f"{name}{{{labels}}} {_fmt(child.value)}")
    else:
        try:
            value = source()
        except Exception:
            _log.exception("metrics_callback_failed", metric=name)
            value = math.nan
        lines.append(f"{name} {_fmt(value)}")


def _render_histogram(lines: list[str], name: str, labels: str, h: Histogram) -> None:
    prefix = labels + "," if labels else ""
    cumulative = 0
    for upper, n in zip((*h.buckets, math.inf), h.counts, strict=True):
        cumulative += n
        lines.append(f'{name}_bucket{{{prefix}le="{_fmt(upper)}"}} {cumulative}')
    suffix = "{" + labels + "}" if labels else ""
    lines.append(f"{name}_sum{suffix} {_fmt(h.sum)}")
    lines.append(f"{name}_count{suffix} {cumulative}")


def _labels(names: Sequence[str]) -> tuple[str, ...]:
    names = tuple(names)
    for n in names:
        if not _LABEL.match(n) or n.startswith("__"):
            raise ValueError(f"invalid label name {n!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate label names in {names!r}")
    return names


def _fmt(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@dataclass(frozen=True, slots=True)
class ChatdMetrics:
    """The daemon's own metrics, declared in one place so names stay consistent.

    Resolve labelled children once (e.g. `sent_group = m.messages_sent.labels("group")`)
    and keep them; then each event is one attribute add.
    """

    registry: Registry
    connections_accepted: Counter
    messages_sent: Family[Counter]
    errors: Family[Counter]
    store_commit_seconds: Histogram
    loop_lag_seconds: Histogram

    @classmethod
    def create(cls, registry: Registry | None = None) -> ChatdMetrics:
        reg = Registry() if registry is None else registry
        register_process_metrics(reg)
        return cls(
            registry=reg,
            connections_accepted=reg.counter(
                "chatd_connections_accepted_total", "TCP and TLS connections accepted."
            ),
            messages_sent=reg.counter_family(
                "chatd_messages_sent_total", "Chat messages accepted, by chat kind.", ("kind",)
            ),
            errors=reg.counter_family(
                "chatd_errors_total", "Error replies sent to clients, by error code.", ("code",)
            ),
            store_commit_seconds=reg.histogram(
                "chatd_store_commit_seconds", "Time to commit one group of writes to SQLite."
            ),
            loop_lag_seconds=reg.histogram(
                "chatd_event_loop_lag_seconds", "How late a timer on the event loop fires."
            ),
        )


def register_process_metrics(registry: Registry) -> None:
    """The standard process_* series dashboards expect, read at scrape time (Linux)."""
    start = time.time()
    registry.gauge_callback(
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        lambda: start,
    )
    registry.counter_callback(
        "process_cpu_seconds_total",
        "Total user and system CPU time spent in seconds.",
        _cpu_seconds,
    )
    registry.gauge_callback(
        "process_resident_memory_bytes", "Resident memory size in bytes.", _resident_bytes
    )
    registry.gauge_callback("process_open_fds", "Number of open file descriptors.", _open_fds)
    registry.gauge_callback(
        "process_max_fds",
        "Maximum number of open file descriptors.",
        lambda: float(resource.getrlimit(resource.RLIMIT_NOFILE)[0]),
    )


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _resident_bytes() -> float:
    with open("/proc/self/statm", "rb") as f:
        return float(int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))


def _open_fds() -> float:
    return float(len(os.listdir("/proc/self/fd")))


class LoopLagProbe:
    """Measures how late a `call_at` timer fires: the time the loop spent busy elsewhere.

    A lag near `interval_s` or more means callbacks (and so every client) wait that long;
    it is the first number to look at when latency rises.
    """

    __slots__ = ("_due", "_handle", "_loop", "histogram", "interval_s", "last")

    def __init__(
        self, histogram: Histogram, *, interval_s: float = 0.5, last: Gauge | None = None
    ) -> None:
        self.histogram = histogram
        self.interval_s = interval_s
        self.last = last
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = 0.0

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        """Starts probing; call from within the running loop."""
        if self._handle is None:
            self._loop = asyncio.get_running_loop()
            self._schedule(self._loop)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._due = loop.time() + self.interval_s
        self._handle = loop.call_at(self._due, self._fire)

    def _fire(self) -> None:
        loop = self._loop
        assert loop is not None
        # asyncio may run a timer up to one clock tick early; that is no lag.
        lag = max(0.0, loop.time() - self._due)
        self.histogram.observe(lag)
        if self.last is not None:
            self.last.value = lag
        self._schedule(loop)


MAX_REQUEST_BYTES = 8192
REQUEST_TIMEOUT_S = 5.0


async def start_metrics_server(
    host: str,
    port: int,
    render: Callable[[], str],
    *,
    sock: socket.socket | None = None,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
    max_request_bytes: int = MAX_REQUEST_BYTES,
) -> asyncio.Server:
    """Serves `GET /metrics` (HEAD too) with `render()`; 404 elsewhere; one request per
    connection. A request head over `max_request_bytes` gets 431, and a client that has
    not been answered within `request_timeout_s` is cut off, so a slow or hostile scraper
    cannot pin connections. With `sock` (e.g. from socket activation) host/port are unused.
    """

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(request_timeout_s):
                await _exchange(reader, writer, render)
                writer.close()
                await writer.wait_closed()
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
        except Exception:
            _log.exception("metrics_request_failed")
            writer.transport.abort()

    if sock is not None:
        return await asyncio.start_server(handle, sock=sock, limit=max_request_bytes)
    return await asyncio.start_server(handle, host, port, limit=max_request_bytes)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, render: Callable[[], str]
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return  # the client went away before finishing its request
    except asyncio.LimitOverrunError:
        writer.write(_response(431, "Request Header Fields Too Large", "request too large\n"))
        await writer.drain()
        return
    status, reason, body, head_only = _route(head, render)
    writer.write(_response(status, reason, body, head_only=head_only))
    await writer.drain()


def _route(head: bytes, render: Callable[[], str]) -> tuple[int, str, str, bool]:
    request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = request_line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return 400, "Bad Request", "bad request\n", False
    method, target, _ = parts
    if target.split("?", 1)[0] != "/metrics":
        return 404, "Not Found", "not found; try /metrics\n", False
    if method not in ("GET", "HEAD"):
        return 405, "Method Not Allowed", "use GET\n", False
    try:
        body = render()
    except Exception:
        _log.exception("metrics_render_failed")
        return 500, "Internal Server Error", "rendering metrics failed\n", False
    return 200, "OK", body, method == "HEAD"


def _response(status: int, reason: str, body: str, *, head_only: bool = False) -> bytes:
    payload = body.encode()
    content_type = CONTENT_TYPE if status == 200 else "text/plain; charset=utf-8"
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(payload)}\r\n"
        + ("Allow: GET, HEAD\r\n" if status == 405 else "")
        + "Connection: close\r\n\r\n"
    ).encode("latin-1")
    return head if head_only else head + payload
