"""``StatsSink``: a sink that counts frames, drops and latency, and reports them.

Latency is ``now - frame.timestamp_ns`` on the monotonic clock, i.e. from the
source tick that made the frame to this sink. Drops are gaps in the source's
frame numbers (missed ticks, overruns and ring-buffer overwrites all show up).

Memory is bounded however long the sink runs: ``latencies_ns`` keeps only the
last ``latency_window`` latencies (the p50 is over those), while
``latency_count`` and ``latency_max_ns`` cover every frame since the start.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable

from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.core.ports import StreamInput
from streamlib.errors import ConfigError


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
    """Consumes any stream; ``report()`` summarises; prints a line per interval.

    ``latencies_ns``: the latencies (ns) of the last ``latency_window`` frames with a
    monotonic timestamp, oldest first (a bounded deque); ``latency_count``: how many
    latencies were measured in all; ``latency_max_ns``: the largest of them (None
    before the first). ``report()``'s p50 is over the window, its max over the run.

    Raises ConfigError (naming the actor) for a ``latency_window`` below 1.
    """

    def __init__(self, *, report_interval_s: float | None = 1.0,
                 printer: Callable[[str], Any] | None = print,
                 latency_window: int = 10_000,
                 actor_id: str | None = None, **kwargs: object) -> None:
        if isinstance(latency_window, bool) or not isinstance(latency_window, int) \
                or latency_window < 1:
            raise ConfigError(f"StatsSink{f' {actor_id!r}' if actor_id else ''}: "
                              f"latency_window must be an int >= 1, got {latency_window!r}")
        super().__init__(actor_id=actor_id, **kwargs)  # type: ignore[arg-type]
        self.inputs["in"] = StreamInput("in", "any")
        self.report_interval_s = report_interval_s
        self.printer = printer
        self.frames = 0
        self.dropped = 0
        self.latency_window = latency_window
        self.latencies_ns: deque[int] = deque(maxlen=latency_window)
        self.latency_count = 0
        self.latency_max_ns: int | None = None
        self._last_number: int | None = None
        self._first_ns: int | None = None
        self._window_start_ns = 0
        self._window_frames = 0
        # per report interval; bounded too (with report_interval_s=None it never resets)
        self._window_lat: deque[int] = deque(maxlen=latency_window)
        self._window_max: int | None = None
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
                self.latency_count += 1
                if self.latency_max_ns is None or latency > self.latency_max_ns:
                    self.latency_max_ns = latency
                self._window_lat.append(latency)
                if self._window_max is None or latency > self._window_max:
                    self._window_max = latency
            self._window_frames += 1
        if self._first_ns is None:
            self._first_ns = self._window_start_ns = now
        window = now - self._window_start_ns
        if self.report_interval_s is not None and window >= self.report_interval_s * 1e9:
            if self.printer is not None:
                self.printer(_summary(self._window_frames, self._window_dropped,
                                      window, self._window_lat, self._window_max).line())
            self._window_start_ns, self._window_frames = now, 0
            self._window_lat.clear()
            self._window_max, self._window_dropped = None, 0

    def report(self) -> StatsReport:
        """Totals since the first frame."""
        elapsed = 0 if self._first_ns is None else time.monotonic_ns() - self._first_ns
        return _summary(self.frames, self.dropped, elapsed, self.latencies_ns,
                        self.latency_max_ns)


def _summary(frames: int, dropped: int, elapsed_ns: int, lat: deque[int],
             worst_ns: int | None) -> StatsReport:
    ordered = sorted(lat)
    p50 = ordered[len(ordered) // 2] / 1e6 if ordered else float("nan")
    worst = worst_ns / 1e6 if worst_ns is not None else float("nan")
    fps = frames / (elapsed_ns / 1e9) if elapsed_ns > 0 else 0.0
    return StatsReport(frames, dropped, fps, p50, worst, elapsed_ns / 1e9)
