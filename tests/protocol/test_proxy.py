"""The PROXY protocol header, fed as bytes (chatd/protocol/proxy.py)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from chatd.protocol.proxy import V2_SIGNATURE, Header, ProxyError, parse


def v2(command: int, family: int, body: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", 0x20 | command, family, len(body)) + body


V1_TCP4 = b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 8000\r\n"
V1_TCP6 = b"PROXY TCP6 2001:db8::7 2001:db8::1 40000 6667\r\n"
V2_TCP4 = v2(
    1,
    0x11,
    ipaddress.IPv4Address("198.51.100.9").packed
    + ipaddress.IPv4Address("10.0.0.1").packed
    + struct.pack("!HH", 4242, 8000),
)
V2_TCP6 = v2(
    1,
    0x21,
    ipaddress.IPv6Address("2001:db8::9").packed
    + ipaddress.IPv6Address("2001:db8::1").packed
    + struct.pack("!HH", 5151, 8080),
)


@pytest.mark.parametrize(
    ("header", "source"),
    [
        (V1_TCP4, ("203.0.113.7", 51234)),
        (V1_TCP6, ("2001:db8::7", 40000)),
        (b"PROXY UNKNOWN\r\n", None),
        (V2_TCP4, ("198.51.100.9", 4242)),
        (V2_TCP6, ("2001:db8::9", 5151)),
        (v2(0, 0x00, b""), None),  # LOCAL: a health check of the balancer's own
        (v2(1, 0x31, b"\x00" * 216), None),  # a Unix socket: keep the balancer's address
    ],
)
def test_a_header_at_any_split_gives_the_client_and_leaves_the_rest(
    header: bytes, source: tuple[str, int] | None
) -> None:
    data = header + b"login alice\n"
    for cut in range(len(header)):
        assert parse(data[:cut]) is None, cut  # more bytes needed, never an error
    assert parse(data) == Header(len(header), source)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"login alice\n", "no PROXY protocol header"),
        (b"GET / HTTP/1.1\r\n", "no PROXY protocol header"),
        (b"PROXY TCP4 203.0.113.7 10.0.0.1 51234\r\n", "expected PROXY TCP4"),
        (b"PROXY TCP4 2001:db8::7 10.0.0.1 1 2\r\n", "is not IPv4"),
        (b"PROXY TCP6 nonsense ::1 1 2\r\n", "not an address"),
        (b"PROXY TCP4 203.0.113.7 10.0.0.1 99999 2\r\n", "not a port"),
        (b"PROXY " + b"x" * 200, "too long"),
        (b"PROXY TCP4 \xff\r\n", "not ASCII"),
        (V2_SIGNATURE + b"\x31\x11\x00\x00", "unknown version"),
        (V2_SIGNATURE + b"\x25\x11\x00\x00", "unknown command"),
    ],
)
def test_anything_else_is_refused_with_a_reason(data: bytes, why: str) -> None:
    with pytest.raises(ProxyError, match=why):
        parse(data)
