"""A bug inside a command: that command gets ERR internal, everything else goes on."""

from __future__ import annotations

from typing import Any

import pytest

from chatd.core.chat import HANDLERS
from chatd.core.model import Session
from chatd.core.outcome import Outcome
from chatd.protocol import commands as c
from tests.helpers.server import Server


async def test_a_crashing_command_answers_internal_and_nothing_else_breaks(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(chat: Any, s: Session, cmd: c.Who, now: float) -> Outcome:
        raise RuntimeError("a bug")

    spec, _ = HANDLERS[c.Who]
    monkeypatch.setitem(HANDLERS, c.Who, (spec, broken))  # a fault injected
    alice = await server.login("alice")
    bob = await server.login("bob")
    assert (await alice.cmd("who")).startswith("ERR internal")
    assert (await alice.cmd("send_all still here")).startswith("OK sent")
    assert "<alice> still here" in await bob.line()
    await alice.send("mode json\n")
    await alice.obj()
    err = await alice.jcmd("who")
    assert (err["type"], err["code"], err["cmd"]) == ("error", "internal", "who")
    assert (await alice.jcmd("ping"))["type"] == "ok"  # the connection still works
