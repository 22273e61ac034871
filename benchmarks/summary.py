"""Print the headline figures of the JSON records as Markdown tables.

    python -m benchmarks.summary [DIR]     # default benchmarks/results

Used to write docs/benchmarks.md from measured records only: every number
printed here is read from a record; a missing record prints "not run".
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from benchmarks._record import RESULTS_DIR


def _load(directory: Path, name: str) -> dict[str, Any] | None:
    path = directory / f"{name}.json"
    if not path.is_file():
        return None
    record: dict[str, Any] = json.loads(path.read_text())
    return record


def _header(r: dict[str, Any]) -> str:
    m, load = r["machine"], r.get("load") or {}
    start, end = load.get("start") or {}, load.get("end") or {}
    return (f"_{r['name']}: {r['time_utc']}, commit {m['git_commit']}"
            f"{' (uncommitted changes)' if m.get('git_dirty') else ''}, {m['cpu']} x{m['cores']}, "
            f"GPU {m['gpu'] or 'none'}, load average (1 min) {start.get('loadavg_1m', '?')} "
            f"at start, {end.get('loadavg_1m', '?')} at end_")


def ringbuffer(r: dict[str, Any]) -> list[str]:
    f = r["figures"]
    t = f["threads"]
    return [
        "| operation | RingBuffer | queue.Queue | ratio |", "|---|---|---|---|",
        f"| write + read, one thread (median ns/pair) | {f['ring_pair_ns']['median']:.0f} | "
        f"{f['queue_pair_ns']['median']:.0f} | {f['ratio_queue_over_ring']:.2f}x |",
        f"| two threads, producer items/s (median) | "
        f"{t['ring']['producer_items_per_s']['median']:,.0f} | "
        f"{t['queue']['producer_items_per_s']['median']:,.0f} | "
        f"{f['threads_ratio_ring_over_queue_items_per_s']:.2f}x |",
    ]


def clock_jitter(r: dict[str, Any]) -> list[str]:
    f = r["figures"]
    rows = ["| clock | ticks | P50 µs | P99 µs | P99-P50 µs | max µs | missed |",
            "|---|---|---|---|---|---|---|"]
    clocks = sorted(f["software_clock"].items(), key=lambda kv: float(kv[0]))
    cases = [(f"SoftwareClock {fps} fps", c) for fps, c in clocks]
    cases.append((f"asyncio.sleep {r['parameters']['asyncio_fps']} fps", f["asyncio_sleep"]))
    for label, c in cases:
        late = c["lateness_us"]
        rows.append(f"| {label} | {c['ticks']} | {late['median']:.1f} | {late['p99']:.1f} | "
                    f"{c['p99_minus_p50_us']:.1f} | {late['max']:.1f} | {c['missed_deadlines']} |")
    return rows


def metrics_overhead(r: dict[str, Any]) -> list[str]:
    f = r["figures"]
    g, c = f["graph_us_per_tick"], f["per_call"]
    rows = [
        "| figure | metrics on | metrics off | difference |", "|---|---|---|---|",
        f"| lock-step graph, 3 actors, thread dispatcher (median µs/tick) | "
        f"{g['on']['median']:.1f} | {g['off']['median']:.1f} | "
        f"{f['overhead_us_per_tick']:+.1f} µs ({f['overhead_percent']:+.1f} %) |",
    ]
    if "graph_cpu_us_per_tick" in f:
        gc = f["graph_cpu_us_per_tick"]
        rows.append(f"| same, process CPU µs/tick | {gc['on']['median']:.1f} | "
                    f"{gc['off']['median']:.1f} | {f['cpu_overhead_us_per_tick']:+.1f} µs "
                    f"({f['cpu_overhead_percent']:+.1f} %) |")
    if "graph_asyncio_us_per_tick" in f:
        ga = f["graph_asyncio_us_per_tick"]
        rows.append(f"| same, asyncio dispatcher (median µs/tick) | {ga['on']['median']:.1f} | "
                    f"{ga['off']['median']:.1f} | {f['asyncio_overhead_us_per_tick']:+.1f} µs "
                    f"({f['asyncio_overhead_percent']:+.1f} %) |")
    pipe = f.get("pipeline")
    if pipe:
        m = pipe["median"]
        rows.append(f"| 1080p60 pipeline, process CPU % | {m['on']['process_cpu_percent']:.1f} | "
                    f"{m['off']['process_cpu_percent']:.1f} | "
                    f"{pipe['cpu_percent_difference']:+.1f} points |")
        rows.append(f"| 1080p60 pipeline, latency P99 ms | {m['on']['latency_p99_ms']:.2f} | "
                    f"{m['off']['latency_p99_ms']:.2f} | |")
    rows += ["", "| metrics code, per call | ns |", "|---|---|",
             f"| CPU-time wrapper around process() (loop) | {c['cpu_wrapper_ns']:.0f} |",
             f"| MetricsRecorder.record (loop) | {c['record_ns']:.0f} |"]
    if "record_in_graph_ns" in c:
        rows += [f"| MetricsRecorder.record, timed inside the graph | "
                 f"{c['record_in_graph_ns']:.0f} |",
                 f"| MetricsRecorder.note_origin per tick, inside the graph | "
                 f"{c['note_in_graph_ns']:.0f} |",
                 f"| estimate per tick of 3 actors: 3 x (wrapper + record) + note | "
                 f"{c['estimated_us_per_tick'] * 1e3:.0f} |"]
    return rows


def testpattern(r: dict[str, Any]) -> list[str]:
    f = r["figures"]
    rows = ["| source | render only (fps) | through the runtime (fps) |", "|---|---|---|"]
    for case, c in f["streamlib"].items():
        rows.append(f"| streamlib {case} | {c['render']['fps']:,.0f} | {c['graph']['fps']:,.0f} |")
    for case, g in f["gstreamer"].items():
        if "skipped" in g:
            rows.append(f"| gst videotestsrc {case} | skipped: {g['skipped']} | |")
        else:
            rows.append(f"| gst videotestsrc pattern={case} | | {g['fps']:,.0f} "
                        f"({g['cpu_ms_per_frame']:.2f} CPU-ms/frame) |")
    return rows


def compositor(r: dict[str, Any]) -> list[str]:
    rows = ["| case | numba P50 / P99 ms | torch P50 ms | naive P50 ms | "
            "GStreamer compositor CPU-ms/frame | GStreamer raw wall ms/frame | gst / numba |",
            "|---|---|---|---|---|---|---|"]
    for case, c in r["figures"].items():
        g = c.get("gstreamer", {})
        numba = c.get("numba")
        n = f"{numba['median']:.2f} / {numba['p99']:.2f}" if numba else "n/a"
        if "skipped" in g or not g:
            gst = raw = ratio = f"skipped: {g.get('skipped', 'not run')}"
        else:
            gst, raw = f"{g['compositor_cpu_ms']:.2f}", f"{g['wall_ms_raw']:.2f}"
            ratio = f"{c.get('ratio_gst_over_numba', float('nan')):.2f}x"
        rows.append(f"| {case} | {n} | {c['torch']['median']:.2f} | {c['naive']['median']:.2f} | "
                    f"{gst} | {raw} | {ratio} |")
    return rows


def e2e(r: dict[str, Any]) -> list[str]:
    f = r["figures"]
    lat = f["latency_ms"]
    rows = [f"Latency source -> sink: P50 {lat['median']:.2f} ms, P99 {lat['p99']:.2f} ms, "
            f"max {lat['max']:.2f} ms over {f['frames_received']} frames at "
            f"{f['sink_fps']:.2f} fps; frames missing at the sink: {f['frames_missing_at_sink']}; "
            f"process CPU {f['process_cpu_percent']:.1f} % of one core.", "",
            "| actor | CPU % (one core) | process P50 ms | process P99 ms |", "|---|---|---|---|"]
    for name, a in f["actors"].items():
        p = a["process_ms"] or {}
        rows.append(f"| {name} | {a['cpu_percent']:.1f} | {p.get('p50', 0):.2f} | "
                    f"{p.get('p99', 0):.2f} |")
    threads = f.get("threads_cpu_percent") or {}
    if threads:
        rows += ["", "CPU by thread (% of one core): "
                 + ", ".join(f"{k} {v:.1f}" for k, v in threads.items())]
    return rows


def file_io(r: dict[str, Any]) -> list[str]:
    f = r["figures"]
    rows = ["| operation | actors (fps) | bare PyAV (fps) | actors time / bare time |",
            "|---|---|---|---|"]
    for op in ("encode", "decode"):
        o = f[op]
        rows.append(f"| {op} | {o['actors_fps']:.1f} | {o['bare_fps']:.1f} | "
                    f"{o['overhead_ratio']:.2f} |")
    return rows


SECTIONS: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "ringbuffer": ringbuffer, "clock_jitter": clock_jitter, "metrics_overhead": metrics_overhead,
    "testpattern": testpattern, "compositor": compositor, "e2e": e2e, "file_io": file_io,
}


def main(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0]) if args else RESULTS_DIR
    out: list[str] = []
    for name, render in SECTIONS.items():
        out.append(f"### {name}\n")
        record = _load(directory, name)
        if record is None:
            out.append("not run\n")
            continue
        out.append(_header(record) + "\n")
        out.extend(render(record))
        if record.get("plots"):
            out.append("")
            out.extend(f"![{p}](../benchmarks/results/{p})" for p in record["plots"])
        out.append("")
    text = "\n".join(out)
    print(text)
    return text


if __name__ == "__main__":
    main()
