"""The client proper: carries out typed actions and shows what the server says.

`App` is both the session's event sink and the action runner; the interactive and the
scripted front ends differ only in where lines come from and go to (`Output`), and in
whether the session reconnects. State the display needs (who I am, the current chat,
names for completion, recent messages for reply context) lives in `View`, one per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

from chatd.client import commands as c
from chatd.client.complete import Known, candidates
from chatd.client.connection import ConnectError, ConnectionLost, Endpoint, Obj
from chatd.client.files import FileProblem, Progress, read_upload, save_download
from chatd.client.render import (
    CYAN,
    DIM,
    RED,
    Quote,
    Theme,
    error_line,
    format_size,
    help_lines,
    info_line,
    message_line,
    notice_line,
    reply_lines,
)
from chatd.client.session import LoginError, Session
from chatd.client.terminal import (
    LineTerminal,
    Prompt,
    Terminal,
    Unsupported,
    read_secret,
    save_history,
)
from chatd.protocol.events import GENERAL
from chatd.protocol.timefmt import rfc3339

REMEMBERED_MESSAGES = 2000
KNOWN_STALE_S = 30.0


class Output(Protocol):
    def show(self, lines: Sequence[str]) -> None: ...

    def problem(self, lines: Sequence[str]) -> None: ...

    def ask_secret(self, prompt: str) -> str | None: ...


class PlainOutput:
    """Scripts: output to stdout, problems to stderr, passwords only from a real tty."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._err = err or sys.stderr

    def show(self, lines: Sequence[str]) -> None:
        if lines:
            self._out.write("\n".join(lines) + "\n")
            self._out.flush()

    def problem(self, lines: Sequence[str]) -> None:
        if lines:
            self._out.flush()
            self._err.write("\n".join(lines) + "\n")
            self._err.flush()

    def ask_secret(self, prompt: str) -> str | None:
        # getpass would fall back to reading the script itself from stdin; never that.
        try:
            os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
        except OSError:
            return None
        return read_secret(prompt)


class TerminalOutput:
    def __init__(self, term: Prompt) -> None:
        self._term = term

    def show(self, lines: Sequence[str]) -> None:
        self._term.write(lines)

    def problem(self, lines: Sequence[str]) -> None:
        self._term.write(lines)

    def ask_secret(self, prompt: str) -> str | None:
        return self._term.ask_secret(prompt)


class View:
    """What the display draws on; mutable, one per client run."""

    def __init__(self, theme: Theme, me: str) -> None:
        self.theme = theme
        self.me = me
        self.chat = GENERAL
        self.online: dict[str, str] = {}  # lower-case key -> name as spelled (from `who`)
        self.seen: dict[str, str] = {}  # senders of messages this run
        self.rooms: dict[str, str] = {}
        self.quotes: OrderedDict[int, Quote] = OrderedDict()
        self.sizes: OrderedDict[int, int] = OrderedDict()  # file id -> size

    def remember(self, m: Mapping[str, Any]) -> None:
        mid, sender, chat = m.get("id"), str(m.get("from", "")), str(m.get("chat", ""))
        if isinstance(mid, int):
            self.quotes[mid] = Quote(chat, sender, str(m.get("text", "")))
            _trim(self.quotes)
        if sender:
            self.seen[sender.lower()] = sender
        if chat.startswith("#") and chat.lower() != GENERAL:
            self.rooms[chat.lower()] = chat
        f = m.get("file")
        if isinstance(f, Mapping) and isinstance(f.get("id"), int):
            self.sizes[f["id"]] = int(f.get("size") or 0)
            _trim(self.sizes)

    def learn(self, reply: Mapping[str, Any]) -> None:
        """Names from `who` and `rooms` replies, for completion."""
        if reply.get("cmd") == "who" and not reply.get("room"):
            users = [u for u in reply.get("users", ()) if isinstance(u, Mapping)]
            self.online = {str(u["name"]).lower(): str(u["name"]) for u in users if "name" in u}
        elif reply.get("cmd") == "rooms":
            rooms = [r for r in reply.get("rooms", ()) if isinstance(r, Mapping)]
            self.rooms = {str(r["room"]).lower(): str(r["room"]) for r in rooms if "room" in r}

    def known(self) -> Known:
        users = {**self.seen, **self.online}
        users.pop(self.me.lower(), None)
        return Known(tuple(c.slash_names()), tuple(users.values()), tuple(self.rooms.values()))

    def message(self, m: Mapping[str, Any]) -> str:
        return message_line(m, self.theme, quotes=self.quotes)

    def prompt(self, online: bool) -> str:
        state = "" if online else self.theme.paint("(offline) ", RED)
        return f"{state}{self.theme.paint(self.chat, CYAN)}> "


def _trim(d: OrderedDict[int, Any]) -> None:
    while len(d) > REMEMBERED_MESSAGES:
        d.popitem(last=False)


def problem_line(text: str, theme: Theme) -> str:
    return theme.paint(f"error: {text}", RED)


class App:
    """Runs actions against the session and renders its events."""

    def __init__(self, view: View, out: Output, *, term: Prompt | None = None) -> None:
        self.view = view
        self.out = out
        self.term = term
        self.session: Session | None = None
        self.on_quit: Callable[[], None] = lambda: None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._known_at = float("-inf")

    @property
    def theme(self) -> Theme:
        return self.view.theme

    def _session(self) -> Session:
        assert self.session is not None
        return self.session

    def info(self, text: str) -> None:
        self.out.show([info_line(text, self.theme)])

    # Session events ---------------------------------------------------------------------

    def on_push(self, obj: Obj) -> None:
        kind = obj.get("type")
        if kind == "message":
            self.view.remember(obj)
            self.out.show([self.view.message(obj)])
        elif kind == "notice":
            self.out.show([notice_line(obj, self.theme)])
        elif kind == "error":
            self.out.problem([error_line(obj, self.theme)])
        else:
            self.out.show(reply_lines(obj, self.theme, quotes=self.view.quotes))

    def on_login(self, ok: Obj, again: bool) -> None:
        self.view.me = str(ok.get("user", self.view.me))
        unread = ok.get("unread", 0)
        n = unread if isinstance(unread, int) else 0
        # With several servers, which one this is: after a failover, the user knows it
        # moved (and an operator which node is down).
        s = self.session
        where = f" to {s.endpoint}" if s is not None and len(s.servers) > 1 else ""
        if again:
            head = f"reconnected{where} as {self.view.me}"
        else:
            new = " (new account)" if ok.get("new") else ""
            head = f"logged in{where} as {self.view.me}{new}"
        if n:
            what = "recent message" if ok.get("new") else "unread message"
            head += f"; {n} {what}{'s' * (n != 1)}:"
        self.info(head)
        self._known_at = float("-inf")
        if self.term is not None:
            self.term.set_prompt(self.view.prompt(True))

    def on_offline(self, reason: str) -> None:
        self.out.problem([problem_line(f"connection lost: {reason}", self.theme)])
        if self.term is not None:
            self.term.set_prompt(self.view.prompt(False))

    def on_retry(self, delay: float, error: str | None) -> None:
        last = f" (last try: {error})" if error else ""
        self.info(f"reconnecting in {delay:g}s{last}")

    async def ask_password(self, user: str, wrong: bool) -> str | None:
        return self.out.ask_secret(("wrong password; " if wrong else "") + f"password for {user}: ")

    # Interactive input ------------------------------------------------------------------

    def typed(self, line: str) -> None:
        """readline's line handler: decide, then run the action as a task (never block
        the handler; replies arrive while the user keeps typing)."""
        action = c.translate(line, self.view.chat)
        if self.term is not None:
            secret = isinstance(action, c.ChangePassword) and action.new is not None
            if not secret:
                self.term.remember(line)
            if isinstance(action, c.Wire) and action.draft and self._session().connected:
                self.term.forget_input()  # it comes back with its id once the server has it
        self.spawn(self.run(action))

    def complete(self, line: str, begidx: int, word: str) -> list[str]:
        if time.monotonic() - self._known_at > KNOWN_STALE_S:
            self._known_at = time.monotonic()
            self.spawn(self.refresh())
        return candidates(line, begidx, word, self.view.known())

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.out.problem([problem_line(f"internal: {task.exception()!r}", self.theme)])

    async def refresh(self) -> None:
        """Quietly fetches online users and rooms for completion."""
        self._known_at = time.monotonic()
        for line in ("who", "rooms"):
            with contextlib.suppress(ConnectionLost):
                self.view.learn(await self._session().request(line))

    async def cancel_tasks(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # Actions ----------------------------------------------------------------------------

    async def run(self, action: c.Action) -> bool:
        """Carries out one action; False when it failed (an ERR, or refused locally)."""
        try:
            return await self._run(action)
        except ConnectionLost as e:
            self.out.problem([problem_line(f"not sent: {e}", self.theme)])
            return False

    async def _run(self, action: c.Action) -> bool:
        theme = self.theme
        match action:
            case c.Nothing():
                return True
            case c.Invalid(message):
                self.out.problem([problem_line(message, theme)])
                return False
            case c.Quit():
                self.on_quit()
                return True
            case c.Help(topic):
                self.out.show(self._help(topic))
                return topic is None or c.usage_of(topic) is not None
            case c.Switch(chat):
                return await self._switch(chat)
            case c.Wire(line, draft):
                return await self._wire(line, draft)
            case c.Upload(path, target):
                return await self._upload(path, target)
            case c.Download(file_id, dest):
                return await self._download(file_id, dest)
            case c.ChangePassword(new, old):
                return await self._passwd(new, old)
        raise AssertionError(action)  # pragma: no cover

    async def _switch(self, chat: str) -> bool:
        """`/join #room`, `/query bob`: a room is checked with the server first (`who
        #room`, which only a member may ask), so a room that does not exist, or is not
        yours, is said at once rather than at the first message sent there."""
        if chat.lower() == GENERAL:
            chat = GENERAL
        elif chat.startswith("#"):
            try:
                reply = await self._session().request(f"who {chat}")
            except ConnectionLost:  # offline: switch unchecked; a send there would say
                reply = {"type": "ok", "room": chat}
            if reply.get("type") != "ok":
                self.out.problem(reply_lines(reply, self.theme))
                if reply.get("code") == "not-a-member":
                    self.info("ask its owner for an invite, or a join link: /join <link>")
                return False
            chat = str(reply.get("room") or chat)
        self.view.chat = chat
        if self.term is not None:
            self.term.set_prompt(self.view.prompt(self._session().connected))
        self.info(f"now talking in {self.view.chat}")
        return True

    async def _wire(self, line: str, draft: c.Draft | None) -> bool:
        try:
            reply = await self._session().request(line)
        except ConnectionLost as e:
            if draft is None:
                raise
            reply = {"type": "error", "code": "offline", "message": f"not connected ({e})"}
        if reply.get("type") != "ok":
            self.out.problem(reply_lines(reply, self.theme))
            if draft is not None:  # its input line was erased; say what did not go
                self.info(f"not sent: {draft.text}")
            return False
        self.view.learn(reply)
        if draft is not None:
            self.out.show([self._echo(draft, reply)])
        else:
            self.out.show(reply_lines(reply, self.theme, quotes=self.view.quotes))
        return True

    def _echo(self, draft: c.Draft, reply: Obj, file: object = None) -> str:
        """Our own message as others see it, from the draft and the OK's id and time."""
        reply_to = draft.reply_to if draft.reply_to is not None else reply.get("reply_to")
        chat = draft.chat
        if chat is None:
            q = self.view.quotes.get(reply_to) if isinstance(reply_to, int) else None
            chat = q.chat if q is not None else "?"
        m: dict[str, Any] = {
            "type": "message",
            "id": reply.get("id"),
            "chat": chat,
            "from": self.view.me,
            "text": draft.text,
            "ts": reply.get("ts") or rfc3339(time.time()),
            "reply_to": reply_to,
        }
        if file is not None:
            m["file"] = file
        self.view.remember(m)
        return self.view.message(m)

    async def _upload(self, path: str, target: str) -> bool:
        try:
            outgoing = await asyncio.to_thread(read_upload, path)
        except FileProblem as e:
            self.out.problem([problem_line(str(e), self.theme)])
            return False
        progress = None
        if Progress.wanted(outgoing.size):
            label = f"uploading {outgoing.name}"
            progress = Progress(label, outgoing.encoded_bytes, self._report, outgoing.size)
        header = f"upload {target} {outgoing.name}"
        reply = await self._session().upload(header, outgoing.chunks, progress)
        if reply.get("type") != "ok":
            self.out.problem(reply_lines(reply, self.theme))
            return False
        draft = c.Draft(target, outgoing.name)  # the server's text for a file message
        self.out.show([self._echo(draft, reply, reply.get("file"))])
        return True

    async def _download(self, file_id: int, dest: str | None) -> bool:
        size = self.view.sizes.get(file_id)
        label = f"downloading file {file_id}"
        if size is None:
            progress = Progress(label, None, self._report)
        elif Progress.wanted(size):
            progress = Progress(label, (size + 2) // 3 * 4, self._report, size)
        else:
            progress = None
        reply = await self._session().request(f"download {file_id}", progress=progress)
        if reply.get("type") != "ok":
            self.out.problem(reply_lines(reply, self.theme))
            return False
        if progress is not None:
            progress.finish()
        try:
            where, n = await asyncio.to_thread(save_download, reply, dest, Path.cwd())
        except FileProblem as e:
            self.out.problem([problem_line(str(e), self.theme)])
            return False
        self.info(f"saved file {file_id} ({format_size(n)}) to {where}")
        return True

    def _report(self, text: str) -> None:
        self.out.problem([self.theme.paint(f"* {text}", DIM)])

    async def _passwd(self, new: str | None, old: str | None) -> bool:
        ask = self.out.ask_secret
        if new is None:
            old = ask("current password (Enter if none): ")
            new = ask("new password: ")
            if new is None:
                self.out.problem([problem_line("password not changed", self.theme)])
                return False
            if ask("new password again: ") != new:
                self.out.problem([problem_line("the passwords differ; not changed", self.theme)])
                return False
        if any(ch.isspace() for ch in new):
            self.out.problem([problem_line("a password cannot contain spaces", self.theme)])
            return False
        reply = await self._session().request(f"passwd {new}" + (f" {old}" if old else ""))
        if reply.get("type") != "ok":
            self.out.problem(reply_lines(reply, self.theme))
            return False
        self._session().password = new  # for logging in again after a reconnect
        self.info("password changed")
        return True

    def _help(self, topic: str | None) -> list[str]:
        if topic is None:
            rows = [(s.usage, s.summary) for s in c.SLASH]
            extra = ", ".join("/" + p for p in c.PASSTHROUGH)
            tail = [
                info_line(f"also {extra}; a plain line goes to the current chat", self.theme),
                info_line("//text sends text that starts with a slash", self.theme),
            ]
            return [*help_lines(rows, self.theme), *tail]
        usage = c.usage_of(topic)
        if usage is None:
            return [problem_line(f"no command /{topic}", self.theme)]
        summary = next((s.summary for s in c.SLASH if s.name == topic), "")
        return help_lines([(usage, summary)], self.theme)


# Front ends ---------------------------------------------------------------------------


async def run_interactive(
    servers: Endpoint | Sequence[Endpoint],
    user: str,
    password: str | None,
    theme: Theme,
    *,
    retry_base: float,
    history: Path,
) -> int:
    """A person at a terminal: readline prompt, live output, reconnects. Exit 0, or 2
    when the server cannot be reached or refuses the login."""
    term: Prompt
    try:
        term = Terminal()
    except Unsupported:
        term = LineTerminal()
    view = View(theme, user)
    app = App(view, TerminalOutput(term), term=term)
    session = Session(servers, user, password, app, reconnect=True, retry_base=retry_base)
    app.session = session
    try:
        await session.start()
    except (ConnectError, LoginError) as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()
    app.on_quit = finished.set
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, finished.set)
    term.start(view.prompt(True), app.typed, finished.set, app.complete)
    supervisor = asyncio.create_task(session.run())
    app.spawn(app.refresh())
    waiter = asyncio.create_task(finished.wait())
    code = 0
    try:
        await asyncio.wait({supervisor, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if supervisor.done() and isinstance(supervisor.exception(), LoginError):
            term.stop()
            print(f"chat: logging in again failed: {supervisor.exception()}", file=sys.stderr)
            code = 2
    finally:
        term.stop()
        waiter.cancel()
        await app.cancel_tasks()
        await session.close()
        supervisor.cancel()
        with contextlib.suppress(BaseException):
            await supervisor
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        problem = save_history(history)
        if problem:
            print(f"chat: {problem}", file=sys.stderr)
    return code


async def run_scripted(
    servers: Endpoint | Sequence[Endpoint],
    user: str,
    password: str | None,
    theme: Theme,
    *,
    command: str | None = None,
    source: TextIO | None = None,
) -> int:
    """Lines from a pipe (or one `--command`), each sent as if typed, one reply awaited
    at a time. Exit 0 if all succeeded, 1 if any got ERR, 2 on connection problems.
    Several servers: the first that takes the login is used; a script does not fail
    over mid-way (a command in flight when the line dropped may or may not have run)."""
    view = View(theme, user)
    app = App(view, PlainOutput())
    session = Session(servers, user, password, app, reconnect=False)
    app.session = session
    try:
        await session.start()
    except (ConnectError, LoginError) as e:
        print(f"chat: {e}", file=sys.stderr)
        return 2
    supervisor = asyncio.create_task(session.run())
    failed = False
    code: int | None = None
    quit_now = False

    def stop() -> None:
        nonlocal quit_now
        quit_now = True

    app.on_quit = stop
    try:
        lines = _one(command) if command is not None else _stdin_lines(source or sys.stdin)
        async for line in lines:
            if command is not None and not line.startswith("/"):
                action = c.raw(line)
            else:
                action = c.translate(line, view.chat)
            failed |= not await app.run(action)
            if not session.connected:
                code = 2
                break
            if quit_now:
                break
    finally:
        await session.close()
        supervisor.cancel()
        with contextlib.suppress(BaseException):
            await supervisor
    if code is not None:
        return code
    return 1 if failed else 0


async def _one(line: str) -> AsyncIterator[str]:
    yield line


async def _stdin_lines(source: TextIO) -> AsyncIterator[str]:
    """Lines of a pipe or file, read on a daemon thread: a blocked read must never keep
    the process alive after the connection is gone."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def reader() -> None:
        stream = source.buffer if hasattr(source, "buffer") else None
        try:
            while True:
                raw = stream.readline() if stream is not None else source.readline()
                if not raw:
                    break
                text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
                loop.call_soon_threadsafe(queue.put_nowait, text.rstrip("\r\n"))
        finally:
            with contextlib.suppress(RuntimeError):  # the loop may be gone already
                loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=reader, name="stdin", daemon=True).start()
    while (line := await queue.get()) is not None:
        yield line
