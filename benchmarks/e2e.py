"""End-to-end 1080p60 pipeline: per-frame latency and CPU use per actor.

Run from the repository root::

    python -m benchmarks.e2e [--quick] [--seconds S] [--fps F] [--out DIR] [--plots/--no-plots]

Pipeline (realtime, one shared ``SoftwareClock(60)``)::

    pattern  (TestPatternActor 1920x1080 smpte_bars + timecode) --> compositor.background
    overlay  (TestPatternActor 640x360 moving_box)               --> compositor layer "box"
                                                                      (x=100, y=100, opacity 0.5)
    compositor (CompositorActor 1920x1080, numba when installed) --> sink

The sink records, for every frame it receives, ``time.monotonic_ns() -
frame.timestamp_ns`` at the end of its ``process``: the time from the frame's
scheduled source tick to the sink, i.e. the end-to-end latency (the same
figure as the runtime's sink latency metric). CPU use per actor is the CPU
time its ``process`` calls took on their thread (``Runtime.metrics``, from
``time.thread_time_ns``) divided by the wall time of the measured span;
process-wide CPU comes from ``os.times`` and per thread (runtime loop, clock
thread, worker pool, torch/numba threads) from ``/proc/self/task`` via
``streamlib.observe.telemetry`` (1 tick = 10 ms, so small figures are coarse). The first second is a warm-up and
is not measured. Targets from the plan: P99 < 16 ms (goal < 8 ms), < 5 % CPU
for an actor that does little. The sink's inter-arrival jitter (interval
minus 1/fps) and the frames delivered in each second are recorded as well.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import _plots
from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib import (
    Actor, CompositorActor, Runtime, SoftwareClock, StreamInput, TestPatternActor, TimedTick,
)
from streamlib.observe.telemetry import Telemetry

WIDTH, HEIGHT = 1920, 1080
WARMUP_S = 1.0


class LatencySink(Actor):
    """Records (arrival monotonic ns, latency ns, frame number) of every new frame."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.measure_from_ns = 0  # set after the warm-up
        self.samples: list[tuple[int, int, int]] = []
        self.lock = threading.Lock()

    def process(self, tick: TimedTick) -> None:
        frames = self.inputs["video"].read_all_new()
        now = time.monotonic_ns()
        if now < self.measure_from_ns or not self.measure_from_ns:
            return
        with self.lock:
            for f in frames:
                self.samples.append((now, now - f.timestamp_ns, f.frame_number))


def run_pipeline(seconds: float, fps: float, collect_metrics: bool = True) -> dict[str, Any]:
    """Run the pipeline for ``WARMUP_S + seconds``; return the raw measurements.

    ``collect_metrics=False`` (used by ``metrics_overhead``) leaves per-actor
    CPU and process-time figures empty; the sink's latencies are still taken.
    """
    with Runtime(name="bench-e2e", collect_metrics=collect_metrics) as rt:
        clock = SoftwareClock(fps)
        pattern = TestPatternActor(WIDTH, HEIGHT, pattern="smpte_bars", timecode=True,
                                   clock=clock, actor_id="pattern", runtime=rt)
        overlay = TestPatternActor(640, 360, pattern="moving_box", clock=clock,
                                   actor_id="overlay", runtime=rt)
        comp = CompositorActor(WIDTH, HEIGHT, actor_id="compositor", runtime=rt)
        sink = LatencySink(actor_id="sink", runtime=rt)
        pattern >> comp
        overlay >> comp.add_layer("box", x=100, y=100, opacity=0.5)
        comp >> sink
        rt.start()
        rt.wait(WARMUP_S)
        before = {a.actor_id: a.counters.cpu_ns_total for a in rt.actors()}
        counts_before = {a.actor_id: a.counters.processed for a in rt.actors()}
        telemetry = Telemetry(gpu=False)
        threads_before = {(t.tid, t.name): t.cpu_s for t in telemetry.sample().threads}
        times_before = os.times()
        t0 = time.monotonic_ns()
        sink.measure_from_ns = t0
        rt.wait(seconds)
        t1 = time.monotonic_ns()
        times_after = os.times()
        threads_after = {(t.tid, t.name): t.cpu_s for t in telemetry.sample().threads}
        telemetry.close()
        after = {a.actor_id: a.counters.cpu_ns_total for a in rt.actors()}
        counts_after = {a.actor_id: a.counters.processed for a in rt.actors()}
        m = rt.metrics(telemetry=False)
        with sink.lock:
            samples = list(sink.samples)
        failed = {a.actor_id: a.error for a in rt.actors() if a.failed}
        backend = comp.backend
        missed = clock.missed_deadlines
    if failed:
        raise RuntimeError(f"actors failed: {failed}")
    wall_s = (t1 - t0) / 1e9
    cpu_s = (times_after.user + times_after.system) - (times_before.user + times_before.system)
    actors: dict[str, Any] = {}
    for am in m.actors:
        actors[am.id] = {
            "cpu_percent": 100.0 * (after[am.id] - before[am.id]) / 1e9 / wall_s,
            "calls": counts_after[am.id] - counts_before[am.id],
            "process_ms": None if am.process_ms is None else am.process_ms.as_dict(),
            "latency_ms_window": None if am.latency_ms is None else am.latency_ms.as_dict(),
            "overruns": am.overruns,
        }
    by_thread: dict[str, float] = {}  # thread name -> CPU % (pool threads summed by prefix)
    for (tid, name), cpu in threads_after.items():
        key = name.rsplit("_", 1)[0] if name.startswith("streamlib-worker") else name
        delta = cpu - threads_before.get((tid, name), 0.0)
        by_thread[key] = by_thread.get(key, 0.0) + 100.0 * delta / wall_s
    return {"samples": samples, "wall_s": wall_s, "process_cpu_percent": 100.0 * cpu_s / wall_s,
            "threads_cpu_percent": {k: round(v, 2) for k, v in sorted(by_thread.items())
                                    if v >= 0.05},
            "actors": actors, "links": [l.__dict__ for l in m.links], "backend": backend,
            "missed_deadlines": missed}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s measured")
    parser.add_argument("--seconds", type=float, default=None, help="measured seconds (default 30)")
    parser.add_argument("--fps", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    seconds = args.seconds or (5.0 if args.quick else 30.0)
    load_at_start = load()

    raw = run_pipeline(seconds, args.fps)
    samples = raw["samples"]
    if len(samples) < 2:
        raise RuntimeError(f"the sink received {len(samples)} frames in {seconds} s")
    lat_ms = [s[1] / 1e6 for s in samples]
    period_ms = 1e3 / args.fps
    arrivals = [s[0] for s in samples]
    jitter_ms = [(b - a) / 1e6 - period_ms for a, b in zip(arrivals, arrivals[1:])]
    frame_numbers = [s[2] for s in samples]
    expected = frame_numbers[-1] - frame_numbers[0] + 1
    lat = percentiles(lat_ms)
    figures: dict[str, Any] = {
        "latency_ms": lat,
        "p99_minus_p50_ms": lat["p99"] - lat["median"],
        "meets_target_p99_lt_16ms": lat["p99"] < 16.0,
        "meets_goal_p99_lt_8ms": lat["p99"] < 8.0,
        "sink_fps": (len(samples) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9),
        "frames_received": len(samples),
        "frames_missing_at_sink": expected - len(set(frame_numbers)),
        "clock_missed_deadlines": raw["missed_deadlines"],
        "interval_jitter_ms": percentiles(jitter_ms),
        "actors": raw["actors"],
        "process_cpu_percent": raw["process_cpu_percent"],
        "threads_cpu_percent": raw["threads_cpu_percent"],
        "links": raw["links"],
        "compositor_backend": raw["backend"],
    }
    print(f"e2e {WIDTH}x{HEIGHT}@{args.fps:g}: {len(samples)} frames in {raw['wall_s']:.1f} s "
          f"({figures['sink_fps']:.1f} fps), latency ms p50 {lat['median']:.2f} "
          f"p99 {lat['p99']:.2f} max {lat['max']:.2f}; missing {figures['frames_missing_at_sink']}")
    for name, a in raw["actors"].items():
        proc = a["process_ms"] or {}
        print(f"  {name:11s} cpu {a['cpu_percent']:5.1f}%  calls {a['calls']:5d}  "
              f"process p50 {proc.get('p50', 0):.2f} p99 {proc.get('p99', 0):.2f} ms")
    print(f"  process CPU {raw['process_cpu_percent']:.1f}% (100% = one core); by thread: "
          + ", ".join(f"{k} {v:.1f}%" for k, v in raw["threads_cpu_percent"].items()))
    written = []
    if plots:
        written.append(_plots.histogram(
            out_dir / "e2e_latency.png", {"source -> sink": lat_ms},
            title=f"End-to-end latency, 1080p{args.fps:g} pattern -> compositor -> sink",
            xlabel="latency (ms)", marks={"P50": lat["median"], "P99": lat["p99"]}).name)
        start = arrivals[0]
        buckets: dict[int, int] = {}
        for t in arrivals:
            second = int((t - start) / 1e9)
            buckets[second] = buckets.get(second, 0) + 1
        xs = sorted(buckets)[:-1] or sorted(buckets)  # the last second is partial
        written.append(_plots.lines(
            out_dir / "e2e_fps.png", {"frames received in each second": (
                xs, [buckets[x] for x in xs])},
            title="Frames delivered to the sink per second", xlabel="time (s)", ylabel="fps",
            hlines={f"{args.fps:g} fps": args.fps}, style="-o").name)
        written.append(_plots.lines(
            out_dir / "e2e_jitter.png",
            {"interval - 1/fps": ([(t - start) / 1e9 for t in arrivals[1:]], jitter_ms),
             "latency": ([(t - start) / 1e9 for t in arrivals], lat_ms)},
            title="Sink inter-arrival jitter and latency over time", xlabel="time (s)",
            ylabel="ms", style=".").name)
    params = {"width": WIDTH, "height": HEIGHT, "fps": args.fps, "seconds": seconds,
              "warmup_s": WARMUP_S, "quick": args.quick, "clock": "SoftwareClock (realtime)",
              "pipeline": "pattern(1080p smpte+timecode) + overlay(640x360 moving_box, "
                          "opacity 0.5) -> compositor(1080p) -> sink"}
    path = write_record("e2e", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)
    print(f"wrote {path}")
    return {"parameters": params, "figures": figures, "path": str(path)}


if __name__ == "__main__":
    main()
