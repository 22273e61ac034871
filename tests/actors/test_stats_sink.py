"""StatsSink keeps bounded memory however long it runs (issue 10, section 6)."""

from __future__ import annotations

import time

import pytest
import torch

from streamlib import StatsSink
from streamlib.core.frames import VideoFrame
from streamlib.testing import ActorHarness


def _frame(number: int, timestamp_ns: int) -> VideoFrame:
    return VideoFrame(torch.zeros((2, 2, 3), dtype=torch.uint8), timestamp_ns=timestamp_ns,
                      frame_number=number, clock_id="monotonic")


def test_latencies_are_a_bounded_window_with_exact_totals() -> None:
    with ActorHarness(StatsSink, report_interval_s=None, printer=None,
                      latency_window=16) as h:
        sink = h.actor
        # frame 0 is the oldest by far: its latency is the run's maximum
        h.feed("in", _frame(0, time.monotonic_ns() - 10_000_000_000))
        h.tick()
        for n in range(1, 1000):
            h.feed("in", _frame(n, time.monotonic_ns()))
            h.tick()
        assert sink.frames == 1000
        assert sink.latency_count == 1000
        assert len(sink.latencies_ns) == 16
        assert sink.latencies_ns.maxlen == 16
        assert len(sink._window_lat) == 16  # the per-interval window too (never reset here)
        assert sink.latency_max_ns is not None and sink.latency_max_ns >= 10_000_000_000
        report = sink.report()
        assert report.frames == 1000
        assert report.latency_ms_max >= 10_000.0   # max over the run, not the window
        assert report.latency_ms_p50 < 10_000.0    # p50 over the last 16


def test_latency_window_is_checked() -> None:
    with pytest.raises(ValueError, match=r"^StatsSink 'st': latency_window must be an int "
                                         r">= 1, got 0$"):
        StatsSink(latency_window=0, actor_id="st")
