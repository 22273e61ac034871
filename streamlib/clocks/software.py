"""Host-time clocks: :class:`SoftwareClock` waits on the monotonic clock, :class:`VirtualClock` never waits.

Deadlines come from an exact :class:`~fractions.Fraction` rate with integer
arithmetic, ``start_ns + (n * 1e9 * den) // num``, never from adding a float
period, so tick 10 million at 60000/1001 fps is exact to the nanosecond (the
rate arithmetic, ``TimedTick`` and the ``Clock`` base live in
:mod:`streamlib.clocks.base`). Missed deadlines are counted and skipped, never
bunched: a late consumer gets the latest due frame, not a burst of stale ones.
"""

from __future__ import annotations

import time
from typing import Callable, ClassVar

from streamlib.clocks.base import (
    MAX_FPS, NS_PER_S, Clock, FpsLike, ScheduledClock, Sleeper, TimedTick, deadline_ns, latest_frame_at,
    parse_rate,
)
from streamlib.errors import ConfigError, EndOfStream

__all__ = ["SoftwareClock", "VirtualClock"]


class SoftwareClock(ScheduledClock):
    """Ticks at ``fps`` on the host monotonic clock.

    Deadlines are absolute from the first tick requested (tick 0 returns at
    once); ``timestamp_ns`` is the scheduled deadline, not the wake time, so
    timestamps are perfectly regular. ``wait_tick`` sleeps on a
    ``threading.Event`` until ``spin_ns`` before the deadline, then busy-spins
    (``asyncio.sleep`` jitters by a millisecond or more; see
    ``benchmarks/clock_jitter.py``); ``await next_tick()`` sleeps on the event
    loop. ``sleeper(duration_ns)`` replaces the wait (tests advance fake time).

    Raises:
        ConfigError: bad ``fps`` or negative ``spin_ns``.
    """

    def __init__(self, fps: FpsLike, *, clock_id: str = "monotonic",
                 spin_ns: int = 300_000,
                 time_ns: Callable[[], int] = time.monotonic_ns,
                 sleeper: Sleeper | None = None) -> None:
        super().__init__(fps, clock_id, time_ns, sleeper, time_ns, spin_ns)

    def _start(self, now_ns: int) -> tuple[int, int]:
        return now_ns, 0


class VirtualClock(Clock):
    """Non-realtime clock: ``wait_tick`` and ``await next_tick()`` return at once.

    Tick timestamps are the exact deadlines of ``fps`` from ``start_ns``.

    ``first_frame`` starts the timeline later (resume, or checking long-run
    exactness without issuing millions of ticks); ``max_ticks`` makes the
    clock finite. Thread-safe enough for one ticking thread.

    Raises:
        ConfigError: bad ``fps``, negative ``max_ticks`` or ``first_frame``.
    """

    realtime: ClassVar[bool] = False

    def __init__(self, fps: FpsLike, *, start_ns: int = 0, max_ticks: int | None = None,
                 clock_id: str = "virtual", first_frame: int = 0) -> None:
        if max_ticks is not None and max_ticks < 0:
            raise ConfigError(f"max_ticks must be >= 0 or None, got {max_ticks!r}")
        if first_frame < 0:
            raise ConfigError(f"first_frame must be >= 0, got {first_frame!r}")
        super().__init__(fps, clock_id)
        self._start_ns = start_ns
        self._max_ticks = max_ticks
        self._next_index = first_frame
        self._now = start_ns

    def wait_tick(self) -> TimedTick:
        """Return the next tick immediately.

        Raises:
            ClockClosedError: the clock is closed.
            EndOfStream: ``max_ticks`` ticks were already issued.
        """
        self._raise_if_closed()
        if self._max_ticks is not None and self._ticks >= self._max_ticks:
            raise EndOfStream(f"clock {self._clock_id!r} issued its {self._max_ticks} ticks")
        n = self._next_index
        stamp = deadline_ns(self.rate, n, self._start_ns)
        self._next_index = n + 1
        self._ticks += 1
        self._now = stamp
        return TimedTick(stamp, n, self._clock_id)

    async def next_tick(self) -> TimedTick:
        """Return the next tick immediately, without yielding to the loop.

        Raises:
            ClockClosedError: the clock is closed.
            EndOfStream: ``max_ticks`` ticks were already issued.
        """
        return self.wait_tick()

    def now_ns(self) -> int:
        """Timestamp of the last tick issued (``start_ns`` before any)."""
        return self._now
