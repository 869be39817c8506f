"""Scenario definitions: loadgen parameters and the metrics the table shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

Params = dict[str, float]


@dataclass(frozen=True)
class Metric:
    """One table row: a label and a path into the loadgen's JSON (`latency_ms.p99`)."""

    label: str
    path: str


@dataclass(frozen=True)
class Scenario:
    """A named loadgen run: its kind (`--scenario`), parameters and headline metrics."""

    name: str
    kind: str
    params: Params
    metrics: tuple[Metric, ...]

    @property
    def connections(self) -> int:
        """How many client connections the scenario opens."""
        return int(self.params.get("clients", 2 * self.params.get("pairs", 0)))

    def with_overrides(self, overrides: Mapping[str, float]) -> Scenario:
        """The same scenario with some parameters replaced (unknown names are errors)."""
        unknown = set(overrides) - set(self.params)
        if unknown:
            known = ", ".join(sorted(self.params))
            raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {known}")
        return Scenario(self.name, self.kind, {**self.params, **overrides}, self.metrics)


CPU = (
    Metric("server CPU %", "server_cpu_pct"),
    Metric("loadgen CPU %", "gen_cpu_pct"),
    Metric("other processes CPU %", "other_cpu_pct"),  # > ~5: the machine was not quiet
)

_FANOUT_METRICS = (
    Metric("deliveries/s", "deliveries_per_s"),
    Metric("messages/s (acked)", "messages_per_s"),
    Metric("lost deliveries", "lost"),
    Metric("disconnected clients", "disconnects"),
    Metric("delivery latency p99 ms", "latency_ms.p99"),
    Metric("ack latency p99 ms", "ack_ms.p99"),
    *CPU,
)

# Every parameter maps to a loadgen flag of the same name (`join=0` means `--no-join`);
# `join` only matters for IRC: whether clients JOIN #general after registering.
# `timeout` bounds the setup (connect + login); measured phases last `duration` s.
PINGPONG = (
    Metric("round trips/s", "round_trips_per_s"),
    Metric("RTT p50 ms", "rtt_ms.p50"),
    Metric("RTT p99 ms", "rtt_ms.p99"),
    Metric("RTT max ms", "rtt_ms.max"),
    Metric("lost", "lost"),
    *CPU,
)

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "fanout100",
            "fanout",
            {"clients": 100, "senders": 10, "inflight": 8, "duration": 10, "join": 1},
            _FANOUT_METRICS,
        ),
        Scenario(
            "fanout1000",
            "fanout",
            {"clients": 1000, "senders": 10, "inflight": 8, "duration": 10, "join": 1},
            _FANOUT_METRICS,
        ),
        Scenario(
            "latency",
            "rate",
            {"clients": 1000, "senders": 10, "rate": 1000, "duration": 10, "join": 1},
            (
                Metric("delivery latency p50 ms", "latency_ms.p50"),
                Metric("delivery latency p99 ms", "latency_ms.p99"),
                Metric("delivery latency max ms", "latency_ms.max"),
                Metric("lost deliveries", "lost"),
                Metric("disconnected clients", "disconnects"),
                Metric("deliveries/s", "deliveries_per_s"),
                Metric("ack latency p99 ms", "ack_ms.p99"),
                *CPU,
            ),
        ),
        Scenario(
            "idle",
            "idle",
            {"clients": 10000, "join": 0, "timeout": 300},
            (
                Metric("KiB RSS per connection", "rss_per_conn_kib"),
                Metric("RSS before KiB", "rss_before_kib"),
                Metric("RSS after KiB", "rss_after_kib"),
                Metric("setup s", "setup_s"),
            ),
        ),
        Scenario(
            "logins",
            "logins",
            {"clients": 5000, "join": 0, "timeout": 30},
            (
                Metric("time to all OKs s", "all_ok_s"),
                Metric("logged in", "ready"),
                Metric("login latency p50 ms", "login_ms.p50"),
                Metric("login latency p99 ms", "login_ms.p99"),
                *CPU,
            ),
        ),
        Scenario(
            "pingpong",
            "pingpong",
            {"pairs": 10, "duration": 10, "join": 0},
            PINGPONG,
        ),
        # One pair alone: what a lone message costs, and any stall (issue 17).
        Scenario("pingpong1", "pingpong", {"pairs": 1, "duration": 10, "join": 0}, PINGPONG),
    )
}


def parse(spec: str) -> Scenario:
    """`fanout100` or `fanout100:clients=5:senders=1:duration=1` to a Scenario."""
    name, *items = spec.split(":")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    overrides: dict[str, float] = {}
    for item in filter(None, items):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"{spec}: expected key=value, got {item!r}")
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{spec}: {key} must be a number, got {value!r}") from None
        overrides[key.strip()] = int(number) if number.is_integer() else number
    return SCENARIOS[name].with_overrides(overrides)


def lookup(result: Mapping[str, object], path: str) -> float | None:
    """The number at a dotted path in a loadgen result, or None."""
    node: object = result
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        return None
    return float(node)
