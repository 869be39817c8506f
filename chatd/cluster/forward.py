"""Every node takes clients: the ones that are not the writer pass each connection on
to the one that is (docs/cluster.md, "Every node serves").

One node holds PostgreSQL's lease and runs the chat. Every other node (a standby)
accepts clients on the same doors and passes each connection on, byte for byte, to the
writer's cluster port, after one line naming the door the client came in by and its
address. The writer's door then serves the connection as if the client had come
straight to it: one core, one order, every rule decided in one place, whichever node a
client reached. When the writer dies, its passed-on connections close with it, a
standby takes the lease, and the clients reconnect (through the balancer) and get their
replay.

The preamble is a pure value (`Preamble`, `parse_preamble`); the asyncio edges are
`Handoff` (the writer's cluster port), `Relay`/`Link` (a standby's client and its link
to the writer) and `Standby` (a standby's listeners and where the writer is).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hmac
import ipaddress
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

from chatd import logs
from chatd.config import Config
from chatd.server.passed import behind_proxy, hand_over

log = logs.get_logger("chatd.cluster")

MAGIC = "CHATD-PASS 1"
#: The longest preamble line: the door, an IPv6 address, a port and the secret.
PREAMBLE_MAX = 512
#: A connection to the cluster port that has not said which door within this long closes.
PREAMBLE_TIMEOUT_S = 10.0
#: How long a standby tries to reach the writer before closing the client's connection.
CONNECT_TIMEOUT_S = 5.0
#: How soon a relay that could not reach the writer tries again (or at once when
#: PostgreSQL names another).
RETRY_S = 0.25
#: A client that stopped reading keeps its closing connection at most this long.
LINGER_S = 30.0
DOORS = frozenset({"line", "tls", "telnet", "http", "http-tls", "irc", "irc-tls"})


class PreambleError(ValueError):
    """A cluster-port connection that did not start with a valid preamble."""


@dataclass(frozen=True, slots=True)
class Preamble:
    """The line a standby sends first: which door the client used, and its address."""

    door: str
    ip: str
    port: int
    secret: str = ""

    def encode(self) -> bytes:
        return f"{MAGIC} {self.door} {self.ip} {self.port} {self.secret}\n".encode()


def parse_preamble(line: bytes) -> Preamble:
    """The preamble in `line` (without its newline). Raises PreambleError."""
    try:
        text = line.decode("ascii").rstrip("\r")
    except UnicodeDecodeError as e:
        raise PreambleError("not ASCII") from e
    magic, _, rest = text.partition(" ")
    version, _, rest = rest.partition(" ")
    if f"{magic} {version}" != MAGIC:
        raise PreambleError("not a chatd preamble")
    parts = rest.split(" ", 3)
    if len(parts) != 4:
        raise PreambleError("expected: door ip port secret")
    door, ip, port, secret = parts
    if door not in DOORS:
        raise PreambleError(f"unknown door {door!r}")
    try:
        ipaddress.ip_address(ip)
    except ValueError as e:
        raise PreambleError(f"not an address: {ip!r}") from e
    if not port.isdigit() or int(port) > 65535:
        raise PreambleError(f"not a port: {port!r}")
    return Preamble(door, ip, int(port), secret)


def door_addresses(config: Config) -> list[tuple[str, str, int]]:
    """(door, host, port) of every door this config opens, as the writer binds them."""
    host = config.server.host
    doors = [
        ("line", host, config.server.port),
        ("tls", config.tls.host or host, config.tls.port),
        ("telnet", config.telnet.host or host, config.telnet.port),
        ("http", config.http.host or host, config.http.port),
        ("http-tls", config.http.host or host, config.http.tls_port),
        ("irc", config.irc.host or host, config.irc.port),
        ("irc-tls", config.irc.host or host, config.irc.tls_port),
    ]
    return [d for d in doors if d[2]]


def split_address(address: str) -> tuple[str, int] | None:
    """`host:port` or `[v6]:port` as a pair; None if it is not one."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


# The writer's side -------------------------------------------------------------------


class Handoff(asyncio.Protocol):
    """A connection to the writer's cluster port: reads the preamble, then hands the
    connection to the named door's own protocol, which serves it from then on."""

    def __init__(self, doors: Mapping[str, Callable[[], asyncio.Protocol]], secret: str) -> None:
        self._doors = doors
        self._secret = secret.encode()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(PREAMBLE_TIMEOUT_S, self._refuse, "no preamble in time")

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._buffer += data
        line, newline, rest = self._buffer.partition(b"\n")
        if not newline:
            if len(self._buffer) > PREAMBLE_MAX:
                self._refuse("preamble too long")
            return
        try:
            pre = parse_preamble(line)
        except PreambleError as e:
            self._refuse(str(e))
            return
        if not hmac.compare_digest(pre.secret.encode(), self._secret):
            self._refuse("wrong cluster.secret")
            return
        factory = self._doors.get(pre.door)
        if factory is None:
            self._refuse(f"door {pre.door} is closed on this node")
            return
        self._cancel_timer()
        hand_over(transport, factory(), (pre.ip, pre.port), rest)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timer()

    def _refuse(self, why: str) -> None:
        self._cancel_timer()
        if self._transport is not None:
            log.warning(
                "cluster.pass_refused", peer=self._transport.get_extra_info("peername"), reason=why
            )
            self._transport.abort()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


# A standby's side ----------------------------------------------------------------------


class Relay(asyncio.Protocol):
    """One client of a standby, passed on to the writer over a link of its own."""

    def __init__(self, door: str, standby: Standby) -> None:
        self.door = door
        self.standby = standby
        self.client: asyncio.Transport | None = None
        self.link: asyncio.Transport | None = None
        self._early: list[bytes] = []  # what the client sent before the link was up
        self._eof = False
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        client = self.client = cast(asyncio.Transport, transport)
        client.pause_reading()
        peer = client.get_extra_info("peername")
        ip, port = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else ("127.0.0.1", 0)
        pre = Preamble(self.door, ip, port, self.standby.secret)
        self._task = asyncio.get_running_loop().create_task(self._connect(pre))

    async def _connect(self, pre: Preamble) -> None:
        """Reaches the writer; when it cannot be reached (it just died, and the lease
        is changing hands), tries whichever node PostgreSQL names next, for a while."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CONNECT_TIMEOUT_S
        while True:
            target = self.standby.writer
            error = "no node holds the lease"
            if target is not None:
                try:
                    link, _ = await asyncio.wait_for(
                        loop.create_connection(lambda: Link(self), *target),
                        max(0.1, deadline - loop.time()),
                    )
                    break
                except (OSError, TimeoutError) as e:
                    error = str(e) or type(e).__name__
            if loop.time() >= deadline:
                log.warning("cluster.writer_unreachable", writer=target, error=error)
                if self.client is not None:
                    self.client.abort()
                return
            await self.standby.changed(min(RETRY_S, deadline - loop.time()))
        client = self.client
        if client is None or client.is_closing():
            link.close()
            return
        self.link = link
        link.write(pre.encode() + b"".join(self._early))
        self._early.clear()
        if self._eof:
            self._half_close(link)
        client.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.link is not None:
            self.link.write(data)
        else:
            self._early.append(data)

    def eof_received(self) -> bool:
        """The client sent all it will (`nc` after its input): the writer still answers."""
        if self.link is not None:
            self._half_close(self.link)
        else:
            self._eof = True
        return True

    @staticmethod
    def _half_close(link: asyncio.Transport) -> None:
        if link.can_write_eof():
            link.write_eof()

    def connection_lost(self, exc: Exception | None) -> None:
        self.client = None
        if self.link is not None:
            self.link.close()
        elif self._task is not None:
            self._task.cancel()

    def pause_writing(self) -> None:  # the client is not reading: stop reading the writer
        if self.link is not None:
            self.link.pause_reading()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.resume_reading()


class Link(asyncio.Protocol):
    """A relay's connection to the writer: what the writer says goes to the client."""

    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def data_received(self, data: bytes) -> None:
        client = self.relay.client
        if client is not None:
            client.write(data)

    def eof_received(self) -> bool:
        self._close_client()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._close_client()

    def _close_client(self) -> None:
        client = self.relay.client
        if client is not None and not client.is_closing():
            client.close()  # after what is buffered; a client not reading: LINGER_S
            asyncio.get_running_loop().call_later(LINGER_S, client.abort)

    def pause_writing(self) -> None:  # the writer's side is full: stop reading the client
        client = self.relay.client
        if client is not None:
            client.pause_reading()

    def resume_writing(self) -> None:
        client = self.relay.client
        if client is not None:
            client.resume_reading()


class Standby:
    """A node waiting for PostgreSQL's lease: it listens on its doors and passes every
    client on to the writer that PostgreSQL names (`writer_is`, at every look)."""

    def __init__(self, config: Config, tls: ssl.SSLContext | None) -> None:
        self.config = config
        self.secret = config.cluster.secret
        self.writer: tuple[str, int] | None = None
        self._change = asyncio.Event()
        self._tls = tls
        self._servers: list[asyncio.Server] = []
        self._listening: asyncio.Task[None] | None = None

    def writer_is(self, address: str) -> None:
        """The lease's holder advertises `address` ("" if it passes nothing on)."""
        self._set_writer(address)
        if self._listening is None:
            self._listening = asyncio.get_running_loop().create_task(self._listen())

    def _set_writer(self, address: str) -> None:
        writer = split_address(address) if address else None
        if writer != self.writer:
            log.info("cluster.writer", writer=address or None)
            self.writer = writer
            self._change.set()
            self._change = asyncio.Event()

    async def changed(self, within: float) -> None:
        """Returns when the writer changes, or after `within` seconds."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._change.wait(), within)

    async def _listen(self) -> None:
        loop = asyncio.get_running_loop()
        for door, host, port in door_addresses(self.config):
            tls = self._tls if door.endswith("tls") else None
            if door.endswith("tls") and tls is None:
                continue  # the writer's TLS doors need its certificate here too
            relay: Callable[[], asyncio.Protocol] = functools.partial(Relay, door, self)
            if tls is None:  # a balancer's PROXY header is read here, like on the writer
                relay = behind_proxy(relay, self.config.server.proxy_protocol_from)
            try:
                server = await loop.create_server(
                    relay,
                    host,
                    port,
                    ssl=tls,
                    ssl_handshake_timeout=self.config.limits.login_timeout_s if tls else None,
                )
            except OSError as e:
                log.error("cluster.standby_listen_failed", door=door, port=port, error=str(e))
                continue
            self._servers.append(server)
        log.info(
            "cluster.standby_listening",
            doors=[s.sockets[0].getsockname()[1] for s in self._servers],
        )

    async def close(self, own_address: str = "") -> None:
        """Stops listening (this node is the writer now, at `own_address`): relays
        still looking for the writer find this node; passed-on connections stay."""
        self._set_writer(own_address)
        if self._listening is not None:
            await self._listening  # a few binds: let them finish, then close them all
        for server in self._servers:
            server.close()  # not wait_closed: that would wait for the relays too
        self._servers.clear()
