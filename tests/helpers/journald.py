"""journald's native protocol read back: what a test needs to check chatd's datagrams
(the decoder journald itself applies, per systemd's "Native Journal Protocol")."""

from __future__ import annotations

import os
import select
import socket
import struct
from pathlib import Path


def decode_native(data: bytes) -> list[tuple[str, bytes]]:
    """The (key, value) pairs of one datagram: `KEY=value\\n`, or `KEY\\n` + a 64-bit
    little-endian length + value + `\\n`. Raises ValueError on a malformed datagram."""
    fields: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if b"=" in line:
            key, _, value = line.partition(b"=")
            pos = end + 1
        else:
            key = line
            (size,) = struct.unpack_from("<Q", data, end + 1)
            start = end + 1 + 8
            value = data[start : start + size]
            if data[start + size : start + size + 1] != b"\n":
                raise ValueError(f"field {key!r}: no newline after {size} bytes")
            pos = start + size + 1
        fields.append((key.decode("ascii"), value))
    return fields


def as_dict(data: bytes) -> dict[str, str]:
    """One datagram as {key: text} (the last value wins, as none repeat in chatd's)."""
    return {k: v.decode() for k, v in decode_native(data)}


class FakeJournald:
    """A datagram socket where journald's would be: receives what chatd sends."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(5)

    def receive(self) -> bytes:
        """The next entry, read from a sealed memfd if it came as one."""
        msg, fds, _flags, _addr = socket.recv_fds(self.sock, 16 * 1024 * 1024, 4)
        if not fds:
            return msg
        try:
            size = os.fstat(fds[0]).st_size
            return os.pread(fds[0], size, 0)
        finally:
            for fd in fds:
                os.close(fd)

    def pending(self) -> bool:
        """Whether a datagram is waiting (without blocking)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
