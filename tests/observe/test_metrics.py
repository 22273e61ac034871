"""Runtime metrics: exact counters, drops, CPU time and tick-origin latency.

No test asserts how fast anything is: latencies are checked exactly with a
fake monotonic clock, or by ordering (a sink finishes after its source).
"""

from __future__ import annotations

import json
import time
import types
from typing import Any

import pytest
import torch

from streamlib import (
    Actor, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame, VirtualClock,
)
from streamlib.control.cli import _actor_rows, _progress_line
from streamlib.core.samples import SampleWindow
from streamlib.observe.metrics import MetricsRecorder, MetricsSnapshot, summarize_ns, window_stats
import streamlib.observe.metrics as metrics_module


class Source(Actor):
    """Writes ``per_tick`` frames per tick (frame value = tick number)."""

    def __init__(self, per_tick: int = 1, **kw: Any) -> None:
        super().__init__(**kw)
        self.per_tick = per_tick
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        for _ in range(self.per_tick):
            self.outputs["video"].write(VideoFrame(
                torch.full((2, 2, 3), tick.frame_number % 256, dtype=torch.uint8),
                timestamp_ns=tick.timestamp_ns, frame_number=tick.frame_number,
                clock_id=tick.clock_id))


class Relay(Actor):
    """Reads every new frame and writes it on."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        for f in self.inputs["video"].read_all_new():
            self.outputs["video"].write(f)


class Sink(Actor):
    """Reads everything new (``read=True``) or never reads (``read=False``)."""

    def __init__(self, read: bool = True, burn: int = 0, slots: int = 3, **kw: Any) -> None:
        super().__init__(**kw)
        self.read, self.burn = read, burn
        self.inputs["video"] = StreamInput("video", slots=slots)
        self.frames: list[int] = []

    def process(self, tick: TimedTick) -> None:
        if self.burn:
            sum(i * i for i in range(self.burn))  # CPU work: thread time must grow
        if self.read:
            self.frames += [f.frame_number for f in self.inputs["video"].read_all_new()]


class AsyncSink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")

    async def process(self, tick: TimedTick) -> None:
        self.inputs["video"].read_latest()


class CountingSink(Sink):
    """Calls ``super().process``: CPU must still be counted once per call."""

    def process(self, tick: TimedTick) -> None:
        super().process(tick)


def _chain(rt: Runtime, n: int, **sink_kw: Any) -> tuple[Source, Relay, Sink]:
    src = Source(actor_id="src", clock=VirtualClock(30, max_ticks=n), runtime=rt)
    relay = Relay(actor_id="relay", runtime=rt)
    sink = Sink(actor_id="sink", runtime=rt, **sink_kw)
    src >> relay >> sink
    return src, relay, sink


def test_counters_and_links_are_exact_under_a_virtual_clock() -> None:
    n = 40
    with Runtime(name="m") as rt:
        _, _, sink = _chain(rt, n)
        assert rt.run(60)
        m = rt.metrics(telemetry=False)
    assert sink.frames == list(range(n))
    for actor_id in ("src", "relay", "sink"):
        a = m.actor(actor_id)
        assert (a.ticks, a.processed, a.failed, a.overruns) == (n, n, 0, 0), actor_id
        assert a.process_ms is not None and a.process_ms.samples == n
        assert a.latency_ms is not None and a.latency_ms.samples == n
        assert a.process_ms.p50 <= a.process_ms.p99 <= a.process_ms.max
    assert [(l.source, l.target, l.written, l.read, l.dropped, l.unread) for l in m.links] == [
        ("src.video", "relay.video", n, n, 0, 0), ("relay.video", "sink.video", n, n, 0, 0)]
    t = m.totals
    assert (t.actors, t.ticks, t.processed, t.failed, t.written, t.read, t.dropped) == (
        3, 3 * n, 3 * n, 0, 2 * n, 2 * n, 0)
    assert [a.id for a in m.actors if a.is_sink] == ["sink"]
    assert t.e2e_latency_ms is not None and t.e2e_latency_ms == m.actor("sink").latency_ms
    assert m.telemetry is None
    json.dumps(m.as_dict())  # JSON-serialisable as is


def test_drops_are_counted_when_a_reader_falls_behind() -> None:
    n = 10
    with Runtime() as rt:
        src = Source(per_tick=2, actor_id="src", clock=VirtualClock(30, max_ticks=n), runtime=rt)
        sink = Sink(read=False, slots=3, actor_id="sink", runtime=rt)
        src >> sink
        assert rt.run(60)
        m = rt.metrics(telemetry=False)
        rows = _actor_rows(rt.graph(), {}, 1.0)
    (link,) = m.links
    # 20 written, never read: the 3 newest stay unread, the rest were overwritten.
    assert (link.written, link.read, link.dropped, link.unread) == (2 * n, 0, 2 * n - 3, 3)
    assert m.totals.dropped == 2 * n - 3
    assert {r["id"]: r["drops"] for r in rows} == {"src": 0, "sink": 2 * n - 3}


class _FakeTime:
    """``time`` for streamlib.runtime.runtime whose monotonic_ns advances 1 ms per call."""

    def __init__(self) -> None:
        self.now = 10**12
        self.calls: list[int] = []

    def monotonic_ns(self) -> int:
        self.now += 1_000_000
        self.calls.append(self.now)
        return self.now

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)


def test_latency_is_measured_from_the_tick_origin_not_virtual_timestamps(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Lock-step order per tick: origin noted (clock thread), source recorded,
    # relay recorded, sink recorded: with a clock that advances 1 ms per read,
    # latencies are exactly 1, 2 and 3 ms. The virtual timestamps (start_ns far
    # in the future) play no part.
    # The asyncio dispatcher runs each process inline on the runtime loop, which
    # makes that order deterministic (pool threads could finish in any order).
    fake = _FakeTime()
    monkeypatch.setattr(metrics_module, "time", fake)
    n = 12
    with Runtime() as rt:
        src = Source(actor_id="src", runtime=rt, dispatcher="asyncio",
                     clock=VirtualClock(30, max_ticks=n, start_ns=10**18))
        relay = Relay(actor_id="relay", runtime=rt, dispatcher="asyncio")
        sink = Sink(actor_id="sink", runtime=rt, dispatcher="asyncio")
        src >> relay >> sink
        assert rt.run(60)
        monkeypatch.setattr(metrics_module, "time", time)
        m = rt.metrics(telemetry=False)
        windows = {a.actor_id: a._sl.window.samples() for a in rt.actors()}
    assert len(fake.calls) == 4 * n
    for actor_id, ms in (("src", 1), ("relay", 2), ("sink", 3)):
        assert [s[3] for s in windows[actor_id]] == [ms * 1_000_000] * n, actor_id
        lat = m.actor(actor_id).latency_ms
        assert lat is not None and (lat.p50, lat.p99, lat.max) == (ms, ms, ms)
    c = sink.counters
    assert (c.latency_samples, c.latency_ns_total) == (n, 3 * n * 1_000_000)


def test_tick_origins_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MetricsRecorder, "ORIGINS_KEPT", 5)
    n = 20
    with Runtime() as rt:
        _, _, sink = _chain(rt, n)
        assert rt.run(60)
        assert rt.recorder.origins_held == 5  # the newest ticks only
        assert sink.counters.latency_samples == n  # each was still known when handled


def test_monotonic_ticks_use_their_timestamp_as_origin() -> None:
    # A clock on the monotonic timebase whose ticks were scheduled 10 s ago:
    # latency is measured from those timestamps (not from when they were issued).
    start = time.monotonic_ns() - 10 * 10**9
    n = 5
    with Runtime() as rt:
        src = Source(actor_id="src", runtime=rt,
                     clock=VirtualClock(1000, max_ticks=n, start_ns=start, clock_id="monotonic"))
        sink = Sink(actor_id="sink", runtime=rt)
        src >> sink
        assert rt.run(60)
        samples = sink._sl.window.samples()
    assert len(samples) == n
    # origin == the tick's timestamp, exactly; hence latencies of about 10 s
    assert [done - lat for done, _, _, lat in samples] == [start + i * 1_000_000 for i in range(n)]
    assert all(lat > 9 * 10**9 for *_, lat in samples)


@pytest.mark.parametrize("dispatcher", ["thread", "asyncio"])
def test_sink_latency_covers_its_own_process_time(dispatcher: str) -> None:
    n = 30
    with Runtime() as rt:
        src = Source(actor_id="src", clock=VirtualClock(30, max_ticks=n), runtime=rt,
                     dispatcher=dispatcher)
        relay = Relay(actor_id="relay", runtime=rt, dispatcher=dispatcher)
        sink = Sink(actor_id="sink", runtime=rt, dispatcher=dispatcher)
        src >> relay >> sink
        assert rt.run(60)
        windows = [a._sl.window.samples() for a in (src, relay, sink)]
    for window in windows:
        assert len(window) == n
        assert all(lat >= proc for _, proc, _, lat in window)  # the call lies inside
    if dispatcher == "asyncio":
        # Inline on the loop, each actor's call ends after its upstream's (on
        # a pool, the source's thread may return after the sink is done).
        for (s_done, _, _, s_lat), (k_done, _, _, k_lat) in zip(windows[0], windows[2]):
            assert k_done >= s_done and k_lat >= s_lat


def test_cpu_time_is_measured_per_actor_on_its_thread() -> None:
    n = 6
    with Runtime() as rt:
        src = Source(actor_id="src", clock=VirtualClock(30, max_ticks=n), runtime=rt)
        busy = CountingSink(burn=200_000, actor_id="busy", runtime=rt)
        lazy = AsyncSink(actor_id="async", runtime=rt)
        src >> busy
        src.outputs["video"] >> lazy
        assert rt.run(60)
        m = rt.metrics(telemetry=False)
    b = m.actor("busy")
    assert b.cpu_s is not None and b.cpu_s > 0
    assert busy.counters.cpu_samples == n          # super().process() not counted twice
    assert m.actor("async").cpu_s is None           # async process: unknown, not zero
    assert m.actor("src").cpu_s is not None
    # the wrapper keeps what introspection relies on
    assert CountingSink.process.__name__ == "process"
    assert not busy.is_async and lazy.is_async


def test_collect_metrics_false_keeps_counters_only() -> None:
    n = 8
    with Runtime(collect_metrics=False) as rt:
        _, _, sink = _chain(rt, n)
        assert rt.run(60)
        m = rt.metrics(telemetry=False)
    a = m.actor("sink")
    assert (a.ticks, a.processed) == (n, n)
    assert a.process_ms is None and a.latency_ms is None and a.cpu_s is None
    assert sink.counters.cpu_samples == 0 and rt.recorder.origins_held == 0


def test_graph_and_progress_line_show_the_metrics() -> None:
    with Runtime() as rt:
        _chain(rt, 10)
        assert rt.run(60)
        g = rt.graph()
        json.dumps(g)
    desc = {a["id"]: a for a in g["actors"]}
    for key in ("latency_ms", "process_ms", "fps", "cpu_percent", "cpu_s"):
        assert key in desc["sink"], key
    assert desc["sink"]["process_ms"]["samples"] == 10.0
    rows = _actor_rows(g, {}, 1.0)
    line = _progress_line(rows)
    assert "sink" in line and "cpu" in line and "lat" in line


def test_window_rates_and_summaries() -> None:
    w = SampleWindow(size=4)
    now = 5 * 10**9
    for i in (2, 1, 0):  # three calls in the last second, 10 ms CPU each
        w.add(now - i * 100_000_000, 2_000_000, 10_000_000, -1)
    stats = window_stats(w, now)
    assert stats.fps == 3.0
    assert stats.cpu_percent == pytest.approx(3.0)
    assert stats.latency_ms is None and stats.process_ms is not None
    assert stats.process_ms.p50 == 2.0
    w.add(now - 3 * 10**9, 1, -1, 5)  # outside the last second; cpu unknown
    assert window_stats(w, now).fps == 3.0
    # full window spanning less than a second: rate over the span held
    full = SampleWindow(size=3)
    for i in (2, 1, 0):
        full.add(now - i * 10_000_000, 1, 1, 1)
    assert window_stats(full, now).fps == pytest.approx(100.0)
    assert summarize_ns([]) is None and summarize_ns([-1]) is None
    s = summarize_ns(range(1, 101))
    assert s is not None and (s.p50, s.p99, s.max, s.samples) == (51e-6, 99e-6, 100e-6, 100)


def test_snapshot_is_frozen_and_names_missing_actors() -> None:
    with Runtime(name="frozen") as rt:
        m = rt.metrics(telemetry=False)
    assert isinstance(m, MetricsSnapshot) and m.runtime == "frozen" and m.actors == ()
    with pytest.raises(KeyError, match="no actor 'nope'"):
        m.actor("nope")
    with pytest.raises(AttributeError):
        m.runtime = "x"  # type: ignore[misc]
    assert isinstance(types.SimpleNamespace(**m.as_dict()).totals, dict)


# -- Prometheus export ----------------------------------------------------------

def _parse_exposition(text: str) -> dict[str, float]:
    """``name{labels}`` -> value, checking every family has HELP and TYPE first."""
    values: dict[str, float] = {}
    typed: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
        elif line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            family = key.split("{", 1)[0]
            assert any(family == t or family in (t + "_sum", t + "_count") for t in typed), line
            values[key] = float(value)
    return values


def test_prometheus_text_and_server() -> None:
    import urllib.error
    import urllib.request

    from streamlib.observe.prometheus import CONTENT_TYPE, MetricsServer, serve_metrics

    n = 6
    with Runtime(name='rt"1') as rt:
        src = Source(per_tick=2, actor_id="src", clock=VirtualClock(30, max_ticks=n), runtime=rt)
        sink = Sink(read=False, actor_id="sink", runtime=rt)
        src >> sink
        assert rt.run(60)
        with serve_metrics(rt) as server:
            assert server.url.startswith("http://127.0.0.1:")
            with urllib.request.urlopen(server.url, timeout=10) as resp:
                assert resp.headers["Content-Type"] == CONTENT_TYPE
                text = resp.read().decode()
            with pytest.raises(urllib.error.HTTPError) as info:
                urllib.request.urlopen(server.url.replace("/metrics", "/other"), timeout=10)
            assert info.value.code == 404
        assert server._thread is not None and not server._thread.is_alive()
        with pytest.raises(OSError):  # the port is released: nothing listens
            urllib.request.urlopen(server.url, timeout=2)
    values = _parse_exposition(text)
    lab = 'runtime="rt\\"1",actor="sink",class="Sink"'
    assert values[f"streamlib_actor_ticks_total{{{lab}}}"] == 2 * n
    assert values[f"streamlib_actor_processed_total{{{lab}}}"] == 2 * n
    assert values[f"streamlib_actor_process_seconds_count{{{lab}}}"] == 2 * n
    assert f'streamlib_actor_latency_seconds{{{lab},quantile="0.99"}}' in values
    link = 'runtime="rt\\"1",source="src.video",target="sink.video",kind="video"'
    assert values[f"streamlib_link_written_total{{{link}}}"] == 2 * n
    assert values[f"streamlib_link_dropped_total{{{link}}}"] == 2 * n - 3
    assert values["streamlib_gpu_available"] in (0.0, 1.0)
    with pytest.raises(ValueError, match="loopback"):
        MetricsServer(lambda: "", host="0.0.0.0")
    with MetricsServer(lambda: "x 1\n") as plain:  # any text source works
        with urllib.request.urlopen(plain.url, timeout=10) as resp:
            assert resp.read() == b"x 1\n"
    plain.close()  # idempotent
