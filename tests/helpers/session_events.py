"""A stand-in for the client's app: the events a `chatd.client.session.Session` reports,
recorded as tuples, with a bounded wait for one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from chatd.client.connection import Obj

WAIT_S = 10.0  # a guard against hanging, not a measured quantity


class Recorder:
    """Session events as a list of tuples, and a way to wait for one."""

    def __init__(self, passwords: list[str] | None = None) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.passwords = passwords or []
        self._changed = asyncio.Event()

    def _add(self, *event: Any) -> None:
        self.events.append(event)
        self._changed.set()

    def on_push(self, obj: Obj) -> None:
        self._add("push", obj.get("type"), obj.get("text"), obj.get("replay"))

    def on_login(self, ok: Obj, again: bool) -> None:
        self._add("login", again, ok.get("unread"))

    def on_offline(self, reason: str) -> None:
        self._add("offline")

    def on_retry(self, delay: float, error: str | None) -> None:
        self._add("retry", delay, error)

    async def ask_password(self, user: str, wrong: bool) -> str | None:
        self._add("ask", wrong)
        return self.passwords.pop(0) if self.passwords else None

    async def until(self, pred: Callable[[tuple[Any, ...]], bool]) -> None:
        async def wait() -> None:
            while not any(pred(e) for e in self.events):
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), WAIT_S)
