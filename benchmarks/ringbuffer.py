"""RingBuffer vs queue.Queue(maxsize=3): per-operation cost and two-thread throughput.

Run from the repository root::

    python -m benchmarks.ringbuffer [--quick] [--out DIR]

Cases, measured side by side in one run:

* ``pair``: single thread, one ``write`` + ``read_latest`` (ring) versus one
  ``put_nowait`` + ``get_nowait`` (queue), N iterations per repeat, R repeats,
  each repeat timed with ``time.perf_counter_ns``; per-pair ns over repeats.
* ``threads``: a producer thread writes N items as fast as it can while a
  consumer thread polls (``read_newer`` / ``get_nowait``). The queue producer
  emulates the ring's overwrite-oldest policy (on ``Full`` it discards the
  oldest item and retries) so both links never block the producer. Reported:
  producer items/s, and the items the consumer actually received.

``ratio_queue_over_ring`` = median queue pair cost / median ring pair cost,
i.e. how many times faster the ring buffer is.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import threading
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks import _plots
from benchmarks._record import load, percentiles, results_dir, write_record
from streamlib.core.buffers import RingBuffer

SLOTS = 3


def _ring_pairs(n: int) -> int:
    rb: RingBuffer[int] = RingBuffer(SLOTS)
    write, read = rb.write, rb.read_latest
    t0 = time.perf_counter_ns()
    for i in range(n):
        write(i)
        read()
    return time.perf_counter_ns() - t0


def _queue_pairs(n: int) -> int:
    q: queue.Queue[int] = queue.Queue(maxsize=SLOTS)
    put, get = q.put_nowait, q.get_nowait
    t0 = time.perf_counter_ns()
    for i in range(n):
        put(i)
        get()
    return time.perf_counter_ns() - t0


def _empty_loop(n: int) -> int:
    t0 = time.perf_counter_ns()
    for _ in range(n):
        pass
    return time.perf_counter_ns() - t0


def _threaded(kind: str, n: int) -> dict[str, float]:
    """One producer/consumer run; returns producer items/s and consumer figures."""
    start = threading.Barrier(2)
    done = threading.Event()
    received = [0]
    elapsed = [0]

    if kind == "ring":
        rb: RingBuffer[int] = RingBuffer(SLOTS)

        def produce() -> None:
            write = rb.write
            start.wait()
            t0 = time.perf_counter_ns()
            for i in range(n):
                write(i)
            elapsed[0] = time.perf_counter_ns() - t0
            done.set()

        def consume() -> None:
            read_newer = rb.read_newer
            last, got = 0, 0
            start.wait()
            while True:
                finished = done.is_set()  # sample first so the tail is not lost
                r = read_newer(last)
                if r is not None:
                    last = r[0]
                    got += 1
                elif finished:
                    break
            received[0] = got
    else:
        q: queue.Queue[int] = queue.Queue(maxsize=SLOTS)
        full, empty = queue.Full, queue.Empty

        def produce() -> None:
            put, get = q.put_nowait, q.get_nowait
            start.wait()
            t0 = time.perf_counter_ns()
            for i in range(n):
                try:
                    put(i)
                except full:  # emulate overwrite-oldest: drop one, retry
                    try:
                        get()
                    except empty:
                        pass
                    put(i)
            elapsed[0] = time.perf_counter_ns() - t0
            done.set()

        def consume() -> None:
            get = q.get_nowait
            got = 0
            start.wait()
            while True:
                finished = done.is_set()
                try:
                    get()
                    got += 1
                except empty:
                    if finished:
                        break
            received[0] = got

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = elapsed[0] / 1e9
    return {
        "producer_items_per_s": n / seconds,
        "consumer_received": float(received[0]),
        "consumer_received_fraction": received[0] / n,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ringbuffer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes; finishes in seconds")
    parser.add_argument("--out", type=Path, default=None, help="results directory")
    _plots.add_plot_flag(parser)
    args = parser.parse_args(argv)
    plots = _plots.want_plots(args.plots)
    out_dir = results_dir(args.out, args.quick)
    load_at_start = load()

    if args.quick:
        n, repeats, thread_n, thread_repeats = 20_000, 5, 50_000, 3
    else:
        n, repeats, thread_n, thread_repeats = 200_000, 25, 500_000, 7
    params: dict[str, Any] = {
        "slots": SLOTS, "iterations": n, "repeats": repeats,
        "thread_items": thread_n, "thread_repeats": thread_repeats, "quick": args.quick,
    }

    cases: dict[str, Callable[[int], int]] = {
        "ring": _ring_pairs, "queue": _queue_pairs, "loop": _empty_loop,
    }
    for fn in cases.values():
        fn(10_000)  # warm-up: specialisation, allocator
    per_op: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(repeats):  # interleaved, so machine noise hits every case alike
        for key, fn in cases.items():
            per_op[key].append(fn(n) / n)
    ring_ns, queue_ns, loop_ns = per_op["ring"], per_op["queue"], per_op["loop"]

    thread_runs: dict[str, list[dict[str, float]]] = {"ring": [], "queue": []}
    for _ in range(thread_repeats):
        for kind in ("ring", "queue"):
            thread_runs[kind].append(_threaded(kind, thread_n))

    def _median(kind: str, key: str) -> float:
        return statistics.median(r[key] for r in thread_runs[kind])

    ring_p = percentiles(ring_ns)
    queue_p = percentiles(queue_ns)
    figures: dict[str, Any] = {
        "ring_pair_ns": ring_p,
        "queue_pair_ns": queue_p,
        "empty_loop_ns": percentiles(loop_ns),
        "ratio_queue_over_ring": queue_p["median"] / ring_p["median"],
        "threads": {
            kind: {
                "producer_items_per_s": percentiles([r["producer_items_per_s"] for r in runs]),
                "consumer_received_fraction": _median(kind, "consumer_received_fraction"),
            }
            for kind, runs in thread_runs.items()
        },
        "threads_ratio_ring_over_queue_items_per_s": (
            _median("ring", "producer_items_per_s") / _median("queue", "producer_items_per_s")
        ),
    }
    written = []
    if plots:
        written.append(_plots.bars(
            out_dir / "ringbuffer.png",
            {"write + read (one thread)": {"RingBuffer": ring_p["median"],
                                           "queue.Queue": queue_p["median"],
                                           "empty loop": figures["empty_loop_ns"]["median"]}},
            title="ns per write+read pair (median; lower is better)", ylabel="ns").name)
    path = write_record("ringbuffer", params, figures, results_dir=out_dir,
                        load_at_start=load_at_start, plots=written)

    print(f"RingBuffer vs queue.Queue(maxsize={SLOTS}), {n} pairs x {repeats} repeats")
    print(f"  write+read_latest     median {ring_p['median']:7.1f} ns  "
          f"(min {ring_p['min']:.1f}, p99 {ring_p['p99']:.1f}, max {ring_p['max']:.1f})")
    print(f"  put_nowait+get_nowait median {queue_p['median']:7.1f} ns  "
          f"(min {queue_p['min']:.1f}, p99 {queue_p['p99']:.1f}, max {queue_p['max']:.1f})")
    print(f"  ratio queue/ring: {figures['ratio_queue_over_ring']:.2f}x")
    print(f"Two threads, {thread_n} items x {thread_repeats} repeats (median producer items/s)")
    for kind in ("ring", "queue"):
        print(f"  {kind:5s} {_median(kind, 'producer_items_per_s'):12,.0f} items/s, consumer got "
              f"{100 * _median(kind, 'consumer_received_fraction'):.1f}%")
    print(f"  ratio ring/queue: {figures['threads_ratio_ring_over_queue_items_per_s']:.2f}x")
    print(f"record: {path}")
    return {"name": "ringbuffer", "parameters": params, "figures": figures, "path": str(path)}


if __name__ == "__main__":
    main()
