"""One-for-one supervision: restart policies, rate limit, backoff, links and counters kept."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick
from streamlib.core.actor import ActorStatus
from streamlib.clocks import SoftwareClock, VirtualClock
from streamlib.errors import ConfigError
from streamlib.core.policy import RestartPolicy


class Source(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["out"] = StreamOutput("out")

    def process(self, tick: TimedTick) -> None:
        self.outputs["out"].write(tick.frame_number)


class Flaky(Actor):
    """Passes numbers on; raises on the frame numbers in ``fail_on`` (every one: None)."""

    built: list[Flaky] = []

    def __init__(self, fail_on: set[int] | None, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["in"] = StreamInput("in")
        self.outputs["out"] = StreamOutput("out")
        self.fail_on = fail_on
        Flaky.built.append(self)

    def process(self, tick: TimedTick) -> None:
        n = self.inputs["in"].read_new()
        if n is None:
            return
        if self.fail_on is None or n in self.fail_on:
            raise RuntimeError(f"boom on {n}")
        self.outputs["out"].write(n)


class Sink(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["in"] = StreamInput("in")
        self.got: list[int] = []

    def process(self, tick: TimedTick) -> None:
        n = self.inputs["in"].read_new()
        if n is not None:
            self.got.append(n)


def test_failed_actor_is_rebuilt_with_links_counters_and_id_kept() -> None:
    with Runtime() as rt:
        src = Source(clock=VirtualClock(30, max_ticks=10), actor_id="src")
        first = Flaky({3}, actor_id="flaky", restart="on-failure")
        sink = Sink(actor_id="sink")
        src >> first >> sink
        result = rt.run(30)
        assert result.finished is True and result.ok, result
        assert result.restarts == {"flaky": 1} and result.failed == ()
        assert sink.got == [0, 1, 2, 4, 5, 6, 7, 8, 9]  # lock-step waited for the rebuild
        flaky = rt.get("flaky")
        assert flaky is not first and first.replaced_by is flaky
        assert first.status is ActorStatus.FAILED and flaky.status is ActorStatus.RUNNING
        assert flaky.fail_on == {3} and flaky.restarts == 1
        assert flaky.counters.processed == 9 and flaky.counters.failed == 1
        assert flaky.inputs["in"].upstream is src.outputs["out"]
        assert [i.actor for i in flaky.outputs["out"].links] == [sink]
        described = {a["id"]: a for a in rt.graph()["actors"]}["flaky"]
        assert described["restarts"] == 1
        assert described["restart"] == {"mode": "on-failure", "max_restarts": 3, "window": 60.0,
                                         "backoff": 0.1, "backoff_factor": 2.0,
                                         "backoff_max": 5.0}
        assert rt.metrics(telemetry=False).actor("flaky").restarts == 1


def test_restart_limit_leaves_the_actor_failed_and_backoff_grows(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with Runtime() as rt:
        delays: list[float] = []
        call_later = rt.loop.call_later

        def recording(delay: float, *args: Any, **kw: Any) -> Any:
            if delay < 1:  # not the teardown timeouts (5 s)
                delays.append(delay)
            return call_later(delay, *args, **kw)

        monkeypatch.setattr(rt.loop, "call_later", recording)
        policy = RestartPolicy("on-failure", max_restarts=3, window=60, backoff=0.001,
                               backoff_factor=3)
        src = Source(clock=VirtualClock(30, max_ticks=10))
        src >> Flaky(None, actor_id="bad", restart=policy) >> Sink()
        result = rt.run(30)
        assert result.finished is True
        assert result.failed == ("bad",) and result.restarts == {"bad": 3} and not result.ok
        assert delays == pytest.approx([0.001, 0.003, 0.009])
        assert result.errors["bad"].rstrip().endswith(
            "restart limit reached: 3 restart(s) within 60 s (max_restarts=3); left failed")
        assert rt.get("bad").counters.failed == 4


def test_never_is_the_default_and_setup_failures_restart_only_with_always() -> None:
    class BadSetup(Source):
        setups = 0

        def setup(self) -> None:
            BadSetup.setups += 1
            if BadSetup.setups == 1:
                raise RuntimeError("first setup fails")

    with Runtime() as rt:
        plain = Flaky(None, actor_id="plain")
        on_failure = BadSetup(actor_id="on-failure", restart="on-failure")
        src = Source(clock=VirtualClock(30, max_ticks=3))
        src >> plain
        rt.run(30)
        assert plain.status is ActorStatus.FAILED and plain.restarts == 0
        assert on_failure.status is ActorStatus.FAILED and on_failure.restarts == 0
    BadSetup.setups = 0
    with Runtime() as rt:
        BadSetup(actor_id="always", clock=VirtualClock(30, max_ticks=3),
                 restart=RestartPolicy("always", backoff=0))
        result = rt.run(30)
        assert result.finished is True and result.ok, result
        assert rt.get("always").status is ActorStatus.RUNNING and result.restarts == {"always": 1}


def test_stalled_actor_is_rebuilt_and_the_new_one_runs() -> None:
    release, entered = threading.Event(), threading.Event()

    class Sticky(Actor):
        instances: list[Sticky] = []

        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.inputs["in"] = StreamInput("in")
            self.n = 0
            self.ran = threading.Event()
            Sticky.instances.append(self)

        def process(self, tick: TimedTick) -> None:
            if self is Sticky.instances[0]:
                entered.set()
                release.wait(30)
            self.n += 1
            self.ran.set()

    try:
        with Runtime() as rt:
            src = Source(clock=SoftwareClock(100))
            src >> Sticky(actor_id="sticky", stall_timeout=0.1,
                          restart=RestartPolicy("on-failure", backoff=0))
            rt.start()
            assert entered.wait(10)
            deadline = time.monotonic() + 10
            while len(Sticky.instances) < 2:
                assert time.monotonic() < deadline, "never rebuilt"
                threading.Event().wait(0.01)
            new = Sticky.instances[1]
            assert new.ran.wait(10)
            assert rt.get("sticky") is new and new.restarts == 1 and new._sl.stalls == 1
            assert Sticky.instances[0].status is ActorStatus.STALLED
            assert new.status is ActorStatus.RUNNING
            assert rt.result(False).restarts == {"sticky": 1}
    finally:
        release.set()


def test_supervisor_rate_window_uses_its_time_source() -> None:
    with Runtime() as rt:
        now = [100.0]
        rt.supervisor.now = lambda: now[0]
        policy = RestartPolicy("on-failure", max_restarts=2, window=10)
        assert rt.supervisor.admit("a", policy) == 1
        assert rt.supervisor.admit("a", policy) == 2
        assert rt.supervisor.admit("a", policy) is None  # third within 10 s
        now[0] += 10.5
        assert rt.supervisor.admit("a", policy) == 1  # the window moved on
        assert rt.supervisor.admit("b", policy) == 1  # per actor


def test_backoff_delays() -> None:
    policy = RestartPolicy("always", backoff=0.1, backoff_factor=2, backoff_max=0.5)
    assert [policy.delay(n) for n in range(1, 6)] == pytest.approx([0.1, 0.2, 0.4, 0.5, 0.5])


@pytest.mark.parametrize(("spec", "message"), [
    ("sometimes", "actor 'x': restart must be one of never, on-failure, always, got 'sometimes'"),
    (3, "actor 'x': restart must be one of never, on-failure, always, a mapping or a "
        "RestartPolicy, got int"),
    ({"mode": "always", "tries": 3}, "actor 'x': restart: unknown field(s) ['tries'] "
     "(accepted: mode, max_restarts, window, backoff, backoff_factor, backoff_max)"),
    ({"max_restarts": 3}, "actor 'x': restart: missing field 'mode' "
     "(one of never, on-failure, always)"),
    ({"mode": "always", "max_restarts": -1},
     "actor 'x': restart: 'max_restarts' must be an integer >= 0, got -1"),
    ({"mode": "always", "backoff_factor": 0.5},
     "actor 'x': restart: 'backoff_factor' must be a number >= 1, got 0.5"),
    ({"mode": "sometimes"},
     "actor 'x': restart: 'mode' must be one of never, on-failure, always, got 'sometimes'"),
])
def test_restart_field_is_validated_with_exact_messages(spec: Any, message: str) -> None:
    with Runtime():
        with pytest.raises(ConfigError) as info:
            Source(actor_id="x", restart=spec)
    assert str(info.value) == message


def test_restart_from_a_mapping() -> None:
    with Runtime():
        actor = Source(restart={"mode": "on-failure", "max_restarts": 5, "backoff": 0})
    assert actor._sl.restart == RestartPolicy("on-failure", max_restarts=5, backoff=0)


PIPELINE = {
    "name": "t",
    "clocks": {"video": {"fps": 30}},
    "actors": {
        "bars": {"type": "TestPatternActor", "clock": "video", "width": 64, "height": 36},
        "invert": {"type": "TransformActor", "fn": "invert", "stall_timeout": 2,
                   "restart": {"mode": "on-failure", "max_restarts": 5}},
    },
    "connections": ["bars -> invert"],
}


def test_pipeline_files_take_restart_and_stall_timeout() -> None:
    from streamlib.control.pipeline import parse_pipeline

    spec = parse_pipeline(PIPELINE, source="p.yaml")
    assert spec.actors["invert"].restart == RestartPolicy("on-failure", max_restarts=5)
    assert spec.actors["invert"].stall_timeout == 2.0
    with Runtime() as rt:
        built = spec.build(rt, mode="offline", seconds=0.1)
        assert built["invert"]._sl.restart == RestartPolicy("on-failure", max_restarts=5)
        assert built["invert"].describe()["stall_timeout"] == 2.0
        assert built["bars"]._sl.restart is None


@pytest.mark.parametrize(("field", "value", "message"), [
    ("restart", "sometimes",
     "actor 'invert': field 'restart' must be one of never, on-failure, always, got 'sometimes'"),
    ("restart", {"mode": "always", "window": -1},
     "actor 'invert': field 'restart': 'window' must be a number >= 0, got -1"),
    ("stall_timeout", "soon", "actor 'invert': field 'stall_timeout' must be a number of "
     "seconds >= 0 (0: not watched), got 'soon'"),
])
def test_pipeline_restart_errors_name_file_actor_and_field(field: str, value: Any,
                                                           message: str) -> None:
    import copy

    from streamlib.control.pipeline import PipelineError, parse_pipeline

    data = copy.deepcopy(PIPELINE)
    data["actors"]["invert"][field] = value  # type: ignore[index]
    with pytest.raises(PipelineError) as info:
        parse_pipeline(data, source="p.yaml")
    assert str(info.value) == f"p.yaml: {message}"


def test_control_plane_takes_restart_and_validates_it() -> None:
    import json
    import urllib.error
    import urllib.request

    from streamlib.control.server import ControlServer

    token = "supervisor-test-token-0123456789"

    def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
        request = urllib.request.Request(
            url + "/actors", data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as reply:
                return reply.status, json.load(reply)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.load(error)

    with Runtime() as rt, ControlServer(rt, token=token) as server:
        status, body = post(server.url, {
            "type": "TestPatternActor", "id": "bars", "params": {"width": 64, "height": 36},
            "restart": {"mode": "always", "backoff": 0}, "stall_timeout": 1.5})
        assert status == 201, body
        assert body["restart"]["mode"] == "always" and body["stall_timeout"] == 1.5
        assert rt.get("bars")._sl.restart == RestartPolicy("always", backoff=0)
        status, body = post(server.url, {"type": "TestPatternActor", "id": "x",
                                         "restart": "sometimes"})
        assert status == 400
        assert body["error"] == ("actor 'x': field 'restart' must be one of never, "
                                 "on-failure, always, got 'sometimes'")


def test_a_rebuild_that_fails_leaves_the_actor_failed_and_reported() -> None:
    class OnlyOnce(Source):
        made = 0

        def __init__(self, **kw: Any) -> None:
            OnlyOnce.made += 1
            if OnlyOnce.made > 1:
                raise ValueError("cannot be built twice")
            super().__init__(**kw)

        def process(self, tick: TimedTick) -> None:
            raise RuntimeError("fails at once")

    with Runtime() as rt:
        OnlyOnce(actor_id="once", clock=VirtualClock(30, max_ticks=5),
                 restart=RestartPolicy("on-failure", backoff=0))
        result = rt.run(30)
        assert result.finished is True
        assert result.failed == ("once",) and result.restarts == {}
        assert "restart failed:" in result.errors["once"]
        assert result.errors["once"].rstrip().endswith("ValueError: cannot be built twice")
        assert rt._drivers == {}  # the driver kept for the rebuild was stopped and dropped
