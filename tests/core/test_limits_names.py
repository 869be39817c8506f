"""Confusable names: the skeleton rule (chatd/core/names.py) and the core's checks."""

from __future__ import annotations

from chatd.core.names import looks, skeleton
from chatd.protocol.commands import parse
from chatd.protocol.events import Error
from tests.helpers.core import Core


def test_skeleton() -> None:
    assert skeleton("aIice") == skeleton("alice") == "alice"
    assert skeleton("rn") == skeleton("m") and skeleton("0") == skeleton("o")
    assert skeleton("vv") == "w" and skeleton("cl") == "d" and skeleton("1") == "l"
    assert skeleton("b0b.x_y-z") == "bob.x_y-z"
    assert skeleton("alice") != skeleton("alice2")
    # In any case a name is one account, so its looks include the lower-case one.
    assert looks("ADMIN") & looks("admin") and looks("Ian") & looks("lan")
    assert not looks("alice") & looks("alike")


def test_a_lookalike_that_appears_while_a_password_is_hashed_is_refused() -> None:
    core = Core()
    s = core.session()
    out = core.chat.handle(s, parse("login aIice pw"), core.now)
    assert out.deferred is not None  # the name was free when checked
    core.login("alice")  # meanwhile
    d = out.deferred
    done = d.resume(d.work(), core.now)
    error = done.replies[0]
    assert isinstance(error, Error) and str(error.code) == "bad-name"
    assert "aiice" not in core.chat.accounts
