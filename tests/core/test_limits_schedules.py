"""Timed work in slices (issue 13, item 5), the core's half: due schedules fire at most
`limits.schedules_per_tick` per tick, each exactly once."""

from __future__ import annotations

import gc
import time

from chatd.core.outcome import PutMessage
from chatd.core.parts import Pending
from chatd.protocol.events import Error
from tests.helpers.core import Core

N = 30_000


def test_30000_due_at_once_fire_in_short_ticks() -> None:
    core = Core(limits__private_messages_per_window=0)
    core.login("alice")
    core.login("bob")
    book = core.chat.schedules
    at = core.now + 60
    for i in range(N):
        book.add(Pending(book.next_id, "alice", at, f"send bob m{i}", core.now))
    core.now = at
    gc.collect()
    gc.freeze()  # as the daemon does after loading (chatd/cli.py): no full collections
    try:
        longest, ticks, texts = 0.0, 0, []
        while (wake := core.chat.next_wakeup()) is not None and wake <= core.now:
            started = time.thread_time()  # CPU time: what the loop is held, not the load
            out = core.chat.tick(core.now)
            longest = max(longest, time.thread_time() - started)
            ticks += 1
            texts += [x.message.text for x in out.changes if isinstance(x, PutMessage)]
            assert not [e for e in out.replies if isinstance(e, Error)]
            assert ticks <= N
    finally:
        gc.unfreeze()
    assert ticks == N // 100  # limits.schedules_per_tick
    assert longest < 0.05, longest  # before: one tick of ~1.2 s
    assert sorted(texts) == sorted(f"m{i}" for i in range(N))  # each exactly once
    assert not book.by_id and not book.heap


def test_a_slice_leaves_the_rest_due() -> None:
    core = Core(limits__schedules_per_tick=2)
    s = core.login("alice")
    for i in range(5):
        core.ok(s, f"schedule +10s send_all m{i}")
    out = core.tick(10)
    assert [x.message.text for x in out.changes if isinstance(x, PutMessage)] == ["m0", "m1"]
    assert core.chat.next_wakeup() == core.now  # again at once
    core.tick()
    out = core.tick()
    assert [x.message.text for x in out.changes if isinstance(x, PutMessage)] == ["m4"]
    assert core.chat.schedules_wakeup() is None


def test_timed_work_waits_while_the_store_fails() -> None:
    core = Core(store__commit_retry_s=2.0)
    s = core.login("alice")
    core.ok(s, "schedule +10s send_all later")
    core.chat.store_failing = True  # the server sets it when a commit fails
    out = core.tick(10)
    assert not out.changes and core.chat.next_wakeup() == core.now + 2.0  # no spin
    core.chat.store_failing = False
    out = core.tick(2)
    assert [x.message.text for x in out.changes if isinstance(x, PutMessage)] == ["later"]
