"""The seed plan's own snippets, run as the plan writes them (issue 11).

One test per snippet; each checks real values, not just that the call runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
import torch

from streamlib import (
    Actor, CompositorActor, PortAllocator, Runtime, SoftwareClock, StreamInput, StreamOutput, TimedTick,
    VideoFrame, VirtualClock, connect, get_actor, parse_actor_uri, register_actor,
)
from streamlib.clocks import Clock, GenlockClock, ManualPulseSource, PTPClock, deadline_ns
from streamlib.core.frames import PixelFormat
from streamlib.core.registry import default_registry
from streamlib.gpu.buffer import GPURingBuffer
from streamlib.testing import ActorHarness


def test_parse_actor_uri_reads_like_the_plans_dict() -> None:
    uri = parse_actor_uri("actor://edge-1/CompositorActor/main")
    assert uri["host"] == "edge-1"
    assert uri["actor_class"] == "CompositorActor"
    assert uri["instance_id"] == "main"
    assert dict(uri) == {"host": "edge-1", "actor_class": "CompositorActor", "instance_id": "main"}


def test_port_allocator_start_port() -> None:
    ports = PortAllocator(start_port=5000)
    assert [ports.allocate("cam-a"), ports.allocate("cam-b"), ports.allocate("cam-a")] == [5000, 5002, 5000]


class Source(Actor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outputs["video"] = StreamOutput("video", slots=3)

    def process(self, tick: TimedTick) -> None:
        pass


class Sink(Actor):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.inputs["video"] = StreamInput("video")

    def process(self, tick: TimedTick) -> None:
        pass


def test_stream_output_slots_and_module_level_connect() -> None:
    with Runtime():
        src, sink = Source(actor_id="src"), Sink(actor_id="sink")
        inp = connect(src, sink, output_name="video", input_name="video")
        assert inp is sink.inputs["video"] and inp.upstream is src.outputs["video"]
        assert src.outputs["video"].slots == 3 and inp.slots == 3
        for n in range(5):  # three slots: the reader finds the last three
            src.outputs["video"].write(VideoFrame(torch.full((2, 2, 3), n, dtype=torch.uint8), n, n))
        assert [f.frame_number for f in inp.read_all_new()] == [2, 3, 4]


def test_register_actor_and_get_actor() -> None:
    registered, created = "actor://edge-1/Sink/seed-registered", "actor://edge-1/Sink/seed-created"
    try:
        with Runtime():
            sink = Sink(actor_id="seed-registered")
            uri = register_actor(registered, sink)
            assert str(uri) == registered and get_actor(registered) is sink
            made: list[str] = []

            def factory(u: Any) -> Sink:
                made.append(u["instance_id"])
                return Sink(actor_id=u["instance_id"])

            first = get_actor(created, factory=factory)
            assert get_actor(created, factory=factory) is first  # created once
            assert made == ["seed-created"] and first.actor_id == "seed-created"
    finally:
        default_registry().unregister(registered)
        default_registry().unregister(created)


def _genlock() -> Clock:
    source = ManualPulseSource()
    for stamp in (0, 40_000_000):
        source.pulse(stamp)
    return GenlockClock(source, fps=25)


CLOCKS: dict[str, Callable[[], Clock]] = {
    "VirtualClock": lambda: VirtualClock(25),
    "SoftwareClock": lambda: SoftwareClock(25),
    "PTPClock": lambda: PTPClock(25),
    "GenlockClock": _genlock,
}


@pytest.mark.timeout(10)
@pytest.mark.parametrize("name", list(CLOCKS))
def test_await_clock_next_tick(name: str) -> None:
    async def two_ticks(clock: Clock) -> tuple[TimedTick, TimedTick]:
        tick = await clock.next_tick()
        return tick, await clock.next_tick()

    with CLOCKS[name]() as clock:
        first, second = asyncio.run(two_ticks(clock))
    assert type(clock).__name__ == name
    rate = Fraction(25)
    if name in ("VirtualClock", "GenlockClock"):  # exact: virtual deadlines, fed pulses
        assert (first, second) == (TimedTick(0, 0, clock.clock_id), TimedTick(40_000_000, 1, clock.clock_id))
    elif name == "SoftwareClock":  # deadlines from the first tick, on the monotonic clock
        assert first.frame_number == 0
        assert second.frame_number >= 1
        assert second.timestamp_ns == deadline_ns(rate, second.frame_number, first.timestamp_ns)
    else:  # TAI frame boundaries: frame k is at k/25 s since the epoch
        assert second.frame_number > first.frame_number
        for tick in (first, second):
            assert tick.timestamp_ns == deadline_ns(rate, tick.frame_number) == tick.frame_number * 40_000_000


def test_compositor_base_input_and_add_layer() -> None:
    with ActorHarness(CompositorActor) as h:  # the plan's defaults: 1280x720
        comp = h.actor
        base = comp.inputs["base"]
        logo = comp.add_layer("logo")
        assert (base.name, logo.name, comp.inputs["logo"] is logo) == ("base", "logo", True)
        h.feed("base", VideoFrame(torch.full((720, 1280, 3), 40, dtype=torch.uint8), 0))
        layer = torch.zeros((10, 20, 4), dtype=torch.uint8)
        layer[..., 0], layer[..., 3] = 250, 255  # opaque red
        h.feed("logo", VideoFrame(data=layer, timestamp_ns=0))
        (out,) = h.tick()["video"]
    assert out.shape == (720, 1280, 3)
    assert tuple(out.data[0, 0].tolist()) == (250, 0, 0) and tuple(out.data[9, 19].tolist()) == (250, 0, 0)
    assert tuple(out.data[10, 0].tolist()) == (40, 40, 40) and tuple(out.data[0, 20].tolist()) == (40, 40, 40)


def test_video_frame_from_data_infers_rgba() -> None:
    frame = VideoFrame(data=torch.zeros((720, 1280, 4), dtype=torch.uint8), timestamp_ns=0)
    assert frame.format is PixelFormat.RGBA
    assert (frame.width, frame.height) == (1280, 720)


def test_gpu_ring_buffer_write_advance_read() -> None:
    ring = GPURingBuffer(slots=3, shape=(720, 1280, 4))  # CUDA when there is one
    assert ring.get_read_buffer() is None
    for value in (1, 2, 3):
        buf = ring.get_write_buffer()
        buf.fill_(value)
        ring.advance()
    latest = ring.get_read_buffer()
    assert latest is not None and latest.device == ring.device
    assert torch.equal(latest.cpu(), torch.full((720, 1280, 4), 3, dtype=torch.uint8))
