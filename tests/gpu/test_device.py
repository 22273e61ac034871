"""streamlib.gpu.device (CPU twins, device selection, frame readiness) and GPUDispatcher streams."""

from __future__ import annotations

import asyncio
import contextlib
import pickle
from typing import Any, Iterator

import pytest
import torch

import streamlib.gpu.device as device
import streamlib.runtime.dispatchers as dispatchers
from streamlib import Actor, AudioFrame, DataMessage, Runtime, StreamInput, TimedTick, VideoFrame
from streamlib.gpu.device import (
    CPUEvent, CPUStream, cuda_available, current_stream, default_stream, input_device,
    item_tensor, new_event, new_stream, own_device, pinned_empty, ready_event, record_event,
    resolve_device, stream_context, wait_event, wait_ready, wants_gpu_dispatcher, with_ready_event
)
from streamlib.runtime.dispatchers import GPUDispatcher

pytestmark = pytest.mark.timeout(60)
NO_CUDA = not cuda_available()


class FakeCudaEvent:
    """Stands in for a torch.cuda.Event: counts host synchronisations."""

    def __init__(self) -> None:
        self.synced = 0
        self.waited_on: list[Any] = []

    def synchronize(self) -> None:
        self.synced += 1

    def wait(self, stream: Any = None) -> None:
        self.waited_on.append(stream)


class Reader(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.streams: list[Any] = []

    def process(self, tick: TimedTick) -> None:
        self.streams.append(tick.frame_number)


def vframe(n: int = 0) -> VideoFrame:
    return VideoFrame(torch.full((2, 4, 3), n, dtype=torch.uint8), timestamp_ns=n, frame_number=n)


# ------------------------------------------------------------------ device selection

def test_cuda_available_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> bool:
        raise RuntimeError("driver exploded")

    monkeypatch.setattr(device, "_cuda_ok", None)
    monkeypatch.setattr(torch.cuda, "is_available", broken)
    assert cuda_available() is False
    assert cuda_available() is False  # cached


@pytest.mark.skipif(not NO_CUDA, reason="checks the CPU-only default")
def test_resolve_device_defaults_to_cpu_without_cuda() -> None:
    assert resolve_device() == torch.device("cpu")
    assert resolve_device("cpu") == resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match="'cuda:1' requested but CUDA is not available"):
        resolve_device("cuda:1", where="MyActor 'x': device")
    with pytest.raises(ValueError, match=r"^MyActor 'x': device: 'cuda' requested"):
        resolve_device("cuda", where="MyActor 'x': device")


@pytest.mark.parametrize("bad", ["tpu", "gpu:0", "meta", 2.5, True])
def test_resolve_device_rejects_unknown(bad: Any) -> None:
    with pytest.raises(ValueError, match="where-it-was"):
        resolve_device(bad, where="where-it-was")


# ------------------------------------------------------------------ CPU twins

def test_cpu_twins_are_complete_no_ops() -> None:
    s = new_stream("cpu")
    assert isinstance(s, CPUStream) and s.query() and s.cuda_stream == 0
    assert current_stream("cpu") is current_stream("cpu") is default_stream("cpu")
    with stream_context(s) as bound:
        assert bound is None
    with s as ctx:  # `with stream:` binds None like the GPUDispatcher test expects
        assert ctx is None
    ev = record_event(s)
    assert isinstance(ev, CPUEvent) and ev.query()
    ev.synchronize()
    wait_event(s, ev)
    wait_event(None, ev)
    later = s.record_event(new_event("cpu", timing=True))
    assert later.elapsed_time(ev) <= 0 <= ev.elapsed_time(later)
    s.synchronize()


def test_cpu_stream_waiting_on_a_cuda_event_blocks_the_host() -> None:
    fake: Any = FakeCudaEvent()
    CPUStream().wait_event(fake)
    assert fake.synced == 1
    wait_event(None, fake)  # no stream: the event waits on the current one
    assert fake.waited_on == [None]


def test_pinned_empty_falls_back_to_plain_memory() -> None:
    t = pinned_empty((3, 5), torch.int16)
    assert t.shape == (3, 5) and t.dtype == torch.int16 and t.device.type == "cpu"
    assert t.is_pinned() == cuda_available()
    assert not pinned_empty((2,), pin=False).is_pinned()


# ------------------------------------------------------------------ frame readiness

def test_item_tensor_finds_the_tensor() -> None:
    v = vframe()
    a = AudioFrame(torch.zeros(8, 2), sample_rate=48000, timestamp_ns=0)
    payload = torch.ones(3)
    assert item_tensor(v) is v.data and item_tensor(a) is a.data
    assert item_tensor(DataMessage(payload, timestamp_ns=0)) is payload
    assert item_tensor(payload) is payload
    assert item_tensor(DataMessage({"x": 1}, timestamp_ns=0)) is None
    assert item_tensor("text") is None


def test_the_ready_event_is_a_field_of_the_frame() -> None:
    f = vframe(3)
    assert ready_event(f) is None and wait_ready(f) is False
    fake = FakeCudaEvent()
    ev: Any = fake
    g = with_ready_event(f, ev)
    assert g is not f and g.ready_event is ev and ready_event(g) is ev
    assert ready_event(f) is None  # frames are immutable: the original carries none
    assert with_ready_event(g, ev) is g  # already carried: the same frame
    assert ready_event(g.replace(metadata={"k": 1})) is ev  # same data, same event
    assert ready_event(g.replace(data=torch.zeros(2, 4, 3, dtype=torch.uint8))) is None
    assert wait_ready(g, CPUStream()) is True and fake.synced == 1  # CPU reader: host waits
    assert pickle.loads(pickle.dumps(g)).ready_event is None  # an event stays in its process
    c = with_ready_event(vframe(), CPUEvent())
    assert wait_ready(c) is False  # CPU events are complete: nothing to wait for
    assert with_ready_event(c, None).ready_event is None
    bare = torch.ones(3)
    assert with_ready_event(bare, CPUEvent()) is bare and ready_event(bare) is None
    a = AudioFrame(torch.zeros(8, 2), sample_rate=48000, timestamp_ns=0, ready_event=ev)
    m = DataMessage({"boxes": torch.ones(1, 4)}, timestamp_ns=0, ready_event=ev)
    assert ready_event(a) is ev and ready_event(m) is ev


def test_a_ready_event_goes_stale_when_its_tensor_is_rewritten_in_place() -> None:
    first, second = FakeCudaEvent(), FakeCudaEvent()
    f = with_ready_event(vframe(1), first)
    assert ready_event(f) is first and f.ready_version == f.data._version
    f.data.add_(1)  # the producer rewrites the tensor in place and republishes the frame
    assert ready_event(f) is None and wait_ready(f, CPUStream()) is False and first.synced == 0
    assert ready_event(f.replace(metadata={"k": 1})) is None  # still the rewritten tensor
    g = with_ready_event(f, first)  # the same event object re-recorded: a new mark
    assert g is not f and ready_event(g) is first
    h = with_ready_event(g, second)
    assert ready_event(h) is second and pickle.loads(pickle.dumps(h)).ready_version is None
    m = DataMessage({"boxes": torch.ones(1, 4)}, timestamp_ns=0)
    assert ready_event(with_ready_event(m, first)) is first  # no tensor payload: untracked
    with torch.inference_mode():
        inf = torch.ones(2, 2, 3, dtype=torch.uint8)
    i = with_ready_event(VideoFrame(inf, timestamp_ns=0), first)
    assert i.ready_version is None and ready_event(i) is first  # no version counter


def test_a_republished_rewritten_frame_gets_a_fresh_event_from_the_bridge() -> None:
    from streamlib.gpu.staging import StagingBridge  # noqa: PLC0415 - only this test

    bridge = StagingBridge(is_device_tensor=lambda t: True, gpu_consumer=lambda a: device.CPU,
                           enabled=lambda: True)
    try:
        reader = Reader()
        inp = reader.inputs["video"]
        out = device.CPUEvent()
        f = with_ready_event(vframe(2), out)
        (_, sent), = bridge._from_device(inp, f, f.data, (inp,))  # type: ignore[arg-type]
        assert sent is f  # a current event: the frame as it is
        f.data.add_(1)
        (_, again), = bridge._from_device(inp, f, f.data, (inp,))  # type: ignore[arg-type]
        assert again is not f and ready_event(again) is not out
        assert isinstance(ready_event(again), CPUEvent) and again.ready_version == f.data._version
    finally:
        bridge.close()


class _OnGPU1(torch.Tensor):
    """A host tensor that says it lives on cuda:1 (the stream rules only look at that)."""

    used_by: list[Any]

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True

    @property
    def device(self) -> torch.device:  # type: ignore[override]
        return torch.device("cuda", 1)

    def record_stream(self, stream: Any) -> None:  # type: ignore[override]
        self.used_by.append(stream)


def test_wait_ready_without_a_stream_uses_the_tensor_devices_stream(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # With cuda:0 current, event.wait() would order cuda:0's stream, not the reader's.
    class FakeStream:
        def __init__(self, dev: torch.device) -> None:
            self.device = dev
            self.waited: list[Any] = []

        def wait_event(self, event: Any) -> None:
            self.waited.append(event)

    streams: dict[str, FakeStream] = {}
    monkeypatch.setattr(torch.cuda, "current_stream", lambda dev=None: streams.setdefault(
        str(torch.device(dev) if dev is not None else "cuda:0"), FakeStream(torch.device(
            dev if dev is not None else "cuda:0"))))
    data = torch.zeros(2, 2, 3, dtype=torch.uint8).as_subclass(_OnGPU1)
    data.used_by = []
    ev = FakeCudaEvent()
    frame = with_ready_event(VideoFrame(torch.zeros(2, 2, 3, dtype=torch.uint8),
                                        timestamp_ns=0), ev)
    object.__setattr__(frame, "data", data)
    assert wait_ready(frame) is True
    assert list(streams) == ["cuda:1"] and streams["cuda:1"].waited == [ev]
    assert ev.waited_on == [] and data.used_by == [streams["cuda:1"]]


def test_ready_events_do_not_outlive_their_frames() -> None:
    # The table keyed by tensor identity is gone: nothing global to leak or to share
    # between tests (the order-dependent failure of test_staging -> test_device).
    assert not hasattr(device, "_ready")


# ------------------------------------------------------------------ actors and the GPU dispatcher

def test_input_device_is_the_request_then_the_device_then_the_dispatcher() -> None:
    with Runtime():
        plain = Reader()
        own = Reader()
        own.device = "cpu"  # type: ignore[assignment]  # a user subclass may set a str
        on_gpu = Reader(dispatcher="gpu")
        asked = Reader()
    assert input_device(plain) == input_device(own) == input_device(None) == torch.device("cpu")
    assert own_device(own) == torch.device("cpu") and own_device(plain) is None
    assert input_device(on_gpu) == resolve_device()  # the runtime's GPUDispatcher device
    wanted = torch.device("cuda", 3)  # a request is taken as given (the interop device)
    asked.request_input_device(wanted)
    assert asked.input_device == wanted and input_device(asked) == wanted
    asked.request_input_device(None)
    assert input_device(asked) == torch.device("cpu")
    assert not wants_gpu_dispatcher(own) and not wants_gpu_dispatcher(plain)


def test_gpu_dispatcher_caches_one_stream_per_actor() -> None:
    with Runtime(), GPUDispatcher(device="cpu") as d:
        a, b = Reader(), Reader()
        sa = d.stream_for(a)
        assert d.stream_for(a) is sa and d.stream_for(b) is not sa
        assert isinstance(sa, CPUStream)
        asyncio.run(d.dispatch(a, TimedTick(0, 7, "t")))
        assert a.streams == [7]
        asyncio.run(d.teardown(a))
        assert d.stream_for(a) is not sa  # forgotten after teardown, a new one on demand


def test_gpu_dispatcher_rejects_bad_device() -> None:
    with pytest.raises(ValueError, match="GPUDispatcher: device"):
        GPUDispatcher(device="tpu")


def test_gpu_dispatcher_waits_on_input_ready_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path of _on_stream, driven with a stand-in stream: the actor's stream is
    made current and waits on the newest item of each input before process()."""
    entered: list[Any] = []
    waits: list[tuple[Any, Any]] = []

    @contextlib.contextmanager
    def fake_context(stream: Any) -> Iterator[None]:
        entered.append(stream)
        yield

    monkeypatch.setattr(dispatchers, "stream_context", fake_context)
    monkeypatch.setattr(dispatchers, "wait_ready", lambda item, s: waits.append((item, s)))
    fake_stream = object()
    with Runtime(), GPUDispatcher(device="cpu") as d:
        r = Reader()
        d._streams[id(r)] = fake_stream  # type: ignore[assignment]
        old, new = vframe(1), vframe(2)
        r.inputs["video"].feed(old)
        r.inputs["video"].feed(new)
        asyncio.run(d.dispatch(r, TimedTick(0, 1, "t")))
    assert entered == [fake_stream]
    assert waits == [(new, fake_stream)]
    assert r.streams == [1]


# ------------------------------------------------------------------ on a GPU

@pytest.mark.gpu
def test_cuda_streams_and_events_are_torch_objects() -> None:
    dev = resolve_device("cuda")
    s = new_stream(dev)
    assert isinstance(s, torch.cuda.Stream)
    with stream_context(s):
        assert torch.cuda.current_stream(dev) == s
        x = torch.ones(1 << 20, device=dev) * 3
        ev = record_event()
    other = new_stream(dev)
    wait_event(other, ev)
    with stream_context(other):
        total = float(x.sum())
    assert total == 3 * (1 << 20)
    assert pinned_empty((4,)).is_pinned()


@pytest.mark.gpu
def test_gpu_dispatcher_runs_process_on_the_actor_stream() -> None:
    seen: list[Any] = []

    class Probe(Actor):
        def process(self, tick: TimedTick) -> None:
            seen.append(torch.cuda.current_stream())

    for inline in (False, True):
        seen.clear()
        with Runtime(), GPUDispatcher(inline=inline) as d:
            p = Probe()
            asyncio.run(d.dispatch(p, TimedTick(0, 0, "t")))
            assert seen == [d.stream_for(p)]
            assert seen[0] != torch.cuda.default_stream()
        assert torch.cuda.current_stream() == torch.cuda.default_stream()  # restored after


@pytest.mark.gpu
def test_wait_ready_keeps_the_memory_from_the_producer_until_the_reader_ran() -> None:
    dev = resolve_device("cuda")
    producer, reader = new_stream(dev), new_stream(dev)
    with stream_context(producer):
        frame = DataMessage(torch.full((1 << 22,), 7, dtype=torch.float32, device=dev),
                            timestamp_ns=0, ready_event=record_event())
        ptr = frame.payload.data_ptr()
    assert wait_ready(frame, reader) is True
    with stream_context(reader):
        torch.cuda._sleep(200_000_000)  # type: ignore[attr-defined]  # ~0.1 s of GPU cycles
        total = frame.payload.sum()
    del frame  # the producer drops the frame while the reader's sum is queued
    with stream_context(producer):
        fresh = torch.empty((1 << 22,), dtype=torch.float32, device=dev)
        fresh.fill_(0)
    # record_stream: the block went back only for reuse after the reader's work, not at once
    assert fresh.data_ptr() != ptr
    reader.synchronize()
    assert float(total) == 7 * (1 << 22)
