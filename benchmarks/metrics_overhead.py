"""Cost of the runtime metrics (``Runtime(collect_metrics=...)``), on versus off.

Run from the repository root::

    python -m benchmarks.metrics_overhead [--quick] [--ticks N] [--out DIR]

Two measurements, side by side in one run:

* ``graph``: source -> relay -> sink with 2x2 frames on a ``VirtualClock``
  (lock-step: every tick goes through the clock thread, the loop and the
  thread pool), ``ticks`` ticks, wall time per tick with metrics on and off,
  runs interleaved ``repeats`` times; ``overhead_us_per_tick`` = median on -
  median off (three actor calls per tick), ``overhead_percent`` relative to off.
  This is the worst case: the actors do no work, so the runtime is all there is.
* ``per_call``: the metrics code alone, timed in a loop: the CPU-time wrapper
  around ``process`` (two ``time.thread_time_ns`` calls) and one
  ``Runtime._record`` (one ``monotonic_ns``, a dict lookup, a deque append).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import _plots
from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib import (
    Actor, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame, VirtualClock,
)

_FRAME = VideoFrame(torch.zeros((2, 2, 3), dtype=torch.uint8), timestamp_ns=0)


class _Src(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(_FRAME)


class _Relay(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        f = self.inputs["video"].read_latest()
        if f is not None:
            self.outputs["video"].write(f)


class _Sink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")

    def process(self, tick: TimedTick) -> None:
        self.inputs["video"].read_latest()


def graph_us_per_tick(ticks: int, collect: bool) -> float:
    with Runtime(name="bench-metrics", collect_metrics=collect) as rt:
        src = _Src(clock=VirtualClock(1000, max_ticks=ticks), runtime=rt)
        relay, sink = _Relay(runtime=rt), _Sink(runtime=rt)
        src >> relay >> sink
        t0 = time.perf_counter()
        if not rt.run(600):
            raise RuntimeError("metrics_overhead graph did not finish")
        wall = time.perf_counter() - t0
        if sink.counters.processed != ticks:
            raise RuntimeError(f"sink processed {sink.counters.processed}/{ticks}")
    return wall / ticks * 1e6


def per_call_ns(n: int) -> dict[str, float]:
    """ns per call of the wrapper and of ``_record``, minus the bare call."""
    tick = TimedTick(0, 0, "virtual")
    with Runtime(name="bench-metrics-calls") as rt:
        sink = _Sink(runtime=rt)
        wrapped = type(sink).process
        raw = wrapped.__wrapped__  # type: ignore[attr-defined]

        def loop(fn: Any) -> float:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                fn(sink, tick)
            return (time.perf_counter_ns() - t0) / n

        record = rt._record

        def rec_loop() -> float:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                record(sink, tick, 1000)
            return (time.perf_counter_ns() - t0) / n

        bare = statistics.median(loop(raw) for _ in range(5))
        timed = statistics.median(loop(wrapped) for _ in range(5))
        rec = statistics.median(rec_loop() for _ in range(5))
    return {"process_bare_ns": bare, "process_wrapped_ns": timed,
            "cpu_wrapper_ns": timed - bare, "record_ns": rec,
            "total_per_call_ns": timed - bare + rec}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_overhead",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer ticks and repeats")
    parser.add_argument("--ticks", type=int, default=None, help="ticks per run")
    parser.add_argument("--repeats", type=int, default=None, help="runs per setting")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    ticks = args.ticks or (500 if args.quick else 3000)
    repeats = args.repeats or (3 if args.quick else 7)
    load_at_start = load()

    graph_us_per_tick(min(ticks, 100), True)  # warm-up
    runs: dict[str, list[float]] = {"on": [], "off": []}
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        runs["on"].append(graph_us_per_tick(ticks, True))
        runs["off"].append(graph_us_per_tick(ticks, False))
    on, off = statistics.median(runs["on"]), statistics.median(runs["off"])
    calls = per_call_ns(20_000 if args.quick else 200_000)
    figures = {
        "graph_us_per_tick": {"on": percentiles(runs["on"]), "off": percentiles(runs["off"])},
        "overhead_us_per_tick": on - off,
        "overhead_percent": 100.0 * (on - off) / off,
        "actor_calls_per_tick": 3,
        "per_call": calls,
    }
    print(f"graph (3 actors, lock-step): metrics on {on:.1f} µs/tick, off {off:.1f} µs/tick, "
          f"overhead {on - off:+.1f} µs ({figures['overhead_percent']:+.1f}%)")
    print(f"per call: cpu wrapper {calls['cpu_wrapper_ns']:.0f} ns + record "
          f"{calls['record_ns']:.0f} ns = {calls['total_per_call_ns']:.0f} ns")
    written = []
    if plots:
        written.append(_plots.bars(
            out_dir / "metrics_overhead.png",
            {"µs per tick (3 actors)": {"metrics on": on, "metrics off": off}},
            title="Lock-step graph cost per tick, metrics on vs off (lower is better)",
            ylabel="µs").name)
    params = {"ticks": ticks, "repeats": repeats, "quick": args.quick,
              "graph": "VirtualClock source -> relay -> sink, 2x2 frames, thread dispatcher"}
    path = write_record("metrics_overhead", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}")
    return {"parameters": params, "figures": figures, "path": str(path)}


if __name__ == "__main__":
    main()
