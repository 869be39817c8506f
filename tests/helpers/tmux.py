"""A terminal program (irssi, WeeChat, telnet) in a detached tmux session, with its
screen read back by `tmux capture-pane`: what the user would see."""

from __future__ import annotations

import asyncio
import shutil
import uuid

import pytest


def need(*programs: str) -> None:
    """Skips the test, naming what is missing (CI installs scripts/apt-packages.txt)."""
    missing = [p for p in ("tmux", *programs) if shutil.which(p) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (apt-get install them)")


async def _tmux(*args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "tmux", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    out, _ = await proc.communicate()
    return out.decode(errors="replace")


class Terminal:
    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    async def start(cls, command: str, *, width: int = 150, height: int = 40) -> Terminal:
        t = cls(f"chatd-test-{uuid.uuid4().hex[:8]}")
        await _tmux("new-session", "-d", "-s", t.name, "-x", str(width), "-y", str(height), command)
        return t

    async def keys(self, *keys: str) -> None:
        await _tmux("send-keys", "-t", self.name, *keys)

    async def type(self, line: str) -> None:
        await _tmux("send-keys", "-t", self.name, "-l", line)
        await _tmux("send-keys", "-t", self.name, "Enter")

    async def screen(self) -> str:
        return await _tmux("capture-pane", "-p", "-t", self.name)

    async def wait_for(self, text: str, timeout: float = 8.0, *, redraw: str = "") -> str:
        """Polls the screen until `text` shows (curses programs may need a redraw key
        such as C-l to repaint); returns the screen."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        screen = ""
        while loop.time() < deadline:
            screen = await self.screen()
            if text in screen:
                return screen
            if redraw:
                await self.keys(redraw)
            await asyncio.sleep(0.15)
        raise AssertionError(f"{text!r} did not show in {timeout}s; screen:\n{screen}")

    async def kill(self) -> None:
        await _tmux("kill-session", "-t", self.name)
