"""``StatsSink``: a sink that counts frames, drops and latency, and reports them.

Latency is ``now - frame.timestamp_ns`` on the monotonic clock, i.e. from the
source tick that made the frame to this sink. Drops are gaps in the source's
frame numbers (missed ticks, overruns and ring-buffer overwrites all show up).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..actor import Actor
from ..clocks import TimedTick
from ..ports import StreamInput


@dataclass(frozen=True)
class StatsReport:
    frames: int
    dropped: int
    fps: float
    latency_ms_p50: float
    latency_ms_max: float
    elapsed_s: float

    def line(self) -> str:
        return (f"{self.fps:6.1f} fps  frames={self.frames}  dropped={self.dropped}  "
                f"latency p50={self.latency_ms_p50:.2f} ms max={self.latency_ms_max:.2f} ms")


class StatsSink(Actor):
    """Consumes any stream; ``report()`` summarises; prints a line per interval."""

    def __init__(self, *, report_interval_s: float | None = 1.0,
                 printer: Callable[[str], Any] | None = print,
                 actor_id: str | None = None, **kwargs: object) -> None:
        super().__init__(actor_id=actor_id, **kwargs)  # type: ignore[arg-type]
        self.inputs["in"] = StreamInput("in", "any")
        self.report_interval_s = report_interval_s
        self.printer = printer
        self.frames = 0
        self.dropped = 0
        self.latencies_ns: list[int] = []
        self._last_number: int | None = None
        self._first_ns: int | None = None
        self._window_start_ns = 0
        self._window_frames = 0
        self._window_lat: list[int] = []
        self._window_dropped = 0

    def process(self, tick: TimedTick) -> None:
        now = time.monotonic_ns()
        for item in self.inputs["in"].read_all_new():
            self.frames += 1
            number = getattr(item, "frame_number", None)
            if self._last_number is not None and number is not None and number > self._last_number + 1:
                gap = number - self._last_number - 1
                self.dropped += gap
                self._window_dropped += gap
            if number is not None:
                self._last_number = number
            if getattr(item, "clock_id", None) == "monotonic":
                latency = now - int(item.timestamp_ns)
                self.latencies_ns.append(latency)
                self._window_lat.append(latency)
            self._window_frames += 1
        if self._first_ns is None:
            self._first_ns = self._window_start_ns = now
        window = now - self._window_start_ns
        if self.report_interval_s is not None and window >= self.report_interval_s * 1e9:
            if self.printer is not None:
                self.printer(_summary(self._window_frames, self._window_dropped,
                                      window, self._window_lat).line())
            self._window_start_ns, self._window_frames = now, 0
            self._window_lat, self._window_dropped = [], 0

    def report(self) -> StatsReport:
        """Totals since the first frame."""
        elapsed = 0 if self._first_ns is None else time.monotonic_ns() - self._first_ns
        return _summary(self.frames, self.dropped, elapsed, self.latencies_ns)


def _summary(frames: int, dropped: int, elapsed_ns: int, lat: list[int]) -> StatsReport:
    ordered = sorted(lat)
    p50 = ordered[len(ordered) // 2] / 1e6 if ordered else float("nan")
    worst = ordered[-1] / 1e6 if ordered else float("nan")
    fps = frames / (elapsed_ns / 1e9) if elapsed_ns > 0 else 0.0
    return StatsReport(frames, dropped, fps, p50, worst, elapsed_ns / 1e9)
