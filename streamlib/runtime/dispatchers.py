"""Dispatchers: where an actor's ``setup`` / ``process`` / ``teardown`` run.

The runtime awaits these coroutines on its event loop; none of them blocks the
loop (except ``AsyncioDispatcher``, whose contract is to run code inline).
Actor methods may be plain functions or ``async def``; every dispatcher runs
both.

* ``AsyncioDispatcher``: inline on the runtime's loop.
* ``ThreadPoolDispatcher``: a named pool of daemon threads that grows on
  demand (``streamlib.runtime.workerpool``); ``async`` methods run on the worker thread
  inside a per-thread event loop.
* ``GPUDispatcher``: a thread pool that runs each actor on its own stream
  (``stream_for(actor)``: a CUDA stream, or the no-op ``CPUStream`` twin).
* ``ProcessPoolDispatcher`` (in ``streamlib.runtime.procpool``): one worker
  process per actor; tensors cross in shared memory.

The base class ``Dispatcher`` and ``timed_process`` (CPU time of each
``process`` call, measured on the thread that runs it) are in
``streamlib.runtime.dispatchbase``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import threading
from concurrent.futures import Future, wait as wait_futures
from typing import TYPE_CHECKING, Callable, Iterator

import torch

from streamlib.errors import ConfigError, ShutdownTimeoutError
from streamlib.gpu.device import (
    CPUStream, DeviceLike, Stream, new_stream, own_device, resolve_device, stream_context,
    wait_ready, wants_gpu_dispatcher,
)
from streamlib.runtime.dispatchbase import Dispatcher, _Method, timed_process
from streamlib.runtime.procpool import ProcessPoolDispatcher
from streamlib.runtime.workerpool import WorkerPool

if TYPE_CHECKING:
    from streamlib.clocks import TimedTick
    from streamlib.core.actor import Actor

__all__ = [
    "AsyncioDispatcher", "DedicatedThreadDispatcher", "GPUDispatcher", "ThreadPoolDispatcher",
    "resolve_dispatcher",
]

class AsyncioDispatcher(Dispatcher):
    """Runs everything inline on the runtime's loop: sync code blocks the loop
    for its duration (use it for cheap or ``async def`` actors)."""

    name = "asyncio"

    async def _run(self, actor: Actor, fn: _Method, what: str) -> None:
        with self._work(actor, what):
            result = fn()
            if inspect.isawaitable(result):
                await result

    async def setup(self, actor: Actor) -> None:
        await self._run(actor, actor.setup, "set up")

    async def dispatch(self, actor: Actor, tick: TimedTick) -> None:
        await self._run(actor, timed_process(actor, tick), "dispatch to")

    async def teardown(self, actor: Actor) -> None:
        await self._run(actor, actor.teardown, "tear down")


class ThreadPoolDispatcher(Dispatcher):
    """Runs actor methods on an owned pool of threads named ``<name_prefix>_N``.

    ``max_workers=None`` (the runtime's default) gives every busy actor a
    thread (see ``streamlib.runtime.workerpool``): no actor waits for another's call,
    and a stalled call is abandoned rather than waited for.

    An ``async def`` method runs on the worker thread in that thread's own event
    loop (created lazily, closed at shutdown), so it may block without stalling
    the runtime. Exceptions re-raise unchanged in the awaiting coroutine.
    """

    name = "thread"

    def __init__(self, max_workers: int | None = None, *,
                 name_prefix: str = "streamlib-worker", idle_timeout: float | None = 30.0) -> None:
        super().__init__()
        self.name_prefix = name_prefix
        self._pool = WorkerPool(max_workers, name_prefix=name_prefix, idle_timeout=idle_timeout,
                                on_exit=self._close_thread_loop)
        self._futures: set[Future[None]] = set()
        self._calls: dict[int, Future[None]] = {}  # id(actor) -> its call in flight
        self._local = threading.local()
        self._loops_lock = threading.Lock()
        self._loops: set[asyncio.AbstractEventLoop] = set()
        self._busy_loops: set[asyncio.AbstractEventLoop] = set()

    async def setup(self, actor: Actor) -> None:
        await self._submit(actor, actor.setup, "set up")

    async def dispatch(self, actor: Actor, tick: TimedTick) -> None:
        await self._submit(actor, timed_process(actor, tick), "dispatch to")

    async def teardown(self, actor: Actor) -> None:
        await self._submit(actor, actor.teardown, "tear down")

    def _context(self, actor: Actor) -> contextlib.AbstractContextManager[None]:
        """Context entered on the worker thread around each call (GPU streams later)."""
        return contextlib.nullcontext()

    async def _submit(self, actor: Actor, fn: _Method, what: str) -> None:
        # Same as loop.run_in_executor, but we keep the concurrent future so that
        # shutdown() can wait for it without needing the loop.
        with self._cond:
            if self._closed:
                raise self._refused(actor, what)
            cf: Future[None] = self._pool.submit(functools.partial(self._call, actor, fn))
            self._futures.add(cf)
            self._calls[id(actor)] = cf
        cf.add_done_callback(functools.partial(self._forget, id(actor)))
        try:
            await asyncio.wrap_future(cf)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if cf.cancelled() and self._closed and (task is None or not task.cancelling()):
                raise self._refused(actor, what) from None  # queued work cancelled by shutdown
            raise

    def _forget(self, key: int, cf: Future[None]) -> None:
        with self._cond:
            self._futures.discard(cf)
            if self._calls.get(key) is cf:
                del self._calls[key]

    def abandon(self, actor: Actor) -> bool:
        """Give up on ``actor``'s running call (the watchdog found it stalled):
        its thread no longer counts against ``max_workers`` and ``shutdown`` does
        not wait for it; the thread exits if the call ever returns."""
        with self._cond:
            cf = self._calls.pop(id(actor), None)
            if cf is None:
                return False
            self._futures.discard(cf)
        return self._pool.abandon(cf)

    def _call(self, actor: Actor, fn: _Method) -> None:
        with self._context(actor):
            result = fn()
            if inspect.isawaitable(result):
                loop = self._acquire_loop()
                try:
                    loop.run_until_complete(result)
                finally:
                    self._release_loop(loop)

    def _acquire_loop(self) -> asyncio.AbstractEventLoop:
        with self._loops_lock:
            loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
            if loop is None or loop.is_closed():
                loop = self._local.loop = asyncio.new_event_loop()
                self._loops.add(loop)
            self._busy_loops.add(loop)
            return loop

    def _release_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._loops_lock:
            self._busy_loops.discard(loop)
            if self._closed:  # shutdown already ran; nobody else will close it
                self._loops.discard(loop)
                loop.close()

    def _close_thread_loop(self) -> None:
        """A worker thread exits: close its event loop (else one per retired thread stays open)."""
        loop: asyncio.AbstractEventLoop | None = getattr(self._local, "loop", None)
        if loop is None:
            return
        with self._loops_lock:
            self._loops.discard(loop)
            self._busy_loops.discard(loop)
        if not loop.is_closed():
            loop.close()

    def _close_idle_loops(self) -> None:
        with self._loops_lock:
            for loop in self._loops - self._busy_loops:
                loop.close()
            self._loops &= self._busy_loops

    def _shutdown(self, timeout: float) -> None:
        with self._cond:
            futures = set(self._futures)
        _, pending = wait_futures(futures, timeout)
        if pending:
            self._pool.shutdown(cancel_queued=True, join_timeout=timeout)
            self._close_idle_loops()
            running = sum(not f.cancelled() for f in pending)
            raise ShutdownTimeoutError(
                f"{self.name} dispatcher: {running} call(s) still running after {timeout} s "
                "(queued calls were cancelled; threads exit when the running calls return)")
        self._pool.shutdown(join_timeout=max(timeout, 1.0))  # nothing runs: threads exit at once
        self._close_idle_loops()


class DedicatedThreadDispatcher(ThreadPoolDispatcher):
    """One thread for one actor: GL contexts and other thread-bound resources
    created in ``setup`` stay current for every ``process`` and ``teardown``."""

    name = "dedicated"

    def __init__(self, actor_id: str) -> None:
        # idle_timeout=None: the one thread lives as long as the dispatcher, so
        # what setup() made current on it (a GL context) stays current.
        super().__init__(1, name_prefix=f"streamlib-{actor_id}", idle_timeout=None)


class GPUDispatcher(ThreadPoolDispatcher):
    """Thread-pool dispatcher that gives each actor its own stream on ``device``.

    ``device``: ``"cuda"``, ``"cuda:1"``, ``"cpu"`` or a ``torch.device``; None
    picks CUDA when available. An actor with a ``device`` attribute of its own
    gets its stream on that device instead.

    Around ``setup``/``process``/``teardown`` the actor's stream is current, and
    before each call the stream waits (``wait_ready``) on the ready events of the
    newest item of every input, so a GPU actor never reads a frame its upstream
    is still writing, and no host sync happens. Events stand in for ticks
    between GPU actors: ``StreamOutput.write`` records a ready event for every
    CUDA frame and makes the streams of GPU readers wait on it at write time
    (see ``streamlib.gpu.staging``), which also covers frames that arrive while
    ``process`` runs. On the CPU the stream is a ``CPUStream`` and all of this
    is a no-op.

    ``inline=True`` (``dispatcher="gpu-inline"`` in graph files) runs sync
    methods on the runtime's loop thread instead of a worker, saving the two
    thread hand-offs of the pool (most of the host overhead per tick). That
    suits actors whose ``process`` only enqueues GPU work; one that blocks
    (``.item()``, ``.cpu()``, a sync) stalls the whole runtime while it does.
    ``async def`` methods still run on a worker.
    """

    name = "gpu"

    def __init__(self, device: DeviceLike = None, max_workers: int | None = None,
                 *, name_prefix: str = "streamlib-gpu", priority: int = 0,
                 inline: bool = False) -> None:
        self.device = resolve_device(device, where="GPUDispatcher: device")
        super().__init__(max_workers, name_prefix=name_prefix)
        self.priority = priority
        self.inline = bool(inline)
        self._streams: dict[int, Stream] = {}
        self._streams_lock = threading.Lock()

    def device_for(self, actor: Actor) -> torch.device:
        """The actor's own ``device`` when it declares one, else this dispatcher's."""
        return own_device(actor) or self.device

    def stream_for(self, actor: Actor) -> Stream:
        """``actor``'s stream: created on first use, then the same object every call.

        A ``torch.cuda.Stream`` on a CUDA device, else a ``CPUStream`` (whose
        ``with`` block does nothing and binds None). Thread-safe.
        """
        key = id(actor)
        stream = self._streams.get(key)
        if stream is None:
            with self._streams_lock:
                stream = self._streams.get(key)
                if stream is None:
                    stream = new_stream(self.device_for(actor), self.priority)
                    self._streams[key] = stream
        return stream

    def forget(self, actor: Actor) -> None:
        """Drop the cached stream of ``actor`` (called after its teardown)."""
        with self._streams_lock:
            self._streams.pop(id(actor), None)

    async def teardown(self, actor: Actor) -> None:
        try:
            await super().teardown(actor)
        finally:
            self.forget(actor)

    @contextlib.contextmanager
    def _on_stream(self, actor: Actor) -> Iterator[None]:
        stream = self.stream_for(actor)
        if isinstance(stream, CPUStream):
            yield  # CPU: no streams, no events; nothing to wait for
            return
        with stream_context(stream):
            for port in actor.inputs.values():
                item = port.peek_latest()
                if item is not None:
                    wait_ready(item, stream)
            yield

    def _context(self, actor: Actor) -> contextlib.AbstractContextManager[None]:
        return self._on_stream(actor)

    async def _submit(self, actor: Actor, fn: _Method, what: str) -> None:
        if not self.inline or inspect.iscoroutinefunction(fn):
            await super()._submit(actor, fn, what)
            return
        with self._work(actor, what), self._on_stream(actor):
            fn()  # on the loop thread: enqueue-only work, no hop to a worker


def resolve_dispatcher(actor: Actor, owned: dict[str, Dispatcher],
                       max_workers: int | None = None) -> Dispatcher:
    """The dispatcher for ``actor.dispatcher``: an instance (caller-owned, the
    caller shuts it down) or a name, created once in ``owned`` (the runtime's,
    shut down with it). Unset, it is ``"gpu"`` for an actor whose ``device``
    attribute is a CUDA device, else ``"asyncio"`` (``async def process``) or
    ``"thread"``. ConfigError (a ValueError) naming the actor for an unknown name."""
    spec = actor.dispatcher
    if isinstance(spec, Dispatcher):
        return spec
    if spec is None:
        if wants_gpu_dispatcher(actor):
            spec = "gpu"  # an actor whose tensors live on a GPU: a CUDA stream of its own
        else:
            spec = "asyncio" if actor.is_async else "thread"
    if spec == "dedicated":
        # One thread for this actor alone: GL contexts and other thread-bound
        # resources stay current on it.
        key = f"dedicated:{actor.actor_id}"
        if key not in owned:
            owned[key] = DedicatedThreadDispatcher(actor.actor_id)
        return owned[key]
    factories: dict[str, Callable[[], Dispatcher]] = {
        "asyncio": AsyncioDispatcher,
        "thread": lambda: ThreadPoolDispatcher(max_workers),
        "process": ProcessPoolDispatcher,
        "gpu": GPUDispatcher,
        "gpu-inline": lambda: GPUDispatcher(inline=True),
    }
    if spec not in factories:
        raise ConfigError(
            f"actor '{actor.actor_id}': dispatcher must be one of "
            f"{sorted(factories) + ['dedicated']} or a Dispatcher, got {spec!r}"
        )
    if spec not in owned:
        owned[spec] = factories[spec]()
    return owned[spec]
