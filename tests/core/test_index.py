"""The core's message index and recent window (chatd/core/index.py)."""

from __future__ import annotations

from chatd.core.index import MessageIndex, RecentWindow
from chatd.core.snapshot import MessageRow
from chatd.protocol.events import FileInfo, Message


def _index() -> MessageIndex:
    ix = MessageIndex()
    rows = [
        MessageRow(1, "#general", "ann", 10.0),
        MessageRow(2, "@ann|bob", "bob", 11.0),
        MessageRow(3, "#general", "bob", 12.0),
        MessageRow(4, "#general", "ann", 13.0, reply_to=1),
        MessageRow(5, "#dev", "ann", 14.0, file=FileInfo(9, "a.txt", 3, "ab" * 32)),
        MessageRow(6, "#general", "bob", 15.0),
    ]
    for r in rows:
        ix.add(r)
    return ix


def test_lookups_by_id_and_by_chat() -> None:
    ix = _index()
    assert len(ix) == 6 and list(ix.ids()) == [1, 2, 3, 4, 5, 6]
    assert ix.chat_of(2) == "@ann|bob" and ix.chat_of(7) is None
    assert ix.row(4) == MessageRow(4, "#general", "ann", 13.0, 1, None)
    assert ix.comments == {1: [4]} and ix.files[5].name == "a.txt"
    assert ix.last("#general", 2) == [4, 6]
    assert ix.last("#general", 2, before=4) == [1, 3]
    assert ix.count_after("#general", 1) == 3
    assert ix.count_after("#general", 1, but="bob") == 1


def test_after_merges_chats_in_id_order_and_leaves_out_your_own() -> None:
    ix = _index()
    chats = ["#general", "@ann|bob", "#dev"]
    assert ix.after(chats, 0) == [1, 2, 3, 4, 5, 6]
    assert ix.after(chats, 2, limit=2) == [3, 4]
    assert ix.after(chats, 0, upto=4) == [1, 2, 3, 4]
    # ann's own messages up to 4 are not unread; later ones (other sessions) are live
    assert ix.after(chats, 0, but="ann", but_upto=4) == [2, 3, 5, 6]


def test_forgetting_prefixes_chats_and_single_messages() -> None:
    ix = _index()
    assert ix.drop_prefix("#general", 2) == [1, 3]
    assert ix.chat_of(1) is None and ix.last("#general", 9) == [4, 6]
    assert ix.comments == {}  # its comment's link went with the root
    assert ix.drop_chat("#dev") == [5] and 5 not in ix.files
    ix.remove([6, 99])
    assert list(ix.ids()) == [2, 4] and len(ix) == 2


def test_many_holes_are_compacted() -> None:
    ix = MessageIndex()
    for i in range(1, 5001):
        ix.add(MessageRow(i, "#general" if i % 2 else "#x", "ann", float(i)))
    ix.drop_chat("#x")
    ix.drop_prefix("#general", 1000)
    assert len(ix) == 1500
    assert ix.chat_of(2001) == "#general" and ix.chat_of(2002) is None
    assert len(ix._all_ids) < 5000  # compacted, not 5000 slots with 3500 holes


def _m(i: int, text: str = "x" * 100) -> Message:
    return Message(i, "#general", "ann", text, float(i))


def test_the_window_keeps_the_newest_within_its_budget_but_never_what_is_not_durable() -> None:
    w = RecentWindow(budget=3 * 300)  # each costs its text + 200
    for i in range(1, 6):
        w.add(_m(i))
    assert len(w) == 5  # nothing is durable yet: all stay
    w.durable = 3
    w.trim()
    assert [i for i in range(1, 6) if i in w] == [3, 4, 5]  # 1, 2 went; 4, 5 must stay
    w.durable = 5
    w.add(_m(6))
    assert [i for i in range(1, 7) if i in w] == [4, 5, 6]
    found, missing = w.split([2, 4, 6])
    assert sorted(found) == [4, 6] and missing == [2]
    w.remove([5])
    assert w.get(5) is None and len(w) == 2
