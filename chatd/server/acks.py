"""What the client's TCP has acknowledged, in message ids (issue 13: "received" means
the peer acknowledged it, not that our kernel accepted it for sending).

`CountingTransport` sits right on the socket's transport and counts every byte handed
to it; the hub marks, after each write that carries messages, the count and the
highest message id in it. `settle()` asks the kernel how many bytes it still holds
(SIOCOUTQ: not yet sent plus sent but not acknowledged), adds the transport's own
buffer, and so knows how far the client's TCP has acknowledged: every mark at or below
that is received. A client that dies without reading gets back, at its next login,
everything its TCP never acknowledged.

Only for plain TCP and telnet (whose CR LF expansion happens above the count, so the
kernel's bytes are the counted ones); TLS, HTTP and IRC sessions count as received what
the kernel accepted, as before.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
from collections import deque
from typing import cast

_OUTQ = struct.Struct("i")


class CountingTransport:
    """The socket's transport, counting the bytes written through it."""

    __slots__ = ("_transport", "written")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)
        self._transport.write(data)

    def __getattr__(self, name: str) -> object:
        return getattr(self._transport, name)


class Acks:
    """Message ids by the byte count after them; what the client acknowledged."""

    __slots__ = ("_fd", "_out", "acked", "marks")

    def __init__(self, out: CountingTransport, fd: int) -> None:
        self._out = out
        self._fd = fd
        self.marks: deque[tuple[int, int]] = deque()  # (bytes written after it, id)
        self.acked = 0  # the highest id the client's TCP acknowledged, as last settled

    def mark(self, top_id: int) -> None:
        """Everything written so far includes message `top_id`."""
        marks = self.marks
        if not marks or marks[-1][1] < top_id:
            marks.append((self._out.written, top_id))

    def settle(self) -> int:
        """The highest message id the client's TCP has acknowledged (the last answer
        if the socket is gone)."""
        try:
            raw = fcntl.ioctl(self._fd, termios.TIOCOUTQ, b"\0\0\0\0")
        except OSError:
            return self.acked
        held = _OUTQ.unpack(raw)[0] + cast(asyncio.Transport, self._out).get_write_buffer_size()
        done = self._out.written - held
        marks = self.marks
        while marks and marks[0][0] <= done:
            self.acked = marks.popleft()[1]
        return self.acked
