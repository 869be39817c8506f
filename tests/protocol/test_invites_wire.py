"""Invitations that need consent on the wire: the replies and notices round-trip
through the JSON renderer and read as people expect in text mode."""

from __future__ import annotations

import json

import pytest

from chatd.protocol import notices as n
from chatd.protocol import replies as r
from chatd.protocol.events import Event, Mode
from chatd.protocol.render import Renderer
from chatd.protocol.wire import event_from_json

T = 1_800_000_000.0
WEEK = T + 7 * 86400

SAMPLES: list[Event] = [
    r.RoomOk("room", "#dev", "bob", expires=WEEK, status="invited"),
    r.RoomOk("room", "#dev", "bob", status="added"),
    r.RoomOk("room", "#dev", members=("alice", "bob")),
    r.RoomsOk("rooms", (r.RoomRow("#dev", "alice", 2),), (r.InvitationRow("#ops", "carol", WEEK),)),
    n.Invitation("#dev", "alice", WEEK),
    n.Declined("#dev", "bob"),
    n.Uninvited("#dev", "alice"),
]


def wire(event: Event) -> dict[str, object]:
    value = json.loads(Renderer().render(event, Mode.JSON))
    assert isinstance(value, dict)
    return value


def text(event: Event) -> list[str]:
    return Renderer().render(event, Mode.TEXT).decode().splitlines()


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_kind_survives_the_round_trip(event: Event) -> None:
    back = event_from_json(wire(event))
    assert type(back) is type(event)
    assert wire(back) == wire(event)


def test_json_fields() -> None:
    assert wire(SAMPLES[0]) == {
        "type": "ok",
        "cmd": "room",
        "room": "#dev",
        "user": "bob",
        "expires": "2027-01-22T08:00:00.000Z",
        "status": "invited",
    }
    assert wire(r.RoomsOk("rooms", ())) == {"type": "ok", "cmd": "rooms", "rooms": []}
    assert wire(SAMPLES[3])["invites"] == [
        {"room": "#ops", "by": "carol", "expires": "2027-01-22T08:00:00.000Z"}
    ]


def test_text_mode() -> None:
    until = "2027-01-22T08:00:00.000Z"
    assert text(SAMPLES[0]) == [f"OK invited bob to #dev until {until}"]
    assert text(SAMPLES[1]) == ["OK added bob to #dev"]
    assert text(SAMPLES[3]) == [
        "  #dev (owner alice, 2 members)",
        f"  #ops (invited by carol until {until}: room accept|decline #ops)",
        "OK 1 room, 1 invitation",
    ]
    assert text(r.RoomsOk("rooms", (r.RoomRow("#dev", "alice", 2),))) == [
        "  #dev (owner alice, 2 members)",
        "OK 1 room",
    ]
    assert text(SAMPLES[4]) == [
        f"* alice invites you to #dev: room accept #dev or room decline #dev (until {until})"
    ]
    assert text(SAMPLES[5]) == ["* bob declined the invitation to #dev"]
    assert text(SAMPLES[6]) == ["* alice withdrew the invitation to #dev"]
