"""structlog set-up: journald's native protocol under systemd, JSON lines for other
collectors and shippers, readable output on a TTY.

Every action logs one event with fields (`message.sent user=… chat=… id=…`); message
text is never logged at info. Loggers are cached on first use (an uncached structlog
proxy costs microseconds per call on the hot path), so the level is not baked into
them: `set_level` changes it at run time for every logger (SIGHUP reload).

Under systemd (`JOURNAL_STREAM` names stdout) each event goes to journald as one
datagram in its native protocol, so warnings and errors keep their priority
(`journalctl -p warning`) and every field is searchable (`CHATD_EVENT=user.banned`).
The MESSAGE is the same JSON line as elsewhere, so `journalctl -o cat | jq` still works.
It is spoken directly (systemd-python is a C extension with no wheels): a datagram of
`KEY=value` lines to /run/systemd/journal/socket, per systemd's "Native Journal
Protocol" document.

For JSON lines and the journal, events skip structlog's processor chain (`_Fast`): the
line is built once with a pre-built encoder and a per-second timestamp prefix, and JSON
lines are written once per event-loop turn, and at most every WRITE_INTERVAL_S (50 ms)
while the loop is busy. Exceptions still take structlog's path, into the same output,
so the order of lines holds.

The events of BATCHED_EVENTS (`message.sent`) are one line per event-loop turn, not one
per call: the calls of a turn are held as they are
and rendered together at its end. One call gives the line it always gave; several give
one line with their `count` and, per field, the list of the values in call order
(`"id": [7, 8, 9]`). At `info` every sent message is such a call, and a line each cost
~13 µs with structlog's chain, still ~3 µs without it, against ~25 µs of server CPU per
message at 100 clients: the default logging cost 18-100 % of the throughput (issue 17).
In the journal the entry of a batch repeats a field for each distinct value
(`CHATD_USER=alice` matches it).
"""

from __future__ import annotations

import array
import asyncio
import atexit
import contextlib
import errno
import fcntl
import functools
import io
import json
import logging
import math
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TextIO

import structlog

_INFO = logging.INFO
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


class _Logger(structlog.BoundLoggerBase):
    """A bound logger that drops events below the process's current level."""

    min_level: ClassVar[int] = logging.INFO

    def _at(self, level: int, method: str, event: str | None, kw: dict[str, Any]) -> Any:
        if level < _Logger.min_level:
            return None
        return self._proxy_to_logger(method, event, **kw)

    def debug(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.DEBUG, "debug", event, kw)

    def info(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.INFO, "info", event, kw)

    def warning(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.WARNING, "warning", event, kw)

    def error(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.ERROR, "error", event, kw)

    def critical(self, event: str | None = None, **kw: Any) -> Any:
        return self._at(logging.CRITICAL, "critical", event, kw)

    def exception(self, event: str | None = None, **kw: Any) -> Any:
        kw.setdefault("exc_info", True)
        return self._at(logging.ERROR, "error", event, kw)


class Log:
    """A module's logger. It drops an event below the current level before structlog
    sees it: even a cached structlog proxy costs ~1.5 µs per call on the message path."""

    __slots__ = ("_log",)

    def __init__(self, name: str) -> None:
        self._log = structlog.get_logger(name)

    def debug(self, event: str, **kw: Any) -> None:
        if _Logger.min_level <= logging.DEBUG:
            sink = _Fast.sink
            if sink is None or "exc_info" in kw:
                self._log.debug(event, **kw)
            else:
                sink.emit("debug", event, kw)

    def info(self, event: str, **kw: Any) -> None:
        if _Logger.min_level <= _INFO:
            sink = _Fast.sink
            if sink is None or "exc_info" in kw:
                self._log.info(event, **kw)
            elif event in BATCHED_EVENTS:
                sink.hold(event, kw)
            else:
                sink.emit("info", event, kw)

    def warning(self, event: str, **kw: Any) -> None:
        if _Logger.min_level <= logging.WARNING:
            sink = _Fast.sink
            if sink is None or "exc_info" in kw:
                self._log.warning(event, **kw)
            else:
                sink.emit("warning", event, kw)

    def error(self, event: str, **kw: Any) -> None:
        if _Logger.min_level <= logging.ERROR:
            sink = _Fast.sink
            if sink is None or "exc_info" in kw:
                self._log.error(event, **kw)
            else:
                sink.emit("error", event, kw)

    def critical(self, event: str, **kw: Any) -> None:
        sink = _Fast.sink
        if sink is None or "exc_info" in kw:
            self._log.critical(event, **kw)
        else:
            sink.emit("critical", event, kw)

    def exception(self, event: str, **kw: Any) -> None:
        """An error with the current exception's traceback."""
        if _Logger.min_level <= logging.ERROR:
            self._log.exception(event, **kw)


def get_logger(name: str) -> Log:
    return Log(name)


def set_level(level: str) -> None:
    """Changes the level of every logger at once (SIGHUP reload)."""
    _Logger.min_level = LEVELS[level]


#: Where journald listens for native-protocol datagrams (sd_journal_send(3)).
JOURNAL_SOCKET = "/run/systemd/journal/socket"
#: syslog(3) priorities journald files events under: `journalctl -p warning` is 0-4.
PRIORITIES = {
    "debug": 7,
    "info": 6,
    "warning": 4,
    "warn": 4,
    "error": 3,
    "exception": 3,
    "critical": 2,
}
_PRIORITY_TEXT: dict[object, str] = {k: str(v) for k, v in PRIORITIES.items()}
#: Keys the journal entry carries in its own fields (PRIORITY, its own timestamp).
_OWN_KEYS = frozenset({"event", "level", "timestamp"})
_NOT_FIELD_CHARS = re.compile(r"[^A-Z0-9_]")
#: Datagrams above the socket's buffer fail with these; the payload then goes in a memfd.
_TOO_BIG = frozenset({errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN})
_SEALS = fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SEAL
_SNDBUF = 8 * 1024 * 1024  # as sd-journal asks; the kernel caps it at net.core.wmem_max


@functools.lru_cache(maxsize=1024)
def journal_field_name(key: str) -> str:
    """`CHATD_` plus the key as a valid journal field name (A-Z, 0-9, _; at most 64).

    The prefix keeps our fields apart from journald's own and can never start with `_`
    (trusted fields, which journald drops from clients) or a digit."""
    return ("CHATD_" + _NOT_FIELD_CHARS.sub("_", key.upper()))[:64]


def _field_value(value: object) -> str:
    if isinstance(value, str):
        return value if type(value) is str else str(value)  # a StrEnum: its value
    if type(value) is int:
        return str(value)
    return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))


def journal_fields(
    event_dict: Mapping[str, Any], message: str, identifier: str = "chatd"
) -> list[tuple[str, str]]:
    """The journal entry of one event: MESSAGE (the JSON line), PRIORITY from its level,
    SYSLOG_IDENTIFIER, CHATD_EVENT and one CHATD_<KEY> per field (JSON for non-strings)."""
    out = [
        ("MESSAGE", message),
        ("PRIORITY", _PRIORITY_TEXT.get(event_dict.get("level"), "6")),
        ("SYSLOG_IDENTIFIER", identifier),
    ]
    if "event" in event_dict:
        out.append(("CHATD_EVENT", _field_value(event_dict["event"])))
    for key, value in event_dict.items():
        if key not in _OWN_KEYS:
            out.append((journal_field_name(key), _field_value(value)))
    return out


def encode_native(fields: Iterable[tuple[str, str | bytes]]) -> bytes:
    """One datagram of journald's native protocol: `KEY=value\n` per field, or for a
    value with a newline (a traceback) the binary-safe `KEY\n`, its length as a 64-bit
    little-endian integer, the value, `\n`. Keys are ASCII (see journal_field_name).

    Runs of plain text fields are joined as text and encoded once: this runs for every
    event on the message path, and per-field encoding cost four times as much."""
    out: list[bytes] = []
    text: list[str] = []
    for key, value in fields:
        if isinstance(value, str) and "\n" not in value:
            text.append(f"{key}={value}\n")
            continue
        if text:
            out.append("".join(text).encode("utf-8", "surrogateescape"))
            text.clear()
        data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
        name = key.encode("ascii")
        if b"\n" in data:
            out.append(name + b"\n" + struct.pack("<Q", len(data)) + data + b"\n")
        else:
            out.append(name + b"=" + data + b"\n")
    if text:
        out.append("".join(text).encode("utf-8", "surrogateescape"))
    return b"".join(out)


def journal_stream_matches(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether `stream` is the journal stream systemd connected (JOURNAL_STREAM is
    `device:inode` of it). A redirected or piped stdout keeps the variable from the
    parent but not the inode, so it does not match and gets plain lines."""
    value = environ.get("JOURNAL_STREAM", "")
    dev, sep, ino = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return (int(dev), int(ino)) == (st.st_dev, st.st_ino)
    except (ValueError, OSError, io.UnsupportedOperation):
        return False


def output_kind(fmt: str, stream: TextIO, environ: Mapping[str, str]) -> str:
    """`journal`, `json` or `console` for `log.format` (auto, json, console) and the
    stream: auto is journal when the stream is the journal, console on a terminal,
    JSON lines otherwise. An explicit `json` stays JSON lines, also under systemd."""
    if fmt != "auto":
        return fmt
    if journal_stream_matches(stream, environ):
        return "journal"
    return "console" if stream.isatty() else "json"


def syslog_prefixed(text: str, level: str = "error", stream: TextIO | None = None) -> str:
    """`text` with a `<N>` priority on each line when `stream` (default stderr) is the
    journal: journald reads it (SyslogLevelPrefix=, on by default), so a line written
    before logging is set up, like `bad config`, still lands at its priority."""
    out = sys.stderr if stream is None else stream
    if not journal_stream_matches(out, os.environ):
        return text
    prefix = f"<{PRIORITIES.get(level, 6)}>"
    return "\n".join(prefix + line for line in text.split("\n"))


class JournalRenderer:
    """The last processor under journald: the JSON line and the native datagram."""

    __slots__ = ("_identifier", "_json")

    def __init__(self, identifier: str = "chatd") -> None:
        self._identifier = identifier
        self._json = structlog.processors.JSONRenderer()

    def __call__(
        self, logger: object, name: str, event_dict: structlog.typing.EventDict
    ) -> tuple[tuple[bytes, str], dict[str, Any]]:
        line = str(self._json(logger, name, event_dict))
        datagram = encode_native(journal_fields(event_dict, line, self._identifier))
        return (datagram, line), {}


class JournalLogger:
    """Sends each rendered event to journald; falls back to the JSON line on `fallback`
    (stdout, the journal's stream) if journald cannot be reached, so nothing is lost.

    One blocking datagram socket, connected once (an unconnected sendto looks the path
    up every time: twice the cost): journald reads fast, and a full queue should slow the
    daemon as a full stdout pipe would, not drop lines. If journald restarts, the next
    event connects again."""

    __slots__ = ("_address", "_fallback", "_sndbuf", "_sock")

    def __init__(self, address: str, fallback: TextIO, *, sndbuf: int = _SNDBUF) -> None:
        self._address = address
        self._fallback = fallback
        self._sndbuf = sndbuf
        self._sock: socket.socket | None = None

    def send(self, datagram: bytes, line: str) -> None:
        for _attempt in range(2):
            try:
                sock = self._sock or self._connect()
                try:
                    sock.send(datagram)
                except OSError as e:
                    if e.errno not in _TOO_BIG:
                        raise
                    self._send_memfd(sock, datagram)
                return
            except OSError:
                self.close()  # journald restarted, say: connect again, once
        self._fallback.write(line + "\n")
        self._fallback.flush()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._sndbuf)
            sock.connect(self._address)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        return sock

    @staticmethod
    def _send_memfd(sock: socket.socket, datagram: bytes) -> None:
        """A payload too big for one datagram goes as a sealed memfd (as sd-journal does)."""
        fd = os.memfd_create("chatd-journal", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            view = memoryview(datagram)
            while view:
                view = view[os.write(fd, view) :]
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, _SEALS)
            sock.sendmsg([], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    # structlog calls the method named after the level; all of them send.
    debug = info = msg = warning = error = critical = exception = send


def _json_fallback(obj: object) -> str:
    """As structlog's JSONRenderer: an object JSON cannot encode is written as its repr."""
    return repr(obj)


#: structlog's JSONRenderer output (json.dumps with a repr fallback), but built once:
#: json.dumps with any argument builds a new encoder for every call.
_encode_json = json.JSONEncoder(default=_json_fallback).encode
_escape = json.encoder.encode_basestring_ascii
_json_keys: dict[str, str] = {}  # a key as JSON, and ": " (keys are a small, fixed set)


def encode_json_line(event_dict: Mapping[str, Any]) -> str:
    """The same text as json.dumps(event_dict), in half the time for the usual event
    (str, int, bool, finite float and None values; anything else goes to the encoder):
    an event's fields are few and flat, and the encoder's set-up per call outweighs the
    work."""
    inner = _json_members(event_dict)
    return _encode_json(event_dict) if inner is None else "{" + inner + "}"


def _json_members(fields: Mapping[str, Any]) -> str | None:
    """`"key": value, ...` of flat fields as json.dumps writes them; None when a value
    (or a key) needs the encoder."""
    parts = []
    for key, value in fields.items():
        name = _json_keys.get(key)
        if name is None:
            if type(key) is not str:
                return None
            name = _json_keys.setdefault(key, _escape(key) + ": ")
        kind = type(value)
        if kind is str:
            parts.append(name + _escape(value))
        elif kind is int:
            parts.append(name + int.__repr__(value))
        elif value is None:
            parts.append(name + "null")
        elif kind is bool:  # session.opened, user.login, user.created: every login
            parts.append(name + ("true" if value else "false"))
        elif kind is float and math.isfinite(value):
            parts.append(name + float.__repr__(value))
        else:
            return None
    return ", ".join(parts)


_json_tails: dict[tuple[str, str], str] = {}  # (event, level): its part of the line


def event_json_line(fields: Mapping[str, Any], event: str, level: str, timestamp: str) -> str:
    """encode_json_line of `fields` followed by event, level and timestamp, without
    adding them to `fields`: a login logs five events, and growing each one's dict
    (and the garbage that leaves) cost more than the text."""
    inner = None if "level" in fields or "timestamp" in fields else _json_members(fields)
    if inner is None:  # ours overwrite a caller's, in its place, as structlog's would
        merged = {**fields, "event": event, "level": level, "timestamp": timestamp}
        return encode_json_line(merged)
    tail = _json_tails.get((event, level))
    if tail is None:
        tail = f'"event": {_escape(event)}, "level": {_escape(level)}, "timestamp": '
        if len(_json_tails) < 1024:
            _json_tails[event, level] = tail
    head = "{" + inner + ", " if inner else "{"
    return head + tail + _escape(timestamp) + "}"


class _UtcStamp:
    """structlog's `TimeStamper(fmt="iso", utc=True)` text, with the part up to the
    seconds formatted once per second."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def now(self) -> str:
        t = time.time_ns() // 1000
        second, micros = divmod(t, 1_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
            self._second = second
        return f"{self._prefix}{micros:06d}Z"


#: Events logged once per event-loop turn (see the module's docstring): one per message.
#: Not the connection and login events: a login storm is a loop turn per login, so their
#: batches held one call each and only added work (13.5 -> 14.3 µs a login as JSON
#: lines, 37 -> 44 µs into the journal, bench/log_cost.py).
BATCHED_EVENTS = frozenset({"message.sent"})
_URGENT = frozenset({"error", "critical"})


class _Batch:
    """The calls of one batched event in one loop turn, held until the turn ends."""

    __slots__ = ("calls", "event", "level", "timestamp")

    def __init__(self, event: str, level: str, timestamp: str) -> None:
        self.event = event
        self.level = level
        self.timestamp = timestamp  # the first call's
        self.calls: list[dict[str, Any]] = []

    def fields(self) -> dict[str, Any]:
        """The event's fields: one call's own, or `count` and a list per field."""
        calls = self.calls
        if len(calls) == 1:
            out = calls[0]
        else:
            out = {"count": len(calls)}
            keys = calls[0].keys()
            try:
                if any(len(kw) != len(keys) for kw in calls):
                    raise KeyError
                for key in keys:  # the usual case: every call has the same fields
                    out[key] = [kw[key] for kw in calls]
            except KeyError:
                for key in dict.fromkeys(k for kw in calls for k in kw):
                    out[key] = [kw.get(key) for kw in calls]
        out["event"] = self.event
        out["level"] = self.level
        out["timestamp"] = self.timestamp
        return out


def batch_journal_fields(
    fields: Mapping[str, Any], message: str, identifier: str = "chatd"
) -> list[tuple[str, str]]:
    """journal_fields for a batch's fields: a list field gives one journal field per
    distinct value (journald keeps repeated fields, and a match on any of them finds the
    entry), others as in journal_fields."""
    plain = {k: v for k, v in fields.items() if type(v) is not list}
    out = journal_fields(plain, message, identifier)
    for key, value in fields.items():
        if type(value) is list:
            name = journal_field_name(key)
            out.extend((name, _field_value(v)) for v in dict.fromkeys(value) if v is not None)
    return out


#: JSON lines: a busy loop writes at most this often; the lines of the turns meanwhile
#: wait and go out in one write. The first turn after a quiet spell writes at its end. (A
#: login storm is a loop turn per login: a write each cost more than its three lines.)
WRITE_INTERVAL_S = 0.05


class _TurnSink:
    """Holds the calls of batched events until the end of the event-loop turn (or at
    once without a running loop). Subclasses write them, and their other lines."""

    __slots__ = ("__weakref__", "_batches", "_lock", "_pending", "_stamp")

    def __init__(self) -> None:
        self._batches: dict[str, _Batch] = {}
        self._lock = threading.Lock()
        self._pending = False
        self._stamp = _UtcStamp()

    def hold(self, event: str, kw: dict[str, Any]) -> None:
        """Adds one info call of a batched event to this turn's batch of it. (On the
        message path: the lock's acquire and release, not `with`, which costs 3× as much.)"""
        lock = self._lock
        lock.acquire()
        try:
            batch = self._batches.get(event)
            if batch is None:
                batch = self._batches[event] = _Batch(event, "info", self._stamp.now())
                self._opened(batch)
            batch.calls.append(kw)
            if self._pending:
                return
            self._pending = True
        finally:
            lock.release()
        self._at_turn_end()

    def _at_turn_end(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread
            self.flush()
            return
        loop.call_soon(self._turn_ended, loop)

    def _turn_ended(self, loop: asyncio.AbstractEventLoop) -> None:
        self.flush()

    def _opened(self, batch: _Batch) -> None:
        """A batch started (under the lock): JSON lines keep its place among the lines."""

    def flush(self) -> None:
        raise NotImplementedError


class JsonLines(_TurnSink):
    """JSON lines to a stream, one write per event-loop turn at most (and at most one per
    WRITE_INTERVAL_S while busy).

    A write and flush per line was a syscall per sent message. Lines logged on the loop
    wait for the end of the turn (`call_soon`) or the interval; errors, and lines from
    other threads or outside a loop, are written at once with everything before them;
    what is still buffered at exit is written then. Also structlog's logger for this
    output, so lines it renders (exceptions) keep their place."""

    __slots__ = ("_last", "_lines", "_open_at", "_stream", "_timer")

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._lines: list[str | _Batch] = []
        self._last = -math.inf  # time.monotonic() of the last write
        self._timer = False  # a timed write is due
        self._open_at: list[int] = []  # where this turn's batches stand in _lines

    def _turn_ended(self, loop: asyncio.AbstractEventLoop) -> None:
        """The turn's batches become lines; they are written now, or with the next
        timed write if the last write was less than WRITE_INTERVAL_S ago."""
        wait = self._last + WRITE_INTERVAL_S - time.monotonic()
        if wait <= 0:
            self.flush()
            return
        with self._lock:
            lines = self._lines
            for i in self._open_at:  # only this turn's: the lines wait as text
                line = lines[i]
                if isinstance(line, _Batch):
                    lines[i] = encode_json_line(line.fields())
            self._open_at = []
            self._batches = {}
            self._pending = False
            if self._timer:
                return
            self._timer = True
        loop.call_later(wait, self._timed)

    def _timed(self) -> None:
        self._timer = False
        self.flush()

    def emit(self, level: str, event: str, kw: dict[str, Any]) -> None:
        if event in BATCHED_EVENTS and level == "info":
            self.hold(event, kw)
            return
        self._add(event_json_line(kw, event, level, self._stamp.now()), level in _URGENT)

    def _opened(self, batch: _Batch) -> None:
        self._open_at.append(len(self._lines))
        self._lines.append(batch)

    def _add(self, line: str, urgent: bool) -> None:
        lock = self._lock
        lock.acquire()
        try:
            self._lines.append(line)
            pending, self._pending = self._pending, True
        finally:
            lock.release()
        if urgent:
            self.flush()
        elif not pending:
            self._at_turn_end()

    def flush(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
            self._batches = {}
            self._open_at = []
            self._pending = False
        if lines:
            text = [
                encode_json_line(line.fields()) if isinstance(line, _Batch) else line
                for line in lines
            ]
            self._stream.write("\n".join(text) + "\n")
            self._stream.flush()
            self._last = time.monotonic()

    def msg(self, message: str) -> None:
        """structlog's call with a line it rendered."""
        self._add(message, True)

    debug = info = warning = error = critical = exception = msg


class JournalSink(_TurnSink):
    """Each event as one journal entry, rendered without structlog's processor chain;
    a batched event's calls as one entry at the end of the turn. Any other event first
    sends the batches held before it, so entries keep their order."""

    __slots__ = ("_identifier", "_journal")

    def __init__(self, journal: JournalLogger, identifier: str = "chatd") -> None:
        super().__init__()
        self._journal = journal
        self._identifier = identifier

    def emit(self, level: str, event: str, kw: dict[str, Any]) -> None:
        if event in BATCHED_EVENTS and level == "info":
            self.hold(event, kw)
            return
        if self._batches:
            self.flush()
        kw["event"] = event
        kw["level"] = level
        kw["timestamp"] = self._stamp.now()
        self._send(level, event, kw)

    def _send(self, level: str, event: str, kw: dict[str, Any]) -> None:
        """One event's entry (`kw` with its event, level and timestamp), built as text
        when no value has a newline (the usual case), else by the general encoder."""
        line = encode_json_line(kw)
        text = [
            f"MESSAGE={line}\nPRIORITY={_PRIORITY_TEXT.get(level, '6')}\n"
            f"SYSLOG_IDENTIFIER={self._identifier}\nCHATD_EVENT={event}\n"
        ]
        for key, value in kw.items():
            if key in _OWN_KEYS:
                continue
            field = value if type(value) is str else _field_value(value)
            if "\n" in field:  # the binary-safe form: the general encoder
                text = []
                break
            text.append(f"{journal_field_name(key)}={field}\n")
        if text and "\n" not in event and "\n" not in self._identifier:
            datagram = "".join(text).encode("utf-8", "surrogateescape")
        else:
            datagram = encode_native(journal_fields(kw, line, self._identifier))
        self._journal.send(datagram, line)

    def flush(self) -> None:
        """Sends the held batches (every other entry is sent when it is logged)."""
        with self._lock:
            batches, self._batches = self._batches, {}
            self._pending = False
        for batch in batches.values():
            fields = batch.fields()
            if len(batch.calls) == 1:  # one call: its entry as it always was
                self._send(batch.level, batch.event, fields)
                continue
            line = encode_json_line(fields)
            entry = batch_journal_fields(fields, line, self._identifier)
            self._journal.send(encode_native(entry), line)


class _Fast:
    """The output events go to without structlog (JSON lines, the journal), or None for
    the console, which keeps structlog's renderer. Set by `configure`."""

    sink: ClassVar[JsonLines | JournalSink | None] = None

    @staticmethod
    def flush() -> None:
        if _Fast.sink is not None:
            _Fast.sink.flush()


def _flush_at_exit() -> None:
    """What the output still holds (a timed write not yet due), unless it was closed."""
    with contextlib.suppress(ValueError, OSError):
        _Fast.flush()


atexit.register(_flush_at_exit)


def configure(
    level: str = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    journal_socket: str = JOURNAL_SOCKET,
) -> None:
    """Sets the process-wide structlog pipeline; `fmt` is auto, json or console (see
    `output_kind`). `environ` and `journal_socket` are for tests."""
    out = stream or sys.stdout
    kind = output_kind(fmt, out, os.environ if environ is None else environ)
    if kind == "journal" and not os.path.exists(journal_socket):
        kind = "json"
    set_level(level)
    _Fast.flush()  # what the previous output still holds
    logger_factory: Any
    if kind == "journal":
        journal = JournalLogger(journal_socket, out)
        renderer: structlog.typing.Processor = JournalRenderer()
        logger_factory = lambda *_args: journal  # noqa: E731 (one socket per process)
        _Fast.sink = JournalSink(journal)
    elif kind == "json":
        lines = JsonLines(out)
        renderer = structlog.processors.JSONRenderer()
        logger_factory = lambda *_args: lines  # noqa: E731 (one buffer per process)
        _Fast.sink = lines
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty())
        logger_factory = structlog.WriteLoggerFactory(out)
        _Fast.sink = None
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _passthrough if kind == "console" else structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=_Logger,
        logger_factory=logger_factory,
        cache_logger_on_first_use=True,
    )


def _passthrough(
    logger: object, name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    return event
