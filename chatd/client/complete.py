"""Tab completion: slash commands, online users, rooms and paths, by position in the line.

`candidates` is pure (the line, where the word starts, what the client knows); the
terminal adapts it to readline's completer protocol. Matching ignores case and returns
names as the server spells them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from chatd.protocol.events import GENERAL

ROOM_ACTIONS = ("create", "invite", "link", "unlink", "approve", "deny", "leave", "kick", "members")
_USER_FIRST = {"query", "msg", "report", "ban", "kick", "unban"}
_ROOM_FIRST = {"join", "who"}


@dataclass(frozen=True, slots=True)
class Known:
    """What completion draws on: slash command names, users online, rooms joined."""

    commands: tuple[str, ...]
    users: tuple[str, ...]
    rooms: tuple[str, ...]


def _match(word: str, options: Iterable[str]) -> list[str]:
    low = word.lower()
    return sorted({o for o in options if o.lower().startswith(low)}, key=str.lower)


def _paths(word: str) -> list[str]:
    """Files and directories starting with `word`; directories end in `/`."""
    head, tail = os.path.split(os.path.expanduser(word))
    shown_head = os.path.split(word)[0]
    try:
        names = os.listdir(head or ".")
    except OSError:
        return []
    out = []
    for name in names:
        if name.startswith(tail) and (tail.startswith(".") or not name.startswith(".")):
            full = os.path.join(head or ".", name)
            shown = os.path.join(shown_head, name) if shown_head else name
            out.append(shown + "/" if os.path.isdir(full) else shown)
    return sorted(out)


def candidates(line: str, begidx: int, word: str, known: Known) -> list[str]:
    """Completions for `word`, which starts at `begidx` in `line`."""
    before = line[:begidx].split()
    users = known.users
    rooms = (GENERAL, *known.rooms)
    if not before:
        if word.startswith("/"):
            return _match(word, ("/" + c for c in known.commands))
        return _generic(word, known)
    head = before[0].lower().lstrip("/") if before[0].startswith("/") else ""
    n = len(before)  # how many words come before the one being completed
    if head in _USER_FIRST and n == 1:
        if word.startswith("@"):
            return _match(word, ("@" + u for u in users))
        if word.startswith("#") and head == "msg":
            return _match(word, rooms)
        return _match(word, users)
    if head in _ROOM_FIRST and n == 1:
        return _match(word, rooms)
    if head == "history" and n == 1:
        return _match(word, (*rooms, *("@" + u for u in users)))
    if head == "room":
        if n == 1:
            return _match(word, ROOM_ACTIONS)
        if n == 2:
            return _match(word, known.rooms)
        return _match(word, users)
    if head == "upload" and n == 1:
        return _paths(word)
    if head == "upload" and n == 2:
        return _match(word, (*rooms, *users))
    if head == "download" and n == 2:
        return _paths(word)
    if head == "help" and n == 1:
        return _match(word, known.commands)
    return _generic(word, known)


def _generic(word: str, known: Known) -> list[str]:
    """In message text: `@` and `#` prefixes pick users and rooms; a bare word, users."""
    if word.startswith("@"):
        return _match(word, ("@" + u for u in known.users))
    if word.startswith("#"):
        return _match(word, (GENERAL, *known.rooms))
    return _match(word, known.users) if word else []
