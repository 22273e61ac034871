"""``tick = await clock.next_tick()`` for every clock (the plan's async API).

The loop must keep serving other coroutines while a clock waits: the fake
times below are advanced only by another coroutine on the same loop, so a wait
that blocked the loop could never end (``GuardedTime`` turns that into a
failure rather than a hang).
"""

from __future__ import annotations

import asyncio
import threading
from fractions import Fraction
from typing import Callable

import pytest

from streamlib.clocks import (
    Clock, GenlockClock, ManualPulseSource, PTPClock, SoftwareClock, SystemTAITimeSource, TimedTick,
    VirtualClock, deadline_ns,
)
from streamlib.errors import ClockClosedError, EndOfStream
from tests.helpers.fake_time import FakeTAI, FakeTime

NTSC = Fraction(60000, 1001)
MS = 1_000_000


class GuardedTime:
    """Fake time that only a coroutine advances; a wait spinning on it fails."""

    def __init__(self, t: int = 0) -> None:
        self.t = t
        self.reads_since_advance = 0
        self.read = asyncio.Event()  # set at every read, on the loop's thread

    def __call__(self) -> int:
        self.reads_since_advance += 1
        if self.reads_since_advance > 1_000:
            raise AssertionError("time read 1000 times without being advanced: the wait blocks the loop")
        self.read.set()
        return self.t

    def advance_to(self, t: int) -> None:
        self.t = t
        self.reads_since_advance = 0


def run(coro_fn: Callable[[], object]) -> None:
    asyncio.run(asyncio.wait_for(coro_fn(), timeout=10))  # type: ignore[arg-type]


# ---------------------------------------------------------------- VirtualClock

def test_virtual_clock_awaited_ticks_are_exact_and_finite() -> None:
    async def main() -> None:
        clock = VirtualClock(NTSC, start_ns=500, max_ticks=3, clock_id="v")
        ticks = [await clock.next_tick() for _ in range(3)]
        assert ticks == [
            TimedTick(500, 0, "v"), TimedTick(500 + 16_683_333, 1, "v"), TimedTick(500 + 33_366_666, 2, "v"),
        ]
        assert clock.now_ns() == 500 + 33_366_666
        with pytest.raises(EndOfStream) as end:
            await clock.next_tick()
        assert str(end.value) == "clock 'v' issued its 3 ticks"
        clock.close()
        with pytest.raises(ClockClosedError) as closed:
            await clock.next_tick()
        assert str(closed.value) == "clock 'v' is closed"

    run(main)


# ---------------------------------------------------------------- SoftwareClock

def test_software_clock_awaited_wait_leaves_the_loop_free() -> None:
    async def main() -> None:
        time = GuardedTime()
        clock = SoftwareClock(1000, time_ns=time)  # default wait: sleeps on the loop
        requested = 0
        served: list[int] = []

        async def advancer() -> None:
            # runs only while the clock's coroutine is suspended on the loop
            for k in (1, 2, 3):
                while requested < k or time.reads_since_advance == 0:
                    await asyncio.sleep(0)
                served.append(k)
                time.advance_to(k * MS)

        task = asyncio.create_task(advancer())
        ticks = [await clock.next_tick()]
        for k in (1, 2, 3):
            requested = k
            ticks.append(await clock.next_tick())
        await task
        assert ticks == [TimedTick(k * MS, k, "monotonic") for k in range(4)]
        assert served == [1, 2, 3]
        assert clock.missed_deadlines == 0 and clock.ticks_issued == 4
        assert clock.last_lateness_ns == 0

    run(main)


def test_software_clock_awaited_in_real_time_at_1000_fps() -> None:
    async def main() -> None:
        with SoftwareClock(1000, clock_id="rt") as clock:
            first = await clock.next_tick()
            ticks = [await clock.next_tick() for _ in range(5)]
            frames = [t.frame_number for t in ticks]
            assert all(b > a for a, b in zip([0, *frames], frames))
            for tick in ticks:  # deadlines, never wake times; none early
                assert tick.timestamp_ns == first.timestamp_ns + tick.frame_number * MS
                assert tick.clock_id == "rt"
            assert clock.now_ns() >= ticks[-1].timestamp_ns
            assert clock.ticks_issued == 6
            assert clock.missed_deadlines == frames[-1] - 5

    run(main)


def test_software_clock_awaited_with_injected_sleeper_skips_like_wait_tick() -> None:
    async def main() -> None:
        fake = FakeTime(0)
        clock = SoftwareClock(25, time_ns=fake, sleeper=fake.sleep)  # 40 ms period
        assert [(await clock.next_tick()).timestamp_ns for _ in range(2)] == [0, 40 * MS]
        assert fake.sleeps == [40 * MS]
        fake.t += 140 * MS  # stall 3.5 periods: deadlines 2 and 3 are skipped
        assert await clock.next_tick() == TimedTick(160 * MS, 4, "monotonic")
        assert clock.missed_deadlines == 2 and clock.last_lateness_ns == 20 * MS
        assert await clock.next_tick() == TimedTick(200 * MS, 5, "monotonic")

    run(main)


@pytest.mark.parametrize("close_from", ["loop", "thread"])
def test_close_while_awaiting_software_clock_raises(close_from: str) -> None:
    async def main() -> None:
        time = GuardedTime(0)
        clock = SoftwareClock(Fraction(1, 3600), time_ns=time)  # next deadline in an hour
        assert await clock.next_tick() == TimedTick(0, 0, "monotonic")
        time.read.clear()
        waiter = asyncio.create_task(clock.next_tick())
        await time.read.wait()  # the waiter has read the time and is sleeping
        if close_from == "loop":
            clock.close()
        else:
            await asyncio.to_thread(clock.close)
        with pytest.raises(ClockClosedError) as closed:
            await waiter
        assert str(closed.value) == "clock 'monotonic' is closed"
        assert clock.ticks_issued == 1

    run(main)


def test_cancelled_software_clock_wait_issues_no_tick() -> None:
    async def main() -> None:
        time = GuardedTime(0)
        clock = SoftwareClock(10, time_ns=time)  # 100 ms period
        await clock.next_tick()
        time.read.clear()
        waiter = asyncio.create_task(clock.next_tick())
        await time.read.wait()
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert clock.ticks_issued == 1
        time.advance_to(100 * MS)
        assert await clock.next_tick() == TimedTick(100 * MS, 1, "monotonic")

    run(main)


# ---------------------------------------------------------------- PTPClock

def test_ptp_clock_awaited_ticks_on_tai_boundaries() -> None:
    async def main() -> None:
        boundary = deadline_ns(Fraction(50), 12_345_678)
        source = FakeTAI(boundary - 5)
        clock = PTPClock(50, time_source=source, sleeper=source.time.sleep)
        ticks = [await clock.next_tick() for _ in range(3)]
        assert ticks == [TimedTick(boundary + k * 20 * MS, 12_345_678 + k, "tai") for k in range(3)]
        assert source.time.sleeps == [5, 20 * MS, 20 * MS]

    run(main)


def test_close_while_awaiting_ptp_clock_raises() -> None:
    async def main() -> None:
        clock = PTPClock(Fraction(1, 30), time_source=SystemTAITimeSource())  # boundaries 30 s apart
        waiter = asyncio.create_task(clock.next_tick())
        await asyncio.sleep(0)  # the waiter is sleeping on the loop until the boundary
        clock.close()
        with pytest.raises(ClockClosedError) as closed:
            await waiter
        assert str(closed.value) == "clock 'tai' is closed"

    run(main)


# ---------------------------------------------------------------- GenlockClock

def test_genlock_clock_awaited_ticks_follow_pulses() -> None:
    async def main() -> None:
        source = ManualPulseSource()
        with GenlockClock(source, fps=50) as clock:
            stamps = [0, 20 * MS, 80 * MS]
            for stamp in stamps:
                source.pulse(stamp)
            ticks = [await clock.next_tick() for _ in stamps]
            assert ticks == [TimedTick(s, n, "genlock") for n, s in enumerate(stamps)]
            assert clock.missed_deadlines == 2  # gap of 3 periods

    run(main)


def test_genlock_clock_awaited_while_pulses_come_from_a_coroutine() -> None:
    async def main() -> None:
        source = ManualPulseSource()
        with GenlockClock(source) as clock:
            async def feed() -> None:
                for stamp in (7, 8, 9):
                    await asyncio.sleep(0)
                    source.pulse(stamp)

            feeder = asyncio.create_task(feed())
            ticks = [await clock.next_tick() for _ in range(3)]
            await feeder
            assert ticks == [TimedTick(7, 0, "genlock"), TimedTick(8, 1, "genlock"), TimedTick(9, 2, "genlock")]

    run(main)


class SignallingPulseSource(ManualPulseSource):
    """Sets ``waiting`` when a ``wait_pulse`` begins (on the executor's thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = threading.Event()

    def wait_pulse(self, timeout_s: float | None) -> int | None:
        self.waiting.set()
        return super().wait_pulse(timeout_s)


def test_cancelled_genlock_wait_loses_no_pulse() -> None:
    async def main() -> None:
        source = SignallingPulseSource()
        with GenlockClock(source) as clock:
            waiter = asyncio.create_task(clock.next_tick())
            # the pulse wait runs in the executor: cancelling cannot stop it
            assert await asyncio.to_thread(source.waiting.wait, 5)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            source.pulse(1_234)
            assert await clock.next_tick() == TimedTick(1_234, 0, "genlock")
            assert clock.ticks_issued == 1

    run(main)


def test_close_while_awaiting_genlock_clock_raises() -> None:
    async def main() -> None:
        source = ManualPulseSource()
        clock = GenlockClock(source, fps=1)
        waiter = asyncio.create_task(clock.next_tick())
        await asyncio.sleep(0)
        clock.close()
        with pytest.raises(ClockClosedError) as closed:
            await waiter
        # the source's wait or the clock's own check sees the close first
        assert str(closed.value) in {"pulse source is closed", "clock 'genlock' is closed"}
        assert source.pulse() is False

    run(main)


# ---------------------------------------------------------------- a Clock with only wait_tick

def test_base_next_tick_runs_wait_tick_off_the_loop() -> None:
    class StepClock(Clock):
        def __init__(self) -> None:
            super().__init__(10, "step")
            self.threads: list[int] = []

        def wait_tick(self) -> TimedTick:
            self._raise_if_closed()
            self.threads.append(threading.get_ident())
            n = self._ticks
            self._ticks += 1
            return TimedTick(n * 100 * MS, n, self.clock_id)

        def now_ns(self) -> int:
            return 0

    async def main() -> None:
        clock = StepClock()
        assert [await clock.next_tick() for _ in range(2)] == [TimedTick(0, 0, "step"), TimedTick(100 * MS, 1, "step")]
        assert threading.get_ident() not in clock.threads
        clock.close()
        with pytest.raises(ClockClosedError) as closed:
            await clock.next_tick()
        assert str(closed.value) == "clock 'step' is closed"

    run(main)
