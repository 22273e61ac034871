"""Actors, ports, connections, tick propagation, failure isolation, introspection."""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
import pytest
import torch

import streamlib
from streamlib import (
    Actor, AudioFrame, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame, VirtualClock,
)
from streamlib.core.actor import ActorStatus
from streamlib.errors import ActorStateError, PortError, PortKindError
from streamlib.runtime.runtime import default_runtime



def frame(n: int, value: int = 0, ts: int | None = None) -> VideoFrame:
    data = torch.full((4, 6, 3), value, dtype=torch.uint8)
    return VideoFrame(data, timestamp_ns=n * 1000 if ts is None else ts, frame_number=n)


class Source(Actor):
    """Writes frame n with pixel value n % 256 on each tick."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        self.outputs["video"].write(frame(tick.frame_number, tick.frame_number % 256,
                                          tick.timestamp_ns))


class Passive(Actor):
    """A clockless source the test writes to from outside process()."""

    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        pass


class Double(Actor):
    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inputs["video"] = StreamInput("video")
        self.outputs["video"] = StreamOutput("video")

    async def process(self, tick: TimedTick) -> None:
        f = self.inputs["video"].read_new()
        if f is not None:
            self.outputs["video"].write(f.replace(data=f.data * 2))


class Sink(Actor):
    def __init__(self, want: int = 0, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inputs["video"] = StreamInput("video")
        self.got: list[VideoFrame] = []
        self.ticks: list[TimedTick] = []
        self.want = want
        self.enough = threading.Event()
        self.teardowns = 0

    def process(self, tick: TimedTick) -> None:
        self.ticks.append(tick)
        f = self.inputs["video"].read_new()
        if f is not None:
            self.got.append(f)
        if self.want and len(self.got) >= self.want:
            self.enough.set()

    def teardown(self) -> None:
        self.teardowns += 1


class AudioSink(Actor):
    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inputs["audio"] = StreamInput("audio")

    def process(self, tick: TimedTick) -> None:
        pass


def streamlib_threads() -> set[str]:
    return {t.name for t in threading.enumerate() if t.name.startswith("streamlib")}


# -- connections -------------------------------------------------------------

def test_rshift_chains_and_returns_downstream() -> None:
    with Runtime() as rt:
        a, b, c = Source(), Double(), Sink()
        assert (a >> b >> c) is c
        assert a.outputs["video"].links == (b.inputs["video"],)
        assert c.inputs["video"].upstream is b.outputs["video"]
        assert {(l["from"], l["to"]) for l in rt.graph()["links"]} == {
            (f"{a.actor_id}.video", f"{b.actor_id}.video"),
            (f"{b.actor_id}.video", f"{c.actor_id}.video"),
        }


def test_named_ports_fan_out_and_disconnect() -> None:
    with Runtime():
        a, s1, s2 = Source(), Sink(), Sink()
        assert (a.outputs["video"] >> s1.inputs["video"]) is s1
        a >> s2
        assert len(a.outputs["video"].links) == 2
        a.outputs["video"].write(frame(7, 7))
        assert s1.inputs["video"].read_latest().frame_number == 7  # type: ignore[union-attr]
        assert s2.inputs["video"].read_latest().frame_number == 7  # type: ignore[union-attr]
        assert a.disconnect(s1) == 1
        assert not s1.inputs["video"].is_connected
        s2.inputs["video"].disconnect()
        assert a.outputs["video"].links == ()


def test_kind_mismatch_names_both_ports() -> None:
    with Runtime():
        a, snd = Source(actor_id="cam"), AudioSink(actor_id="speaker")
        with pytest.raises(PortKindError, match=r"cam\.video.*video.*speaker") as info:
            a.outputs["video"] >> snd.inputs["audio"]
        assert isinstance(info.value, TypeError)
        with pytest.raises(TypeError, match="speaker.*no input accepting video"):
            a >> snd


def test_double_connect_and_unknown_port_are_clear_errors() -> None:
    with Runtime():
        a, b, s = Source(actor_id="a1"), Source(actor_id="b1"), Sink(actor_id="s1")
        a >> s
        with pytest.raises(PortError, match=r"s1\.video.*already connected to 'a1\.video'"):
            b.outputs["video"] >> s.inputs["video"]
        with pytest.raises(KeyError, match="has no input 'audio'.*inputs: video"):
            s.inputs["audio"]


def test_write_of_wrong_kind_is_rejected_and_nothing_written() -> None:
    with Runtime():
        a, s = Source(actor_id="src"), Sink()
        a >> s
        audio = AudioFrame(np.zeros((960, 2), np.float32), sample_rate=48000, timestamp_ns=0)
        with pytest.raises(PortKindError, match=r"output 'src\.video' \(video\) got AudioFrame"):
            a.outputs["video"].write(audio)
        assert s.inputs["video"].stats().written == 0


def test_actor_must_call_super_init() -> None:
    class Broken(Actor):
        def __init__(self) -> None:
            pass

        def process(self, tick: TimedTick) -> None:
            pass

    with pytest.raises(TypeError, match="must call super"):
        Broken()


def test_duplicate_actor_id_rejected() -> None:
    with Runtime():
        Sink(actor_id="same")
        with pytest.raises(ValueError, match="already has an actor 'same'"):
            Sink(actor_id="same")


# -- ticking -----------------------------------------------------------------

def test_virtual_clock_pipeline_is_lossless_and_exact() -> None:
    with Runtime() as rt:
        src = Source(clock=VirtualClock(25, max_ticks=50))
        sink = Sink()
        src >> Double() >> sink
        assert rt.run(timeout := 30).finished is True, f"did not finish in {timeout}s"
        assert [f.frame_number for f in sink.got] == list(range(50))
        assert [f.timestamp_ns for f in sink.got] == [n * 40_000_000 for n in range(50)]
        assert [int(f.data[0, 0, 0]) for f in sink.got] == [(n % 256) * 2 % 256 for n in range(50)]
        # the sink inherits the source's ticks unchanged (clock inheritance)
        assert [t.clock_id for t in sink.ticks] == ["virtual"] * 50
        links = {l["to"]: l for l in rt.graph()["links"]}
        assert links[f"{sink.actor_id}.video"]["written"] == 50
        assert links[f"{sink.actor_id}.video"]["dropped"] == 0


def test_actor_with_own_clock_is_not_ticked_by_upstream() -> None:
    with Runtime() as rt:
        src = Source(clock=VirtualClock(30, max_ticks=6))
        sink = Sink(clock=VirtualClock(30, max_ticks=2, clock_id="sink-clock"))
        src >> sink
        assert rt.run(30)
        assert len(sink.ticks) == 2
        assert {t.clock_id for t in sink.ticks} == {"sink-clock"}


def test_busy_actor_coalesces_ticks_latest_wins() -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow(Sink):
        def process(self, tick: TimedTick) -> None:
            super().process(tick)  # read first, then stall: later writes must coalesce
            entered.set()
            assert release.wait(10), "test never released the slow actor"

    with Runtime() as rt:
        src, slow = Passive(), Slow()
        src >> slow
        rt.start()
        assert rt.wait_idle(10)
        src.outputs["video"].write(frame(1))
        assert entered.wait(10)
        for n in range(2, 6):
            src.outputs["video"].write(frame(n))
        release.set()
        assert rt.wait_idle(10)
        assert slow.counters.processed == 2
        assert slow.counters.overruns == 3
        assert [f.frame_number for f in slow.got] == [1, 5]


def test_failure_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    class Flaky(Sink):
        def process(self, tick: TimedTick) -> None:
            if tick.frame_number == 3:
                raise ValueError("bad pixel at frame 3")
            super().process(tick)

    caplog.set_level(logging.ERROR, logger="streamlib")
    with Runtime() as rt:
        src = Source(clock=VirtualClock(30, max_ticks=10))
        flaky, healthy = Flaky(actor_id="flaky"), Sink(actor_id="healthy")
        src >> flaky
        src >> healthy
        assert rt.run(30)
        assert flaky.status is ActorStatus.FAILED
        assert flaky.error is not None and "ValueError: bad pixel at frame 3" in flaky.error
        assert [f.frame_number for f in flaky.got] == [0, 1, 2]
        assert [f.frame_number for f in healthy.got] == list(range(10))
        assert healthy.status is ActorStatus.RUNNING
        assert src.status is ActorStatus.RUNNING
        desc = {a["id"]: a for a in rt.graph()["actors"]}
        assert desc["flaky"]["status"] == "failed"
        assert desc["flaky"]["counters"]["failed"] == 1
    assert any("flaky" in r.getMessage() and "bad pixel" in r.getMessage() for r in caplog.records)


def test_failure_in_setup_is_isolated() -> None:
    class BadSetup(Sink):
        def setup(self) -> None:
            raise OSError("camera /dev/video9 not found")

    with Runtime() as rt:
        src = Source(clock=VirtualClock(30, max_ticks=5))
        bad, good = BadSetup(actor_id="bad"), Sink()
        src >> bad
        src >> good
        assert rt.run(30)
        assert bad.failed and "camera /dev/video9 not found" in (bad.error or "")
        assert len(good.got) == 5


def test_realtime_software_clock_pipeline() -> None:
    with Runtime() as rt:
        src = streamlib.TestPatternActor(64, 48, fps=200, pattern="moving_box")
        sink = Sink(want=5)
        src >> sink
        rt.start()
        assert sink.enough.wait(10), "5 frames did not arrive within 10 s"
    numbers = [f.frame_number for f in sink.got]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    assert all(f.width == 64 and f.height == 48 for f in sink.got)


def test_graph_is_json_serialisable_and_complete() -> None:
    with Runtime(name="introspect") as rt:
        src = Source(actor_id="src", clock=VirtualClock(10, max_ticks=3))
        sink = Sink(actor_id="sink")
        src >> sink
        rt.run(30)
        g = json.loads(json.dumps(rt.graph()))
    assert g["runtime"] == "introspect"
    actors = {a["id"]: a for a in g["actors"]}
    assert actors["src"]["clock"] == {"type": "VirtualClock", "clock_id": "virtual", "fps": 10.0}
    assert actors["src"]["outputs"] == [
        {"name": "video", "kind": "video", "written": 3, "links": ["sink.video"]}]
    assert actors["sink"]["ticked_by"] == "upstream"
    assert actors["sink"]["inputs"][0]["upstream"] == "src.video"
    assert actors["sink"]["dispatcher"] == "thread"
    assert actors["sink"]["counters"]["processed"] == 3
    assert actors["src"]["uri"] == "actor://localhost/Source/src"
    assert g["links"] == [{"from": "src.video", "to": "sink.video", "kind": "video",
                           "written": 3, "read": 3, "dropped": 0, "slots": 3}]


# -- lifecycle ---------------------------------------------------------------

def test_close_is_idempotent_and_leaves_no_threads() -> None:
    before = streamlib_threads()
    rt = Runtime()
    with rt:
        src = streamlib.TestPatternActor(32, 32, fps=100)
        sink = Sink(want=2)
        src >> sink
        rt.start()
        assert sink.enough.wait(10)
        sink.close()
        sink.close()
        assert sink.status is ActorStatus.STOPPED
        assert sink.teardowns == 1
        assert not src.outputs["video"].links
    rt.close()
    assert rt.closed
    assert streamlib_threads() <= before


def test_default_runtime_starts_actors_without_start_call() -> None:
    src = Source(clock=VirtualClock(30, max_ticks=4))
    sink = Sink(want=4)
    src >> sink
    rt = default_runtime()
    try:
        assert src.runtime is rt and rt.autostart
        assert rt.wait(30)
        # frames written before the link existed are lost by design; the rest arrive
        assert sink.got and sink.got[-1].frame_number == 3
    finally:
        rt.close()
    assert default_runtime() is not rt
    default_runtime().close()


def test_actor_created_in_closed_runtime_errors() -> None:
    rt = Runtime()
    rt.close()
    with pytest.raises(ActorStateError, match="closed"):
        Sink(runtime=rt)


# -- dispatchers inside a graph ----------------------------------------------

def test_process_dispatched_actor_in_a_graph(tmp_path: object) -> None:
    import os
    from pathlib import Path

    from tests.helpers.dispatch_actors import Inverter

    out = Path(str(tmp_path)) / "teardown.txt"
    with Runtime() as rt:
        src = Source(clock=VirtualClock(30, max_ticks=6))
        inv = Inverter(str(out), actor_id="inv", dispatcher="process")
        sink = Sink()
        src >> inv >> sink
        assert rt.run(120)
        assert inv.status is ActorStatus.RUNNING, inv.error
        assert [f.frame_number for f in sink.got] == list(range(6))
        assert [int(f.data[0, 0, 0]) for f in sink.got] == [255 - n for n in range(6)]
        assert rt.graph()["actors"][1]["dispatcher"] == "process"
    count, pid = out.read_text().split()
    assert int(count) == 6 and int(pid) != os.getpid()  # teardown ran in the worker


def test_dedicated_dispatcher_keeps_one_thread() -> None:
    seen: set[str] = set()

    class ThreadBound(Sink):
        def setup(self) -> None:
            seen.add(threading.current_thread().name)

        def process(self, tick: TimedTick) -> None:
            seen.add(threading.current_thread().name)
            super().process(tick)

    with Runtime() as rt:
        src = Source(clock=VirtualClock(30, max_ticks=20))
        sink = ThreadBound(actor_id="gl", dispatcher="dedicated")
        src >> sink
        assert rt.run(30)
        assert len(sink.got) == 20
        assert rt.graph()["actors"][1]["dispatcher"] == "dedicated"
    assert len(seen) == 1 and next(iter(seen)).startswith("streamlib-gl")


def test_unknown_dispatcher_name_is_rejected() -> None:
    with Runtime():
        with pytest.raises(ValueError, match="dispatcher must be one of.*got 'gpux'"):
            Sink(dispatcher="gpux")  # type: ignore[arg-type]


def test_actors_sharing_a_clock_all_see_tick_zero() -> None:
    class SlowSetup(Source):
        def setup(self) -> None:
            gate.wait(10)  # the other source is set up long before this one

    gate = threading.Event()
    clock = VirtualClock(30, max_ticks=5)
    with Runtime() as rt:
        fast, slow = Source(clock=clock), SlowSetup(clock=clock)
        s1, s2 = Sink(), Sink()
        fast >> s1
        slow >> s2
        rt.start()
        gate.set()
        assert rt.wait(30)
        assert [f.frame_number for f in s1.got] == [0, 1, 2, 3, 4]
        assert [f.frame_number for f in s2.got] == [0, 1, 2, 3, 4]


def test_hold_and_release_count_as_work_in_flight() -> None:
    with Runtime() as rt:
        rt.start()
        assert rt.wait_idle(5)
        rt.hold()
        assert rt.wait_idle(0.05) is False  # held work keeps the runtime busy
        rt.release()
        assert rt.wait_idle(5)


def test_driver_table_returns_to_its_size_after_200_create_remove_cycles() -> None:
    from streamlib.clocks import SoftwareClock

    class Ticked(Source):
        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)
            self.ticked = threading.Event()

        def process(self, tick: TimedTick) -> None:
            self.ticked.set()

    with Runtime() as rt:
        keep = Ticked(clock=SoftwareClock(50), actor_id="keep")
        rt.start()
        assert keep.ticked.wait(10)
        base = len(rt._drivers)
        assert base == 1
        for i in range(200):
            actor = Ticked(clock=SoftwareClock(1000), actor_id=f"tmp-{i}")
            assert actor.ticked.wait(10)  # its driver exists and ticks
            actor.close()
        assert len(rt._drivers) == base  # was: 201 (every driver ever made)
        assert rt.get("keep") is keep
