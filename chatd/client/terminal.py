"""The prompt line: live output above it, never garbling what is being typed.

Why GNU readline's *callback* interface, through ctypes, on the event loop thread: the
usual trick — `input()` in a thread, and another thread printing then calling
`readline.redisplay()` — races. `input()` runs readline with the GIL released, so the
printing thread can redraw while readline is halfway through handling a key, and both
write readline's display buffers at once (garbled lines at best). CPython's own
`input()` is built on this same callback interface (`rl_callback_handler_install`, then
`rl_callback_read_char` whenever stdin is readable); we drive it from asyncio instead,
so keys, server lines and signals are handled one at a time on one thread, and printing
above the prompt is simply:

    rl_clear_visible_line()        erase the prompt and the half line (all wrapped rows)
    write the new lines            the cursor is at column 0 of a fresh row afterwards
    rl_forced_update_display()     redraw prompt + line buffer, cursor back at rl_point

The line buffer and cursor position never leave readline, so there is nothing to save
and restore. The symbols are looked up in the library the `readline` module loaded (via
its own handle), so history, completion and key bindings are the module's. Where that
is not GNU readline (libedit), `LineTerminal` reads cooked lines without these promises.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import getpass
import os
import re
import signal
import sys
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

HISTORY_LENGTH = 1000


class Unsupported(Exception):
    """The readline here cannot be driven through its callback interface."""


def history_path(environ: dict[str, str] | os._Environ[str]) -> Path:
    """`$XDG_STATE_HOME/chatd/history`, default `~/.local/state/chatd/history`; a relative
    XDG_STATE_HOME is ignored, as the XDG spec says."""
    state = environ.get("XDG_STATE_HOME", "")
    base = Path(state) if state and os.path.isabs(state) else Path.home() / ".local" / "state"
    return base / "chatd" / "history"


class Prompt(Protocol):
    """What the app needs from a terminal, whichever kind it is."""

    def start(
        self,
        prompt: str,
        on_line: Callable[[str], None],
        on_eof: Callable[[], None],
        completer: Callable[[str, int, str], list[str]] | None = None,
    ) -> None: ...

    def write(self, lines: Sequence[str]) -> None: ...

    def set_prompt(self, prompt: str) -> None: ...

    def forget_input(self) -> None: ...

    def remember(self, line: str) -> None: ...

    def ask_secret(self, prompt: str) -> str | None: ...

    def stop(self) -> None: ...


class _Readline:
    """ctypes bindings to the GNU readline that the `readline` module uses."""

    def __init__(self) -> None:
        try:
            import readline
        except ImportError:
            raise Unsupported("no readline module") from None
        if "libedit" in (readline.__doc__ or "") or not readline.__file__:
            raise Unsupported("readline is libedit")
        self.module = readline
        try:
            # dlsym on the extension's handle searches its dependencies too, so these are
            # the very functions and variables the module itself uses.
            lib = ctypes.CDLL(readline.__file__)
            libc = ctypes.CDLL(None)
            self.handler_type: Any = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
            self.install = _fn(
                lib, "rl_callback_handler_install", None, [ctypes.c_char_p, self.handler_type]
            )
            self.read_char = _fn(lib, "rl_callback_read_char", None, [])
            self.remove = _fn(lib, "rl_callback_handler_remove", None, [])
            self.forced_update = _fn(lib, "rl_forced_update_display", ctypes.c_int, [])
            self.clear_visible = _fn(lib, "rl_clear_visible_line", ctypes.c_int, [])
            self.replace_line = _fn(lib, "rl_replace_line", None, [ctypes.c_char_p, ctypes.c_int])
            self.set_prompt = _fn(lib, "rl_set_prompt", ctypes.c_int, [ctypes.c_char_p])
            self.resize = _fn(lib, "rl_resize_terminal", None, [])
            self.sigcleanup = _fn(lib, "rl_callback_sigcleanup", None, [])
            self.point = ctypes.c_int.in_dll(lib, "rl_point")
            self.mark = ctypes.c_int.in_dll(lib, "rl_mark")
            self.catch_signals = ctypes.c_int.in_dll(lib, "rl_catch_signals")
            self.catch_sigwinch = ctypes.c_int.in_dll(lib, "rl_catch_sigwinch")
            self.screen_size = _fn(
                lib,
                "rl_get_screen_size",
                None,
                [ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)],
            )
            self.free = _fn(libc, "free", None, [ctypes.c_void_p])
            self.fflush = _fn(libc, "fflush", ctypes.c_int, [ctypes.c_void_p])
        except (OSError, AttributeError, ValueError) as e:
            raise Unsupported(str(e)) from None


def _fn(lib: ctypes.CDLL, name: str, restype: Any, argtypes: list[Any]) -> Any:
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = argtypes
    return f


class Terminal:
    """A readline prompt on the running event loop (see the module docstring)."""

    def __init__(self, out: TextIO | None = None, fd: int = 0) -> None:
        self._rl = _Readline()
        self._out = out or sys.stdout
        self._fd = fd
        self._prompt = b""
        self._active = False
        self._on_line: Callable[[str], None] = lambda _: None
        self._on_eof: Callable[[], None] = lambda: None
        self._completer: Callable[[str, int, str], list[str]] | None = None
        self._matches: list[str] = []
        self._handler: Any = None  # the C callback must outlive its use
        self._last_line = ""

    # Life cycle -------------------------------------------------------------------------

    def start(
        self,
        prompt: str,
        on_line: Callable[[str], None],
        on_eof: Callable[[], None],
        completer: Callable[[str, int, str], list[str]] | None = None,
    ) -> None:
        rl, mod = self._rl, self._rl.module
        self._on_line, self._on_eof, self._completer = on_line, on_eof, completer
        # Signals are ours (asyncio handlers); readline must not install its own.
        rl.catch_signals.value = 0
        rl.catch_sigwinch.value = 0
        mod.set_completer_delims(" \t\n")
        mod.set_completer(self._complete)
        mod.parse_and_bind("tab: complete")
        self._prompt = _prompt_bytes(prompt)
        self._handler = rl.handler_type(self._line)
        self._install()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self.interrupt)
        loop.add_signal_handler(signal.SIGWINCH, rl.resize)

    def stop(self) -> None:
        """Restores the terminal: erase the prompt line, hand the tty back cooked."""
        if not self._active:
            return
        self._uninstall()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGWINCH):
            loop.remove_signal_handler(sig)

    def _install(self) -> None:
        self._rl.install(self._prompt, self._handler)
        asyncio.get_running_loop().add_reader(self._fd, self._readable)
        self._active = True

    def _uninstall(self) -> None:
        asyncio.get_running_loop().remove_reader(self._fd)
        self._clear()
        self._rl.remove()
        self._rl.fflush(None)
        self._active = False

    # Output -----------------------------------------------------------------------------

    def write(self, lines: Sequence[str]) -> None:
        """Prints lines above the prompt; the prompt, half line and cursor come back."""
        if not lines:
            return
        if not self._active:
            self._print(lines)
            return
        self._clear()
        self._print(lines)
        self._rl.forced_update()

    def set_prompt(self, prompt: str) -> None:
        self._prompt = _prompt_bytes(prompt)
        if self._active:
            self._clear()
            self._rl.set_prompt(self._prompt)
            self._rl.forced_update()

    def forget_input(self) -> None:
        """Called from on_line: erases the just-entered line (all its rows), for input
        the app shows again in its own form (a sent message, with its id)."""
        if self._active:
            # Readline's own row count is reset by now (and stale after pasted input,
            # whose redisplay it defers), so count the rows the line's text fills.
            rows, cols = ctypes.c_int(), ctypes.c_int()
            self._rl.screen_size(ctypes.byref(rows), ctypes.byref(cols))
            used = display_width(_visible(self._prompt) + self._last_line)
            n = max(1, -(-used // max(1, cols.value)))
            self._rl.fflush(None)
            self._out.write(f"\x1b[{n}A\r\x1b[J")
            self._out.flush()

    def remember(self, line: str) -> None:
        mod = self._rl.module
        n = mod.get_current_history_length()
        if line.strip() and (n == 0 or mod.get_history_item(n) != line):
            mod.add_history(line)

    def _clear(self) -> None:
        self._rl.fflush(None)
        self._rl.clear_visible()
        self._rl.fflush(None)

    def _print(self, lines: Sequence[str]) -> None:
        self._out.write("\n".join(lines) + "\n")
        self._out.flush()

    # Input ------------------------------------------------------------------------------

    def _readable(self) -> None:
        self._rl.read_char()

    def _line(self, ptr: int | None) -> None:
        """readline's line handler: a finished line, or NULL for Ctrl-D on an empty one."""
        if not ptr:
            self._on_eof()
            return
        try:
            text = ctypes.string_at(ptr).decode("utf-8", "replace")
        finally:
            self._rl.free(ptr)
        self._last_line = text
        self._on_line(text)

    def interrupt(self) -> None:
        """Ctrl-C: drop the half line and any search or completion state, like bash."""
        if not self._active:
            return
        rl = self._rl
        rl.sigcleanup()
        rl.replace_line(b"", 1)
        rl.point.value = rl.mark.value = 0
        self._clear()
        rl.set_prompt(self._prompt)  # an i-search may have swapped it
        rl.forced_update()

    def _complete(self, text: str, state: int) -> str | None:
        if state == 0:
            mod = self._rl.module
            found = (
                self._completer(mod.get_line_buffer(), mod.get_begidx(), text)
                if self._completer
                else []
            )
            self._matches = [m if m.endswith("/") else m + " " for m in found]
        return self._matches[state] if state < len(self._matches) else None

    def ask_secret(self, prompt: str) -> str | None:
        """A password, without echo. Blocks the loop on purpose: nothing must print over
        the prompt meanwhile, and server lines simply wait in the socket. A half-typed
        line (a reconnect may ask in the middle of one) is put back afterwards."""
        if not self._active:
            return read_secret(prompt)
        mod, rl = self._rl.module, self._rl
        saved, point = mod.get_line_buffer(), rl.point.value
        self._uninstall()
        try:
            return read_secret(prompt)
        finally:
            self._install()
            if saved:
                rl.replace_line(saved.encode(), 0)
                rl.point.value = point
                rl.forced_update()


def read_secret(prompt: str) -> str | None:
    """getpass, with Ctrl-C cancelling it: whatever handles SIGINT for the event loop
    would only note the signal, and the read would go on."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return getpass.getpass(prompt) or None
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write("\n")
        return None
    finally:
        signal.signal(signal.SIGINT, previous)


def display_width(text: str) -> int:
    """Terminal columns: wide East Asian characters take two, combining marks none."""
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _visible(prompt: bytes) -> str:
    r"""A prompt as shown: without the \001…\002 spans readline does not count."""
    return re.sub("\x01[^\x02]*\x02", "", prompt.decode())


def _prompt_bytes(prompt: str) -> bytes:
    r"""ANSI sequences wrapped in \001…\002, so readline does not count them as width."""
    out, i = [], 0
    while i < len(prompt):
        if prompt[i] == "\x1b":
            end = prompt.find("m", i)
            if end != -1:
                out.append("\001" + prompt[i : end + 1] + "\002")
                i = end + 1
                continue
        out.append(prompt[i])
        i += 1
    return "".join(out).encode()


class LineTerminal:
    """A fallback without GNU readline: cooked lines from stdin, output printed as is.
    Messages may then land in the middle of a half-typed line (the tty echoes it)."""

    def __init__(self, out: TextIO | None = None, fd: int = 0) -> None:
        self._out = out or sys.stdout
        self._fd = fd
        self._buf = b""
        self._prompt = ""
        self._on_line: Callable[[str], None] = lambda _: None
        self._on_eof: Callable[[], None] = lambda: None

    def start(
        self,
        prompt: str,
        on_line: Callable[[str], None],
        on_eof: Callable[[], None],
        completer: Callable[[str, int, str], list[str]] | None = None,
    ) -> None:
        self._prompt, self._on_line, self._on_eof = prompt, on_line, on_eof
        loop = asyncio.get_running_loop()
        loop.add_reader(self._fd, self._readable)
        loop.add_signal_handler(signal.SIGINT, self._interrupt)
        self._show_prompt()

    def _readable(self) -> None:
        data = os.read(self._fd, 4096)
        if not data:
            self._on_eof()
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            self._on_line(line.decode("utf-8", "replace"))
        self._show_prompt()

    def _interrupt(self) -> None:
        self._out.write("\n")
        self._show_prompt()

    def _show_prompt(self) -> None:
        self._out.write(self._prompt)
        self._out.flush()

    def write(self, lines: Sequence[str]) -> None:
        self._out.write("\r" + "\n".join(lines) + "\n")
        self._show_prompt()

    def set_prompt(self, prompt: str) -> None:
        self._prompt = prompt

    def forget_input(self) -> None:
        pass

    def remember(self, line: str) -> None:
        pass

    def ask_secret(self, prompt: str) -> str | None:
        return read_secret(prompt)

    def stop(self) -> None:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(ValueError, OSError):
            loop.remove_reader(self._fd)
        loop.remove_signal_handler(signal.SIGINT)


def load_history(path: Path) -> None:
    """Reads saved input history (silently absent the first time)."""
    try:
        import readline
    except ImportError:
        return
    readline.clear_history()
    readline.set_history_length(HISTORY_LENGTH)
    with contextlib.suppress(OSError):
        readline.read_history_file(path)


def save_history(path: Path) -> str | None:
    """Writes input history; returns a problem to report, or None."""
    try:
        import readline
    except ImportError:
        return None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        readline.write_history_file(path)
    except OSError as e:
        return f"cannot save history to {path}: {e.strerror or e}"
    return None
