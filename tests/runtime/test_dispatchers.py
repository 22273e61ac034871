"""Tests for streamlib.runtime.dispatchers: where actor code runs, errors, shutdown, process pool."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.helpers.dispatch_actors import (
    AsyncCounter, AsyncRecorder, Blocker, Crasher, Hanger, Inverter, SyncRecorder, Unpicklable,
)
from streamlib.clocks import TimedTick
from streamlib.runtime.dispatchbase import Dispatcher
from streamlib.runtime.dispatchers import AsyncioDispatcher, GPUDispatcher, ThreadPoolDispatcher
from streamlib.runtime.procpool import ProcessPoolDispatcher
from streamlib.errors import (
    ActorStateError, ConfigTypeError, DispatcherShutdownError, ShutdownTimeoutError, WorkerError,
)
from streamlib.core.frames import DataMessage, VideoFrame

pytestmark = pytest.mark.timeout(60)


class _FakeRuntime:
    def _attach(self, actor):  # type: ignore[no-untyped-def]
        pass


def tick(n: int) -> TimedTick:
    return TimedTick(1_000_000 * n, n, "test")


def thread_names() -> set[str]:
    return {t.name for t in threading.enumerate()}


def join_threads(prefix: str) -> None:
    for t in threading.enumerate():
        if t.name.startswith(prefix):
            t.join(5)


def children() -> set[str]:
    return {p.name for p in multiprocessing.active_children()}


def shm_names() -> set[str]:
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()


# ------------------------------------------------------------ asyncio / thread / gpu

IN_LOOP = [AsyncioDispatcher, ThreadPoolDispatcher, GPUDispatcher]


@pytest.mark.parametrize("factory", IN_LOOP)
@pytest.mark.parametrize("actor_cls", [SyncRecorder, AsyncRecorder])
def test_runs_sync_and_async_methods(factory: type[Dispatcher], actor_cls: type[SyncRecorder]) -> None:
    actor = actor_cls(runtime=_FakeRuntime())
    with factory() as d:
        async def main() -> int:
            await d.setup(actor)
            await d.dispatch(actor, tick(1))
            await d.dispatch(actor, tick(2))
            await d.teardown(actor)
            return id(asyncio.get_running_loop())

        main_loop = asyncio.run(main())
    assert [name for name, _ in actor.calls] == ["setup", "process", "process", "teardown"]
    places = [info for _, info in actor.calls]
    is_async = actor_cls is AsyncRecorder
    if factory is AsyncioDispatcher:
        assert {p["thread"] for p in places} == {threading.current_thread().name}
        if is_async:
            assert {p["loop"] for p in places} == {main_loop}
    else:
        prefix = "streamlib-gpu" if factory is GPUDispatcher else "streamlib-worker"
        assert all(p["thread"].startswith(prefix) for p in places), places
        if is_async:  # each worker thread runs coroutines in its own persistent loop
            loops = {p["loop"] for p in places}
            assert None not in loops and main_loop not in loops
            assert len(loops) <= len({p["thread"] for p in places})
        else:
            assert {p["loop"] for p in places} == {None}


@pytest.mark.parametrize("factory", IN_LOOP)
@pytest.mark.parametrize("actor_cls", [SyncRecorder, AsyncRecorder])
def test_exceptions_propagate_unchanged(factory: type[Dispatcher], actor_cls: type[SyncRecorder]) -> None:
    actor = actor_cls(fail_on=7, runtime=_FakeRuntime())
    with factory() as d:
        with pytest.raises(ValueError, match="bad tick 7") as info:
            asyncio.run(d.dispatch(actor, tick(7)))
        assert type(info.value) is ValueError
        asyncio.run(d.dispatch(actor, tick(8)))  # the dispatcher keeps working
    assert [name for name, _ in actor.calls] == ["process"]


def test_gpu_dispatcher_stream_for_is_a_context_manager() -> None:
    with GPUDispatcher(device="cpu") as d:
        assert d.name == "gpu" and d.device == torch.device("cpu")
        with d.stream_for(SyncRecorder(runtime=_FakeRuntime())) as ctx:
            assert ctx is None


def test_gpu_inline_runs_sync_methods_on_the_loop_thread_and_async_ones_on_a_worker() -> None:
    sync, coro = SyncRecorder(runtime=_FakeRuntime()), AsyncRecorder(runtime=_FakeRuntime())
    with GPUDispatcher(device="cpu", inline=True) as d:
        async def main() -> None:
            for actor in (sync, coro):
                await d.setup(actor)
                await d.dispatch(actor, tick(1))
                await d.teardown(actor)

        asyncio.run(main())
        with pytest.raises(ValueError, match="bad tick 7"):  # errors propagate unchanged
            asyncio.run(d.dispatch(SyncRecorder(fail_on=7, runtime=_FakeRuntime()), tick(7)))
    here = threading.current_thread().name
    assert [(n, i["thread"]) for n, i in sync.calls] == [
        ("setup", here), ("process", here), ("teardown", here)]
    assert all(i["thread"].startswith("streamlib-gpu") for _, i in coro.calls), coro.calls
    with pytest.raises(DispatcherShutdownError, match=sync.actor_id):
        asyncio.run(d.dispatch(sync, tick(2)))


def test_gpu_inline_by_name_in_a_graph() -> None:
    from streamlib import Runtime, StreamInput, StreamOutput
    from streamlib.core.actor import Actor
    from streamlib.clocks import VirtualClock

    loop_threads: list[str] = []

    class Src(Actor):
        def __init__(self, **kw: Any) -> None:
            super().__init__(clock=VirtualClock(30, max_ticks=5), **kw)
            self.outputs["video"] = StreamOutput("video")

        def process(self, tick: TimedTick) -> None:
            loop_threads.append(threading.current_thread().name)
            self.outputs["video"].write(VideoFrame(
                torch.full((2, 2, 3), tick.frame_number, dtype=torch.uint8),
                timestamp_ns=tick.timestamp_ns, frame_number=tick.frame_number))

    class Sink(Actor):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.inputs["video"] = StreamInput("video", slots=8)
            self.got: list[int] = []

        def process(self, tick: TimedTick) -> None:
            self.got += [int(f.data[0, 0, 0]) for f in self.inputs["video"].read_all_new()]

    with Runtime() as rt:
        src, sink = Src(dispatcher="gpu-inline"), Sink(dispatcher="gpu")
        src >> sink
        assert rt.run(30)
    assert sink.got == [0, 1, 2, 3, 4]
    assert len(loop_threads) == 5 and {t.split("-")[1] for t in loop_threads} == {"runtime"}


@pytest.mark.parametrize("factory", IN_LOOP)
def test_shutdown_leaves_no_threads_and_refuses_work(factory: type[Dispatcher]) -> None:
    before = thread_names()
    actor = AsyncRecorder(runtime=_FakeRuntime())  # async: also creates per-thread loops
    d = factory()
    asyncio.run(d.dispatch(actor, tick(1)))
    d.shutdown()
    assert d.is_shutdown
    assert thread_names() == before
    d.shutdown()  # idempotent
    d.close()
    for call in (d.setup(actor), d.dispatch(actor, tick(2)), d.teardown(actor)):
        with pytest.raises(DispatcherShutdownError, match=actor.actor_id):
            asyncio.run(call)


def test_thread_shutdown_times_out_on_hung_call_and_cancels_queued() -> None:
    started, release = threading.Event(), threading.Event()
    hung = Blocker(started, release, runtime=_FakeRuntime())
    queued = SyncRecorder(runtime=_FakeRuntime())
    d = ThreadPoolDispatcher(max_workers=1, name_prefix="streamlib-hung")
    try:
        async def main() -> None:
            first = asyncio.create_task(d.dispatch(hung, tick(1)))
            second = asyncio.create_task(d.dispatch(queued, tick(1)))
            await asyncio.sleep(0)  # both submitted; the only worker takes the first
            assert await asyncio.to_thread(started.wait, 5)
            with pytest.raises(ShutdownTimeoutError, match="1 call"):
                d.shutdown(timeout=0.1)
            with pytest.raises(DispatcherShutdownError):
                await second  # queued work was cancelled, not run
            release.set()
            await first  # the running call still completes normally

        asyncio.run(main())
    finally:
        release.set()
    join_threads("streamlib-hung")
    assert not any(n.startswith("streamlib-hung") for n in thread_names())
    assert queued.calls == []


# ------------------------------------------------------------ process pool

H, W = 480, 640


def pattern(n: int) -> torch.Tensor:
    """A known, frame-dependent pattern with every byte value present."""
    y = torch.arange(H, dtype=torch.int64).view(H, 1, 1)
    x = torch.arange(W, dtype=torch.int64).view(1, W, 1)
    c = torch.arange(3, dtype=torch.int64).view(1, 1, 3)
    return ((y * 7 + x * 3 + c * 85 + n) % 256).to(torch.uint8)


class Pool:
    def __init__(self, tmp: Path) -> None:
        self.shm_before = shm_names()
        self.dispatcher = ProcessPoolDispatcher()
        self.teardown_file = tmp / "teardown.txt"
        self.inverter = Inverter(str(self.teardown_file), actor_id="inv", runtime=_FakeRuntime())
        self.counter = AsyncCounter(actor_id="acount", runtime=_FakeRuntime())
        self.crasher = Crasher(actor_id="crash", runtime=_FakeRuntime())
        for port in ("video", "data"):  # sinks so the parent's writes are observable
            self.inverter.outputs[port].connect(_sink(port))
        self.counter.outputs["data"].connect(_sink("data"))

    def run(self, coro: Any) -> Any:
        return asyncio.run(coro)


def _sink(name: str) -> Any:
    from streamlib.core.ports import StreamInput
    return StreamInput(name, slots=8)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    p = Pool(tmp_path_factory.mktemp("pool"))
    d = p.dispatcher

    async def start() -> None:  # spawn the three workers concurrently
        await asyncio.gather(*(d.setup(a) for a in (p.inverter, p.counter, p.crasher)))

    p.run(start())
    yield p
    d.shutdown()
    assert multiprocessing.active_children() == []
    assert shm_names() - p.shm_before == set()


def test_process_round_trip_through_shared_memory(pool: Pool) -> None:
    d, inv = pool.dispatcher, pool.inverter
    video_sink, data_sink = (inv.outputs[p].links[0] for p in ("video", "data"))
    frame_bytes = H * W * 3
    for n in range(1, 4):
        src = VideoFrame(pattern(n), timestamp_ns=n * 1000, frame_number=n, metadata={"n": n})
        inv.inputs["video"].feed(src)
        pool.run(d.dispatch(inv, tick(n)))
        out = video_sink.read_new()
        assert isinstance(out, VideoFrame)
        assert torch.equal(out.data, 255 - pattern(n))  # exact pixels
        assert (out.frame_number, out.timestamp_ns, dict(out.metadata)) == (n, n * 1000, {"n": n})
        assert torch.equal(src.data, pattern(n))  # the parent's frame is untouched
        info = data_sink.read_new().payload
        assert info["count"] == n  # state persists in the worker between ticks
        assert info["pid"] == info["setup_pid"] != os.getpid()
        assert inv.outputs["video"].written == n and inv.outputs["data"].written == n
        stats = d.stats(inv)
        # Pixels went through shared memory, only metadata through the pipe.
        assert stats["shm_bytes_last"] == 2 * frame_bytes
        assert stats["sent_bytes_last"] < 4096 < frame_bytes
        assert stats["received_bytes_last"] < 4096
    held = out.data.clone()
    inv.inputs["video"].feed(VideoFrame(pattern(99), timestamp_ns=0))
    pool.run(d.dispatch(inv, tick(4)))
    assert torch.equal(out.data, held)  # a delivered frame never changes afterwards


def test_process_error_carries_worker_traceback(pool: Pool) -> None:
    d, inv = pool.dispatcher, pool.inverter
    before = d.stats(inv)["ticks"]
    inv.inputs["data"].feed(DataMessage("boom", timestamp_ns=1))
    with pytest.raises(WorkerError) as info:
        pool.run(d.dispatch(inv, tick(50)))
    err = info.value
    assert str(err).startswith("actor 'inv' process raised ValueError: boom requested")
    source = (Path(__file__).parents[1] / "helpers" / "dispatch_actors.py").read_text().splitlines()
    line = next(i for i, text in enumerate(source, 1) if "# BOOM_LINE" in text)
    assert f'dispatch_actors.py", line {line}, in process' in err.worker_traceback
    assert "worker traceback" in str(err)
    pool.run(d.dispatch(inv, tick(51)))  # the worker survives a raising process()
    assert d.stats(inv)["ticks"] == before + 1


def test_process_async_process_uses_a_persistent_loop(pool: Pool) -> None:
    d, actor = pool.dispatcher, pool.counter
    sink = actor.outputs["data"].links[0]
    infos = []
    for n in (1, 2, 3):
        pool.run(d.dispatch(actor, tick(n)))
        infos.append(sink.read_new().payload)
    assert [i["count"] for i in infos] == [1, 2, 3]
    assert len({i["loop"] for i in infos}) == 1 and infos[0]["loop"] is not None
    assert infos[0]["pid"] != os.getpid()

    async def cancel_mid_call() -> None:
        task = asyncio.create_task(d.dispatch(actor, tick(4)))
        await asyncio.sleep(0)  # request sent; now awaiting the reply
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await d.dispatch(actor, tick(5))  # discards the stale reply first

    pool.run(cancel_mid_call())
    assert sink.read_new().payload["count"] == 5  # tick 4 ran; its outputs were dropped


def test_process_worker_death_is_a_worker_error(pool: Pool) -> None:
    d, actor = pool.dispatcher, pool.crasher
    with pytest.raises(WorkerError, match=r"actor 'crash' worker process died \(exit code 3\)"):
        pool.run(d.dispatch(actor, tick(1)))
    with pytest.raises(WorkerError, match="not running"):
        pool.run(d.dispatch(actor, tick(2)))
    pool.run(d.teardown(actor))  # frees what is left; no error


def test_process_unpicklable_state_is_a_type_error() -> None:
    with ProcessPoolDispatcher() as d:
        actor = Unpicklable(actor_id="unp", runtime=_FakeRuntime())
        with pytest.raises(ConfigTypeError, match=r"actor 'unp' .*attribute 'lock' is not picklable"):
            asyncio.run(d.setup(actor))
        with pytest.raises(ActorStateError, match="not set up"):
            asyncio.run(d.dispatch(actor, tick(1)))
    assert "streamlib-unp" not in children()


def test_process_teardown_and_shutdown_clean_up(tmp_path: Path) -> None:
    """teardown() runs in the worker; shutdown() tears idle workers down, kills a
    hung one after the timeout, and leaves no process, thread or shm segment."""
    threads, shm = thread_names(), shm_names()
    fifo = tmp_path / "started.fifo"
    os.mkfifo(fifo)
    d = ProcessPoolDispatcher()
    torn, kept = (Inverter(str(tmp_path / f"{n}.txt"), actor_id=n, runtime=_FakeRuntime())
                  for n in ("torn", "kept"))
    hung = Hanger(str(fifo), actor_id="hung", runtime=_FakeRuntime())
    loop = asyncio.new_event_loop()  # the runtime's loop stand-in, on its own thread
    loop_thread = threading.Thread(target=loop.run_forever, name="test-loop")
    loop_thread.start()
    try:
        def call(coro: Any) -> Any:
            return asyncio.run_coroutine_threadsafe(coro, loop).result(30)

        async def start() -> None:
            await asyncio.gather(*(d.setup(a) for a in (torn, kept, hung)))
            for actor in (torn, kept):
                actor.inputs["video"].feed(VideoFrame(pattern(1), timestamp_ns=1))
                await d.dispatch(actor, tick(1))

        call(start())
        assert {"streamlib-torn", "streamlib-kept", "streamlib-hung"} <= children()
        call(d.teardown(torn))
        count, pid = (tmp_path / "torn.txt").read_text().split()
        assert count == "1" and int(pid) != os.getpid()  # teardown ran in the worker
        assert "streamlib-torn" not in children()

        hung_call = asyncio.run_coroutine_threadsafe(d.dispatch(hung, tick(1)), loop)
        assert fifo.read_text() == "x"  # blocks until the worker is inside process()
        with pytest.raises(ShutdownTimeoutError, match="still running after 0.5 s"):
            d.shutdown(timeout=0.5)
        with pytest.raises(DispatcherShutdownError, match="hung"):
            hung_call.result(10)
        assert (tmp_path / "kept.txt").read_text().startswith("1 ")  # torn down at shutdown
        with pytest.raises(DispatcherShutdownError):
            call(d.dispatch(kept, tick(2)))
        d.shutdown()  # idempotent
    finally:
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
        loop.close()
    assert not children() & {"streamlib-torn", "streamlib-kept", "streamlib-hung"}
    assert thread_names() == threads
    assert shm_names() == shm


def test_an_actor_with_a_cuda_device_defaults_to_the_gpu_dispatcher() -> None:
    from streamlib.runtime.dispatchers import resolve_dispatcher

    owned: dict[str, Dispatcher] = {}
    on_gpu, on_cpu, chosen = (SyncRecorder(runtime=_FakeRuntime()) for _ in range(3))
    on_gpu.device = torch.device("cuda", 0)  # type: ignore[attr-defined]
    on_cpu.device = torch.device("cpu")  # type: ignore[attr-defined]
    chosen.device = torch.device("cuda", 0)  # type: ignore[attr-defined]
    chosen.dispatcher = "thread"
    try:
        assert isinstance(resolve_dispatcher(on_gpu, owned), GPUDispatcher)
        d = resolve_dispatcher(on_cpu, owned)
        assert type(d) is ThreadPoolDispatcher
        assert type(resolve_dispatcher(chosen, owned)) is ThreadPoolDispatcher  # explicit wins
        assert sorted(owned) == ["gpu", "thread"]
    finally:
        for disp in owned.values():
            disp.shutdown()
