"""A stalled actor never stalls the graph: watchdog, worker threads, bounded close, exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
from typing import Any

import pytest

from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick
from streamlib.core.actor import ActorStatus
from streamlib.clocks import SoftwareClock, VirtualClock
from streamlib.runtime.dispatchers import ThreadPoolDispatcher
from streamlib.errors import ConfigError
from streamlib.runtime.workerpool import WorkerPool


class Blocker(Actor):
    """Blocks in process() until ``release`` is set; counts the calls that entered."""

    def __init__(self, entered: threading.Semaphore, release: threading.Event,
                 **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["in"] = StreamInput("in")
        self.entered, self.release = entered, release

    def process(self, tick: TimedTick) -> None:
        self.entered.release()
        self.release.wait(60)


class Counter(Actor):
    """Counts its calls; sets ``reached`` at ``target`` calls."""

    def __init__(self, target: int = 20, **kw: Any) -> None:
        super().__init__(**kw)
        self.inputs["in"] = StreamInput("in")
        self.outputs["out"] = StreamOutput("out")
        self.n, self.target = 0, target
        self.reached = threading.Event()

    def process(self, tick: TimedTick) -> None:
        self.n += 1
        self.outputs["out"].write(tick.frame_number)
        if self.n >= self.target:
            self.reached.set()


class Trigger(Actor):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.outputs["out"] = StreamOutput("out")

    def process(self, tick: TimedTick) -> None:
        self.outputs["out"].write(tick.frame_number)


def wait_entered(sem: threading.Semaphore, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for i in range(n):
        assert sem.acquire(timeout=max(0.0, deadline - time.monotonic())), \
            f"only {i} of {n} blocked calls started"


def test_healthy_actor_keeps_processing_while_40_actors_are_blocked() -> None:
    # Watchdog off: no help from stall detection; the threads alone must not starve.
    entered, release = threading.Semaphore(0), threading.Event()
    try:
        with Runtime(stall_timeout=0) as rt:
            trigger = Trigger(clock=SoftwareClock(200))
            for i in range(40):
                trigger >> Blocker(entered, release, actor_id=f"blocked-{i}")
            healthy = Counter(target=10**9, clock=SoftwareClock(200), actor_id="healthy")
            rt.start()
            wait_entered(entered, 40)
            base = healthy.n
            healthy.target = base + 20
            healthy.reached.clear()
            assert healthy.reached.wait(20), f"healthy actor stuck at {healthy.n - base} calls"
            assert all(rt.get(f"blocked-{i}").status is ActorStatus.RUNNING for i in range(40))
            release.set()
    finally:
        release.set()


def test_watchdog_marks_a_stuck_call_stalled_everywhere_and_lockstep_goes_on() -> None:
    entered, release = threading.Semaphore(0), threading.Event()
    try:
        with Runtime() as rt:
            src = Trigger(clock=VirtualClock(30, max_ticks=40))
            stuck = Blocker(entered, release, actor_id="stuck", stall_timeout=0.2)
            ok = Counter(target=40, actor_id="ok")
            src >> stuck
            src >> ok
            result = rt.run(30)
            assert result.finished is True and ok.n == 40  # the offline graph went on
            assert stuck.status is ActorStatus.STALLED
            assert result.stalled == ("stuck",) and result.failed == () and not result.ok
            assert result.errors["stuck"].startswith(
                "actor 'stuck' stalled: one process() call still running after ")
            assert "(stall_timeout 0.2 s); the call was abandoned" in result.errors["stuck"]
            described = {a["id"]: a for a in rt.graph()["actors"]}
            assert described["stuck"]["status"] == "stalled"
            assert described["stuck"]["stalls"] == 1 and described["stuck"]["stall_timeout"] == 0.2
            assert described["ok"]["stall_timeout"] == 5.0  # the runtime's default
            metrics = rt.metrics(telemetry=False)
            assert metrics.actor("stuck").status == "stalled"
            assert metrics.actor("stuck").stalls == 1
            assert metrics.totals.stalled_actors == 1
            assert stuck.counters.processed == 0
    finally:
        release.set()


def test_stall_timeout_is_validated_with_the_actor_named() -> None:
    with Runtime():
        with pytest.raises(ConfigError, match=r"^actor 'x': stall_timeout must be a number of "
                                              r"seconds >= 0 \(0: not watched\), got -1$"):
            Trigger(actor_id="x", stall_timeout=-1)
    with pytest.raises(ConfigError, match=r"^runtime 'r': stall_timeout must be .*got 'soon'$"):
        Runtime(name="r", stall_timeout="soon")  # type: ignore[arg-type]


def test_close_with_10_hung_actors_is_bounded_in_total() -> None:
    entered, release = threading.Semaphore(0), threading.Event()
    torn_down: list[str] = []

    class Writer(Counter):
        def teardown(self) -> None:
            torn_down.append(self.actor_id)

    try:
        rt = Runtime(stall_timeout=0)
        src = Trigger(clock=SoftwareClock(100), runtime=rt)
        for i in range(10):
            src >> Blocker(entered, release, actor_id=f"hung-{i}", runtime=rt)
        src >> Writer(actor_id="writer", runtime=rt)
        rt.start()
        wait_entered(entered, 10)
        started = time.monotonic()
        rt.close(timeout=1.0)
        elapsed = time.monotonic() - started
        # Before: 1 s per hung actor plus the pool's (11 s and more).
        assert elapsed < 3.0, f"close() took {elapsed:.1f} s with 10 hung actors"
        assert torn_down == ["writer"]  # healthy actors are still torn down
        assert rt.actors() == []
    finally:
        release.set()


def test_a_hung_actor_does_not_keep_the_interpreter_from_exiting() -> None:
    script = textwrap.dedent("""
        import threading, sys
        from streamlib import Actor, Runtime, StreamOutput
        from streamlib.clocks import SoftwareClock
        entered = threading.Event()
        class Hung(Actor):
            def process(self, tick):
                entered.set()
                threading.Event().wait()  # forever
        rt = Runtime(stall_timeout=0)
        Hung(clock=SoftwareClock(10), runtime=rt, actor_id="hung")
        rt.start()
        assert entered.wait(20)
        print("leaving", flush=True)
    """)
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    elapsed = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "leaving\n"
    assert elapsed < 30, f"exit took {elapsed:.1f} s"


TOKEN = "watchdog-test-token-0123456789"


def test_control_plane_deletes_a_stalled_actor_and_its_id_can_be_reused() -> None:
    from streamlib.control.server import ControlServer

    entered, release = threading.Semaphore(0), threading.Event()
    try:
        with Runtime() as rt:
            src = Trigger(clock=SoftwareClock(50), actor_id="src")
            src >> Blocker(entered, release, actor_id="hung", stall_timeout=0.2)
            rt.start()
            wait_entered(entered, 1)
            deadline = time.monotonic() + 10
            while rt.get("hung").status is not ActorStatus.STALLED:
                assert time.monotonic() < deadline, "never marked stalled"
                threading.Event().wait(0.02)
            with ControlServer(rt, token=TOKEN) as server:
                request = urllib.request.Request(server.url + "/actors/hung", method="DELETE",
                                                 headers={"Authorization": f"Bearer {TOKEN}"})
                with urllib.request.urlopen(request, timeout=10) as reply:
                    assert reply.status == 200
                    assert json.loads(reply.read())["status"] == "stopped"
            assert [a.actor_id for a in rt.actors()] == ["src"]
            again = Blocker(entered, release, actor_id="hung")  # the id is free again
            assert rt.get("hung") is again
    finally:
        release.set()


def test_thread_dispatcher_abandons_a_stalled_call_and_queued_work_moves_on() -> None:
    pool = WorkerPool(1, name_prefix="streamlib-abandon")
    release = threading.Event()
    try:
        stuck = pool.submit(lambda: release.wait(30))
        queued = pool.submit(lambda: "ran")
        deadline = time.monotonic() + 10
        while not stuck.running():
            assert time.monotonic() < deadline
            threading.Event().wait(0.01)
        assert not queued.done()
        assert pool.abandon(stuck) is True
        assert queued.result(10) == "ran"  # on a fresh thread
        assert pool.abandon(stuck) is False  # once
    finally:
        release.set()
        pool.shutdown()
    assert stuck.result(10) is True


def test_thread_dispatcher_default_has_no_worker_cap() -> None:
    d = ThreadPoolDispatcher()
    try:
        assert d._pool.max_workers is None
    finally:
        d.shutdown()


def test_worker_threads_are_daemon_and_idle_ones_are_reused() -> None:
    pool = WorkerPool(name_prefix="streamlib-reuse")
    try:
        names = set()
        for _ in range(20):
            names.add(pool.submit(lambda: threading.current_thread().name).result(10))
        assert len(names) == 1 and pool.threads == 1
        assert pool.submit(lambda: threading.current_thread().daemon).result(10) is True
    finally:
        pool.shutdown()
    assert pool.threads == 0


def test_a_sync_call_blocking_the_loop_is_reported_and_close_stays_bounded() -> None:
    entered, release = threading.Semaphore(0), threading.Event()
    try:
        rt = Runtime(stall_timeout=0.2)
        src = Trigger(clock=SoftwareClock(50), runtime=rt)
        src >> Blocker(entered, release, actor_id="on-loop", dispatcher="asyncio", runtime=rt)
        rt.start()
        wait_entered(entered, 1)
        deadline = time.monotonic() + 10
        while rt.get("on-loop").status is not ActorStatus.STALLED:  # seen from this thread
            assert time.monotonic() < deadline, "never marked stalled"
            threading.Event().wait(0.02)
        assert {a["id"]: a["status"] for a in rt.graph()["actors"]}["on-loop"] == "stalled"
        started = time.monotonic()
        rt.close(timeout=1.0)  # the loop itself is blocked: nothing can be awaited
        assert time.monotonic() - started < 4.0
    finally:
        release.set()


def test_idle_threads_retire_closing_their_loops_but_a_dedicated_thread_stays() -> None:
    import asyncio

    from streamlib.runtime.dispatchers import DedicatedThreadDispatcher

    class AsyncActor(Trigger):
        async def process(self, tick: TimedTick) -> None:
            self.outputs["out"].write(threading.current_thread().name)

    d = ThreadPoolDispatcher(name_prefix="streamlib-retire", idle_timeout=0.05)
    try:
        with Runtime():
            actor = AsyncActor(actor_id="a")
        asyncio.run(d.dispatch(actor, TimedTick(0, 0, "t")))
        assert len(d._loops) == 1
        deadline = time.monotonic() + 10
        while d._pool.threads or d._loops:  # retires after 0.05 s idle, closing its loop
            assert time.monotonic() < deadline, \
                f"{d._pool.threads} idle thread(s), {len(d._loops)} loop(s) left"
            threading.Event().wait(0.01)
    finally:
        d.shutdown()
    dedicated = DedicatedThreadDispatcher("gl")
    try:
        assert dedicated._pool.idle_timeout is None
    finally:
        dedicated.shutdown()
