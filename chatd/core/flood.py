"""Pure rate-limiting arithmetic: a token bucket (per-connection flood guard), the
failed-login throttle, and fixed windows per user and kind (RateWindow). No clock of
their own: every call takes `now`, so the tests drive them with plain numbers and the
server passes the loop's monotonic time or its clock.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass


class TokenBucket:
    """`capacity` tokens, refilled at `rate` per second; a command costs one.

    The flood guard of a connection: a client may send `capacity` commands at once (a
    paste, a script's burst), then `rate` per second on average. Time running backwards
    (it never should: the server passes monotonic time) refills nothing.
    """

    __slots__ = ("_stamp", "_tokens", "capacity", "rate")

    def __init__(self, capacity: float, rate: float, now: float) -> None:
        if capacity < 1 or rate <= 0:
            raise ValueError("a bucket needs capacity >= 1 and rate > 0")
        self.capacity = float(capacity)
        self.rate = float(rate)
        self._tokens = self.capacity
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def tokens(self, now: float) -> float:
        """Tokens available at `now`."""
        self._refill(now)
        return self._tokens

    def take(self, now: float, n: float = 1.0) -> bool:
        """Spends `n` tokens if there are that many; False (and spends nothing) if not."""
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def wait(self, now: float, n: float = 1.0) -> float:
        """Seconds until `n` tokens are available (0 if they are now); `n` is capped at
        the capacity, so the answer is always finite."""
        self._refill(now)
        missing = min(n, self.capacity) - self._tokens
        return max(0.0, missing / self.rate)


@dataclass(slots=True)
class _Failures:
    count: int
    last: float  # last failure, or last try let through while throttled


class LoginThrottle:
    """Failed password checks per key (`ip:<address>`, `user:<name>`).

    After `free` failures a key is throttled: one try per `interval` seconds, so a
    password cannot be guessed at line rate from one address or against one account,
    whatever the number of connections. A try let through while throttled takes the
    slot at once (before the slow hash runs), so parallel connections do not each get
    one. A key's failures are forgotten `memory` seconds after its last one; a correct
    password clears the account's key (not the address's: logging in to one's own
    account must not reset an address that is guessing others).
    """

    __slots__ = ("_keys", "free", "interval", "memory")

    def __init__(self, free: int, interval: float, memory: float) -> None:
        self._keys: dict[str, _Failures] = {}
        self.configure(free, interval, memory)

    def configure(self, free: int, interval: float, memory: float) -> LoginThrottle:
        """Sets the limits (they may change while running: a config reload)."""
        self.free = free
        self.interval = interval
        self.memory = memory
        return self

    def _get(self, key: str, now: float) -> _Failures | None:
        f = self._keys.get(key)
        if f is not None and now - f.last >= self.memory:
            del self._keys[key]
            return None
        return f

    def check(self, keys: Iterable[str], now: float) -> float:
        """Seconds to wait before a password may be tried for these keys (0: go on).

        A go-ahead for a throttled key counts as its one try of this interval."""
        keys = tuple(keys)
        wait = 0.0
        throttled: list[_Failures] = []
        for key in keys:
            f = self._get(key, now)
            if f is None or f.count < self.free:
                continue
            wait = max(wait, f.last + self.interval - now)
            throttled.append(f)
        if wait > 0:
            return wait
        for f in throttled:
            f.last = now
        return 0.0

    def failed(self, keys: Iterable[str], now: float) -> None:
        """A wrong password for these keys."""
        for key in keys:
            f = self._get(key, now)
            if f is None:
                self._keys[key] = _Failures(1, now)
                if len(self._keys) % 1024 == 0:
                    self.prune(now)
            else:
                f.count += 1
                f.last = now

    def succeeded(self, key: str) -> None:
        """A correct password: the account's failures are forgiven."""
        self._keys.pop(key, None)

    def prune(self, now: float) -> None:
        """Forgets keys whose last failure is older than `memory` (bounds memory)."""
        stale = [k for k, f in self._keys.items() if now - f.last >= self.memory]
        for k in stale:
            del self._keys[k]

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(slots=True)
class _Window:
    end: float  # the window started at its first event and lasts until here
    count: int


class RateWindow:
    """At most `limit` events per `window` seconds per key, in fixed windows.

    A key's window starts at its first event and ends `window` seconds later; then the
    count starts again. One mechanism for every per-user and per-address limit: the key
    is `(who, kind)` (`("alice", "general")`, `("alice", "room-message")`,
    `("2001:db8:1:2::/64", "account")`), and each kind passes its own limit and window,
    read from the live config on every call (a reload changes them at once). A limit
    of 0 means no limit. Ended windows are pruned as keys are added, so memory follows
    the keys active within the longest window.
    """

    __slots__ = ("_added", "_windows")

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], _Window] = {}
        self._added = 0

    def _current(self, key: tuple[str, str], now: float) -> _Window | None:
        w = self._windows.get(key)
        if w is not None and now >= w.end:
            del self._windows[key]
            return None
        return w

    def wait(self, key: tuple[str, str], limit: int, window: float, now: float) -> float:
        """Seconds until one more event is allowed (0: now); counts nothing."""
        w = self._current(key, now)
        if limit <= 0 or w is None or w.count < limit:
            return 0.0
        return w.end - now

    def hit(self, key: tuple[str, str], limit: int, window: float, now: float) -> float:
        """Counts one event if it is allowed and returns 0; else counts nothing and
        returns the seconds until one is allowed."""
        if limit <= 0:
            return 0.0
        w = self._current(key, now)
        if w is None:
            self._windows[key] = _Window(now + window, 1)
            self._added += 1
            if self._added % 1024 == 0:
                self.prune(now)
            return 0.0
        if w.count >= limit:
            return w.end - now
        w.count += 1
        return 0.0

    def count(self, key: tuple[str, str], now: float) -> int:
        """Events counted in the key's current window."""
        w = self._current(key, now)
        return 0 if w is None else w.count

    def prune(self, now: float) -> None:
        """Forgets every ended window."""
        ended = [k for k, w in self._windows.items() if now >= w.end]
        for k in ended:
            del self._windows[k]

    def __len__(self) -> int:
        return len(self._windows)


@functools.lru_cache(maxsize=65536)
def address_key(address: str) -> str:
    """The unit an address is limited by: an IPv4 address itself, an IPv6 address's
    /64 (one subscriber's usual allocation: counting single IPv6 addresses would let one
    host use 2**64 of them), an IPv4-mapped IPv6 address as IPv4. Anything else (a Unix
    socket, a name) as given."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


@functools.lru_cache(maxsize=65536)
def in_networks(address: str, networks: tuple[str, ...]) -> bool:
    """Whether an address lies in one of the networks (CIDR texts, checked at config
    load). Both are pure functions of their texts, asked for every connection and new
    account (a login storm from few addresses): cached, parsing costs ~20 us."""
    if not networks:
        return False
    try:
        ip = ipaddress.ip_network(address.split("%", 1)[0])
    except ValueError:
        return False
    for text in networks:
        net = ipaddress.ip_network(text, strict=False)
        if ip.version == net.version and ip.subnet_of(net):  # type: ignore[arg-type]
            return True
    return False
