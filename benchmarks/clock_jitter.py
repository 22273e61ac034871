"""Wake-up jitter of SoftwareClock versus naive ``asyncio.sleep`` ticking.

Usage (from the repo root)::

    python -m benchmarks.clock_jitter [--quick] [--fps 30 60 120] [--seconds S] [--out DIR]

For each fps a :class:`~streamlib.clocks.SoftwareClock` ticks on a dedicated
thread for ``S`` seconds; per tick we record the wake lateness (monotonic wake
time minus the scheduled deadline) and the interval jitter (actual interval
between wakes minus the scheduled interval, i.e. the change of lateness).
The same measurement is then taken for an ``asyncio.sleep`` loop at 60 fps
with identical absolute deadlines, to show why the clock sleeps on an Event
and spins the last few hundred microseconds. Figures are in microseconds.
Writes one JSON record ``clock_jitter`` via :func:`benchmarks._record.write_record`
and, with plots on, ``clock_jitter_lateness.png`` (lateness histograms) and
``clock_jitter_intervals.png`` (interval jitter over time).
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any, Sequence

from benchmarks import _plots
from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib.clocks import FpsLike, SoftwareClock, deadline_ns, latest_frame_at, parse_rate

QUICK_FPS = [60]
QUICK_SECONDS = 3.0
FULL_FPS = [30, 60, 120]
FULL_SECONDS = 10.0
ASYNCIO_FPS = 60


def _summarise(lateness_ns: Sequence[int], missed: int) -> dict[str, Any]:
    """Lateness and interval-jitter statistics in microseconds."""
    late_us = [v / 1000 for v in lateness_ns]
    stats = percentiles(late_us)
    jitter_us = [(b - a) / 1000 for a, b in zip(lateness_ns, lateness_ns[1:])]
    jitter = percentiles(jitter_us) if jitter_us else {"min": 0.0, "median": 0.0,
                                                        "p99": 0.0, "max": 0.0}
    abs_jitter = percentiles([abs(v) for v in jitter_us]) if jitter_us else {"p99": 0.0}
    return {
        "ticks": len(lateness_ns),
        "missed_deadlines": missed,
        "lateness_us": {k: round(stats[k], 3) for k in ("min", "median", "p99", "max", "mean")},
        "p99_minus_p50_us": round(stats["p99"] - stats["median"], 3),
        "interval_jitter_us": {k: round(jitter[k], 3) for k in ("min", "median", "p99", "max")},
        "interval_jitter_abs_p99_us": round(abs_jitter["p99"], 3),
    }


def measure_software_clock(fps: FpsLike, seconds: float,
                           spin_ns: int = 300_000) -> dict[str, Any]:
    """Tick a SoftwareClock on its own thread for ``seconds``; return its figures
    (the raw lateness samples, ns, under ``"_lateness_ns"``; not written)."""
    clock = SoftwareClock(fps, spin_ns=spin_ns, clock_id="bench")
    lateness: list[int] = []

    def loop() -> None:
        end_ns = time.monotonic_ns() + int(seconds * 1e9)
        while True:
            tick = clock.wait_tick()
            lateness.append(clock.last_lateness_ns)
            if tick.timestamp_ns >= end_ns:
                return

    thread = threading.Thread(target=loop, name=f"clock-jitter-{fps}", daemon=True)
    thread.start()
    thread.join()
    clock.close()
    return {**_summarise(lateness, clock.missed_deadlines), "_lateness_ns": lateness}


async def _asyncio_loop(rate: Fraction, seconds: float) -> tuple[list[int], int]:
    # Same schedule and skip rule as SoftwareClock; only the wait differs.
    lateness: list[int] = []
    missed = 0
    start = time.monotonic_ns()
    end_ns = start + int(seconds * 1e9)
    n = 0
    while True:
        now = time.monotonic_ns()
        if now >= deadline_ns(rate, n + 1, start):
            latest = latest_frame_at(rate, now, start)
            missed += latest - n
            n = latest
        deadline = deadline_ns(rate, n, start)
        delay = deadline - now
        if delay > 0:
            await asyncio.sleep(delay / 1e9)
        lateness.append(time.monotonic_ns() - deadline)
        if deadline >= end_ns:
            return lateness, missed
        n += 1


def measure_asyncio_sleep(fps: FpsLike, seconds: float) -> dict[str, Any]:
    """The ``asyncio.sleep`` baseline, run on its own thread like the clock."""
    out: list[tuple[list[int], int]] = []
    thread = threading.Thread(
        target=lambda: out.append(asyncio.run(_asyncio_loop(parse_rate(fps), seconds))),
        name="clock-jitter-asyncio", daemon=True)
    thread.start()
    thread.join()
    lateness, missed = out[0]
    return {**_summarise(lateness, missed), "_lateness_ns": lateness}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.clock_jitter",
                                     description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SECONDS:g} s at {QUICK_FPS} fps only")
    parser.add_argument("--fps", nargs="+", type=str, default=None,
                        help=f"rates to measure (default {FULL_FPS})")
    parser.add_argument("--seconds", type=float, default=None,
                        help=f"seconds per case (default {FULL_SECONDS:g})")
    parser.add_argument("--spin-us", type=float, default=300.0,
                        help="SoftwareClock spin window in µs (default 300)")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default benchmarks/results, quick: results/quick)")
    _plots.add_plot_flag(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, write the record and return ``{parameters, figures, path}``."""
    args = _parse_args(argv)
    fps_list: list[str] = args.fps or [str(f) for f in (QUICK_FPS if args.quick else FULL_FPS)]
    seconds: float = args.seconds or (QUICK_SECONDS if args.quick else FULL_SECONDS)
    spin_ns = int(args.spin_us * 1000)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    load_at_start = load()

    software: dict[str, Any] = {}
    for fps in fps_list:
        software[fps] = measure_software_clock(fps, seconds, spin_ns)
        _print_case(f"SoftwareClock {fps} fps", software[fps])
    baseline = measure_asyncio_sleep(ASYNCIO_FPS, seconds)
    _print_case(f"asyncio.sleep {ASYNCIO_FPS} fps", baseline)

    raw = {f"SoftwareClock {fps} fps": software[fps].pop("_lateness_ns") for fps in fps_list}
    raw[f"asyncio.sleep {ASYNCIO_FPS} fps"] = baseline.pop("_lateness_ns")
    written = _plot(raw, out_dir) if plots else []
    parameters = {"fps": fps_list, "seconds": seconds, "spin_ns": spin_ns,
                  "quick": bool(args.quick), "asyncio_fps": ASYNCIO_FPS}
    figures = {"software_clock": software, "asyncio_sleep": baseline}
    path = write_record("clock_jitter", parameters, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}" + "".join(f", {p}" for p in written))
    return {"parameters": parameters, "figures": figures, "path": str(path)}


def _plot(raw: dict[str, list[int]], out_dir: Path) -> list[str]:
    """Lateness histograms and interval jitter over time; returns the file names."""
    hist = _plots.histogram(
        out_dir / "clock_jitter_lateness.png",
        {label: [v / 1000 for v in values] for label, values in raw.items()},
        title="Tick wake lateness (wake time - deadline)", xlabel="lateness (µs)",
        bins=80, log_y=True)
    series = {}
    for label, values in raw.items():
        jitter = [(b - a) / 1000 for a, b in zip(values, values[1:])]
        series[label] = (list(range(1, len(values))), jitter)
    over_time = _plots.lines(
        out_dir / "clock_jitter_intervals.png", series,
        title="Interval jitter per tick (actual - scheduled interval)",
        xlabel="tick", ylabel="jitter (µs)", style=".")
    return [hist.name, over_time.name]


def _print_case(label: str, case: dict[str, Any]) -> None:
    late = case["lateness_us"]
    print(f"{label:>24}: ticks={case['ticks']} missed={case['missed_deadlines']} "
          f"lateness µs min={late['min']:.1f} p50={late['median']:.1f} "
          f"p99={late['p99']:.1f} max={late['max']:.1f} "
          f"p99-p50={case['p99_minus_p50_us']:.1f} "
          f"|interval jitter| p99={case['interval_jitter_abs_p99_us']:.1f}")


if __name__ == "__main__":
    main()
