"""Offline graphs that can never finish or progress are detected and named, not hung."""

from __future__ import annotations

import threading
from typing import Any

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick
from streamlib.actors.compositor import CompositorActor
from streamlib.actors.patterns import TestPatternActor
from streamlib.clocks import VirtualClock
from streamlib.runtime.progress import reaches
from streamlib.runtime.runresult import RunResult


class Sink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["in"] = StreamInput("in")
        self.frames: list[Any] = []

    def process(self, tick: TimedTick) -> None:
        item = self.inputs["in"].read_new()
        if item is not None:
            self.frames.append(item)


class Idle(Actor):
    """A source with no clock: nothing ticks it."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["out"] = StreamOutput("out")

    def process(self, tick: TimedTick) -> None:
        self.outputs["out"].write(tick.frame_number)


def run_bounded(rt: Runtime, limit: float = 60.0) -> RunResult:
    """``rt.run()`` without a time limit, on a thread; fails loudly if it hangs."""
    results: list[RunResult] = []
    thread = threading.Thread(target=lambda: results.append(rt.run()), daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"run() still blocked after {limit} s"
    return results[0]


def test_compositor_fed_back_from_its_own_output_renders_every_frame() -> None:
    with Runtime() as rt:
        src = TestPatternActor(width=32, height=24, clock=VirtualClock(30, max_ticks=5))
        comp = CompositorActor(width=32, height=24, actor_id="comp")
        src >> comp.add_layer("main")
        comp >> comp.add_layer("feedback", opacity=0.5)  # a cycle through the compositor
        sink = Sink()
        comp >> sink
        result = rt.run(30)
        assert result.finished is True and result.ok, result
        assert [f.frame_number for f in sink.frames] == [0, 1, 2, 3, 4]  # was: none
        assert reaches(comp, comp) and not reaches(sink, comp)


def test_endless_realtime_source_in_an_offline_graph_is_reported_not_hung() -> None:
    with Runtime() as rt:
        virtual = TestPatternActor(width=32, height=24, actor_id="timed",
                                   clock=VirtualClock(30, max_ticks=3))
        endless = TestPatternActor(width=32, height=24, fps=30, actor_id="endless")  # own clock
        comp = CompositorActor(width=32, height=24)
        virtual >> comp.add_layer("a")
        endless >> comp.add_layer("b")
        result = run_bounded(rt)
        assert result.finished is False and not result.ok
        assert list(result.stuck) == ["endless"]
        assert result.stuck["endless"] == (
            "actor 'endless' runs on realtime clock 'monotonic' (SoftwareClock), which never "
            "ends, after every lock-step clock of the graph ended: give it the graph's "
            "virtual clock, or run with a time limit")


def test_clockless_source_in_a_lockstep_graph_is_named() -> None:
    with Runtime() as rt:
        idle = Idle(actor_id="idle")
        sink = Sink(clock=VirtualClock(30, max_ticks=3))
        idle >> sink
        result = run_bounded(rt)
        assert result.finished is True and not result.ok
        assert result.stuck == {"idle": "actor 'idle' has no clock and no inputs, so nothing "
                                        "ticks it in this lock-step graph, and it wrote "
                                        "nothing: give it the graph's clock"}
        try:
            result.raise_on_failure()
        except Exception as exc:  # noqa: BLE001
            assert str(exc) == ("run ended with actors stuck: idle (first error: "
                                + result.stuck["idle"] + ")")
        else:
            raise AssertionError("raise_on_failure() did not raise")
