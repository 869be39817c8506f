"""Metrics: the registry rendered and parsed back strictly as text format 0.0.4, scrapes
over real HTTP on loopback, and the event-loop lag probe against a deliberately blocked loop."""

from __future__ import annotations

import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chatd.server.metrics import (
    CONTENT_TYPE,
    ChatdMetrics,
    Gauge,
    Histogram,
    LoopLagProbe,
    Registry,
    start_metrics_server,
)
from tests.helpers.metrics import parse

TIMEOUT_S = 10.0  # a guard against hanging, never a measured quantity


# --- the registry --------------------------------------------------------------------


def test_counters_gauges_and_labels_render_and_parse() -> None:
    reg = Registry()
    accepted = reg.counter("chatd_connections_accepted_total", "Connections accepted.")
    online = reg.gauge("chatd_sessions_online", "Sessions logged in.")
    sent = reg.counter_family("chatd_messages_sent_total", "Messages, by kind.", ("kind",))
    queue = reg.gauge_family("chatd_queue_depth", "Queued lines.", ("shard", "kind"))
    reg.gauge_callback("chatd_rooms", "Rooms open.", lambda: 7)

    accepted.value += 1
    accepted.inc(2)
    online.set(5)
    online.dec()
    group = sent.labels("group")
    assert sent.labels("group") is group  # children are cached for the hot path
    for _ in range(3):
        group.value += 1
    sent.labels("direct").inc()
    queue.labels("0", "out").set(2.5)

    text = reg.render()
    exp = parse(text)
    assert exp.types == {
        "chatd_connections_accepted_total": "counter",
        "chatd_sessions_online": "gauge",
        "chatd_messages_sent_total": "counter",
        "chatd_queue_depth": "gauge",
        "chatd_rooms": "gauge",
    }
    assert exp.helps["chatd_messages_sent_total"] == "Messages, by kind."
    assert exp.value("chatd_connections_accepted_total") == 3
    assert exp.value("chatd_sessions_online") == 4
    assert exp.value("chatd_messages_sent_total", kind="group") == 3
    assert exp.value("chatd_messages_sent_total", kind="direct") == 1
    assert exp.value("chatd_queue_depth", shard="0", kind="out") == 2.5
    assert exp.value("chatd_rooms") == 7
    assert 'chatd_queue_depth{shard="0",kind="out"} 2.5\n' in text  # label order kept


def test_histogram_buckets_are_cumulative() -> None:
    reg = Registry()
    h = reg.histogram("chatd_store_commit_seconds", "Commit time.", buckets=(0.01, 0.1, 1))
    for v in (0.005, 0.01, 0.05, 0.5, 3.0):
        h.observe(v)
    assert h.count == 5
    exp = parse(reg.render())
    bucket = "chatd_store_commit_seconds_bucket"
    assert exp.value(bucket, le="0.01") == 2  # `le` is inclusive
    assert exp.value(bucket, le="0.1") == 3
    assert exp.value(bucket, le="1.0") == 4
    assert exp.value(bucket, le="+Inf") == 5
    assert exp.value("chatd_store_commit_seconds_count") == 5
    assert exp.value("chatd_store_commit_seconds_sum") == pytest.approx(3.565)


def test_labelled_histograms() -> None:
    reg = Registry()
    fam = reg.histogram_family("chatd_op_seconds", "Op time.", ("op",), buckets=(1, 2))
    fam.labels("read").observe(1.5)
    exp = parse(reg.render())
    assert exp.value("chatd_op_seconds_bucket", op="read", le="1.0") == 0
    assert exp.value("chatd_op_seconds_bucket", op="read", le="2.0") == 1
    assert exp.value("chatd_op_seconds_count", op="read") == 1
    with pytest.raises(ValueError, match="reserved"):
        reg.histogram_family("chatd_x_seconds", "x", ("le",))


def test_escaping_of_help_and_label_values() -> None:
    reg = Registry()
    fam = reg.counter_family("chatd_errors_total", 'Errors\\by "code"\nper client.', ("code",))
    nasty = 'quote " backslash \\ newline \n end'
    fam.labels(nasty).inc()
    text = reg.render()
    assert r'code="quote \" backslash \\ newline \n end"' in text
    assert '# HELP chatd_errors_total Errors\\\\by "code"\\nper client.\n' in text
    exp = parse(text)
    assert exp.value("chatd_errors_total", code=nasty) == 1
    assert exp.helps["chatd_errors_total"] == 'Errors\\by "code"\nper client.'


@given(st.lists(st.text(), min_size=1, max_size=5, unique=True))
def test_any_label_value_round_trips(values: list[str]) -> None:
    reg = Registry()
    fam = reg.counter_family("chatd_any_total", "Anything.", ("v",))
    for i, v in enumerate(values):
        fam.labels(v).inc(i + 1)
    exp = parse(reg.render())
    for i, v in enumerate(values):
        assert exp.value("chatd_any_total", v=v) == i + 1


def test_special_values_and_failing_callbacks() -> None:
    reg = Registry()
    reg.gauge("chatd_inf", "Inf.").set(math.inf)
    reg.gauge("chatd_neg_inf", "-Inf.").set(-math.inf)

    def broken() -> float:
        raise RuntimeError("boom")

    reg.gauge_callback("chatd_broken", "Fails.", broken)
    text = reg.render()
    assert "chatd_inf +Inf\n" in text
    assert "chatd_neg_inf -Inf\n" in text
    assert "chatd_broken NaN\n" in text
    parse(text)


@pytest.mark.parametrize(
    "bad",
    [
        lambda r: r.counter("0starts_with_digit", "x"),
        lambda r: r.counter("has-dash", "x"),
        lambda r: r.counter_family("chatd_x_total", "x", ("bad-label",)),
        lambda r: r.counter_family("chatd_x_total", "x", ("__reserved",)),
        lambda r: r.counter_family("chatd_x_total", "x", ("a", "a")),
        lambda r: r.histogram("chatd_h", "x", buckets=(2, 1)),
        lambda r: r.histogram("chatd_h", "x", buckets=()),
        lambda r: r.histogram("chatd_h", "x", buckets=(1, math.inf)),
        lambda r: r.counter("chatd_taken_total", "again"),
    ],
)
def test_invalid_declarations(bad: Callable[[Registry], object]) -> None:
    reg = Registry()
    reg.counter("chatd_taken_total", "x")
    with pytest.raises(ValueError):
        bad(reg)


def test_wrong_number_of_label_values() -> None:
    fam = Registry().counter_family("chatd_x_total", "x", ("a", "b"))
    with pytest.raises(ValueError, match="expected labels"):
        fam.labels("only-one")


def test_chatd_metrics_and_process_metrics() -> None:
    m = ChatdMetrics.create()
    m.connections_accepted.value += 1
    m.messages_sent.labels("general").value += 1
    m.errors.labels("rate_limited").value += 1
    m.store_commit_seconds.observe(0.002)
    m.loop_lag_seconds.observe(0.0)
    exp = parse(m.registry.render())
    assert exp.value("chatd_connections_accepted_total") == 1
    assert exp.value("chatd_messages_sent_total", kind="general") == 1
    assert exp.value("chatd_errors_total", code="rate_limited") == 1
    assert exp.value("chatd_store_commit_seconds_count") == 1
    assert exp.value("chatd_event_loop_lag_seconds_bucket", le="0.0005") == 1
    assert exp.value("process_open_fds") > 0
    assert exp.value("process_resident_memory_bytes") > 0
    assert exp.value("process_max_fds") > 0
    assert exp.value("process_cpu_seconds_total") > 0
    assert exp.value("process_start_time_seconds") <= time.time()


# --- the event-loop lag probe ---------------------------------------------------------


class RecordingHistogram(Histogram):
    """Keeps each observation and wakes the test when enough have arrived."""

    def __init__(self, wanted: int) -> None:
        super().__init__()
        self.lags: list[float] = []
        self.wanted = wanted
        self.enough = asyncio.Event()

    def observe(self, value: float) -> None:
        super().observe(value)
        self.lags.append(value)
        if len(self.lags) >= self.wanted:
            self.enough.set()


async def test_loop_lag_probe_sees_a_blocked_loop() -> None:
    histogram = RecordingHistogram(wanted=3)
    last = Gauge()
    probe = LoopLagProbe(histogram, interval_s=0.01, last=last)
    probe.start()
    assert probe.running
    # Block the loop past the probe's timer, as a slow callback would: the lag must show it.
    time.sleep(0.05)  # noqa: ASYNC251
    async with asyncio.timeout(TIMEOUT_S):
        await histogram.enough.wait()
    probe.stop()
    assert not probe.running
    probe.stop()
    # The timer was due 0.01 s after start and could not fire before the 0.05 s block ended.
    assert histogram.lags[0] >= 0.039
    assert all(lag >= 0 for lag in histogram.lags)
    assert histogram.count == len(histogram.lags) >= 3
    assert last.value == histogram.lags[-1]


# --- the HTTP endpoint ----------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


async def request(port: int, raw: bytes) -> Response:
    """Sends raw bytes and reads until the server closes, as the endpoint always does."""
    async with asyncio.timeout(TIMEOUT_S):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw)
        await writer.drain()
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    return Response(int(status), headers, body)


def get(path: str, method: str = "GET") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\n\r\n".encode()


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[int, ChatdMetrics]]:
    metrics = ChatdMetrics.create()
    server = await start_metrics_server("127.0.0.1", 0, metrics.registry.render)
    yield server.sockets[0].getsockname()[1], metrics
    server.close()
    await server.wait_closed()


async def test_scrape(endpoint: tuple[int, ChatdMetrics]) -> None:
    port, metrics = endpoint
    first = await request(port, get("/metrics"))
    assert first.status == 200
    assert first.headers["content-type"] == CONTENT_TYPE
    assert first.headers["connection"] == "close"
    assert int(first.headers["content-length"]) == len(first.body)
    exp = parse(first.body.decode())
    assert exp.types["chatd_messages_sent_total"] == "counter"
    assert ("chatd_messages_sent_total", (("kind", "room"),)) not in exp.samples

    metrics.messages_sent.labels("room").value += 2
    second = await request(port, get("/metrics?name[]=x"))
    assert second.status == 200
    assert parse(second.body.decode()).value("chatd_messages_sent_total", kind="room") == 2


async def test_head_has_no_body(endpoint: tuple[int, ChatdMetrics]) -> None:
    port, _ = endpoint
    response = await request(port, get("/metrics", "HEAD"))
    assert response.status == 200
    assert int(response.headers["content-length"]) > 0
    assert response.body == b""


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (get("/"), 404),
        (get("/metrics/extra"), 404),
        (get("/metrics", "POST"), 405),
        (b"GET /metrics\r\n\r\n", 400),
        (b"\x16\x03\x01 tls hello?\r\n\r\n", 400),
        (b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
)
async def test_other_requests(endpoint: tuple[int, ChatdMetrics], raw: bytes, status: int) -> None:
    port, _ = endpoint
    response = await request(port, raw)
    assert response.status == status
    assert int(response.headers["content-length"]) == len(response.body)
    if status == 405:
        assert response.headers["allow"] == "GET, HEAD"


async def test_slow_client_is_cut_off() -> None:
    server = await start_metrics_server("127.0.0.1", 0, lambda: "", request_timeout_s=0.1)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(TIMEOUT_S):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /metrics HTTP/1.1\r\n")  # ...and never finishes the request
            await writer.drain()
            assert await reader.read() == b""  # the server hung up
            writer.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_client_that_leaves_early() -> None:
    server = await start_metrics_server("127.0.0.1", 0, lambda: "")
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(TIMEOUT_S):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /met")
            writer.close()
            await writer.wait_closed()
            # The server survives and still answers.
            assert (await request(port, get("/metrics"))).status == 200
    finally:
        server.close()
        await server.wait_closed()


async def test_render_failure_is_a_500() -> None:
    def broken() -> str:
        raise RuntimeError("boom")

    server = await start_metrics_server("127.0.0.1", 0, broken)
    try:
        response = await request(server.sockets[0].getsockname()[1], get("/metrics"))
        assert response.status == 500
    finally:
        server.close()
        await server.wait_closed()


async def test_serves_an_inherited_socket() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    server = await start_metrics_server("", 0, lambda: "# HELP x y\n", sock=sock)
    try:
        response = await request(port, get("/metrics"))
        assert response.status == 200
        assert response.body == b"# HELP x y\n"
    finally:
        server.close()
        await server.wait_closed()
