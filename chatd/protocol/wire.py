"""JSON-mode objects back into the typed values: what a client reads.

The inverse of the JSON renderer: `reply_from_json` gives the reply's kind from
replies.py, `notice_from_json` the notice's from notices.py, `message_from_json` a
Push, `error_from_json` an Error, and `event_from_json` any of them. A kind the client
does not know (a newer server) becomes AnyOk/AnyNotice; an object that does not fit its
kind raises WireError, so a broken reply is told apart from an unknown one.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.commands import lookup
from chatd.protocol.events import Code, Error, Event, FileInfo, Message, Notice, Ok, Push


class WireError(ValueError):
    """A JSON object that does not fit the kind it names."""


def _kinds(module: types.ModuleType, base: type) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for value in vars(module).values():
        if isinstance(value, type) and issubclass(value, base) and value is not base:
            name = getattr(value, "kind", None) or getattr(value, "event", None)
            if isinstance(name, str) and name:
                found[name] = value
    return found


REPLIES: dict[str, type[Ok]] = _kinds(r, Ok)
NOTICES: dict[str, type[Notice]] = _kinds(n, Notice)
_RENAMED = {"from_": "from"}  # Python names of wire keys that are keywords


def event_from_json(obj: Mapping[str, Any]) -> Event:
    kind = obj.get("type")
    if kind == "ok":
        return reply_from_json(obj)
    if kind == "error":
        return error_from_json(obj)
    if kind == "message":
        return message_from_json(obj)
    if kind == "notice":
        return notice_from_json(obj)
    raise WireError(f"unknown object type {kind!r}")


def reply_from_json(obj: Mapping[str, Any]) -> Ok:
    cmd = str(obj.get("cmd") or "")
    spec = lookup(cmd)
    name = spec.name if spec is not None else cmd
    fields = {k: v for k, v in obj.items() if k not in ("type", "cmd")}
    cls = REPLIES.get(name)
    if cls is None:
        return r.AnyOk(name, cmd, fields)
    if cls is r.StatsOk:
        return r.StatsOk(cmd, fields)
    return typing.cast(Ok, _build(cls, fields, cmd=cmd))


def notice_from_json(obj: Mapping[str, Any]) -> Notice:
    event = str(obj.get("event") or "")
    fields = {k: v for k, v in obj.items() if k not in ("type", "event")}
    cls = NOTICES.get(event)
    if cls is None:
        return n.AnyNotice(event, fields)
    return typing.cast(Notice, _build(cls, fields))


def error_from_json(obj: Mapping[str, Any]) -> Error:
    try:
        code = Code(obj["code"])
    except (KeyError, ValueError) as e:
        raise WireError(f"error without a known code: {obj!r}") from e
    retry = obj.get("retry_after")
    return Error(code, str(obj.get("message", "")), obj.get("cmd"), retry)


def message_from_json(obj: Mapping[str, Any]) -> Push:
    """A message as the server showed it to this reader (`chat` as they see it)."""
    try:
        f = obj.get("file")
        m = Message(
            int(obj["id"]),
            str(obj["chat"]),
            str(obj["from"]),
            str(obj["text"]),
            _time(obj["ts"]),
            obj.get("reply_to"),
            obj.get("to"),
            typing.cast(FileInfo, _build(FileInfo, f)) if isinstance(f, Mapping) else None,
        )
    except (KeyError, TypeError) as e:
        raise WireError(f"not a message: {obj!r}") from e
    return Push(m, None, bool(obj.get("replay", False)))


# Building a dataclass from its wire fields --------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build(cls: type, data: Mapping[str, Any], **given: Any) -> object:
    if not isinstance(data, Mapping):
        raise WireError(f"{cls.__name__}: expected an object, got {data!r}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
            continue
        key = _RENAMED.get(f.name, f.name)
        if key not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise WireError(f"{cls.__name__}: missing {key}")
            continue
        values[f.name] = _value(hints[f.name], data[key], bool(f.metadata.get("time")))
    return cls(**values)


def _value(hint: Any, raw: Any, is_time: bool) -> Any:
    if raw is None:
        return None
    if is_time:
        return _time(raw)
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(inner[0], raw, False) if len(inner) == 1 else raw
    if origin is tuple:
        (item, *_rest) = typing.get_args(hint)
        return tuple(_value(item, x, False) for x in _list(raw))
    if hint is Push:
        return message_from_json(raw)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _build(hint, raw)
    return raw


def _list(raw: Any) -> list[Any]:
    if not isinstance(raw, list):
        raise WireError(f"expected a list, got {raw!r}")
    return raw


def _time(raw: Any) -> float:
    try:
        return datetime.fromisoformat(str(raw)).timestamp()
    except ValueError as e:
        raise WireError(f"not an RFC 3339 time: {raw!r}") from e
