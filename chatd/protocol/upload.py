"""The data block of `upload`: base64 lines ended by a line `.`, decoded incrementally.

Sans-I/O: `UploadDecoder.feed` takes the lines the framer produced (or its FrameErrors)
one at a time, and `take` hands back the decoded bytes so far, for the server to append
to a file. Nothing ever holds the whole file: lines are batched into chunks of about
CHUNK_CHARS characters, decoded with one C call and hashed as they come, so a 5 MiB
upload costs the event loop many small slices instead of one long stall.

Lines may have any length (not only multiples of 4, not only 76): the few characters
that do not complete a 4-character group wait for the next line. Padding may only end
the data, and a missing final padding is tolerated (`abc` reads as `abc=`). Spaces and
tabs around a line are ignored; anything else outside the base64 alphabet is an error.

Once the data is refused (bad base64, too large, or refused before it began) decoding
stops and the lines are only scanned for the terminator, so the connection can answer
once, right after the `.`, and go on reading commands.
"""

from __future__ import annotations

import binascii
import hashlib
from collections import deque
from dataclasses import dataclass

from chatd.protocol.events import Code
from chatd.protocol.framing import FrameError

TERMINATOR = "."
CHUNK_CHARS = 64 * 1024  # base64 characters decoded per C call (48 KiB of data)


@dataclass(frozen=True, slots=True)
class UploadError:
    """Why an upload's data was refused; the reply after the terminator."""

    code: Code
    message: str


class UploadDecoder:
    """Decodes one upload's data block; see the module docstring.

    `limit` is the most decoded bytes accepted (files.max_bytes, or less when the
    user's quota is nearly used up); `too_large` is the message when it is passed.
    """

    __slots__ = (
        "_carry",
        "_chars",
        "_hash",
        "_lines",
        "_out",
        "_padded",
        "done",
        "error",
        "limit",
        "size",
        "too_large",
    )

    def __init__(self, limit: int, too_large: str | None = None) -> None:
        self.limit = limit
        self.too_large = too_large or f"files are limited to {limit} bytes"
        self.size = 0  # decoded bytes so far
        self.done = False  # the terminator was seen
        self.error: UploadError | None = None
        self._hash = hashlib.sha256()
        self._lines: list[str] = []  # undecoded lines, at most about CHUNK_CHARS
        self._chars = 0
        self._carry = ""  # 0-3 characters short of a 4-character group
        self._padded = False  # a group with `=` was decoded: nothing may follow
        self._out = bytearray()  # decoded, not yet taken

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the bytes decoded so far (of the whole file once done)."""
        return self._hash.hexdigest()

    @property
    def buffered(self) -> int:
        """Decoded bytes waiting for `take`."""
        return len(self._out)

    def fail(self, code: Code, message: str) -> None:
        """Refuses the data (the first reason wins); the rest is only skipped."""
        if self.error is None:
            self.error = UploadError(code, message)
        self._lines.clear()
        self._chars = 0
        self._carry = ""
        self._out.clear()

    def feed(self, item: str | FrameError) -> bool:
        """One framed line of the data block; True when it was the terminator."""
        if self.done:
            raise RuntimeError("the upload's data has already ended")
        if isinstance(item, FrameError):
            self.fail(item.code, f"{item.message} (in the upload's data)")
            return False
        line = item.strip(" \t")
        if line == TERMINATOR:
            if self.error is None:
                self._decode(final=True)
            self.done = True
            return True
        if self.error is None and line:
            self._lines.append(line)
            self._chars += len(line)
            if self._chars >= CHUNK_CHARS:
                self._decode(final=False)
        return False

    def feed_from(self, queue: deque[str | FrameError]) -> bool:
        """Takes lines from the left of `queue` up to the terminator, like `feed` one by
        one (the server's path: one call per socket read, not per line)."""
        lines = self._lines
        while queue:
            item = queue.popleft()
            if self.error is not None or not isinstance(item, str):
                if self.feed(item):
                    return True
                continue
            line = item.strip(" \t")
            if line == TERMINATOR:
                self._decode(final=True)
                self.done = True
                return True
            lines.append(line)
            self._chars += len(line)
            if self._chars >= CHUNK_CHARS:
                self._decode(final=False)
        return False

    def take(self) -> bytes:
        """The decoded bytes not taken yet (empty after an error)."""
        if self._lines and self.error is None:
            self._decode(final=False)
        data = bytes(self._out)
        self._out.clear()
        return data

    def _decode(self, *, final: bool) -> None:
        text = self._carry + "".join(self._lines)
        self._lines.clear()
        self._chars = 0
        if final:
            rest = len(text) % 4
            if rest == 1:
                self.fail(Code.BAD_ARGS, "the upload's data is not valid base64 (truncated)")
                return
            text += "=" * ((4 - rest) % 4)
            self._carry = ""
        else:
            cut = len(text) - len(text) % 4
            text, self._carry = text[:cut], text[cut:]
        if not text:
            return
        if self._padded:
            self.fail(Code.BAD_ARGS, "the upload's data is not valid base64 (data after =)")
            return
        try:
            chunk = binascii.a2b_base64(text, strict_mode=True)
        except (binascii.Error, ValueError) as e:
            self.fail(Code.BAD_ARGS, f"the upload's data is not valid base64 ({e})")
            return
        self._padded = text.endswith("=")
        self.size += len(chunk)
        if self.size > self.limit:
            self.fail(Code.TOO_LARGE, self.too_large)
            return
        self._hash.update(chunk)
        self._out += chunk
