"""The PROXY protocol header (HAProxy's, versions 1 and 2): a balancer in TCP mode puts
the client's real address in front of the connection's first byte, so per-address
limits and logs see the client, not the balancer.

Pure: `parse` takes the bytes received so far and says "need more", the header's
length and the client's address, or raises ProxyError. Spec:
https://www.haproxy.org/download/2.6/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # the longest v1 line, CR LF included
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_HEAD = struct.Struct("!12sBBH")  # signature, version+command, family+transport, length
V2_MAX = V2_HEAD.size + 65535


class ProxyError(ValueError):
    """Not a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class Header:
    """A complete header: its length in bytes, and the client's address and port, or
    None when the balancer speaks for itself (v1 UNKNOWN, v2 LOCAL: health checks)."""

    length: int
    source: tuple[str, int] | None


def parse(data: bytes) -> Header | None:
    """The header at the start of `data`; None if more bytes are needed."""
    if data.startswith(V2_SIGNATURE[: len(data)]) and len(data) < len(V2_SIGNATURE):
        return None  # could still be either: v2's signature starts with CR LF
    if data.startswith(V2_SIGNATURE):
        return _v2(data)
    if len(data) < len(V1_PREFIX):
        if V1_PREFIX.startswith(data):
            return None
        raise ProxyError("no PROXY protocol header")
    if data.startswith(V1_PREFIX):
        return _v1(data)
    raise ProxyError("no PROXY protocol header")


def _v1(data: bytes) -> Header | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyError("PROXY v1 line too long")
        return None
    try:
        words = data[:end].decode("ascii").split(" ")
    except UnicodeDecodeError as e:
        raise ProxyError("PROXY v1 line is not ASCII") from e
    if len(words) >= 2 and words[1] == "UNKNOWN":
        return Header(end + 2, None)
    if len(words) != 6 or words[1] not in ("TCP4", "TCP6"):
        raise ProxyError("PROXY v1: expected PROXY TCP4|TCP6 src dst sport dport")
    _, family, src, _dst, sport, _dport = words
    address = _address(src, 4 if family == "TCP4" else 6)
    if not sport.isdigit() or int(sport) > 65535:
        raise ProxyError(f"PROXY v1: not a port: {sport!r}")
    return Header(end + 2, (address, int(sport)))


def _v2(data: bytes) -> Header | None:
    if len(data) < V2_HEAD.size:
        return None
    _, version_command, family, length = V2_HEAD.unpack_from(data)
    if version_command >> 4 != 2:
        raise ProxyError("PROXY v2: unknown version")
    total = V2_HEAD.size + length
    if len(data) < total:
        return None
    command = version_command & 0x0F
    if command == 0:  # LOCAL: the balancer's own connection (a health check)
        return Header(total, None)
    if command != 1:
        raise ProxyError("PROXY v2: unknown command")
    body = data[V2_HEAD.size : total]
    if family == 0x11 and len(body) >= 12:  # TCP over IPv4
        src = str(ipaddress.IPv4Address(body[0:4]))
        return Header(total, (src, int.from_bytes(body[8:10], "big")))
    if family == 0x21 and len(body) >= 36:  # TCP over IPv6
        src = str(ipaddress.IPv6Address(body[0:16]))
        return Header(total, (src, int.from_bytes(body[32:34], "big")))
    return Header(total, None)  # UNSPEC, UDP, Unix sockets: keep the balancer's address


def _address(text: str, version: int) -> str:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError as e:
        raise ProxyError(f"PROXY v1: not an address: {text!r}") from e
    if ip.version != version:
        raise ProxyError(f"PROXY v1: {text} is not IPv{version}")
    return str(ip)
