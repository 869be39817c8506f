"""The IRC door's read-only views: chathistory pages by id and time, targets, read
markers, channel members, all within chatd's visibility rule."""

from __future__ import annotations

import pytest

from chatd.core import irc_queries as q
from chatd.core.state import Refused
from chatd.protocol.events import Code
from tests.helpers.core import Harness


@pytest.fixture
def h() -> Harness:
    h = Harness()
    a = h.login("ann")
    for i in range(1, 6):
        h.run(a, f"send_all m{i}")
        h.now += 10
    b = h.login("bob")
    h.run(b, "send ann private")
    h.run(a, "room create #den")
    h.run(a, "send #den inside")
    return h


def test_pages_by_id_and_time(h: Harness) -> None:
    c = h.chat

    def _texts(ids: list[int]) -> list[str]:
        return [m.text for m in h.store.read(ids)]

    assert _texts(q.latest(c, "#general", q.Ref(), 2)) == ["m4", "m5"]
    assert _texts(q.latest(c, "#general", q.Ref(id=3), 10)) == ["m4", "m5"]
    assert _texts(q.before(c, "#general", q.Ref(id=3), 10)) == ["m1", "m2"]
    assert _texts(q.after(c, "#general", q.Ref(id=3), 1)) == ["m4"]
    assert _texts(q.around(c, "#general", q.Ref(id=3), 3)) == ["m2", "m3", "m4"]
    t3 = h.store.messages[3].ts
    assert _texts(q.before(c, "#general", q.Ref(ts=t3), 10)) == ["m1", "m2"]
    assert _texts(q.after(c, "#general", q.Ref(ts=t3), 10)) == ["m4", "m5"]
    assert _texts(q.between(c, "#general", q.Ref(id=1), q.Ref(id=5), 10)) == ["m2", "m3", "m4"]
    assert _texts(q.between(c, "#general", q.Ref(id=5), q.Ref(id=1), 2)) == ["m3", "m4"]


def test_targets_and_visibility(h: Harness) -> None:
    c = h.chat
    ann, bob = c.accounts["ann"], c.accounts["bob"]
    assert q.chat_key(c, bob, "ann") == "@ann|bob"
    with pytest.raises(Refused) as e:
        q.chat_key(c, bob, "#den")
    assert e.value.code == Code.NOT_A_MEMBER
    found = [t for t, _ in q.targets(c, ann, 0, 2e9, 10)]
    assert sorted(found) == ["#den", "#general", "bob"]
    assert [t for t, _ in q.targets(c, bob, 0, 2e9, 10)] == ["#general", "ann"]


def test_targets_match_a_chats_latest_message_strictly_inside_the_window(h: Harness) -> None:
    """draft/chathistory TARGETS: a chat active in the window but again after it is not
    listed, and both ends are exclusive (in whole milliseconds)."""
    c, ann = h.chat, h.chat.accounts["ann"]
    general_last = c.index.chats["#general"].times[-1]  # m5, before bob's and #den's
    before = [t for t, _ in q.targets(c, ann, 0, general_last, 10)]
    assert before == []  # #general's latest is the window's end: excluded
    after = [t for t, when in q.targets(c, ann, general_last, 2e9, 10)]
    assert after == ["bob", "#den"]  # #general's latest is the window's start: excluded
    h.now += 10
    h.run(h.login("carol"), "send_all later")  # #general active again, after the window
    window = [t for t, _ in q.targets(c, ann, 0, general_last + 5, 10)]
    assert "#general" not in window


def test_members_and_read_marker(h: Harness) -> None:
    c = h.chat
    ann, bob = c.accounts["ann"], c.accounts["bob"]
    key, members = q.members(c, ann, "#DEN")
    assert key == "#den" and [(m.name, m.op) for m in members] == [("ann", True)]
    with pytest.raises(Refused):
        q.members(c, bob, "#den")
    with pytest.raises(Refused) as e:
        q.members(c, bob, "#nowhere")
    assert e.value.code == Code.NO_SUCH_CHAT
    assert {m.name for m in q.members(c, bob, "#general")[1]} == {"ann", "bob"}
    assert q.read_marker(c, bob, "#den") is None
    assert q.channels(c, ann)[1][0] == "#den"
