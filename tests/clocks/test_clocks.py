"""Tests of streamlib.clocks.

Fake time (an injected ``time_ns`` plus a sleeper that advances it) makes the
scheduling rules exact and instant; the few real-time tests check correctness
only (ordering, "not before the deadline", prompt wake on close), with loose
bounds so a loaded machine does not make them flaky.
"""

from __future__ import annotations

import json
import math
import queue
import threading
import time
from fractions import Fraction
from pathlib import Path

import pytest

from streamlib.clocks import (
    Clock,
    GenlockClock,
    ManualPulseSource,
    PTPClock,
    SoftwareClock,
    SystemTAITimeSource,
    TimedTick,
    TimeSource,
    VirtualClock,
    deadline_ns,
    latest_frame_at,
    parse_rate,
)
from streamlib.errors import ClockClosedError, EndOfStream, StreamlibError
from tests.helpers.fake_time import FakeTAI, FakeTime

NTSC = Fraction(60000, 1001)


def exact_deadline(rate: Fraction, n: int, start: int = 0) -> int:
    """Independent closed form: floor(n / rate seconds) in ns, via Fraction."""
    return start + math.floor(Fraction(n) / rate * 10**9)


def run_in_thread(fn: object) -> tuple[threading.Thread, queue.Queue[object]]:
    """Run ``fn()`` on a daemon thread; its result or exception lands in the queue."""
    results: queue.Queue[object] = queue.Queue()

    def target() -> None:
        try:
            results.put(fn())  # type: ignore[operator]
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            results.put(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, results


# ---------------------------------------------------------------- TimedTick

def test_timed_tick_properties() -> None:
    tick = TimedTick(timestamp_ns=1_500_000_000, frame_number=3, clock_id="c")
    assert tick.timestamp == 1.5
    assert (tick.timestamp_ns, tick.frame_number, tick.clock_id) == (1_500_000_000, 3, "c")
    with pytest.raises(AttributeError):
        tick.frame_number = 4  # type: ignore[misc]
    assert not hasattr(tick, "__dict__")  # slots
    assert tick == TimedTick(1_500_000_000, 3, "c")


# ---------------------------------------------------------------- rates

@pytest.mark.parametrize(
    ("fps", "expected"),
    [
        (30, Fraction(30)),
        (Fraction(30000, 1001), Fraction(30000, 1001)),
        ("30000/1001", Fraction(30000, 1001)),
        (" 60000 / 1001 ", NTSC),
        ("25", Fraction(25)),
        (59.94, NTSC),
        (29.97, Fraction(30000, 1001)),
        (23.976, Fraction(24000, 1001)),
        (119.88, Fraction(120000, 1001)),
        ("59.94", NTSC),
        (60000 / 1001, NTSC),
        (25.0, Fraction(25)),
        (12.5, Fraction(25, 2)),
        (59.9, Fraction(599, 10)),
        (0.5, Fraction(1, 2)),
        (10_000, Fraction(10_000)),
    ],
)
def test_parse_rate_accepts(fps: object, expected: Fraction) -> None:
    assert parse_rate(fps) == expected  # type: ignore[arg-type]
    assert VirtualClock(fps).rate == expected  # type: ignore[arg-type]


@pytest.mark.parametrize("fps", [0, -1, 0.0, -29.97, 10_001, 1e9, "0", "-5/1",
                                 "1/0", "abc", "", float("nan"), float("inf"), "inf"])
def test_parse_rate_rejects_values(fps: object) -> None:
    with pytest.raises(ValueError, match="fps"):
        parse_rate(fps)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fps"):
        SoftwareClock(fps)  # type: ignore[arg-type]


@pytest.mark.parametrize("fps", [True, None, [30], object()])
def test_parse_rate_rejects_types(fps: object) -> None:
    with pytest.raises(TypeError, match="fps"):
        parse_rate(fps)  # type: ignore[arg-type]


def test_clock_rate_properties() -> None:
    clock = VirtualClock("60000/1001")
    assert clock.rate == NTSC
    assert clock.fps == pytest.approx(59.94005994)
    assert clock.period_ns == pytest.approx(16_683_333.333)
    assert clock.clock_id == "virtual"
    assert isinstance(clock, Clock)


def test_latest_frame_at_matches_brute_force() -> None:
    for rate in (NTSC, Fraction(25), Fraction(7, 3), Fraction(10_000)):
        for start in (0, 12_345):
            stamps = [deadline_ns(rate, n, start) for n in range(-3, 40)]
            for now in range(stamps[0], stamps[-1], max(1, (stamps[-1] - stamps[0]) // 3000)):
                expected = max(n for n in range(-3, 40) if deadline_ns(rate, n, start) <= now)
                assert latest_frame_at(rate, now, start) == expected
            for n in range(-3, 40):  # exactly on and just before each deadline
                assert latest_frame_at(rate, stamps[n + 3], start) == n
                assert latest_frame_at(rate, stamps[n + 3] - 1, start) == n - 1


# ---------------------------------------------------------------- VirtualClock

def test_virtual_clock_is_exact_and_does_not_drift() -> None:
    clock = VirtualClock(NTSC, start_ns=5)
    assert clock.realtime is False
    assert clock.now_ns() == 5
    floor_p, ceil_p = 16_683_333, 16_683_334
    previous = None
    for n in range(100_000):
        tick = clock.wait_tick()
        assert tick.frame_number == n
        assert tick.timestamp_ns == exact_deadline(NTSC, n, 5)
        if previous is not None:
            assert tick.timestamp_ns - previous in (floor_p, ceil_p)
        previous = tick.timestamp_ns
    assert clock.now_ns() == previous
    assert clock.ticks_issued == 100_000 and clock.missed_deadlines == 0

    # tick 10 million (46 h in): 10e6 * 1001 / 60000 s = 166833.333... s, exact to the ns
    far = VirtualClock(NTSC, first_frame=10_000_000).wait_tick()
    assert far.frame_number == 10_000_000
    assert far.timestamp_ns == exact_deadline(NTSC, 10_000_000) == 166_833_333_333_333
    assert deadline_ns(NTSC, 10_000_000) == 166_833_333_333_333
    # whereas accumulating a float period has already drifted
    acc = 0.0
    period = 1e9 * 1001 / 60000
    for _ in range(1_000_000):
        acc += period
    assert int(acc) != exact_deadline(NTSC, 1_000_000)


def test_virtual_clock_max_ticks_and_close() -> None:
    with VirtualClock(25, max_ticks=3) as clock:
        assert [clock.wait_tick().timestamp_ns for _ in range(3)] == [0, 40_000_000, 80_000_000]
        with pytest.raises(EndOfStream):
            clock.wait_tick()
        with pytest.raises(EndOfStream):
            clock.wait_tick()
    assert clock.closed
    with pytest.raises(ClockClosedError):
        clock.wait_tick()
    clock.close()  # idempotent
    assert isinstance(EndOfStream("x"), StreamlibError)
    with pytest.raises(ValueError, match="max_ticks"):
        VirtualClock(25, max_ticks=-1)


# ---------------------------------------------------------------- SoftwareClock (fake time)

def test_software_clock_waits_to_exact_deadlines_with_fake_time() -> None:
    fake = FakeTime(1_000)
    clock = SoftwareClock(NTSC, time_ns=fake, sleeper=fake.sleep)
    first = clock.wait_tick()
    assert (first.timestamp_ns, first.frame_number, first.clock_id) == (1_000, 0, "monotonic")
    assert fake.sleeps == []  # tick 0 is immediate
    for n in range(1, 50):
        tick = clock.wait_tick()
        assert tick.frame_number == n
        assert tick.timestamp_ns == exact_deadline(NTSC, n, 1_000) == fake.t
        assert clock.last_lateness_ns == 0
    assert clock.missed_deadlines == 0 and clock.ticks_issued == 50


def test_software_clock_skips_missed_deadlines_without_bunching() -> None:
    fake = FakeTime(0)
    clock = SoftwareClock(25, time_ns=fake, sleeper=fake.sleep)  # 40 ms period
    period = 40_000_000
    stamps = [clock.wait_tick().timestamp_ns, clock.wait_tick().timestamp_ns]
    assert stamps == [0, period]

    fake.t += 7 * period // 2  # consumer stalls 3.5 periods: now = 4.5 periods
    tick = clock.wait_tick()
    # deadlines 2 and 3 are skipped; the latest due (4) is returned at once
    assert tick.frame_number == 4 and tick.timestamp_ns == 4 * period
    assert clock.missed_deadlines == 2
    assert clock.last_lateness_ns == period // 2
    stamps.append(tick.timestamp_ns)

    # the next tick waits for deadline 5: no burst of stale ticks
    sleeps_before = len(fake.sleeps)
    tick = clock.wait_tick()
    assert tick.frame_number == 5 and fake.t == 5 * period
    assert len(fake.sleeps) > sleeps_before
    stamps.append(tick.timestamp_ns)

    fake.t = 7 * period  # exactly at deadline n+1 (=7) counts as missed (6)
    tick = clock.wait_tick()
    assert tick.frame_number == 7 and clock.missed_deadlines == 3
    stamps.append(tick.timestamp_ns)

    fake.t = 8 * period + 1  # due (8) but not past 9: on time, no skip
    tick = clock.wait_tick()
    assert tick.frame_number == 8 and clock.missed_deadlines == 3
    assert clock.last_lateness_ns == 1
    stamps.append(tick.timestamp_ns)

    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert clock.ticks_issued == 6


# ---------------------------------------------------------------- SoftwareClock (real time)

@pytest.mark.timeout(20)
def test_software_clock_real_ticks_are_periodic_and_never_early() -> None:
    rate = Fraction(200)
    with SoftwareClock(rate, spin_ns=200_000) as clock:
        ticks = []
        for _ in range(10):
            tick = clock.wait_tick()
            woke = time.monotonic_ns()
            assert woke >= tick.timestamp_ns
            assert clock.last_lateness_ns >= 0
            ticks.append(tick)
    start = ticks[0].timestamp_ns
    assert ticks[0].frame_number == 0
    for tick in ticks:  # a loaded machine may skip frames, but never off-grid
        assert tick.timestamp_ns == start + tick.frame_number * 5_000_000
    frames = [t.frame_number for t in ticks]
    assert all(b > a for a, b in zip(frames, frames[1:]))
    assert clock.missed_deadlines == frames[-1] - 9


@pytest.mark.timeout(10)
def test_close_from_another_thread_wakes_software_clock() -> None:
    entered = threading.Event()
    calls = 0

    def time_ns() -> int:
        nonlocal calls
        calls += 1
        if calls >= 2:  # the 2nd wait_tick has read the time and is about to wait
            entered.set()
        return time.monotonic_ns()

    clock = SoftwareClock(Fraction(1, 5), time_ns=time_ns)  # next tick due in 5 s
    clock.wait_tick()
    thread, results = run_in_thread(clock.wait_tick)
    assert entered.wait(5)
    closed_at = time.monotonic()
    clock.close()
    outcome = results.get(timeout=5)
    woke_after = time.monotonic() - closed_at
    thread.join(5)
    assert isinstance(outcome, ClockClosedError)
    assert woke_after < 1.0
    with pytest.raises(ClockClosedError):
        clock.wait_tick()


def test_software_clock_rejects_negative_spin() -> None:
    with pytest.raises(ValueError, match="spin_ns"):
        SoftwareClock(30, spin_ns=-1)


# ---------------------------------------------------------------- PTPClock

def test_ptp_clock_first_tick_is_next_boundary_and_aligned() -> None:
    t0 = 1_700_000_000_123_456_789
    source = FakeTAI(t0)
    assert isinstance(source, TimeSource)
    clock = PTPClock(NTSC, time_source=source, sleeper=source.time.sleep)
    assert clock.now_ns() == t0
    first = clock.wait_tick()
    k0 = math.ceil(Fraction(t0) * NTSC / 10**9)  # first boundary >= t0
    assert first.frame_number == k0
    assert first.timestamp_ns == exact_deadline(NTSC, k0) >= t0
    assert exact_deadline(NTSC, k0 - 1) < t0
    assert source.time.t == first.timestamp_ns and clock.last_lateness_ns == 0
    for k in range(k0 + 1, k0 + 20):
        tick = clock.wait_tick()
        assert tick.frame_number == k
        assert tick.timestamp_ns == exact_deadline(NTSC, k)
        # boundary k is k/rate seconds after the epoch; the remainder is < 1 ns
        assert Fraction(tick.timestamp_ns) <= Fraction(k) / NTSC * 10**9 < tick.timestamp_ns + 1
    assert clock.missed_deadlines == 0 and clock.synchronized and clock.clock_id == "tai"


def test_ptp_clock_on_exact_boundary_and_missed_boundaries() -> None:
    boundary = deadline_ns(Fraction(50), 12_345_678)
    source = FakeTAI(boundary, synchronized=False)
    clock = PTPClock(50, time_source=source, sleeper=source.time.sleep)
    tick = clock.wait_tick()
    assert tick.frame_number == 12_345_678 and tick.timestamp_ns == boundary
    assert source.time.sleeps == []
    assert not clock.synchronized  # unsynchronized still ticks

    source.time.t += 5 * 20_000_000 + 3  # stall 5 periods and a bit
    tick = clock.wait_tick()
    assert tick.frame_number == 12_345_678 + 5
    assert tick.timestamp_ns % 20_000_000 == 0
    assert clock.missed_deadlines == 4
    assert clock.wait_tick().frame_number == 12_345_678 + 6


@pytest.mark.timeout(10)
def test_ptp_clock_default_sleeper_with_system_tai() -> None:
    source = SystemTAITimeSource()
    assert abs(source.now_ns() - (time.time_ns() + 37 * 10**9)) < 10**9
    assert source.synchronized
    with PTPClock(100, time_source=source) as clock:
        a, b = clock.wait_tick(), clock.wait_tick()
    assert b.frame_number > a.frame_number
    assert a.timestamp_ns % 10_000_000 == 0 and b.timestamp_ns % 10_000_000 == 0
    assert PTPClock(25).now_ns() == pytest.approx(time.time_ns() + 37e9, abs=1e9)
    assert not SystemTAITimeSource(assume_synchronized=False).synchronized


@pytest.mark.timeout(10)
def test_close_wakes_ptp_clock() -> None:
    source = SystemTAITimeSource()
    clock = PTPClock(Fraction(1, 30), time_source=source)  # boundaries 30 s apart
    thread, results = run_in_thread(clock.wait_tick)
    # whether close lands before or during the wait, wait_tick must raise promptly
    clock.close()
    assert isinstance(results.get(timeout=5), ClockClosedError)
    thread.join(5)


# ---------------------------------------------------------------- GenlockClock

@pytest.mark.timeout(10)
def test_genlock_clock_follows_pulses_from_a_thread() -> None:
    period = 20_000_000  # 50 Hz
    stamps = [0, period, 2 * period, 5 * period, 6 * period, 7 * period]
    source = ManualPulseSource()
    clock = GenlockClock(source, fps=50)

    def feed() -> None:
        for stamp in stamps:
            source.pulse(stamp)

    feeder, _ = run_in_thread(feed)
    ticks = [clock.wait_tick() for _ in stamps]
    feeder.join(5)
    assert [t.timestamp_ns for t in ticks] == stamps
    assert [t.frame_number for t in ticks] == list(range(6))
    assert clock.missed_deadlines == 2  # gap of 3 periods
    assert clock.fps == 50.0 and clock.rate == 50
    assert clock.ticks_issued == 6


def test_genlock_clock_measures_rate_without_fps() -> None:
    source = ManualPulseSource()
    clock = GenlockClock(source)
    assert clock.fps == 0.0 and clock.period_ns == 0.0
    source.pulse(1_000)
    clock.wait_tick()
    assert clock.fps == 0.0
    for n in range(1, 40):
        source.pulse(1_000 + deadline_ns(NTSC, n))
        clock.wait_tick()
    assert clock.fps == pytest.approx(59.94, abs=0.01)
    assert clock.missed_deadlines == 0  # never counted without a nominal fps


def test_manual_pulse_source_bounded_queue() -> None:
    source = ManualPulseSource(maxlen=4)
    for stamp in range(6):
        assert source.pulse(stamp)
    assert source.dropped == 2
    assert [source.wait_pulse(0) for _ in range(4)] == [2, 3, 4, 5]
    assert source.wait_pulse(0) is None  # timeout
    source.close()
    assert source.pulse(9) is False  # a vsync callback must not blow up
    with pytest.raises(ClockClosedError):
        source.wait_pulse(None)


@pytest.mark.timeout(10)
def test_close_wakes_genlock_clock() -> None:
    source = ManualPulseSource()
    clock = GenlockClock(source, fps=1)
    source.pulse()
    got_first: queue.Queue[TimedTick] = queue.Queue()

    def consume() -> None:
        got_first.put(clock.wait_tick())
        clock.wait_tick()  # no second pulse ever comes

    thread, results = run_in_thread(consume)
    got_first.get(timeout=5)
    closed_at = time.monotonic()
    clock.close()
    assert isinstance(results.get(timeout=5), ClockClosedError)
    assert time.monotonic() - closed_at < 1.0
    thread.join(5)
    assert source.pulse() is False  # the clock closed its source


@pytest.mark.timeout(10)
def test_genlock_clock_exits_with_a_source_that_ignores_close() -> None:
    class DeafSource:
        def wait_pulse(self, timeout_s: float | None) -> int | None:
            time.sleep(timeout_s or 0)  # stands in for a blocking driver call
            return None

        def close(self) -> None:
            pass

    clock = GenlockClock(DeafSource())
    thread, results = run_in_thread(clock.wait_tick)
    clock.close()
    assert isinstance(results.get(timeout=5), ClockClosedError)
    thread.join(5)


# ---------------------------------------------------------------- benchmark smoke test

@pytest.mark.timeout(30)
def test_clock_jitter_benchmark_smoke(tmp_path: Path) -> None:
    from benchmarks import clock_jitter

    result = clock_jitter.main(["--fps", "100", "--seconds", "0.3", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "clock_jitter.json").read_text())
    assert record["name"] == "clock_jitter"
    figures = record["figures"]
    assert figures == result["figures"]
    case = figures["software_clock"]["100"]
    assert case["ticks"] > 0 and case["lateness_us"]["min"] >= 0
    assert "p99_minus_p50_us" in case and "interval_jitter_us" in case
    assert figures["asyncio_sleep"]["ticks"] > 0
