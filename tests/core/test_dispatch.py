"""The command table and the handler table agree: every command has one handler,
found by its type, and every refusal or crash becomes a reply in one place."""

from __future__ import annotations

import inspect

from chatd.core.chat import HANDLERS
from chatd.protocol import commands as c
from chatd.protocol.events import Error
from tests.helpers.core import Harness


def test_every_command_in_the_usage_table_has_a_handler() -> None:
    assert {spec.name for spec, _ in HANDLERS.values()} == set(c.COMMANDS) | set(c.DOOR_COMMANDS)
    for spec, handler in HANDLERS.values():
        assert handler.__name__ == "cmd_" + spec.name


def test_every_command_type_is_in_the_table() -> None:
    types = {
        obj
        for _, obj in inspect.getmembers(c, inspect.isclass)
        if issubclass(obj, c.Command) and obj is not c.Command
    }
    assert types == set(HANDLERS)


def test_each_verb_parses_to_the_type_its_row_handles() -> None:
    examples = {
        "help": "help",
        "mode": "mode json",
        "ping": "ping",
        "login": "login a",
        "passwd": "passwd x",
        "send_all": "send_all hi",
        "send": "send bob hi",
        "ban": "ban bob",
        "who": "who",
        "status": "status",
        "history": "history #general",
        "comment": "comment 1 hi",
        "thread": "thread 1",
        "schedule": "schedule +1m send_all hi",
        "scheduled": "scheduled",
        "cancel": "cancel 1",
        "upload": "upload bob a.txt",
        "download": "download 1",
        "room": "room create dev",
        "rooms": "rooms",
        "join": "join abc",
        "unban": "unban bob",
        "kick": "kick bob",
        "announce": "announce hi",
        "stats": "stats",
        "quit": "quit",
    }
    assert set(examples) == set(c.COMMANDS)
    for name, line in examples.items():
        spec, _ = HANDLERS[type(c.parse(line))]
        assert spec.name == name


def test_gates_come_from_the_row_whatever_the_door_built() -> None:
    h = Harness()
    s = h.session()
    # A door that builds its own Command (IRC, HTTP) meets the same login gate.
    err = h.chat.handle(s, c.SendAll("hi", verb="privmsg"), h.now).replies[0]
    assert isinstance(err, Error) and (err.code, err.cmd) == ("not-logged-in", "privmsg")
    a = h.login("alice")
    err = h.chat.handle(a, c.Stats(verb="stats"), h.now).replies[0]
    assert isinstance(err, Error) and err.code == "forbidden"
