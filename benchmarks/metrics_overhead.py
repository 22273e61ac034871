"""Cost of the runtime metrics (``Runtime(collect_metrics=...)``), on versus off.

Run from the repository root::

    python -m benchmarks.metrics_overhead [--quick] [--ticks N] [--out DIR]

Three measurements, side by side in one run:

* ``graph``: source -> relay -> sink with 2x2 frames on a ``VirtualClock``
  (lock-step: every tick goes through the clock thread, the loop and the
  thread pool), ``ticks`` ticks, wall time per tick with metrics on and off,
  runs interleaved ``repeats`` times; ``overhead_us_per_tick`` = median on -
  median off (three actor calls per tick), ``overhead_percent`` relative to off.
  This is the worst case: the actors do no work, so the runtime is all there is.
  ``graph_asyncio``: the same with ``dispatcher="asyncio"`` (no hand-off to
  pool threads), which isolates the metrics code from thread wake-up timing.
  Wall and process CPU time (``time.process_time``, all threads) per tick.
* ``per_call``: the metrics code alone, timed in a loop: the CPU-time wrapper
  around ``process`` (``timed_process``: two ``time.thread_time_ns`` calls) and one
  ``MetricsRecorder.record`` (``Runtime.recorder``: one ``monotonic_ns``, a
  dict lookup, a deque append); then ``record`` and ``note_origin`` timed
  where they run, inside the graph (caches are colder there), giving ``estimated_us_per_tick`` =
  3 x (wrapper + record) + note. On a shared machine the on/off difference
  of the graph is dominated by run-to-run noise; this estimate is not.
* ``pipeline``: the realtime 1080p60 pipeline of ``benchmarks/e2e.py``, run
  alternately with metrics on and off (``seconds`` each, ``pipeline_repeats``
  times): process CPU % (``os.times``) and the sink's latency P50/P99.
"""

from __future__ import annotations

import argparse
import functools
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
from streamlib.runtime.dispatchbase import timed_process

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


def graph_us_per_tick(ticks: int, collect: bool,
                      dispatcher: str = "thread") -> tuple[float, float]:
    """(wall µs, process CPU µs) per tick of the lock-step 3-actor graph."""
    with Runtime(name="bench-metrics", collect_metrics=collect) as rt:
        kw: dict[str, Any] = {"runtime": rt, "dispatcher": dispatcher}
        src = _Src(clock=VirtualClock(1000, max_ticks=ticks), **kw)
        relay, sink = _Relay(**kw), _Sink(**kw)
        src >> relay >> sink
        c0, t0 = time.process_time(), time.perf_counter()
        if not rt.run(600):
            raise RuntimeError("metrics_overhead graph did not finish")
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if sink.counters.processed != ticks:
            raise RuntimeError(f"sink processed {sink.counters.processed}/{ticks}")
    return wall / ticks * 1e6, cpu / ticks * 1e6


def in_graph_ns(ticks: int) -> dict[str, float]:
    """Mean ns of ``recorder.record`` and ``recorder.note_origin`` calls timed
    inside a graph run."""
    totals = {"record": [0, 0], "note": [0, 0]}
    with Runtime(name="bench-metrics-insitu") as rt:
        recorder = rt.recorder
        record, note = recorder.record, recorder.note_origin

        def timed_record(actor: Actor, tick: TimedTick, elapsed: int) -> None:
            t0 = time.perf_counter_ns()
            record(actor, tick, elapsed)
            totals["record"][0] += time.perf_counter_ns() - t0
            totals["record"][1] += 1

        def timed_note(tick: TimedTick) -> None:
            t0 = time.perf_counter_ns()
            note(tick)
            totals["note"][0] += time.perf_counter_ns() - t0
            totals["note"][1] += 1

        # instance attributes shadow the methods for this runtime's recorder only
        setattr(recorder, "record", timed_record)
        setattr(recorder, "note_origin", timed_note)
        src = _Src(clock=VirtualClock(1000, max_ticks=ticks), runtime=rt)
        relay, sink = _Relay(runtime=rt), _Sink(runtime=rt)
        src >> relay >> sink
        rt.run(600)
    return {f"{k}_in_graph_ns": total / max(1, n) for k, (total, n) in totals.items()}


def pipeline_case(seconds: float, repeats: int) -> dict[str, Any]:
    """The e2e pipeline with metrics on and off, alternating."""
    from benchmarks.e2e import run_pipeline

    out: dict[str, dict[str, list[float]]] = {
        k: {"process_cpu_percent": [], "latency_p50_ms": [], "latency_p99_ms": []}
        for k in ("on", "off")}
    for _ in range(repeats):
        for key, collect in (("on", True), ("off", False)):
            raw = run_pipeline(seconds, 60.0, collect_metrics=collect)
            lat = percentiles([s[1] / 1e6 for s in raw["samples"]])
            out[key]["process_cpu_percent"].append(raw["process_cpu_percent"])
            out[key]["latency_p50_ms"].append(lat["median"])
            out[key]["latency_p99_ms"].append(lat["p99"])
    med = {k: {f: statistics.median(v) for f, v in d.items()} for k, d in out.items()}
    return {"seconds": seconds, "repeats": repeats, "runs": out, "median": med,
            "cpu_percent_difference": med["on"]["process_cpu_percent"]
            - med["off"]["process_cpu_percent"]}


def per_call_ns(n: int) -> dict[str, float]:
    """ns per call of the dispatchers' measured call (``timed_process``) and of
    ``recorder.record``, minus a bare ``process`` call."""
    tick = TimedTick(0, 0, "virtual")
    with Runtime(name="bench-metrics-calls") as rt:
        sink = _Sink(runtime=rt)

        def loop(measured: bool) -> float:
            t0 = time.perf_counter_ns()
            if measured:
                for _ in range(n):
                    timed_process(sink, tick)()
            else:
                for _ in range(n):
                    functools.partial(sink.process, tick)()
            return (time.perf_counter_ns() - t0) / n

        record = rt.recorder.record

        def rec_loop() -> float:
            t0 = time.perf_counter_ns()
            for _ in range(n):
                record(sink, tick, 1000)
            return (time.perf_counter_ns() - t0) / n

        bare = statistics.median(loop(False) for _ in range(5))
        timed = statistics.median(loop(True) for _ in range(5))
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
    parser.add_argument("--pipeline-seconds", type=float, default=None,
                        help="seconds per pipeline run (0 skips the pipeline case)")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    ticks = args.ticks or (500 if args.quick else 3000)
    repeats = args.repeats or (3 if args.quick else 7)
    load_at_start = load()

    pipeline_seconds = (args.pipeline_seconds if args.pipeline_seconds is not None
                        else (2.0 if args.quick else 8.0))
    graph_us_per_tick(min(ticks, 100), True)  # warm-up
    runs: dict[str, list[tuple[float, float]]] = {k: [] for k in ("on", "off", "a_on", "a_off")}
    for _ in range(repeats):  # interleaved, so machine noise hits both alike
        runs["on"].append(graph_us_per_tick(ticks, True))
        runs["off"].append(graph_us_per_tick(ticks, False))
        runs["a_on"].append(graph_us_per_tick(ticks, True, "asyncio"))
        runs["a_off"].append(graph_us_per_tick(ticks, False, "asyncio"))
    wall = {k: [w for w, _ in v] for k, v in runs.items()}
    cpu = {k: [c for _, c in v] for k, v in runs.items()}
    on, off = statistics.median(wall["on"]), statistics.median(wall["off"])
    cpu_on, cpu_off = statistics.median(cpu["on"]), statistics.median(cpu["off"])
    a_on, a_off = statistics.median(wall["a_on"]), statistics.median(wall["a_off"])
    calls = per_call_ns(20_000 if args.quick else 200_000)
    calls.update(in_graph_ns(ticks))
    calls["estimated_us_per_tick"] = (3 * (calls["cpu_wrapper_ns"] + calls["record_in_graph_ns"])
                                      + calls["note_in_graph_ns"]) / 1e3
    figures: dict[str, Any] = {
        "graph_us_per_tick": {"on": percentiles(wall["on"]), "off": percentiles(wall["off"])},
        "graph_cpu_us_per_tick": {"on": percentiles(cpu["on"]), "off": percentiles(cpu["off"])},
        "overhead_us_per_tick": on - off,
        "overhead_percent": 100.0 * (on - off) / off,
        "cpu_overhead_us_per_tick": cpu_on - cpu_off,
        "cpu_overhead_percent": 100.0 * (cpu_on - cpu_off) / cpu_off,
        "graph_asyncio_us_per_tick": {"on": percentiles(wall["a_on"]),
                                      "off": percentiles(wall["a_off"])},
        "asyncio_overhead_us_per_tick": a_on - a_off,
        "asyncio_overhead_percent": 100.0 * (a_on - a_off) / a_off,
        "actor_calls_per_tick": 3,
        "per_call": calls,
    }
    print(f"graph (3 actors, lock-step): metrics on {on:.1f} µs/tick, off {off:.1f} µs/tick, "
          f"overhead {on - off:+.1f} µs ({figures['overhead_percent']:+.1f}%); CPU "
          f"{cpu_on:.1f} vs {cpu_off:.1f} µs/tick ({figures['cpu_overhead_percent']:+.1f}%)")
    print(f"same, asyncio dispatcher: on {a_on:.1f} µs/tick, off {a_off:.1f} µs/tick, "
          f"overhead {a_on - a_off:+.1f} µs ({figures['asyncio_overhead_percent']:+.1f}%)")
    print(f"per call: cpu wrapper {calls['cpu_wrapper_ns']:.0f} ns + record "
          f"{calls['record_ns']:.0f} ns = {calls['total_per_call_ns']:.0f} ns; in the graph: "
          f"record {calls['record_in_graph_ns']:.0f} ns, note origin "
          f"{calls['note_in_graph_ns']:.0f} ns; estimated {calls['estimated_us_per_tick']:.1f} "
          f"µs per tick of 3 actors")
    if pipeline_seconds > 0:
        pipe = pipeline_case(pipeline_seconds, 1 if args.quick else 3)
        figures["pipeline"] = pipe
        m = pipe["median"]
        print(f"1080p60 pipeline: process CPU {m['on']['process_cpu_percent']:.1f}% on vs "
              f"{m['off']['process_cpu_percent']:.1f}% off; latency P99 "
              f"{m['on']['latency_p99_ms']:.2f} vs {m['off']['latency_p99_ms']:.2f} ms")
    written = []
    if plots:
        written.append(_plots.bars(
            out_dir / "metrics_overhead.png",
            {"thread dispatcher": {"metrics on": on, "metrics off": off},
             "asyncio dispatcher": {"metrics on": a_on, "metrics off": a_off}},
            title="Lock-step graph cost per tick, metrics on vs off (lower is better)",
            ylabel="µs").name)
    params = {"ticks": ticks, "repeats": repeats, "quick": args.quick,
              "pipeline_seconds": pipeline_seconds,
              "graph": "VirtualClock source -> relay -> sink, 2x2 frames, thread dispatcher"}
    path = write_record("metrics_overhead", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}")
    return {"parameters": params, "figures": figures, "path": str(path)}


if __name__ == "__main__":
    main()
