"""RateWindow, the one fixed-window rate limit, and how addresses are counted."""

from __future__ import annotations

from chatd.core.flood import RateWindow, address_key, in_networks


def test_fixed_window_counts_until_its_end() -> None:
    rw = RateWindow()
    key = ("alice", "room")
    assert [rw.hit(key, 3, 60.0, 100.0 + i) for i in range(3)] == [0.0, 0.0, 0.0]
    assert rw.hit(key, 3, 60.0, 110.0) == 50.0  # refused: the window started at 100
    assert rw.wait(key, 3, 60.0, 110.0) == 50.0 and rw.count(key, 110.0) == 3
    assert rw.hit(("alice", "private"), 3, 60.0, 110.0) == 0.0  # kinds apart
    assert rw.hit(("bob", "room"), 3, 60.0, 110.0) == 0.0  # users apart
    assert rw.hit(key, 3, 60.0, 160.0) == 0.0  # a new window
    assert rw.count(key, 160.0) == 1


def test_zero_means_no_limit_and_ended_windows_are_pruned() -> None:
    rw = RateWindow()
    assert all(rw.hit(("a", "x"), 0, 60.0, 1.0) == 0.0 for _ in range(1000))
    assert len(rw) == 0
    for i in range(5000):
        rw.hit((f"u{i}", "x"), 5, 10.0, float(i))
    assert len(rw) < 1100  # pruned as keys are added: only windows still open stay


def test_ipv6_counts_per_64() -> None:
    assert address_key("2001:db8:1:2:aaaa::1") == address_key("2001:db8:1:2:bbbb::2")
    assert address_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert address_key("2001:db8:1:3::1") != address_key("2001:db8:1:2::1")
    assert address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert address_key("192.0.2.7") == "192.0.2.7"
    assert address_key("fe80::1%eth0") == "fe80::/64"
    assert address_key("local") == "local"


def test_exempt_networks() -> None:
    loopback = ("127.0.0.0/8", "::1/128")
    assert in_networks("127.0.0.1", loopback) and in_networks("127.9.9.9", loopback)
    assert in_networks("::1", loopback)
    assert not in_networks("192.0.2.1", loopback) and not in_networks("::2", loopback)
    assert not in_networks("127.0.0.1", ())
    assert not in_networks("local", loopback)
