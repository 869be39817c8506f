"""A logged-in session that outlives its connections: login, password prompts, reconnect.

`Session.start()` connects and logs in once, trying the servers in the order given
until one greets and takes the login (failures are for the caller to report and exit
2). `Session.run()` then watches the connection; when it drops, it tells the app, tries
the other servers at once (round-robin, starting after the one that dropped; several
nodes of one cluster, or a standby), then every server in rounds with backoff between
them (1 s doubling to 30 s, the base injectable), and logs in again, asking for
everything after the last message it showed (`after <id>`): the server's replay right
after the new login is exactly what was missed, whichever node gives it, since a
cluster's ids are one sequence.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
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
# A connection that lasted less than this counts as a failed round: two servers that
# each take the login and drop it at once are not hammered in turn without a pause.
MIN_UPTIME_S = 5.0


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
        servers: Endpoint | Sequence[Endpoint],
        user: str,
        password: str | None,
        events: Events,
        *,
        reconnect: bool = True,
        retry_base: float = 1.0,
        min_uptime: float = MIN_UPTIME_S,
    ) -> None:
        self.servers = (servers,) if isinstance(servers, Endpoint) else tuple(servers)
        if not self.servers:
            raise ValueError("no server to connect to")
        self._at = 0  # index of the server in use, or being tried
        self._up_since = 0.0
        self._min_uptime = min_uptime
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
    def endpoint(self) -> Endpoint:
        """The server in use (or, while offline, the one tried last)."""
        return self.servers[self._at]

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.closed.done()

    async def start(self) -> None:
        """The first connection and login; raises ConnectError or LoginError."""
        problem = name_problem(self.user)
        if problem is not None:
            raise LoginError("bad-name", problem)
        failures = await self._round(range(len(self.servers)), again=False)
        if failures is None:
            return
        if len(failures) == 1:
            raise failures[0]
        raise ConnectError("no server could be used: " + "; ".join(map(str, failures)))

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
            uptime = asyncio.get_running_loop().time() - self._up_since
            self._events.on_offline(reason)
            if not self._reconnect:
                raise ConnectionLost(reason)
            await self._reconnect_loop(quick=uptime >= self._min_uptime)

    async def close(self) -> None:
        """Says goodbye (`quit`) and closes; `run()` then returns."""
        self._closing = True
        if self._conn is not None:
            await self._conn.close()

    # Internals ------------------------------------------------------------------------

    async def _reconnect_loop(self, *, quick: bool) -> None:
        """The other servers at once (after a connection that lasted, `quick`), then
        every server in turn, the one that dropped last, with backoff between rounds."""
        n = len(self.servers)
        order = [(self._at + k) % n for k in range(1, n + 1)]
        failures = await self._round(order[:-1], again=True) if quick else []
        if failures is None:
            return
        for delay in backoff(self._retry_base):
            self._events.on_retry(delay, str(failures[-1]) if failures else None)
            await asyncio.sleep(delay)
            failures = await self._round(order, again=True)
            if failures is None:
                return

    async def _round(
        self, order: Sequence[int], *, again: bool
    ) -> list[ConnectError | LoginError] | None:
        """Tries these servers in turn: None once one took the login, else what each
        said. A refusal for good (a wrong password, a bad name) ends it: every node of a
        cluster would say the same."""
        failures: list[ConnectError | LoginError] = []
        for i in order:
            self._at = i
            try:
                await self._connect(again=again)
                return None
            except ConnectError as e:
                failures.append(e)
            except ConnectionLost as e:
                failures.append(ConnectError(f"{self.endpoint} dropped the login: {e}"))
            except LoginError as e:
                if e.code not in RETRYABLE:
                    raise
                failures.append(e if len(self.servers) == 1 else _at(self.endpoint, e))
        return failures

    async def _connect(self, *, again: bool) -> None:
        conn = await Connection.open(self.endpoint, self._push)
        try:
            await self._login(conn, again)
        except BaseException:
            conn.abort("login failed")
            raise
        self._conn = conn
        self._up_since = asyncio.get_running_loop().time()

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


def _at(endpoint: Endpoint, e: LoginError) -> LoginError:
    """The refusal with the server that gave it, for a list of several."""
    return LoginError(e.code, f"{endpoint}: {e.message}")
