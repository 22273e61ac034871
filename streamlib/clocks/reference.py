"""Clocks locked to an external reference: PTP/TAI time and genlock pulses.

:class:`PTPClock` ticks on TAI-epoch frame boundaries of a :class:`TimeSource`
(SMPTE ST 2059-1 style), so machines locked to one grandmaster agree on frame
numbers; :class:`GenlockClock` follows the pulses of a :class:`PulseSource`
(vsync, genlock, a hardware timer). Both are re-exported by
:mod:`streamlib.clocks`, the place to import them from.
"""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from fractions import Fraction
from typing import Callable, Protocol, runtime_checkable

from streamlib.clocks.base import (
    NS_PER_S, Clock, FpsLike, ScheduledClock, Sleeper, TimedTick, latest_frame_at,
)
from streamlib.errors import ClockClosedError, ConfigError

__all__ = [
    "GenlockClock", "ManualPulseSource", "PTPClock", "PulseSource", "SystemTAITimeSource",
    "TimeSource",
]

# Longest single wait between checks of a pulse source, so a closed
# GenlockClock notices promptly even with a source that ignores close().
_PULSE_POLL_S = 0.05


@runtime_checkable
class TimeSource(Protocol):
    """A TAI time source (an IEEE 1588 slave implements this too)."""

    def now_ns(self) -> int:
        """Nanoseconds since the TAI epoch (1970-01-01 00:00:00 TAI)."""
        ...

    @property
    def synchronized(self) -> bool:
        """True while the source is locked to its reference."""
        ...


class SystemTAITimeSource:
    """TAI approximated as ``CLOCK_REALTIME + tai_offset_s``.

    Kept simple on purpose: the host clock is assumed NTP-disciplined, and the
    TAI-UTC offset (37 s since 2017) is a parameter because
    ``CLOCK_TAI`` is only right when the kernel was told the offset, which is
    often not the case. ``synchronized`` reports ``assume_synchronized``.
    """

    def __init__(self, tai_offset_s: int = 37, *, assume_synchronized: bool = True) -> None:
        self._offset_ns = int(tai_offset_s) * NS_PER_S
        self._synchronized = assume_synchronized

    def now_ns(self) -> int:
        return time.time_ns() + self._offset_ns

    @property
    def synchronized(self) -> bool:
        return self._synchronized


class PTPClock(ScheduledClock):
    """Ticks on frame boundaries of the TAI epoch (SMPTE ST 2059-1 style).

    Boundary ``k`` is at ``(k * 1e9 * den) // num`` ns since the epoch; the
    first tick is the first boundary at or after now, and ``frame_number`` is
    the absolute boundary index ``k``, so two machines locked to the same
    grandmaster agree on frame numbers. Missed boundaries are skipped and
    counted like in :class:`~streamlib.clocks.SoftwareClock`. An unsynchronized source still
    ticks; check :attr:`synchronized`. ``sleeper(duration_ns)`` defaults to
    sleep-then-spin on the monotonic clock (the loop re-reads the source).

    Raises:
        ConfigError: bad ``fps`` or negative ``spin_ns``.
    """

    def __init__(self, fps: FpsLike, *, time_source: TimeSource | None = None,
                 clock_id: str = "tai", sleeper: Sleeper | None = None,
                 spin_ns: int = 300_000) -> None:
        source: TimeSource = time_source if time_source is not None else SystemTAITimeSource()
        # durations are slept on the monotonic clock; the wait loop re-reads
        # the source, so a stepped or slewing TAI time is still honoured
        super().__init__(fps, clock_id, source.now_ns, sleeper, time.monotonic_ns, spin_ns)
        self._source = source

    @property
    def time_source(self) -> TimeSource:
        return self._source

    @property
    def synchronized(self) -> bool:
        return bool(self._source.synchronized)

    def _start(self, now_ns: int) -> tuple[int, int]:
        # first boundary >= now is one past the last boundary <= now - 1
        return 0, latest_frame_at(self.rate, now_ns - 1) + 1


class PulseSource(Protocol):
    """External pulses (vsync, genlock, hardware timer)."""

    def wait_pulse(self, timeout_s: float | None) -> int | None:
        """Block for the next pulse and return its timestamp in ns.

        Returns None on timeout. Raises ClockClosedError once closed.
        """
        ...

    def close(self) -> None:
        """Stop the source (idempotent); a waiting ``wait_pulse`` must return."""
        ...


class ManualPulseSource:
    """Pulses fed by ``pulse()`` calls from another thread (e.g. a vsync callback).

    Pulses queue in a bounded deque so a briefly slow consumer loses none; past
    ``maxlen`` the oldest are dropped (counted in ``dropped``) and the consumer
    sees a gap, which :class:`GenlockClock` counts as missed.

    Raises:
        ConfigError: ``maxlen`` < 1.
    """

    def __init__(self, maxlen: int = 64, *,
                 time_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if maxlen < 1:
            raise ConfigError(f"maxlen must be >= 1, got {maxlen!r}")
        self._pulses: collections.deque[int] = collections.deque(maxlen=maxlen)
        self._cond = threading.Condition()
        self._closed = False
        self._time_ns = time_ns
        self.dropped = 0

    def pulse(self, timestamp_ns: int | None = None) -> bool:
        """Queue a pulse (default timestamp: now); False, not an error, if closed.

        The caller is often a foreign callback (vsync) that must not blow up
        during shutdown.
        """
        stamp = self._time_ns() if timestamp_ns is None else int(timestamp_ns)
        with self._cond:
            if self._closed:
                return False
            if len(self._pulses) == self._pulses.maxlen:
                self.dropped += 1
            self._pulses.append(stamp)
            self._cond.notify()
        return True

    def wait_pulse(self, timeout_s: float | None) -> int | None:
        """Return the oldest queued pulse, waiting up to ``timeout_s``.

        Raises:
            ClockClosedError: the source is closed.
        """
        with self._cond:
            self._cond.wait_for(lambda: self._pulses or self._closed, timeout_s)
            if self._closed:
                raise ClockClosedError("pulse source is closed")
            return self._pulses.popleft() if self._pulses else None

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class GenlockClock(Clock):
    """Ticks on pulses of an external :class:`PulseSource` (which it owns).

    ``timestamp_ns`` is the pulse timestamp, ``frame_number`` counts pulses.
    With ``fps`` given, a gap above 1.5 periods adds ``round(gap/period) - 1``
    to ``missed_deadlines``; without it ``fps`` is measured from recent pulses
    (0.0 until two arrive). ``time_ns`` must be the pulses' timebase.

    Raises:
        ConfigError: bad ``fps``.
    """

    _WINDOW = 32  # pulses kept to measure the rate

    def __init__(self, pulse_source: PulseSource, *, fps: FpsLike | None = None,
                 clock_id: str = "genlock",
                 time_ns: Callable[[], int] = time.monotonic_ns) -> None:
        super().__init__(fps, clock_id)
        self._source = pulse_source
        self._time_ns = time_ns
        self._recent: collections.deque[int] = collections.deque(maxlen=self._WINDOW)
        self._last_lateness_ns = 0
        # the executor wait of a cancelled next_tick, taken over by the next call
        self._pending: tuple[asyncio.AbstractEventLoop, asyncio.Future[int | None]] | None = None

    @property
    def measured_rate(self) -> Fraction:
        """Pulse rate over the recent window (``Fraction(0)`` until two pulses)."""
        if len(self._recent) < 2 or self._recent[-1] <= self._recent[0]:
            return Fraction(0)
        return Fraction((len(self._recent) - 1) * NS_PER_S, self._recent[-1] - self._recent[0])

    @property
    def rate(self) -> Fraction:
        return self._rate if self._rate is not None else self.measured_rate

    @property
    def last_lateness_ns(self) -> int:
        """Wake time minus pulse timestamp of the last tick."""
        return self._last_lateness_ns

    def now_ns(self) -> int:
        return self._time_ns()

    def wait_tick(self) -> TimedTick:
        """Block for the next pulse and return its tick.

        Raises:
            ClockClosedError: the clock or its pulse source is (or gets) closed.
        """
        while True:
            stamp = self._poll_pulse()
            if stamp is not None:
                return self._issue(stamp)

    async def next_tick(self) -> TimedTick:
        """Wait for the next pulse without blocking the running event loop.

        The source's blocking ``wait_pulse`` runs in the loop's default
        executor, one short wait at a time. A cancelled ``next_tick`` leaves
        its wait running and the next call takes over its pulse, so
        cancelling loses no pulse.

        Raises:
            ClockClosedError: the clock or its pulse source is (or gets) closed.
        """
        loop = asyncio.get_running_loop()
        while True:
            if self._pending is None or self._pending[0] is not loop:
                self._pending = (loop, loop.run_in_executor(None, self._poll_pulse))
            stamp = await asyncio.shield(self._pending[1])
            self._pending = None
            if stamp is not None:
                return self._issue(stamp)

    def _poll_pulse(self) -> int | None:
        """One short wait for a pulse: its timestamp, or None when none came."""
        self._raise_if_closed()
        try:
            # short waits: a source that ignores close() still lets us exit
            stamp = self._source.wait_pulse(_PULSE_POLL_S)
        except ClockClosedError:
            self.close()
            raise
        if stamp is not None:
            self._raise_if_closed()  # closed while a pulse arrived: closed wins
        return stamp

    def _issue(self, stamp: int) -> TimedTick:
        if self._rate is not None and self._recent:
            periods = Fraction(stamp - self._recent[-1]) * self._rate / NS_PER_S
            if periods > Fraction(3, 2):
                self._missed += round(periods) - 1
        self._recent.append(stamp)
        self._last_lateness_ns = self._time_ns() - stamp
        n = self._ticks
        self._ticks += 1
        return TimedTick(stamp, n, self._clock_id)

    def close(self) -> None:
        """Close the clock and its pulse source; idempotent."""
        super().close()
        self._source.close()
