"""Ports: buffer depth, routers installed per link, the one delivery path."""

from __future__ import annotations

from typing import Any, Sequence

import pytest
import torch

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame
from streamlib.core.ports import Capture, tick_from_item
from streamlib.errors import ConfigError, ConfigTypeError
from streamlib.testing import ActorHarness


def frame(n: int) -> VideoFrame:
    return VideoFrame(torch.full((2, 2, 3), n, dtype=torch.uint8), timestamp_ns=10 * n,
                      frame_number=n, clock_id="test")


def test_output_slots_size_the_inputs_linked_from_it() -> None:
    out = StreamOutput("video", slots=5)
    plain, own = StreamInput("video"), StreamInput("video", slots=2)
    out.connect(plain)
    out.connect(own)
    assert (plain.slots, own.slots) == (5, 2)  # an input's own slots= wins
    for n in range(7):
        out.write(frame(n))
    assert [f.frame_number for f in plain.read_all_new()] == [2, 3, 4, 5, 6]
    assert [f.frame_number for f in own.read_all_new()] == [5, 6]
    assert StreamInput("video").slots == 3
    with pytest.raises(ConfigError) as caught:
        StreamOutput("video", slots=0)
    assert str(caught.value) == "output 'video': slots must be an int >= 1, got 0"


class Swap:
    """A router that delivers a replacement item to the first link only."""

    def __init__(self, item: Any) -> None:
        self.item = item

    def route(self, output: StreamOutput, item: Any,
              links: tuple[StreamInput, ...]) -> Sequence[tuple[StreamInput, Any]] | None:
        return [(links[0], self.item)]


def test_a_router_decides_what_each_link_gets() -> None:
    out, a, b = StreamOutput("video"), StreamInput("video"), StreamInput("video")
    out.connect(a)
    out.connect(b)
    replacement = frame(9)
    assert out.set_router(Swap(replacement)) is None
    out.write(frame(1))
    assert a.read_latest() is replacement and b.read_latest() is None
    assert out.written == 1


def test_capture_keeps_every_item_and_routes_like_its_inner_router() -> None:
    out, a = StreamOutput("video"), StreamInput("video")
    out.connect(a)
    replacement = frame(9)
    capture = Capture(Swap(replacement))
    out.set_router(capture)
    sent = [frame(1), frame(2)]
    for f in sent:
        out.write(f)
    assert capture.items == sent and a.read_latest() is replacement
    lone = StreamOutput("video")  # no links: the capture still sees the writes
    lone_capture = Capture()
    lone.set_router(lone_capture)
    lone.write(sent[0])
    assert lone_capture.items == [sent[0]]


def test_delivery_skips_a_link_removed_meanwhile() -> None:
    out, a, b = StreamOutput("video"), StreamInput("video"), StreamInput("video")
    out.connect(a)
    out.connect(b)
    links = out.links
    out.disconnect(b)
    out.deliver(((inp, frame(3)) for inp in links), TimedTick(30, 3, "test"))
    assert a.read_latest().frame_number == 3 and b.read_latest() is None


class Source(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(frame(tick.frame_number))


class Sink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["video"] = StreamInput("video")
        self.ticks: list[TimedTick] = []

    def process(self, tick: TimedTick) -> None:
        self.ticks.append(tick)


def test_a_write_outside_process_passes_the_items_own_stamp() -> None:
    assert tick_from_item(frame(4)) == TimedTick(40, 4, "test")
    assert tick_from_item(object()) == TimedTick(0, 0, "monotonic")
    with Runtime() as rt:
        src, sink = Source(), Sink()
        src >> sink
        assert src.outputs["video"].tick_for(frame(4)) == TimedTick(40, 4, "test")
        rt.start()
        src.outputs["video"].write(frame(4))
        assert rt.wait_idle(10)
    assert sink.ticks == [TimedTick(40, 4, "test")]


def test_the_harness_captures_without_touching_the_write_path() -> None:
    with ActorHarness(Source) as h:
        out = h.actor.outputs["video"]
        got = h.tick(TimedTick(0, 2, "test"))
        assert [f.frame_number for f in got["video"]] == [2]
        assert out.router is None  # restored after the call
        assert not hasattr(out, "_captured")


def test_connecting_to_something_else_names_the_output() -> None:
    with pytest.raises(ConfigTypeError) as caught:
        StreamOutput("video").connect(42)  # type: ignore[arg-type]
    assert str(caught.value) == ("cannot connect output '<unowned>.video' to int; "
                                 "expected a StreamInput or an Actor")
