"""A logged-in session that outlives its connections: login, password prompts, reconnect.

`Session.start()` connects and logs in once (failures are for the caller to report and
exit 2). `Session.run()` then watches the connection; when it drops, it tells the app,
waits with backoff (1 s doubling to 30 s, the base injectable), connects and logs in
again, asking for everything after the last message it showed (`after <id>`): the
server's replay right after the new login is exactly what was missed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from chatd.client.connection import (
    ConnectError,
    Connection,
    ConnectionLost,
    Endpoint,
    Obj,
    backoff,
)

# Login refusals worth waiting out; any other code ends the client.
RETRYABLE = frozenset({"server-busy", "too-many-sessions", "internal"})
PASSWORD_TRIES = 3


def name_problem(name: str) -> str | None:
    """Why `name` cannot be sent in a login, or None. Only what the client must catch
    itself: in `login alice secret` the second word is a password, so a name with a space
    would silently log in as its first word; the server judges everything else."""
    if not name:
        return "a name is needed"
    if any(ch.isspace() for ch in name):
        return (
            f"{name!r} is not a name: a name is one word (letters, digits, _ . -); "
            "a password is asked for when the account has one"
        )
    return None


class LoginError(Exception):
    """The server refused the login; `code` is its error token."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code
        self.message = message


class Events(Protocol):
    """What the session tells the app. All but ask_password run synchronously, in the
    order the server's lines arrived."""

    def on_push(self, obj: Obj) -> None: ...

    def on_login(self, ok: Obj, again: bool) -> None: ...

    def on_offline(self, reason: str) -> None: ...

    def on_retry(self, delay: float, error: str | None) -> None: ...

    async def ask_password(self, user: str, wrong: bool) -> str | None: ...


class Session:
    def __init__(
        self,
        endpoint: Endpoint,
        user: str,
        password: str | None,
        events: Events,
        *,
        reconnect: bool = True,
        retry_base: float = 1.0,
    ) -> None:
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self._events = events
        self._reconnect = reconnect
        self._retry_base = retry_base
        self._conn: Connection | None = None
        self._closing = False
        # The newest message id this client has shown: a login after a reconnect asks
        # for everything after it (`login … after <id>`), whatever the server believed
        # the dropped connection had received.
        self.last_seen = 0

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.done()

    async def start(self) -> None:
        """The first connection and login; raises ConnectError or LoginError."""
        problem = name_problem(self.user)
        if problem is not None:
            raise LoginError("bad-name", problem)
        await self._connect(again=False)

    async def request(
        self,
        line: str,
        *,
        on_reply: Callable[[Obj], None] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Obj:
        """One command and its reply; ConnectionLost while offline or if the line drops."""
        conn = self._conn
        if conn is None:
            raise ConnectionLost("not connected")
        return await conn.request(line, on_reply=on_reply, progress=progress)

    async def upload(
        self, header: str, chunks: list[str], progress: Callable[[int], None] | None = None
    ) -> Obj:
        conn = self._conn
        if conn is None:
            raise ConnectionLost("not connected")
        return await conn.upload(header, chunks, progress)

    async def run(self) -> None:
        """Keeps the session up until `close()`. Without reconnect, a drop raises
        ConnectionLost; a re-login the server refuses for good raises LoginError."""
        while True:
            conn = self._conn
            assert conn is not None, "start() first"
            reason = await asyncio.shield(conn.closed)
            if self._closing:
                return
            self._conn = None
            self._events.on_offline(reason)
            if not self._reconnect:
                raise ConnectionLost(reason)
            await self._reconnect_loop()

    async def close(self) -> None:
        """Says goodbye (`quit`) and closes; `run()` then returns."""
        self._closing = True
        if self._conn is not None:
            await self._conn.close()

    # Internals ------------------------------------------------------------------------

    async def _reconnect_loop(self) -> None:
        error: str | None = None
        for delay in backoff(self._retry_base):
            self._events.on_retry(delay, error)
            await asyncio.sleep(delay)
            try:
                await self._connect(again=True)
                return
            except (ConnectError, ConnectionLost) as e:
                error = str(e)
            except LoginError as e:
                if e.code not in RETRYABLE:
                    raise
                error = e.message

    async def _connect(self, *, again: bool) -> None:
        conn = await Connection.open(self.endpoint, self._push)
        try:
            await self._login(conn, again)
        except BaseException:
            conn.abort("login failed")
            raise
        self._conn = conn

    async def _login(self, conn: Connection, again: bool) -> None:
        mode = await conn.request("mode json")
        if mode.get("type") != "ok":
            raise LoginError(str(mode.get("code")), str(mode.get("message")))

        def announce(reply: Obj) -> None:
            if reply.get("type") == "ok":
                self.user = str(reply.get("user", self.user))
                self._events.on_login(reply, again)

        for attempt in range(PASSWORD_TRIES + 1):
            line = f"login {self.user}" + (f" {self.password}" if self.password else "")
            if again and self.last_seen:
                line += f" after {self.last_seen}"
            reply = await conn.request(line, on_reply=announce)
            if reply.get("type") == "ok":
                return
            code, message = str(reply.get("code")), str(reply.get("message", ""))
            if code != "bad-password" or attempt == PASSWORD_TRIES:
                raise LoginError(code, message)
            password = await self._events.ask_password(self.user, self.password is not None)
            if not password:
                raise LoginError(code, message)
            self.password = password

    def _push(self, obj: Obj) -> None:
        if obj.get("type") == "message":
            ident = obj.get("id")
            if isinstance(ident, int) and ident > self.last_seen:
                self.last_seen = ident
        try:
            self._events.on_push(obj)
        except Exception as e:  # a display bug must not take the connection down
            self._events.on_push(
                {"type": "notice", "event": "raw", "text": f"(could not show: {e!r})"}
            )
