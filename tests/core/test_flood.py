"""The pure rate limiters (chatd/core/flood.py) with an injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chatd.core.flood import LoginThrottle, TokenBucket

# TokenBucket ---------------------------------------------------------------------------


def test_bucket_allows_a_burst_then_refuses() -> None:
    b = TokenBucket(5, 2.0, now=100.0)
    assert [b.take(100.0) for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_at_its_rate() -> None:
    b = TokenBucket(5, 2.0, now=0.0)
    for _ in range(5):
        assert b.take(0.0)
    assert not b.take(0.0)
    assert b.wait(0.0) == pytest.approx(0.5)
    assert not b.take(0.4)
    assert b.take(0.5)
    assert not b.take(0.5)
    assert b.wait(0.5, 3) == pytest.approx(1.5)


def test_bucket_never_holds_more_than_its_capacity() -> None:
    b = TokenBucket(3, 10.0, now=0.0)
    assert b.tokens(1000.0) == 3
    assert [b.take(1000.0) for _ in range(4)] == [True, True, True, False]


def test_bucket_wait_is_capped_at_capacity_and_zero_when_available() -> None:
    b = TokenBucket(4, 1.0, now=0.0)
    assert b.wait(0.0) == 0
    for _ in range(4):
        b.take(0.0)
    assert b.wait(0.0, 100) == pytest.approx(4.0)  # asks for more than fits: the capacity


def test_bucket_ignores_time_going_back() -> None:
    b = TokenBucket(2, 1.0, now=10.0)
    b.take(10.0)
    b.take(10.0)
    assert not b.take(5.0)
    assert b.tokens(5.0) == 0
    assert b.take(11.0)


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(0, 1.0, now=0.0)
    with pytest.raises(ValueError):
        TokenBucket(1, 0.0, now=0.0)


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(1, 50),
    rate=st.floats(0.1, 100.0),
    steps=st.lists(st.floats(0.0, 2.0), max_size=60),
)
def test_bucket_never_lets_through_more_than_burst_plus_rate(
    capacity: int, rate: float, steps: list[float]
) -> None:
    """Over any span, what passes is at most capacity + rate * elapsed."""
    b = TokenBucket(capacity, rate, now=0.0)
    now = 0.0
    passed = 0
    for dt in steps:
        now += dt
        while b.take(now):
            passed += 1
        assert passed <= capacity + rate * now + 1e-6


# LoginThrottle -------------------------------------------------------------------------

KEYS = ("ip:10.0.0.1", "user:alice")


def test_throttle_lets_free_failures_through() -> None:
    t = LoginThrottle(free=5, interval=3.0, memory=900.0)
    for i in range(5):
        assert t.check(KEYS, 100.0 + i) == 0
        t.failed(KEYS, 100.0 + i)
    assert t.check(KEYS, 104.5) == pytest.approx(2.5)  # last failure at 104, + 3 s


def test_throttle_one_try_per_interval_even_in_parallel() -> None:
    t = LoginThrottle(free=2, interval=3.0, memory=900.0)
    t.failed(KEYS, 0.0)
    t.failed(KEYS, 0.0)
    assert t.check(KEYS, 1.0) == pytest.approx(2.0)
    assert t.check(KEYS, 3.0) == 0  # this try takes the slot ...
    assert t.check(KEYS, 3.0) == pytest.approx(3.0)  # ... so a parallel one waits
    t.failed(KEYS, 3.5)
    assert t.check(KEYS, 6.0) == pytest.approx(0.5)


def test_throttle_per_address_and_per_name() -> None:
    t = LoginThrottle(free=1, interval=3.0, memory=900.0)
    t.failed(("ip:a", "user:alice"), 0.0)
    assert t.check(("ip:a", "user:bob"), 1.0) > 0  # same address, other account
    assert t.check(("ip:b", "user:alice"), 1.0) > 0  # other address, same account
    assert t.check(("ip:b", "user:bob"), 1.0) == 0


def test_throttle_success_forgives_the_account_not_the_address() -> None:
    t = LoginThrottle(free=1, interval=3.0, memory=900.0)
    t.failed(KEYS, 0.0)
    t.succeeded("user:alice")
    assert t.check(("ip:other", "user:alice"), 1.0) == 0
    assert t.check(("ip:10.0.0.1", "user:carol"), 1.0) > 0


def test_throttle_forgets_after_its_memory() -> None:
    t = LoginThrottle(free=1, interval=3.0, memory=900.0)
    t.failed(KEYS, 0.0)
    t.failed(KEYS, 10.0)
    assert t.check(KEYS, 11.0) > 0
    assert len(t) == 2
    t.prune(909.0)
    assert len(t) == 2
    assert t.check(KEYS, 910.0) == 0
    t.failed(("ip:x",), 911.0)
    t.prune(2000.0)
    assert len(t) == 0


def test_throttle_zero_interval_never_throttles() -> None:
    t = LoginThrottle(free=1, interval=0.0, memory=900.0)
    for i in range(10):
        assert t.check(KEYS, float(i)) == 0
        t.failed(KEYS, float(i))
