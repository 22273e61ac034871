"""Staging between GPU and CPU actors (streamlib.gpu.staging): the router a runtime installs.

Without a GPU, the bridge runs its real code paths with the CPU twins of streams and
events; which tensors count as "on the device" and which actors as GPU readers is
injected (``is_device_tensor``, ``gpu_consumer``).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import streamlib.gpu.staging as staging
from streamlib import (
    Actor, AudioFrame, DataMessage, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame,
    VirtualClock,
)
from streamlib.gpu.device import CPU, CPUEvent, cuda_available, ready_event, record_event, resolve_device
from streamlib.gpu.staging import StagingBridge, with_tensor

pytestmark = pytest.mark.timeout(60)
N = 12


class Source(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["video"] = StreamOutput("video")
        self.sent: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        f = VideoFrame(torch.full((4, 6, 3), tick.frame_number, dtype=torch.uint8),
                       timestamp_ns=tick.timestamp_ns, frame_number=tick.frame_number)
        self.sent.append(f)
        self.outputs["video"].write(f)


class Sink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video", slots=8)
        self.got: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        self.got.extend(self.inputs["video"].read_all_new())


@pytest.fixture
def bridge_for() -> Iterator[Any]:
    """A bridge with the gate open and injected decisions: ``gpu_actors`` (filled by the
    test once its actors exist) read on the GPU; every tensor is on the device or none is."""
    made: list[StagingBridge] = []

    def make(device_tensors: bool, gpu_actors: set[int], **kw: Any) -> StagingBridge:
        bridge = StagingBridge(
            is_device_tensor=lambda t: device_tensors,
            gpu_consumer=lambda a: CPU if id(a) in gpu_actors else None,
            enabled=lambda: True, **kw)
        made.append(bridge)
        return bridge

    yield make
    for b in made:
        b.close()


def test_without_cuda_a_runtime_installs_no_router() -> None:
    if cuda_available():
        pytest.skip("checks the CPU-only machine")
    with Runtime() as rt:
        src, sink = Source(), Sink()
        src.outputs["video"] >> sink
        assert rt.staging is None and src.outputs["video"].router is None
        f = VideoFrame(torch.zeros(2, 2, 3, dtype=torch.uint8), timestamp_ns=0)
        src.outputs["video"].write(f)
        assert sink.inputs["video"].read_latest() is f
    # A bridge with its default gate passes everything while CUDA is not initialised.
    bridge = StagingBridge()
    out, inp = StreamOutput("video"), StreamInput("video")
    out.connect(inp)
    assert bridge.route(out, f, out.links) is None and bridge.stats().d2h_frames == 0
    bridge.close()


def test_the_runtime_installs_its_bridge_on_each_link_and_closes_it(bridge_for: Any) -> None:
    bridge = bridge_for(True, set())
    rt = Runtime(staging=bridge)
    src, sink = Source(runtime=rt), Sink(runtime=rt)
    early = Source(runtime=rt)
    assert src.outputs["video"].router is None  # no link yet
    src.outputs["video"] >> sink
    assert rt.staging is bridge and src.outputs["video"].router is bridge
    assert early.outputs["video"].router is None
    rt.close()
    assert bridge._closed


def test_device_frames_reach_cpu_readers_as_one_shared_host_copy(bridge_for: Any) -> None:
    gpu_actors: set[int] = set()
    bridge = bridge_for(True, gpu_actors)
    with Runtime(staging=bridge) as rt:
        src = Source(clock=VirtualClock(30, max_ticks=N))
        cpu1, cpu2, gpu = Sink(), Sink(), Sink()
        gpu_actors.add(id(gpu))
        for s in (cpu1, cpu2, gpu):
            src.outputs["video"] >> s
        assert rt.run(30)
    # lock-step loses nothing although the host copies are published by the bridge thread
    for sink in (cpu1, cpu2, gpu):
        assert [f.frame_number for f in sink.got] == list(range(N))
    for n in range(N):
        sent, host1, host2 = src.sent[n], cpu1.got[n], cpu2.got[n]
        assert gpu.got[n].data is sent.data             # GPU reader: the frame's own tensor
        assert isinstance(ready_event(gpu.got[n]), CPUEvent)  # carrying the event of its write
        assert host1 is host2 and host1.data is not sent.data  # one copy for all CPU readers
        assert torch.equal(host1.data, sent.data) and host1.timestamp_ns == sent.timestamp_ns
    s = bridge.stats()
    assert (s.d2h_frames, s.published, s.dropped, s.pending, s.h2d_frames) == (N, N, 0, 0, 0)
    assert s.d2h_bytes == N * 4 * 6 * 3
    assert ready_event(src.sent[0]) is None  # the writer's frame is immutable


def test_host_frames_are_uploaded_once_for_gpu_readers(bridge_for: Any) -> None:
    gpu_actors: set[int] = set()
    bridge = bridge_for(False, gpu_actors)
    with Runtime(staging=bridge) as rt:
        src = Source(clock=VirtualClock(30, max_ticks=N))
        cpu, gpu1, gpu2 = Sink(), Sink(), Sink(dispatcher="gpu")
        gpu_actors.update({id(gpu1), id(gpu2)})
        for s in (cpu, gpu1, gpu2):
            src.outputs["video"] >> s
        assert rt.run(30)
    for n in range(N):
        sent = src.sent[n]
        assert cpu.got[n] is sent
        up1, up2 = gpu1.got[n], gpu2.got[n]
        assert up1 is up2 and up1.data is not sent.data and torch.equal(up1.data, sent.data)
        assert ready_event(up1) is not None
    s = bridge.stats()
    assert (s.h2d_frames, s.d2h_frames, s.h2d_bytes) == (N, 0, N * 72)


def test_unowned_inputs_and_tensorless_items_pass_through(bridge_for: Any) -> None:
    bridge = bridge_for(True, set())
    out, inp = StreamOutput("data"), StreamInput("data")
    out.connect(inp)
    out.set_router(bridge)
    msg = DataMessage({"k": 1}, timestamp_ns=0)
    out.write(msg)
    assert inp.read_latest() is msg
    t = DataMessage(torch.ones(3), timestamp_ns=0)
    out.write(t)
    assert inp.read_latest() is t  # no owner actor: a test capture gets the item as is
    assert bridge.stats().d2h_frames == 0


class GateEvent:
    """A copy event that completes when the test says so."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def synchronize(self) -> None:
        assert self.gate.wait(10)


def test_the_bridge_thread_waits_on_blocking_events(
        bridge_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A plain CUDA event's synchronize() spins a core until the copy (queued behind
    # the producer's GPU work) is done; a blocking one sleeps.
    made: list[tuple[Any, bool]] = []
    real_new = staging.new_event

    def new_event(where: Any = None, timing: bool = False, blocking: bool = False) -> Any:
        made.append((where, blocking))
        return real_new(where, timing, blocking)

    monkeypatch.setattr(staging, "new_event", new_event)
    bridge = bridge_for(True, set())
    with Runtime(staging=bridge) as rt:
        src, sink = Source(clock=VirtualClock(30, max_ticks=3)), Sink()
        src.outputs["video"] >> sink
        assert rt.run(30)
    assert [f.frame_number for f in sink.got] == [0, 1, 2]
    assert made == [(bridge.copy_stream(CPU), True)] * 3


def test_gpu_dispatcher_readers_wait_at_read_time_not_at_write_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A wait queued at write time would serialise the reader's previous frame's work
    # behind the producer's next frame; the GPU dispatcher waits when process starts.
    waited: list[Any] = []
    monkeypatch.setattr(staging, "wait_event", lambda stream, event: waited.append(stream))

    class StreamDispatcher:
        def stream_for(self, actor: Any) -> Any:
            return "pool-stream"

    bridge = StagingBridge(is_device_tensor=lambda t: True, gpu_consumer=lambda a: CPU,
                           enabled=lambda: True)
    try:
        pooled, plain = Sink(), Sink()
        pooled._sl.dispatcher = StreamDispatcher()  # type: ignore[assignment]
        links = (pooled.inputs["video"], plain.inputs["video"])
        f = VideoFrame(torch.zeros(2, 2, 3, dtype=torch.uint8), timestamp_ns=0)
        pairs = bridge.route(StreamOutput("video"), f, links)
        assert pairs is not None and [p[0] for p in pairs] == list(links)
        assert all(isinstance(ready_event(item), CPUEvent) for _, item in pairs)
        assert len(waited) == 1 and waited[0] != "pool-stream"  # only the plain reader's
    finally:
        bridge.close()


def test_pending_copies_beyond_max_are_dropped_oldest_first(
        bridge_for: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    bridge = bridge_for(True, set(), max_pending=2)
    real_record = record_event

    def record(stream: Any = None, event: Any = None) -> Any:
        if stream is bridge.copy_stream(CPU):  # only the copies' completion is gated
            return GateEvent(gate)
        return real_record(stream, event)

    monkeypatch.setattr(staging, "record_event", record)
    rt = Runtime(staging=bridge)
    src, sink = Source(runtime=rt), Sink(runtime=rt)
    src.outputs["video"] >> sink
    frames = [VideoFrame(torch.full((2, 2, 3), n, dtype=torch.uint8), timestamp_ns=n,
                         frame_number=n) for n in range(5)]
    for f in frames:
        src.outputs["video"].write(f)
    assert sink.inputs["video"].read_all_new() == []  # nothing published before the copies end
    assert bridge.stats().pending == 2 and bridge.stats().dropped == 3
    gate.set()
    assert bridge.flush(10)
    got = sink.inputs["video"].read_all_new()
    assert [f.frame_number for f in got] == [3, 4]
    s = bridge.stats()
    assert (s.d2h_frames, s.published, s.dropped, s.pending) == (5, 2, 3, 0)
    rt.close()


def test_close_drops_pending_and_is_idempotent(bridge_for: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    gates = [threading.Event()]
    bridge = bridge_for(True, set())
    real_record = record_event
    monkeypatch.setattr(staging, "record_event", lambda s=None, e=None: GateEvent(gates[-1])
                        if s is bridge.copy_stream(CPU) else real_record(s, e))
    rt = Runtime(staging=bridge)
    src, sink = Source(runtime=rt), Sink(runtime=rt)
    src.outputs["video"] >> sink
    src.outputs["video"].write(VideoFrame(torch.zeros(2, 2, 3, dtype=torch.uint8), timestamp_ns=0))
    gates[-1].set()
    assert bridge.flush(10)
    gates.append(threading.Event())  # the next copy stays pending until close() dropped it
    src.outputs["video"].write(VideoFrame(torch.ones(2, 2, 3, dtype=torch.uint8), timestamp_ns=1))
    closer = threading.Thread(target=bridge.close)
    closer.start()  # joins the bridge thread, which waits on the gate
    with bridge._cond:
        assert bridge._cond.wait_for(lambda: bridge._closed, 10)
    gates[-1].set()
    closer.join(10)
    bridge.close()
    s = bridge.stats()
    assert (s.d2h_frames, s.published, s.dropped, s.pending) == (2, 1, 1, 0)
    assert [f.timestamp_ns for f in sink.inputs["video"].read_all_new()] == [0]
    third = VideoFrame(torch.ones(2, 2, 3, dtype=torch.uint8), timestamp_ns=2)
    src.outputs["video"].write(third)  # a closed bridge stages nothing more: dropped, counted
    assert sink.inputs["video"].read_all_new() == []
    s = bridge.stats()
    assert (s.d2h_frames, s.published, s.dropped, s.pending) == (3, 1, 2, 0)
    rt.close()


def test_with_tensor_replaces_the_carried_tensor() -> None:
    t = torch.zeros(2, 2, 3, dtype=torch.uint8)
    v = VideoFrame(torch.ones(2, 2, 3, dtype=torch.uint8), timestamp_ns=5, frame_number=2,
                   metadata={"k": 1})
    nv = with_tensor(v, t)
    assert nv.data is t and nv.frame_number == 2 and nv.metadata == {"k": 1}
    a = AudioFrame(torch.zeros(4, 1), sample_rate=8000, timestamp_ns=0)
    assert with_tensor(a, torch.ones(4, 1)).data.sum() == 4
    assert with_tensor(DataMessage(torch.ones(1), timestamp_ns=0), t).payload is t
    assert with_tensor(torch.ones(1), t) is t


# ------------------------------------------------------------------ on a GPU

class GpuSource(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(dispatcher="gpu", **kw)
        self.outputs["video"] = StreamOutput("video")
        self.device = resolve_device("cuda")

    def process(self, tick: TimedTick) -> None:
        big = torch.randn(1024, 1024, device=self.device)
        (big @ big).sum()  # keep the stream busy so an unsynchronised read would see junk
        data = torch.full((1080, 1920, 3), tick.frame_number % 256, dtype=torch.uint8,
                          device=self.device)
        self.outputs["video"].write(VideoFrame(data, timestamp_ns=tick.timestamp_ns,
                                               frame_number=tick.frame_number))


@pytest.mark.gpu
def test_gpu_to_cpu_and_gpu_readers() -> None:
    class GpuSink(Sink):
        def __init__(self, **kw: Any) -> None:
            super().__init__(dispatcher="gpu", **kw)
            self.sums: list[int] = []

        def process(self, tick: TimedTick) -> None:
            for f in self.inputs["video"].read_all_new():
                assert f.data.is_cuda
                self.sums.append(int(f.data[..., 0].sum()))

    with Runtime() as rt:
        src = GpuSource(clock=VirtualClock(30, max_ticks=N))
        cpu, gpu = Sink(), GpuSink()
        src >> cpu
        src.outputs["video"] >> gpu
        assert rt.run(60)
    assert [f.frame_number for f in cpu.got] == list(range(N))
    for f in cpu.got:
        assert f.data.device.type == "cpu" and f.data.is_pinned()
        assert bool((f.data == f.frame_number % 256).all())
    assert gpu.sums == [1080 * 1920 * (n % 256) for n in range(N)]
