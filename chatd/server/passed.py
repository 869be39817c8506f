"""Connections that arrive through someone else: a balancer that sends the PROXY
protocol header, or another chatd node passing its client on (chatd/cluster/forward.py).
Either way the door's own protocol is handed the connection with the client's real
address (`PassedTransport`) once the header is read, and serves it from then on."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

from chatd import logs
from chatd.core.flood import in_networks
from chatd.protocol import proxy

log = logs.get_logger("chatd.passed")

#: A connection from a balancer that has not sent its header within this long closes.
HEADER_TIMEOUT_S = 10.0


class PassedTransport:
    """A transport as the door sees it: the client's address, and no socket of its own
    (what the balancer's or the link's TCP acknowledged says nothing of the client's,
    so `chat.received = "acknowledged"` counts such a session as `written`)."""

    __slots__ = ("_peername", "_transport", "get_write_buffer_size", "write")

    def __init__(self, transport: asyncio.Transport, peername: tuple[str, int]) -> None:
        self._transport = transport
        self._peername = peername
        # What the hub calls per write and per recipient, bound once: not through
        # __getattr__ on the fan-out path.
        self.write = transport.write
        self.get_write_buffer_size = transport.get_write_buffer_size

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            return self._peername
        if name == "socket":
            return default
        return self._transport.get_extra_info(name, default)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


def hand_over(
    transport: asyncio.Transport,
    door: asyncio.Protocol,
    peername: tuple[str, int] | None,
    rest: bytes,
) -> None:
    """Makes `door` the connection's protocol, as if it had accepted it (from
    `peername`, when given), and feeds it what was read past the header."""
    transport.set_protocol(door)
    seen = transport if peername is None else PassedTransport(transport, peername)
    door.connection_made(cast(asyncio.Transport, seen))
    if rest and not transport.is_closing():
        door.data_received(rest)


class ProxyHeader(asyncio.Protocol):
    """A door's connection from a trusted balancer (`server.proxy_protocol_from`): reads
    the PROXY header, then hands the connection to the door. Connections from any other
    address go to the door at once, their own address unchanged."""

    def __init__(self, door: Callable[[], asyncio.Protocol], trusted: tuple[str, ...]) -> None:
        self._door = door
        self._trusted = trusted
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = self._transport = cast(asyncio.Transport, transport)
        peer = t.get_extra_info("peername")
        if not (isinstance(peer, tuple) and in_networks(str(peer[0]), self._trusted)):
            hand_over(t, self._door(), None, b"")
            return
        self._timer = asyncio.get_running_loop().call_later(
            HEADER_TIMEOUT_S, self._refuse, "no PROXY header in time"
        )

    def data_received(self, data: bytes) -> None:
        t = self._transport
        if t is None or t.is_closing():
            return
        self._buffer += data
        try:
            header = proxy.parse(self._buffer)
        except proxy.ProxyError as e:
            self._refuse(str(e))
            return
        if header is None:
            return
        self._cancel()
        source = header.source
        if source is None:  # the balancer's own connection (a health check)
            peer = t.get_extra_info("peername")
            source = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        hand_over(t, self._door(), source, self._buffer[header.length :])

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()

    def _refuse(self, why: str) -> None:
        self._cancel()
        if self._transport is not None:
            peer = self._transport.get_extra_info("peername")
            log.warning("proxy.refused", peer=peer, reason=why)
            self._transport.abort()

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def behind_proxy(
    door: Callable[[], asyncio.Protocol], trusted: tuple[str, ...]
) -> Callable[[], asyncio.Protocol]:
    """The door's factory, reading a PROXY header first from the `trusted` networks."""
    if not trusted:
        return door
    return lambda: ProxyHeader(door, trusted)
