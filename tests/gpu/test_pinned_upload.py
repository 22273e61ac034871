"""PinnedUpload: one reused page-locked buffer, async copies, and a wait before reuse.

"meta" stands in for a GPU (any device other than the host); a fake event records
when the host waited, so the ordering is checked without CUDA.
"""
from __future__ import annotations

import pytest
import torch

import streamlib.gpu.device as device_mod
import streamlib.gpu.pinned_upload as pinned_upload
from streamlib import Runtime, StreamInput, TimedTick, VirtualClock
from streamlib.core.actor import Actor
from streamlib.core.frames import VideoFrame
from streamlib.errors import ActorStateError
from streamlib.actors.shader import ShaderActor
from streamlib.gpu.device import CPUStream
from streamlib.gpu.pinned_upload import PinnedUpload


META_STREAM = CPUStream()  # what "the current stream of meta" is in these tests


class Sink(Actor):
    def __init__(self) -> None:
        super().__init__()
        self.inputs["video"] = StreamInput("video")
        self.got: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None:
            self.got.append(frame)


class FakeEvent:
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def synchronize(self) -> None:
        self.log.append(f"wait {self.name}")


@pytest.fixture
def log(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    events: list[str] = []
    real_pinned = device_mod.pinned_empty

    def counting_pinned(shape: torch.Size, dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        events.append(f"pin {tuple(shape)}")
        return real_pinned(shape, dtype)

    def new_event(stream: object, timing: bool = False, blocking: bool = False) -> FakeEvent:
        assert stream is META_STREAM, stream
        assert blocking, "the host waits on it: it must sleep, not spin"
        return FakeEvent(events, f"e{sum(e.startswith('record') for e in events)}")

    def record(stream: object, event: FakeEvent) -> FakeEvent:
        assert stream is META_STREAM, stream
        events.append(f"record {event.name}")
        return event

    real_copy = torch.Tensor.copy_

    def copy(self: torch.Tensor, src: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
        events.append(f"copy non_blocking={non_blocking}")
        return real_copy(self, src, non_blocking)

    monkeypatch.setattr(pinned_upload, "pinned_empty", counting_pinned)
    monkeypatch.setattr(pinned_upload, "record_event", record)
    monkeypatch.setattr(pinned_upload, "new_event", new_event)
    monkeypatch.setattr(pinned_upload, "current_stream", 
                        lambda device: META_STREAM if device.type == "meta" else None)
    monkeypatch.setattr(torch.Tensor, "copy_", copy)
    return events


def test_buffer_is_reused_and_waited_for_before_it_is_overwritten(log: list[str]) -> None:
    up = PinnedUpload()
    first = up.buffer((4, 2, 3))
    first.fill_(7)
    out = up.upload(torch.device("meta"))
    assert out.device.type == "meta" and tuple(out.shape) == (4, 2, 3)
    again = up.buffer((4, 2, 3))
    assert again.data_ptr() == first.data_ptr()
    up.upload(torch.device("meta"))
    assert log == ["pin (4, 2, 3)", "copy non_blocking=True", "record e0",
                   "wait e0", "copy non_blocking=True", "record e1"]
    up.buffer((2, 2, 3))  # a new size: waits, then a new buffer
    assert log[-2:] == ["wait e1", "pin (2, 2, 3)"]


def test_upload_before_buffer_is_an_error() -> None:
    with pytest.raises(ActorStateError, match=r"^PinnedUpload.upload before buffer\(\): nothing to upload$"):
        PinnedUpload().upload(torch.device("cpu"))


def test_upload_copies_the_buffer_contents_on_the_cpu_path() -> None:
    up = PinnedUpload()
    up.buffer((2, 3)).copy_(torch.arange(6, dtype=torch.uint8).reshape(2, 3))
    out = up.upload(torch.device("cpu"))
    up.buffer((2, 3)).zero_()  # reusing the buffer leaves the published tensor alone
    assert out.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_shader_host_readback_to_a_device_goes_through_one_pinned_buffer(log: list[str]) -> None:
    with Runtime() as rt:
        shader = ShaderActor("void main() { fragColor = vec4(1.0, 0.0, 0.0, 1.0); }", 8, 4,
                             clock=VirtualClock(30, max_ticks=3))
        shader.device = torch.device("meta")  # a device output with the host readback path
        sink = Sink()
        shader >> sink
        assert rt.run(30), "graph did not finish in 30 s"
    assert shader.error is None and sink.error is None
    assert shader.readback_path == "host"
    assert [(f.data.device.type, tuple(f.data.shape)) for f in sink.got] == [("meta", (4, 8, 4))] * 3
    assert log == ["pin (4, 8, 4)", "copy non_blocking=True", "record e0",
                   "wait e0", "copy non_blocking=True", "record e1",
                   "wait e1", "copy non_blocking=True", "record e2"]
