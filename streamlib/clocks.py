"""Clocks that drive actors: each ``next_tick()`` blocks until a frame is due.

Deadlines come from an exact :class:`~fractions.Fraction` rate with integer
arithmetic, ``start_ns + (n * 1e9 * den) // num``, never from adding a float
period, so tick 10 million at 60000/1001 fps is exact to the nanosecond.
:class:`SoftwareClock` waits on the host monotonic clock, :class:`VirtualClock`
never waits (tests, offline renders), :class:`PTPClock` ticks on TAI-epoch frame
boundaries of a :class:`TimeSource`, :class:`GenlockClock` follows the pulses
of a :class:`PulseSource`. Missed deadlines are counted and skipped, never
bunched: a late consumer gets the latest due frame, not a burst of stale ones.
"""

from __future__ import annotations

import collections
import math
import numbers
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Callable, ClassVar, Protocol, Self, Union, runtime_checkable

from streamlib.errors import ClockClosedError, EndOfStream

__all__ = [
    "Clock", "FpsLike", "GenlockClock", "ManualPulseSource", "PTPClock", "PulseSource",
    "SoftwareClock", "SystemTAITimeSource", "TimeSource", "TimedTick", "VirtualClock",
    "deadline_ns", "latest_frame_at", "parse_rate",
]

NS_PER_S = 1_000_000_000
MAX_FPS = 10_000
# Float rates are approximated with denominators up to this; 1001 * 1000 keeps
# every NTSC-family rate exact and any "reasonable" decimal rate too.
_FLOAT_MAX_DENOMINATOR = 1001 * 1000
# A float within 10 ppm of N*1000/1001 is taken to mean that NTSC rate:
# "59.94" is 60000/1001 rounded to 2 decimals (an error of ~1 ppm).
_NTSC_RELATIVE_TOLERANCE = 1e-5
# Longest single wait between checks of a pulse source, so a closed
# GenlockClock notices promptly even with a source that ignores close().
_PULSE_POLL_S = 0.05

FpsLike = Union[int, float, Fraction, str]
Sleeper = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class TimedTick:
    """One tick: when it was scheduled, its frame index and the issuing clock."""

    timestamp_ns: int
    frame_number: int
    clock_id: str

    @property
    def timestamp(self) -> float:
        """``timestamp_ns`` in seconds (a float: TAI-epoch values lose sub-µs digits)."""
        return self.timestamp_ns / NS_PER_S


def _rate_from_float(value: float, original: object) -> Fraction:
    if not math.isfinite(value):
        raise ValueError(f"fps must be finite, got {original!r}")
    ntsc_base = round(value * 1.001)
    if ntsc_base > 0:
        ntsc = Fraction(ntsc_base * 1000, 1001)
        if abs(value - float(ntsc)) <= _NTSC_RELATIVE_TOLERANCE * value:
            return ntsc
    return Fraction(value).limit_denominator(_FLOAT_MAX_DENOMINATOR)


def parse_rate(fps: FpsLike) -> Fraction:
    """Return ``fps`` as an exact :class:`Fraction` of frames per second.

    Accepted: ``int`` and ``Fraction`` (exact); ``"a/b"`` or integer strings
    (exact); ``float`` and decimal strings (approximated: a value within 10 ppm
    of an NTSC rate ``N*1000/1001`` snaps to it, so ``59.94`` means
    ``60000/1001`` and ``23.976`` means ``24000/1001``; anything else becomes
    the nearest fraction with denominator <= 1,001,000).

    Raises:
        TypeError: ``fps`` is a bool or not a number/string.
        ValueError: ``fps`` is unparsable, not finite, <= 0 or > 10000.
    """
    rate: Fraction
    if isinstance(fps, bool):  # bool is an int; True fps is surely a bug
        raise TypeError(f"fps must be a number or a string, got {fps!r}")
    if isinstance(fps, numbers.Rational):  # int, Fraction, numpy integers
        rate = Fraction(int(fps.numerator), int(fps.denominator))
    elif isinstance(fps, numbers.Real):
        rate = _rate_from_float(float(fps), fps)
    elif isinstance(fps, str):
        text = fps.replace(" ", "")
        try:  # "a/b" and integers are exact; decimals get the float treatment
            is_exact = "/" in text or text.lstrip("+-").isdigit()
            rate = Fraction(text) if is_exact else _rate_from_float(float(text), fps)
        except (ValueError, ZeroDivisionError) as exc:
            raise ValueError(f"fps string {fps!r} is not a rate: {exc}") from None
    else:
        raise TypeError(f"fps must be a number or a string, got {type(fps).__name__}")
    if rate <= 0 or rate > MAX_FPS:
        raise ValueError(f"fps must be > 0 and <= {MAX_FPS}, got {fps!r}")
    return rate


def deadline_ns(rate: Fraction, n: int, start_ns: int = 0) -> int:
    """Deadline of frame ``n``: ``start_ns + (n * 1e9 * den) // num``, exactly."""
    return start_ns + (n * NS_PER_S * rate.denominator) // rate.numerator


def latest_frame_at(rate: Fraction, now_ns: int, start_ns: int = 0) -> int:
    """Largest ``n`` with ``deadline_ns(rate, n, start_ns) <= now_ns`` (negative before start).

    floor(n*G/num) <= e  <=>  n*G < (e+1)*num  <=>  n <= ((e+1)*num - 1) // G,
    with G = 1e9 * den; integer-only, so valid for any horizon.
    """
    elapsed = now_ns - start_ns
    return ((elapsed + 1) * rate.numerator - 1) // (NS_PER_S * rate.denominator)


def _make_sleep_then_spin(time_ns: Callable[[], int], stop: threading.Event,
                          spin_ns: int) -> Sleeper:
    """Build a sleeper: Event.wait for all but ``spin_ns``, then busy-spin.

    Event.wait (not time.sleep) so ``stop.set()`` interrupts the coarse part;
    the OS wakes us 50-100 µs late typically, which the spin absorbs. The spin
    holds the GIL for at most ``spin_ns``, far below the 5 ms switch interval.
    """

    def sleep(duration_ns: int) -> None:
        target = time_ns() + duration_ns
        coarse_ns = duration_ns - spin_ns
        if coarse_ns > 0 and stop.wait(coarse_ns / NS_PER_S):
            return
        while time_ns() < target:
            if stop.is_set():
                return

    return sleep


class Clock(ABC):
    """A source of :class:`TimedTick`; use from one ticking thread.

    ``close()`` may be called from any thread; it wakes a waiting
    ``next_tick`` which then raises :class:`ClockClosedError`.
    """

    realtime: ClassVar[bool] = True

    def __init__(self, fps: FpsLike | None, clock_id: str) -> None:
        self._rate: Fraction | None = None if fps is None else parse_rate(fps)
        self._clock_id = clock_id
        self._closed = threading.Event()
        self._missed = 0
        self._ticks = 0

    @property
    def clock_id(self) -> str:
        return self._clock_id

    @property
    def rate(self) -> Fraction:
        """Exact frames per second (``Fraction(0)`` if not known yet)."""
        return self._rate if self._rate is not None else Fraction(0)

    @property
    def fps(self) -> float:
        return float(self.rate)

    @property
    def period_ns(self) -> float:
        """Nominal frame period in ns (0.0 while the rate is unknown)."""
        rate = self.rate
        return NS_PER_S / float(rate) if rate else 0.0

    @property
    def missed_deadlines(self) -> int:
        return self._missed

    @property
    def ticks_issued(self) -> int:
        return self._ticks

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @abstractmethod
    def next_tick(self) -> TimedTick:
        """Block until the next tick is due and return it.

        Raises:
            ClockClosedError: the clock is closed, or was closed while waiting.
            EndOfStream: a finite clock has issued all its ticks.
        """

    @abstractmethod
    def now_ns(self) -> int:
        """Current time in this clock's timebase (that of ``timestamp_ns``)."""

    def close(self) -> None:
        """Close the clock; idempotent and callable from any thread."""
        self._closed.set()

    def _raise_if_closed(self) -> None:
        if self._closed.is_set():
            raise ClockClosedError(f"clock {self._clock_id!r} is closed")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class _ScheduledClock(Clock):
    """Shared logic of clocks whose deadlines follow ``deadline_ns`` exactly."""

    def __init__(self, fps: FpsLike, clock_id: str, time_ns: Callable[[], int],
                 sleeper: Sleeper | None, sleep_time_ns: Callable[[], int],
                 spin_ns: int) -> None:
        if spin_ns < 0:
            raise ValueError(f"spin_ns must be >= 0, got {spin_ns!r}")
        super().__init__(fps, clock_id)
        self._time_ns = time_ns
        self.spin_ns = spin_ns
        # the default sleeper watches self._closed so close() interrupts it
        self._sleeper = sleeper or _make_sleep_then_spin(sleep_time_ns, self._closed, spin_ns)
        self._origin_ns = 0
        self._next_index: int | None = None
        self._last_lateness_ns = 0

    @property
    def last_lateness_ns(self) -> int:
        """Wake time minus deadline of the last tick issued (>= 0 in practice)."""
        return self._last_lateness_ns

    def now_ns(self) -> int:
        return self._time_ns()

    @abstractmethod
    def _start(self, now_ns: int) -> tuple[int, int]:
        """Return ``(origin_ns, first_index)`` at the first ``next_tick``."""

    def _deadline(self, n: int) -> int:
        return deadline_ns(self.rate, n, self._origin_ns)

    def next_tick(self) -> TimedTick:
        """Wait for the next deadline and return it (skipping missed ones).

        If the clock is already at or past deadline ``n+1`` when called, the
        tick for the latest deadline ``<= now`` is returned at once and the
        frames skipped are added to ``missed_deadlines``: a slow consumer
        never gets a burst of stale ticks.

        Raises:
            ClockClosedError: closed before or during the wait.
        """
        self._raise_if_closed()
        now = self._time_ns()
        if self._next_index is None:
            self._origin_ns, self._next_index = self._start(now)
        n = self._next_index
        if now >= self._deadline(n + 1):
            latest = latest_frame_at(self.rate, now, self._origin_ns)
            self._missed += latest - n
            n = latest
        else:
            now = self._wait_until(self._deadline(n))
        deadline = self._deadline(n)
        self._last_lateness_ns = now - deadline
        self._next_index = n + 1
        self._ticks += 1
        return TimedTick(deadline, n, self._clock_id)

    def _wait_until(self, target_ns: int) -> int:
        # Loop because a sleeper may return early (interrupted, coarse timer,
        # or a time source running slightly off the sleeper's clock); the
        # closed check comes first so a close() during any wait always raises.
        while True:
            self._raise_if_closed()
            now = self._time_ns()
            remaining = target_ns - now
            if remaining <= 0:
                return now
            self._sleeper(remaining)


class SoftwareClock(_ScheduledClock):
    """Ticks at ``fps`` on the host monotonic clock.

    Deadlines are absolute from the first ``next_tick`` call (tick 0 returns at
    once); ``timestamp_ns`` is the scheduled deadline, not the wake time, so
    timestamps are perfectly regular. Waits sleep on a ``threading.Event``
    until ``spin_ns`` before the deadline, then busy-spin (``asyncio.sleep``
    jitters by a millisecond or more; see ``benchmarks/clock_jitter.py``).
    ``sleeper(duration_ns)`` replaces that wait (tests advance fake time).

    Raises:
        ValueError: bad ``fps`` or negative ``spin_ns``.
    """

    def __init__(self, fps: FpsLike, *, clock_id: str = "monotonic",
                 spin_ns: int = 300_000,
                 time_ns: Callable[[], int] = time.monotonic_ns,
                 sleeper: Sleeper | None = None) -> None:
        super().__init__(fps, clock_id, time_ns, sleeper, time_ns, spin_ns)

    def _start(self, now_ns: int) -> tuple[int, int]:
        return now_ns, 0


class VirtualClock(Clock):
    """Non-realtime clock: ``next_tick`` returns at once with exact deadlines.

    ``first_frame`` starts the timeline later (resume, or checking long-run
    exactness without issuing millions of ticks); ``max_ticks`` makes the
    clock finite. Thread-safe enough for one ticking thread.

    Raises:
        ValueError: bad ``fps``, negative ``max_ticks`` or ``first_frame``.
    """

    realtime: ClassVar[bool] = False

    def __init__(self, fps: FpsLike, *, start_ns: int = 0, max_ticks: int | None = None,
                 clock_id: str = "virtual", first_frame: int = 0) -> None:
        if max_ticks is not None and max_ticks < 0:
            raise ValueError(f"max_ticks must be >= 0 or None, got {max_ticks!r}")
        if first_frame < 0:
            raise ValueError(f"first_frame must be >= 0, got {first_frame!r}")
        super().__init__(fps, clock_id)
        self._start_ns = start_ns
        self._max_ticks = max_ticks
        self._next_index = first_frame
        self._now = start_ns

    def next_tick(self) -> TimedTick:
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

    def now_ns(self) -> int:
        """Timestamp of the last tick issued (``start_ns`` before any)."""
        return self._now


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


class PTPClock(_ScheduledClock):
    """Ticks on frame boundaries of the TAI epoch (SMPTE ST 2059-1 style).

    Boundary ``k`` is at ``(k * 1e9 * den) // num`` ns since the epoch; the
    first tick is the first boundary at or after now, and ``frame_number`` is
    the absolute boundary index ``k``, so two machines locked to the same
    grandmaster agree on frame numbers. Missed boundaries are skipped and
    counted like in :class:`SoftwareClock`. An unsynchronized source still
    ticks; check :attr:`synchronized`. ``sleeper(duration_ns)`` defaults to
    sleep-then-spin on the monotonic clock (the loop re-reads the source).

    Raises:
        ValueError: bad ``fps`` or negative ``spin_ns``.
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
        ValueError: ``maxlen`` < 1.
    """

    def __init__(self, maxlen: int = 64, *,
                 time_ns: Callable[[], int] = time.monotonic_ns) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, got {maxlen!r}")
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
        ValueError: bad ``fps``.
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

    def next_tick(self) -> TimedTick:
        """Wait for the next pulse and return its tick.

        Raises:
            ClockClosedError: the clock or its pulse source is (or gets) closed.
        """
        while True:
            self._raise_if_closed()
            try:
                # short waits: a source that ignores close() still lets us exit
                stamp = self._source.wait_pulse(_PULSE_POLL_S)
            except ClockClosedError:
                self.close()
                raise
            if stamp is not None:
                break
        self._raise_if_closed()  # closed while a pulse arrived: closed wins
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
