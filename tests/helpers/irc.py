"""An IRC client over a real TCP connection for the IRC door's tests, and a server
fixture helper that opens the IRC listener on a free port."""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import Callable

from chatd.protocol.irc import IrcMessage, parse
from tests.helpers.server import TIMEOUT, Server, StartServer, free_port


async def start_irc(start_server: StartServer, **settings: object) -> tuple[Server, int]:
    """A daemon with its IRC door on a free port; returns it and the port."""
    server = await start_server(irc__port=free_port(), **settings)
    return server, server.daemon.door_port("irc")


class IrcClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.nick = ""

    @classmethod
    async def connect(cls, port: int) -> IrcClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        return cls(reader, writer)

    async def send(self, line: str) -> None:
        self.writer.write((line + "\r\n").encode())
        await self.writer.drain()

    async def raw(self, timeout: float = TIMEOUT) -> str:
        data = await asyncio.wait_for(self.reader.readline(), timeout)
        if not data:
            raise EOFError("connection closed")
        assert data.endswith(b"\r\n"), data
        return data[:-2].decode()

    async def line(self) -> str:
        """The next line the server sends, its PINGs aside."""
        while True:
            line = await self.raw()
            if not line.startswith("PING"):
                return line

    async def msg(self, timeout: float = TIMEOUT) -> IrcMessage:
        return parse(await self.raw(timeout))

    async def until(
        self, pred: Callable[[IrcMessage], bool] | str, timeout: float = TIMEOUT
    ) -> list[IrcMessage]:
        """Messages up to and including the first one matching `pred` (a predicate, or
        a command/numeric); PINGs from the server are answered on the way."""
        test = pred if callable(pred) else (lambda m: m.command == pred)
        got: list[IrcMessage] = []
        while True:
            m = await self.msg(timeout)
            got.append(m)
            if test(m):
                return got

    async def register(
        self,
        nick: str,
        *,
        caps: tuple[str, ...] = (),
        password: str | None = None,
        sasl: tuple[str, str] | None = None,
    ) -> list[IrcMessage]:
        """Registers; returns everything up to the end of the MOTD (376 or 422)."""
        if caps or sasl:
            await self.send("CAP LS 302")
            await self.until("CAP")
            want = list(caps) + (["sasl"] if sasl else [])
            await self.send("CAP REQ :" + " ".join(want))
            ack = (await self.until("CAP"))[-1]
            assert ack.params[1] == "ACK", ack
        if password is not None:
            await self.send(f"PASS {password}")
        await self.send(f"NICK {nick}")
        await self.send(f"USER {nick} 0 * :{nick}")
        if sasl:
            await self.send("AUTHENTICATE PLAIN")
            await self.until("AUTHENTICATE")
            blob = base64.b64encode(f"\0{sasl[0]}\0{sasl[1]}".encode()).decode()
            await self.send(f"AUTHENTICATE {blob}")
            done = await self.until(lambda m: m.command in ("903", "904"))
            assert done[-1].command == "903", done
        if caps or sasl:
            await self.send("CAP END")
        got = await self.until(lambda m: m.command in ("376", "422", "433", "464", "ERROR"))
        self.nick = nick
        return got

    async def silent(self, seconds: float = 0.2) -> bool:
        try:
            line = await asyncio.wait_for(self.reader.readline(), seconds)
        except TimeoutError:
            return True
        return not line

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


#: The caps a client needs for tags, echoes, labels and history.
TAGS = ("message-tags", "echo-message", "batch", "labeled-response", "draft/chathistory")


async def joined_client(
    port: int,
    nick: str,
    *,
    caps: tuple[str, ...] = (),
    password: str | None = None,
    sasl: tuple[str, str] | None = None,
) -> IrcClient:
    """A registered IRC client whose join burst of #general (up to 366) was read."""
    c = await IrcClient.connect(port)
    await c.register(nick, caps=caps, password=password, sasl=sasl)
    await c.until("366")
    return c
