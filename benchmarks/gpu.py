"""GPU path costs: composite kernel, per-tick host overhead, allocations, staging bandwidth.

Run from the repository root::

    python -m benchmarks.gpu [--quick] [--out DIR]

Cases (one JSON record, ``gpu.json``; a case that needs CUDA and finds none is
recorded as ``{"skipped": "no CUDA"}``):

* ``composite_1080p_4layers`` (CUDA + CuPy): GPU time per frame of
  ``streamlib.gpu.kernels.composite``, 1920x1080 background + 4 full-frame RGBA
  layers (target < 0.5 ms on H100). ``LaunchTimer`` records a CUDA event pair
  on the launch stream right around each CuPy launch (after streamlib's argument
  marshalling), and a GPU lead-in (``torch.cuda._sleep``) before each frame keeps
  the stream busy while the host marshals CuPy's arguments, so the start event
  fires only once the kernel is queued: ``gpu_ms`` is kernel time, not launch
  latency. ``host_launch_us`` is the host side of the same calls.
* ``tick_overhead``: host time per ``GPUDispatcher`` tick of an actor whose
  ``process`` writes one preallocated 1080p frame to a GPU reader:
  ``context_only`` is the dispatcher's stream context with input waits alone;
  ``in_thread`` adds the frame construction and the write (hook, a fresh ready
  event per frame as real frames get, the reader's stream wait, the runtime
  notification) on the worker thread (``hook_events_per_tick`` counts them: 1);
  ``dispatch`` adds the thread-pool hop (target < 30 us); ``dispatch_inline_us``
  is the whole tick with ``GPUDispatcher(inline=True)`` (no hop). On a machine without
  CUDA the same code runs with the CPU twins.
* ``ring_allocations``: 1000 write/read cycles of a 3-slot 1080p
  ``GPURingBuffer``; ring allocations and, on CUDA, the change of
  ``torch.cuda.memory_allocated`` (target 0).
* ``staging_bandwidth`` (CUDA): 1080p RGB frames copied device->host and
  host->device the way ``streamlib.gpu.staging`` does (pinned memory, copy stream),
  GB/s over a batch.
* ``write_hook_cpu``: ns per ``StreamOutput.write`` to one link without a router
  (a runtime on a machine without CUDA installs none), with a ``StagingBridge``
  router (a CUDA machine, CPU frames, CUDA not initialised yet), and ns of the
  bridge's gate alone (``torch.cuda.is_initialized``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from benchmarks._record import percentiles, write_record
from streamlib.gpu import kernel_refs, kernels
from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.gpu.device import cuda_available, new_stream, pinned_empty, resolve_device, stream_context
from streamlib.runtime.dispatchers import GPUDispatcher
from streamlib.core.frames import VideoFrame
from streamlib.gpu.buffer import GPURingBuffer
from streamlib.gpu import staging
from streamlib.gpu.staging import StagingBridge
from streamlib.runtime.runtime import Runtime
from streamlib.core.ports import StreamInput, StreamOutput

W, H = 1920, 1080
SKIP = {"skipped": "no CUDA"}


class LaunchTimer:
    """CUDA events recorded around each kernel launch, on the stream it runs on.

    ``installed()`` wraps the compiled CuPy functions that ``streamlib.gpu.kernels``
    launches, so a start/end pair is recorded (on torch's current stream, the one
    CuPy launches on) right around each launch, after streamlib built the
    arguments. ``frame(run)`` first queues ``lead_in`` (GPU work, none if None)
    so that the stream is still busy while the host marshals CuPy's arguments.
    """

    def __init__(self, new_event: Callable[[], Any],
                 lead_in: Callable[[], None] | None = None) -> None:
        self._new_event = new_event
        self.lead_in = lead_in
        self._pairs: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        real = kernels._function

        def timed_function(file: str, name: str, index: int) -> Any:
            fn = real(file, name, index)

            def launch(*args: Any) -> None:
                start, end = self._new_event(), self._new_event()
                start.record()
                fn(*args)
                end.record()
                self._pairs.append((start, end))
            return launch

        kernels._function = timed_function
        try:
            yield
        finally:
            kernels._function = real

    def frame(self, run: Callable[[], None]) -> tuple[float, float]:
        """(GPU ms of the launches ``run`` made, host us of ``run``)."""
        if self.lead_in is not None:
            self.lead_in()
        self._pairs = []
        t0 = time.perf_counter_ns()
        run()
        host_us = (time.perf_counter_ns() - t0) / 1e3
        if not self._pairs:
            raise RuntimeError("LaunchTimer: the frame launched no kernel")
        self._pairs[-1][1].synchronize()
        return sum(start.elapsed_time(end) for start, end in self._pairs), host_us


def _timing_event() -> Any:
    return torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]


def gpu_sleep(ms: float) -> Callable[[], None] | None:
    """A lead-in of about ``ms`` of GPU time (``torch.cuda._sleep``, calibrated once with
    events), None where torch lacks it."""
    sleep = getattr(torch.cuda, "_sleep", None)
    if sleep is None:
        return None
    start, end = _timing_event(), _timing_event()
    start.record()
    sleep(1_000_000)
    end.record()
    end.synchronize()
    cycles = max(1000, int(1_000_000 * ms / max(start.elapsed_time(end), 1e-3)))
    return lambda: sleep(cycles)


def composite_case(frames: int) -> dict[str, Any]:
    if not cuda_available():
        return SKIP
    if not kernels.cupy_available():
        return {"skipped": "no CuPy (the [cuda] extra)"}
    dev = resolve_device("cuda")
    gen = torch.Generator(device=dev).manual_seed(0)
    base = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, device=dev, generator=gen)
    layers = [(torch.randint(0, 256, (H, W, 4), dtype=torch.uint8, device=dev, generator=gen),
               0, 0, 0.8) for _ in range(4)]
    out = torch.empty((H, W, 3), dtype=torch.uint8, device=dev)
    if not kernels.cuda_kernels_ready(out):
        return {"skipped": f"CUDA kernels unavailable: {kernels.kernel_backend()['reason']}"}

    def run() -> None:
        kernels.composite(W, H, (0, 0, 0), layers, base, out=out, backend="cuda")

    run()  # compile
    torch.cuda.synchronize()
    timer = LaunchTimer(_timing_event)
    with timer.installed():
        warm = [timer.frame(run)[1] for _ in range(20)]  # host time, for the lead-in
        lead_ms = max(0.2, 3 * max(warm) / 1e3)
        timer.lead_in = gpu_sleep(lead_ms)
        samples, host = [], []
        for _ in range(frames):
            gpu_ms, host_us = timer.frame(run)
            samples.append(gpu_ms)
            host.append(host_us)
    exact = torch.equal(out.cpu(), kernel_refs.composite_ref(W, H, (0, 0, 0), layers, base).cpu())
    return {"gpu_ms": percentiles(samples), "host_launch_us": percentiles(host),
            "lead_in_ms": round(lead_ms, 3) if timer.lead_in is not None else None,
            "bit_exact": exact, "target_gpu_ms": 0.5}


class _Writer(Actor):
    def __init__(self, data: torch.Tensor, **kw: Any) -> None:
        super().__init__(**kw)
        self.data = data
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(VideoFrame(self.data, timestamp_ns=tick.timestamp_ns,
                                               frame_number=tick.frame_number))


class _Reader(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")

    def process(self, tick: TimedTick) -> None:
        pass


@contextlib.contextmanager
def counting_hook_events() -> Iterator[list[int]]:
    """Counts the ready events the staging hook records (``[n]``) while active."""
    real, count = getattr(staging, "record_event"), [0]  # the name the hook calls

    def counted(*args: Any, **kw: Any) -> Any:
        count[0] += 1
        return real(*args, **kw)

    setattr(staging, "record_event", counted)
    try:
        yield count
    finally:
        setattr(staging, "record_event", real)


def tick_overhead_case(ticks: int) -> dict[str, Any]:
    dev = resolve_device()
    data = torch.zeros((H, W, 3), dtype=torch.uint8, device=dev)
    # Without CUDA the runtime installs no router: the CPU twin of the bridge takes the
    # frame for a device frame and the reader for a GPU reader, so the hook runs here too.
    bridge = None if dev.type == "cuda" else StagingBridge(
        is_device_tensor=lambda t: True, gpu_consumer=lambda actor: dev, enabled=lambda: True)
    with Runtime(staging=bridge) as rt, GPUDispatcher(dev, max_workers=1) as d, \
            counting_hook_events() as hook_events:
        writer, reader = _Writer(data, dispatcher=d), _Reader(dispatcher=d)
        writer >> reader
        in_thread: list[float] = []

        def timed_process(tick: TimedTick) -> None:
            # A new frame each tick, as producers write them: no ready event yet, so the
            # hook records and attaches a fresh one every time (counted).
            t0 = time.perf_counter_ns()
            with d._context(writer):
                _Writer.process(writer, tick)
            in_thread.append((time.perf_counter_ns() - t0) / 1e3)

        writer.process = timed_process  # type: ignore[method-assign]

        async def run() -> list[float]:
            out = []
            for n in range(ticks):
                t0 = time.perf_counter_ns()
                await d.dispatch(writer, TimedTick(n, n, "bench"))
                out.append((time.perf_counter_ns() - t0) / 1e3)
            return out

        dispatch = asyncio.run(run())
        events_per_tick = hook_events[0] / ticks
        del writer.process  # untimed again: the inline run measures the whole tick only
        with GPUDispatcher(dev, inline=True) as inline_d:

            async def run_inline() -> list[float]:
                out = []
                for n in range(ticks):
                    t0 = time.perf_counter_ns()
                    await inline_d.dispatch(writer, TimedTick(ticks + n, ticks + n, "bench"))
                    out.append((time.perf_counter_ns() - t0) / 1e3)
                return out

            inline = asyncio.run(run_inline())
        context_only = []
        for _ in range(ticks):
            t0 = time.perf_counter_ns()
            with d._context(writer):
                pass
            context_only.append((time.perf_counter_ns() - t0) / 1e3)
        del rt
    warm = ticks // 10
    return {"device": str(dev), "context_only_us": percentiles(context_only[warm:]),
            "in_thread_us": percentiles(in_thread[warm:]),
            "dispatch_us": percentiles(dispatch[warm:]),
            "dispatch_inline_us": percentiles(inline[warm:]),
            "hook_events_per_tick": events_per_tick, "target_us": 30}


def ring_case(cycles: int) -> dict[str, Any]:
    dev = resolve_device()
    ring = GPURingBuffer((H, W, 3), slots=3, device=dev)
    cuda = dev.type == "cuda"

    def cycle(n: int) -> None:
        with ring.write(n) as t:
            t.fill_(n % 256)
        with ring.read_latest() as view:
            view.tensor[0, 0, 0]

    for n in range(10):
        cycle(n)
    if cuda:
        torch.cuda.synchronize()
    before_mem = torch.cuda.memory_allocated(dev) if cuda else 0
    before = ring.stats().allocations
    for n in range(cycles):
        cycle(n)
    if cuda:
        torch.cuda.synchronize()
    after_mem = torch.cuda.memory_allocated(dev) if cuda else 0
    return {"device": str(dev), "cycles": cycles,
            "ring_allocations_delta": ring.stats().allocations - before,
            "cuda_memory_allocated_delta": after_mem - before_mem if cuda else None}


def staging_case(frames: int) -> dict[str, Any]:
    if not cuda_available():
        return SKIP
    dev = resolve_device("cuda")
    copy = new_stream(dev)
    src = torch.randint(0, 256, (H, W, 3), dtype=torch.uint8, device=dev)
    nbytes = src.numel()
    host = [pinned_empty(src.shape) for _ in range(frames)]
    dst = [torch.empty_like(src) for _ in range(frames)]
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with stream_context(copy):
        for h in host:
            h.copy_(src, non_blocking=True)
    copy.synchronize()
    d2h = nbytes * frames / (time.perf_counter() - t0) / 1e9
    t0 = time.perf_counter()
    with stream_context(copy):
        for h, d in zip(host, dst):
            d.copy_(h, non_blocking=True)
    copy.synchronize()
    h2d = nbytes * frames / (time.perf_counter() - t0) / 1e9
    ok = torch.equal(dst[-1], src)
    return {"frame_bytes": nbytes, "frames": frames, "d2h_GBps": round(d2h, 2),
            "h2d_GBps": round(h2d, 2), "d2h_fps": round(d2h * 1e9 / nbytes),
            "h2d_fps": round(h2d * 1e9 / nbytes), "round_trip_exact": ok}


def write_hook_case(writes: int) -> dict[str, Any]:
    out, inp = StreamOutput("video"), StreamInput("video")
    out.connect(inp)
    f = VideoFrame(torch.zeros(2, 2, 3, dtype=torch.uint8), timestamp_ns=0)
    bridge = StagingBridge()
    gate = torch.cuda.is_initialized

    def per_write(router: StagingBridge | None) -> float:
        out.set_router(router)
        t0 = time.perf_counter_ns()
        for _ in range(writes):
            out.write(f)
        return (time.perf_counter_ns() - t0) / writes

    plain, routed, gates = [], [], []
    for _ in range(5):  # interleaved, so drift hits both alike
        plain.append(per_write(None))
        routed.append(per_write(bridge))
        t0 = time.perf_counter_ns()
        for _ in range(writes):
            gate()
        gates.append((time.perf_counter_ns() - t0) / writes)
    bridge.close()
    return {"write_ns": statistics.median(plain), "write_routed_ns": statistics.median(routed),
            "gate_ns": statistics.median(gates), "cuda_initialised": bool(gate())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    q = args.quick
    figures = {
        "composite_1080p_4layers": composite_case(50 if q else 500),
        "tick_overhead": tick_overhead_case(300 if q else 3000),
        "ring_allocations": ring_case(200 if q else 1000),
        "staging_bandwidth": staging_case(20 if q else 100),
        "write_hook_cpu": write_hook_case(20000 if q else 200000),
    }
    params = {"width": W, "height": H, "quick": q, "cuda": cuda_available(),
              "cupy": kernels.cupy_available(), "kernels": kernels.kernel_backend()}
    path = write_record("gpu", params, figures, args.out)
    for name, fig in figures.items():
        print(f"{name}: {fig}")
    print(f"wrote {path}")
    return figures


if __name__ == "__main__":
    main()
