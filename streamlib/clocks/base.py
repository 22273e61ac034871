"""The clock abstraction: ``TimedTick``, exact frame-rate arithmetic, ``Clock``.

Deadlines come from an exact :class:`~fractions.Fraction` rate with integer
arithmetic, ``start_ns + (n * 1e9 * den) // num``, never from adding a float
period, so tick 10 million at 60000/1001 fps is exact to the nanosecond.
:class:`ScheduledClock` is the shared base of the clocks whose deadlines
follow that rule (``SoftwareClock`` in :mod:`streamlib.clocks`, ``PTPClock``
in :mod:`streamlib.clocks.reference`): missed deadlines are counted and skipped,
never bunched. Import the public names from :mod:`streamlib.clocks`.
"""

from __future__ import annotations

import asyncio
import math
import numbers
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from types import TracebackType
from typing import Callable, ClassVar, Self, Union

from streamlib.errors import ClockClosedError, ConfigError, ConfigTypeError

__all__ = [
    "MAX_FPS", "NS_PER_S", "Clock", "FpsLike", "ScheduledClock", "Sleeper", "TimedTick",
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
        raise ConfigError(f"fps must be finite, got {original!r}")
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
        ConfigTypeError: ``fps`` is a bool or not a number/string.
        ConfigError: ``fps`` is unparsable, not finite, <= 0 or > 10000.
    """
    rate: Fraction
    if isinstance(fps, bool):  # bool is an int; True fps is surely a bug
        raise ConfigTypeError(f"fps must be a number or a string, got {fps!r}")
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
            raise ConfigError(f"fps string {fps!r} is not a rate: {exc}") from None
    else:
        raise ConfigTypeError(f"fps must be a number or a string, got {type(fps).__name__}")
    if rate <= 0 or rate > MAX_FPS:
        raise ConfigError(f"fps must be > 0 and <= {MAX_FPS}, got {fps!r}")
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


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Clock(ABC):
    """A source of :class:`TimedTick`, read from one thread or one coroutine.

    Two ways to wait for the next tick, both raising :class:`ClockClosedError`
    when the clock is (or gets) closed:

    * ``tick = await clock.next_tick()`` in a coroutine (the plan's API): the
      wait does not block the running event loop, which keeps serving other
      tasks. The base implementation runs ``wait_tick`` in the loop's default
      executor; the clocks of this package override it so that a cancelled
      wait loses no tick (the scheduled ones sleep on the loop itself).
    * ``tick = clock.wait_tick()`` blocks the calling thread; the runtime's
      clock driver threads use it because a thread that sleeps then spins
      ticks to a few microseconds, where the event loop's timers jitter by a
      millisecond or more.

    ``close()`` may be called from any thread and wakes either kind of wait.
    """

    realtime: ClassVar[bool] = True

    def __init__(self, fps: FpsLike | None, clock_id: str) -> None:
        self._rate: Fraction | None = None if fps is None else parse_rate(fps)
        self._clock_id = clock_id
        self._closed = threading.Event()
        # close() calls these to wake coroutines sleeping in next_tick
        self._wakers: set[Callable[[], None]] = set()
        self._wakers_lock = threading.Lock()
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
    def wait_tick(self) -> TimedTick:
        """Block the calling thread until the next tick is due and return it.

        Raises:
            ClockClosedError: the clock is closed, or was closed while waiting.
            EndOfStream: a finite clock has issued all its ticks.
        """

    async def next_tick(self) -> TimedTick:
        """Wait for the next tick without blocking the running event loop.

        Raises:
            ClockClosedError: the clock is closed, or was closed while waiting.
            EndOfStream: a finite clock has issued all its ticks.
        """
        return await asyncio.get_running_loop().run_in_executor(None, self.wait_tick)

    @abstractmethod
    def now_ns(self) -> int:
        """Current time in this clock's timebase (that of ``timestamp_ns``)."""

    def close(self) -> None:
        """Close the clock; idempotent and callable from any thread."""
        self._closed.set()
        with self._wakers_lock:
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def _raise_if_closed(self) -> None:
        if self._closed.is_set():
            raise ClockClosedError(f"clock {self._clock_id!r} is closed")

    async def _sleep_unless_closed(self, seconds: float) -> None:
        """Sleep ``seconds`` on the running loop; ``close()`` from any thread ends it early."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_resolve, woken)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        with self._wakers_lock:
            self._wakers.add(wake)
        try:
            if self._closed.is_set():  # closed before wake was registered
                return
            timer = loop.call_later(seconds, _resolve, woken)
            try:
                await woken
            finally:
                timer.cancel()
        finally:
            with self._wakers_lock:
                self._wakers.discard(wake)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class ScheduledClock(Clock):
    """Shared logic of clocks whose deadlines follow ``deadline_ns`` exactly.

    Raises ConfigError for a bad ``fps`` or a negative ``spin_ns``.
    """

    def __init__(self, fps: FpsLike, clock_id: str, time_ns: Callable[[], int],
                 sleeper: Sleeper | None, sleep_time_ns: Callable[[], int],
                 spin_ns: int) -> None:
        if spin_ns < 0:
            raise ConfigError(f"spin_ns must be >= 0, got {spin_ns!r}")
        super().__init__(fps, clock_id)
        self._time_ns = time_ns
        self.spin_ns = spin_ns
        # the default sleeper watches self._closed so close() interrupts it
        self._sleeper = sleeper or _make_sleep_then_spin(sleep_time_ns, self._closed, spin_ns)
        self._injected_sleeper = sleeper
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
        """Return ``(origin_ns, first_index)`` at the first tick requested."""

    def _deadline(self, n: int) -> int:
        return deadline_ns(self.rate, n, self._origin_ns)

    def _next_due(self) -> tuple[int, int | None]:
        """Index of the next tick, and the time now if that tick is due at once.

        Starts the timeline at the first call. If the clock is already at or
        past deadline ``n+1``, the latest deadline ``<= now`` is due at once
        and the frames skipped are added to ``missed_deadlines``.
        """
        now = self._time_ns()
        if self._next_index is None:
            self._origin_ns, self._next_index = self._start(now)
        n = self._next_index
        if now < self._deadline(n + 1):
            return n, None
        latest = latest_frame_at(self.rate, now, self._origin_ns)
        self._missed += latest - n
        return latest, now

    def _issue(self, n: int, now: int) -> TimedTick:
        deadline = self._deadline(n)
        self._last_lateness_ns = now - deadline
        self._next_index = n + 1
        self._ticks += 1
        return TimedTick(deadline, n, self._clock_id)

    def wait_tick(self) -> TimedTick:
        """Block until the next deadline and return its tick (skipping missed ones).

        A slow consumer never gets a burst of stale ticks: when it calls after
        deadline ``n+1`` has passed, the tick of the latest deadline ``<= now``
        is returned at once and the frames skipped are counted in
        ``missed_deadlines``.

        Raises:
            ClockClosedError: closed before or during the wait.
        """
        self._raise_if_closed()
        n, now = self._next_due()
        if now is None:
            now = self._wait_until(self._deadline(n))
        return self._issue(n, now)

    async def next_tick(self) -> TimedTick:
        """``wait_tick`` for a coroutine: the wait sleeps on the running loop.

        Same ticks and skipping rule as ``wait_tick``; the wake-up is as
        precise as the loop's timers (no final spin, which would stall the
        loop). With an injected ``sleeper`` (fake time) the sleeper runs in
        the loop's default executor.

        Raises:
            ClockClosedError: closed before or during the wait.
        """
        self._raise_if_closed()
        n, now = self._next_due()
        if now is None:
            now = await self._await_until(self._deadline(n))
        return self._issue(n, now)

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

    async def _await_until(self, target_ns: int) -> int:
        # the same loop as _wait_until, sleeping on the event loop
        loop = asyncio.get_running_loop()
        while True:
            self._raise_if_closed()
            now = self._time_ns()
            remaining = target_ns - now
            if remaining <= 0:
                return now
            if self._injected_sleeper is not None:
                await loop.run_in_executor(None, self._injected_sleeper, remaining)
            else:
                await self._sleep_unless_closed(remaining / NS_PER_S)
