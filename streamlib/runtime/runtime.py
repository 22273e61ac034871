"""``Runtime``: owns the event loop, clock threads and dispatchers of a graph.

Threading model (the one place it is decided):

* One asyncio loop per runtime, on a named background thread. All actor
  bookkeeping (busy flags, pending ticks, counters, status) is mutated only on
  that loop, so it needs no locks.
* One thread per distinct ``Clock``: it blocks in ``clock.wait_tick()`` (the
  clock's own sleep-then-spin gives sub-millisecond timing asyncio cannot) and
  hands each tick to the loop with ``call_soon_threadsafe``.
* ``process`` runs where the actor's dispatcher puts it (the loop, a thread
  of the thread dispatcher's pool, which grows so no actor waits for another's
  call, a worker process, a GPU stream). Outputs written from any of those
  threads tick clockless downstream actors through ``Runtime._notify``, the
  single cross-thread entry point.
* Between GPU and CPU actors, the runtime's ``StagingBridge``
  (``streamlib.gpu.staging``; one bridge thread) is installed as the router of
  every link it makes, and closed with the runtime.
* One watchdog thread (``streamlib.runtime.watchdog``) marks an actor ``stalled`` when
  a call overruns its budget; the ``Supervisor`` (``streamlib.runtime.supervisor``)
  rebuilds failed or stalled actors whose restart policy says so.
  ``close()`` is bounded in total and abandons stuck calls (``streamlib.runtime.stopping``).

Scheduling is latest-wins: a tick that arrives while an actor is busy replaces
any tick already waiting (counted as an overrun), so a slow actor never builds
a backlog. Non-realtime clocks (``VirtualClock``) run lock-step: the clock
thread waits until the whole graph is idle before issuing the next tick, so an
offline render loses no frame and goes as fast as the machine allows.
"""

from __future__ import annotations

import asyncio
import atexit
import contextvars
import logging
import threading
import time
import traceback
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import TYPE_CHECKING, Any, Callable, Coroutine

from streamlib.clocks import Clock, TimedTick
from streamlib.core import context
from streamlib.core.actor import Actor, ActorStatus
from streamlib.core.policy import check_stall_timeout
from streamlib.core.ports import Router, StreamInput, StreamOutput
from streamlib.errors import ActorStateError, ConfigError
from streamlib.gpu.device import cuda_available
from streamlib.gpu.staging import StagingBridge
from streamlib.observe.metrics import MetricsRecorder, MetricsSnapshot, snapshot, window_description
from streamlib.runtime.clockdriver import ClockDriver
from streamlib.runtime.dispatchers import resolve_dispatcher
from streamlib.runtime.progress import endless_offline, never_ticked
from streamlib.runtime.runresult import RunResult, result_of
from streamlib.runtime.stopping import stop_actors
from streamlib.runtime.supervisor import Supervisor
from streamlib.runtime.watchdog import DEFAULT_STALL_TIMEOUT, Watchdog, end_call

if TYPE_CHECKING:
    from streamlib.runtime.dispatchbase import Dispatcher
    from streamlib.observe.telemetry import Telemetry

logger = logging.getLogger("streamlib")

_default: Runtime | None = None
_default_lock = threading.Lock()


def default_runtime() -> Runtime:
    """The process-wide runtime that starts actors as soon as they are created."""
    global _default
    with _default_lock:
        if _default is None or _default.closed:
            _default = Runtime(autostart=True, name="default")
        return _default


# Actors created outside any ``with Runtime()`` block attach to the default runtime.
context.install_default(default_runtime)


def run(seconds: float | None = None, *, raise_on_failure: bool = False) -> RunResult:
    """Run the default runtime: see ``Runtime.run``. For plain scripts."""
    return default_runtime().run(seconds, raise_on_failure=raise_on_failure)


class Runtime:
    """Runs actors: ``with Runtime() as rt: ...; rt.run(seconds=5)``.

    ``autostart=False`` (the default for explicit runtimes) holds actors until
    ``start()``/``run()`` so a graph is fully wired before the first tick; the
    default runtime uses ``autostart=True``. ``close()`` is idempotent.
    """

    def __init__(self, *, autostart: bool = False, name: str = "streamlib",
                 max_workers: int | None = None, collect_metrics: bool = True,
                 stall_timeout: float | None = DEFAULT_STALL_TIMEOUT,
                 staging: StagingBridge | None = None) -> None:
        """``staging``: the bridge between GPU and CPU actors (default: one of its own
        on a machine with CUDA, none without); the runtime owns and closes it."""
        self.name = name
        self._staging = staging if staging is not None or not cuda_available() else StagingBridge()
        # Watchdog (streamlib.runtime.watchdog): seconds one process() call may take
        # before its actor is marked stalled, unless the actor sets its own;
        # None or 0: not watched.
        self.stall_timeout = check_stall_timeout(stall_timeout,
                                                 where=f"runtime {name!r}: stall_timeout")
        self.supervisor = Supervisor(self)  # one-for-one restarts (streamlib.runtime.supervisor)
        self._watchdog: Watchdog | None = None
        self._stuck: dict[str, str] = {}  # actors that keep an offline graph from ending
        # Metrics (streamlib.observe.metrics): per-call sample windows, per-actor CPU
        # time and tick-origin latency, taken by ``recorder``. On by default;
        # False keeps only counters. Fixed at construction.
        self.collect_metrics = collect_metrics
        self.recorder = MetricsRecorder(enabled=collect_metrics)
        self._telemetry: Telemetry | None = None
        self.autostart = autostart
        self._max_workers = max_workers
        self._lock = threading.RLock()
        self._actors: dict[str, Actor] = {}
        self._drivers: dict[int, ClockDriver] = {}
        self._dispatchers: dict[str, Dispatcher] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._inflight = 0
        self._cond = threading.Condition()
        self._started = autostart
        self._closed = False
        self._token: contextvars.Token[Runtime | None] | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"streamlib-runtime-{name}", daemon=True
        )
        self._thread.start()
        # At interpreter exit, close before concurrent.futures refuses new work (its hook
        # runs in threading's exit phase, before atexit), or every teardown would fail.
        early = getattr(threading, "_register_atexit", None)
        try:
            if early is not None:
                early(self.close)
        except RuntimeError:  # already exiting
            pass
        atexit.register(self.close)  # a no-op when the early hook ran (close is idempotent)

    # -- properties ------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def started(self) -> bool:
        return self._started

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def staging(self) -> StagingBridge | None:
        """The bridge that stages frames between GPU and CPU actors (None: no CUDA)."""
        return self._staging

    def link_router(self, output: StreamOutput, inp: StreamInput) -> Router | None:
        """The router of a new link from ``output`` (one of this runtime's actors)."""
        return self._staging

    def actors(self) -> list[Actor]:
        with self._lock:
            return list(self._actors.values())

    def get(self, actor_id: str) -> Actor:
        """The actor with ``actor_id``; KeyError naming it if absent."""
        with self._lock:
            try:
                return self._actors[actor_id]
            except KeyError:
                raise KeyError(f"runtime {self.name!r} has no actor {actor_id!r}") from None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> None:
        """Start every attached actor; later actors start as they are created."""
        with self._lock:
            self._check_open()
            if self._started:
                return
            self._started = True
            pending = list(self._actors.values())
        self._start_watchdog()
        if pending:
            self._start_actors(pending)

    def run(self, seconds: float | None = None, *, raise_on_failure: bool = False) -> RunResult:
        """Start, then block until ``seconds`` pass or every clock has ended and
        the graph is idle (``seconds=None``: until then, or Ctrl-C).

        Returns a ``RunResult``: truthy when the graph finished on its own, with
        the ids of actors that failed or stalled (``result.ok`` is False then).

        Raises:
            RunFailedError: with ``raise_on_failure=True``, when any actor failed
                or stalled (the error carries the result).
        """
        self.start()
        result = self.result(self.wait(seconds))
        return result.raise_on_failure() if raise_on_failure else result

    def result(self, finished: bool) -> RunResult:
        """A ``RunResult`` of the actors' states now, with ``finished`` as given."""
        return result_of(self.actors(), finished, {**self._stuck, **never_ticked(self)})

    def wait(self, timeout: float | None = None) -> bool:
        """Block until all clocks are finished and nothing is in flight.

        A graph whose clocks never end (``SoftwareClock``) only returns at
        ``timeout``. Returns True if the graph finished, False on timeout;
        also False, without a timeout, when every lock-step clock has ended
        but an actor on an endless realtime clock keeps the graph from ever
        finishing (``result().stuck`` names it; see ``streamlib.runtime.progress``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout

        def finished() -> bool:
            with self._lock:
                drivers = list(self._drivers.values())
                starting = any(a._sl.status in (ActorStatus.CREATED, ActorStatus.STARTING)
                               for a in self._actors.values())
            return self._closed or (
                not starting and all(d.finished.is_set() for d in drivers)
                and self._inflight == 0
            )

        with self._cond:
            while not finished():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                if deadline is None and self._inflight == 0:
                    stuck = endless_offline(self)
                    if stuck:
                        self._stuck = stuck
                        return False
                # Bounded waits: a driver ending notifies, but re-checking is cheap.
                self._cond.wait(0.5 if remaining is None else min(0.5, remaining))
        return True

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no tick is queued or being processed (True), or timeout (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Stop clocks, tear every actor down, shut owned dispatchers, stop the loop.

        Idempotent; safe to call from any thread except the runtime's own loop.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            drivers = list(self._drivers.values())
            actors = list(self._actors.values())
        # ``timeout`` bounds the whole close, however many calls are stuck:
        # process() calls still running at half of it are abandoned (their
        # daemon threads cannot keep the process alive), see streamlib.runtime.stopping.
        deadline = time.monotonic() + max(0.0, timeout)

        def left() -> float:
            return max(0.0, deadline - time.monotonic())

        atexit.unregister(self.close)
        if self._watchdog is not None:
            self._watchdog.stop()
        for driver in drivers:
            driver.stop()
        if self._loop.is_running():
            try:
                self._call(stop_actors(self, actors, deadline), left() + 1.0)
            except Exception:  # noqa: BLE001 - keep closing the rest
                logger.exception("runtime %r: stopping actors failed", self.name)
        for driver in drivers:
            if driver.thread.is_alive() and driver.thread is not threading.current_thread():
                driver.thread.join(left())
        for dispatcher in self._dispatchers.values():
            try:
                dispatcher.shutdown(left())
            except Exception:  # noqa: BLE001
                logger.exception("runtime %r: dispatcher %r shutdown failed",
                                 self.name, dispatcher.name)
        if self._telemetry is not None:
            self._telemetry.close()
        if self._staging is not None:
            self._staging.close()
        self._loop.call_soon_threadsafe(self._loop.stop)
        if threading.current_thread() is not self._thread:
            self._thread.join(max(left(), 0.5))
            if not self._thread.is_alive():
                self._loop.close()
        self._wake_waiters()

    def __enter__(self) -> Runtime:
        self._token = context.enter(self)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            context.leave(self._token)
            self._token = None
        self.close()

    # -- introspection ---------------------------------------------------
    def graph(self) -> dict[str, Any]:
        """JSON-serialisable snapshot: actors, ports, links and link counters."""
        actors = self.actors()
        links: list[dict[str, Any]] = []
        for actor in actors:
            for out in actor.outputs.values():
                for inp in out.links:
                    stats = inp.stats()
                    links.append({"from": out.qualified_name, "to": inp.qualified_name,
                                  "kind": out.kind if out.kind != "any" else inp.kind,
                                  "written": stats.written, "read": stats.read,
                                  "dropped": stats.dropped, "slots": stats.slots})
        from streamlib.gpu.kernels import kernel_backend  # noqa: PLC0415 - numpy, media
        return {"runtime": self.name, "started": self._started, "closed": self._closed,
                "inflight": self._inflight, "actors": [a.describe() for a in actors],
                "links": links, "kernels": kernel_backend()}

    def describe_samples(self, actor: Actor) -> dict[str, Any]:
        """The metrics part of ``actor.describe()`` (see ``streamlib.observe.metrics``)."""
        return window_description(actor)

    def metrics(self, telemetry: bool = True) -> MetricsSnapshot:
        """Frozen snapshot of every actor and link, totals and (``telemetry``)
        the latest CPU/GPU sample; see ``streamlib.observe.metrics``. Safe from any thread.

        The first call with ``telemetry=True`` starts the runtime's telemetry
        sampler (a background thread sampling once a second, stopped by
        ``close()``); GPU figures are "not available" without an NVIDIA driver.
        """
        sample = None
        if telemetry and not self._closed:
            with self._lock:
                if self._telemetry is None:
                    from streamlib.observe.telemetry import Telemetry

                    self._telemetry = Telemetry(interval=1.0).start()
                sampler = self._telemetry
            sample = sampler.latest()
        return snapshot(self, sample)

    # -- attaching and starting actors ------------------------------------
    def _check_open(self) -> None:
        if self._closed:
            raise ActorStateError(f"runtime {self.name!r} is closed")

    def _attach(self, actor: Actor) -> None:
        with self._lock:
            self._check_open()
            if actor.actor_id in self._actors:
                raise ConfigError(
                    f"runtime {self.name!r} already has an actor {actor.actor_id!r}; "
                    "choose another actor_id"
                )
            actor._sl.dispatcher = resolve_dispatcher(actor, self._dispatchers, self._max_workers)
            actor._sl.runtime = self
            actor._sl.measure_cpu = self.collect_metrics
            self._actors[actor.actor_id] = actor
            if self._staging is not None:  # links made before it was attached
                for out in actor.outputs.values():
                    if out.links and out.router is None:
                        out.set_router(self._staging)
            start_now = self._started
        if start_now:
            self._start_watchdog()
            self._start_actors([actor])

    def _start_watchdog(self) -> None:
        with self._lock:
            if self._watchdog is not None or self._closed:
                return
            self._watchdog = Watchdog(self)
        self._watchdog.start()

    def _start_actors(self, actors: list[Actor]) -> None:
        for actor in actors:
            actor._sl.status = ActorStatus.STARTING

        def begin() -> None:
            tasks = [self._spawn(a.actor_id, self._setup(a)) for a in actors]
            self._spawn(f"activate:{id(tasks)}", self._activate(actors, tasks))

        self._loop.call_soon_threadsafe(begin)

    def _spawn(self, key: str, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = self._loop.create_task(coro, name=f"streamlib-{key}")
        self._tasks[key] = task
        task.add_done_callback(lambda t: self._tasks.pop(key, None) if
                               self._tasks.get(key) is t else None)
        return task

    async def _setup(self, actor: Actor) -> None:
        st = actor._sl
        assert st.dispatcher is not None
        try:
            await st.dispatcher.setup(actor)
        except Exception:  # noqa: BLE001 - isolate the failure to this actor
            self._fail(actor, "setup")
            self._release_pending(actor)
            self._release_start_hold(actor)

    async def _activate(self, actors: list[Actor], setups: list[asyncio.Task[None]]) -> None:
        # Clocks start only once every actor started together is set up, so
        # actors sharing a clock all see tick 0.
        await asyncio.gather(*setups, return_exceptions=True)
        new_drivers: list[ClockDriver] = []
        for actor in actors:
            if actor._sl.status is ActorStatus.STARTING:  # not failed or closed meanwhile
                actor._sl.status = ActorStatus.RUNNING
                if actor.clock is not None:
                    new_drivers += self._subscribe(actor, actor.clock)
        for driver in new_drivers:  # after every subscription, so none misses tick 0
            driver.start()
        for actor in actors:
            self._release_start_hold(actor)  # a supervisor's rebuild is complete
        for actor in actors:
            st = actor._sl
            if st.status is ActorStatus.RUNNING and st.pending is not None and not st.busy:
                tick, st.pending = st.pending, None  # an upstream wrote while we started
                st.busy = True
                self._spawn(actor.actor_id, self._run(actor, tick))

    def _subscribe(self, actor: Actor, clock: Clock) -> list[ClockDriver]:
        """Add ``actor`` to its clock's driver; returns a new driver the caller starts."""
        with self._lock:
            driver = self._drivers.get(id(clock))
            new = driver is None or driver.finished.is_set()
            if new:
                driver = ClockDriver(self, clock)
                self._drivers[id(clock)] = driver
            assert driver is not None
            driver.subscribers = driver.subscribers + [actor]
        return [driver] if new else []

    def _unsubscribe(self, actor: Actor, *, stop_idle: bool = True) -> None:
        """Remove ``actor`` from its clock's driver; a driver left without
        subscribers is stopped and dropped (``stop_idle``; the supervisor keeps
        it for the rebuilt actor)."""
        idle: list[ClockDriver] = []
        with self._lock:
            for key, driver in list(self._drivers.items()):
                if actor in driver.subscribers:
                    driver.subscribers = [a for a in driver.subscribers if a is not actor]
                    if not driver.subscribers and stop_idle:
                        idle.append(driver)
                        del self._drivers[key]  # or every driver ever made stays here
        for driver in idle:  # outside _lock: stop() takes _cond, which wait() holds first
            driver.stop()

    # -- ticking -----------------------------------------------------------
    def _notify(self, actor: Actor, tick: TimedTick) -> None:
        """Deliver ``tick`` to ``actor`` from any thread (the cross-thread entry)."""
        with self._cond:
            self._inflight += 1
        try:
            in_loop = threading.current_thread() is self._thread
            if in_loop:
                self._on_tick(actor, tick)
            else:
                self._loop.call_soon_threadsafe(self._on_tick, actor, tick)
        except RuntimeError:  # loop closed during shutdown: the tick is moot
            self._done()

    def _on_tick(self, actor: Actor, tick: TimedTick) -> None:
        st = actor._sl
        if st.status in _NO_TICKS or self._closed:
            self._done()
            return
        st.counters.ticks += 1
        if st.busy or st.status is not ActorStatus.RUNNING:
            if st.pending is not None:  # latest wins; the older waiting tick is dropped
                st.counters.overruns += 1
                self._done()
            st.pending = tick
            return
        st.busy = True
        self._spawn(actor.actor_id, self._run(actor, tick))

    async def _run(self, actor: Actor, tick: TimedTick | None) -> None:
        st = actor._sl
        dispatcher = st.dispatcher
        assert dispatcher is not None
        try:
            while tick is not None and st.status is ActorStatus.RUNNING:
                st.current_tick = tick
                st.cpu_ns = -1
                with st.lock:  # the watchdog reads these from its thread
                    st.call_seq += 1
                    seq = st.call_seq
                    st.call_started_ns = time.monotonic_ns()
                started = time.perf_counter_ns()
                try:
                    await dispatcher.dispatch(actor, tick)
                except Exception:  # noqa: BLE001 - isolate the failure to this actor
                    if end_call(actor, seq):  # else: stalled already; ignore its end
                        self._fail(actor, "process")
                        self._done()
                except BaseException:  # cancelled: close() abandoned the call
                    if end_call(actor, seq):
                        self._done()
                    raise
                else:
                    if end_call(actor, seq):
                        elapsed = time.perf_counter_ns() - started
                        c = st.counters
                        c.processed += 1
                        c.process_ns_last = elapsed
                        c.process_ns_total += elapsed
                        c.process_ns_max = max(c.process_ns_max, elapsed)
                        if self.collect_metrics:
                            self.recorder.record(actor, tick, elapsed)
                        self._done()
                finally:
                    st.current_tick = None
                if st.status is not ActorStatus.RUNNING:
                    break
                tick, st.pending = st.pending, None
        finally:
            st.busy = False
            if st.status is not ActorStatus.RUNNING:  # stopped, failed or stalled
                self._release_pending(actor)

    def _fail(self, actor: Actor, phase: str) -> None:
        st = actor._sl
        st.error = traceback.format_exc()
        st.status = ActorStatus.FAILED
        if phase == "process":
            st.counters.failed += 1
        logger.error("actor %r failed in %s(); other actors keep running\n%s",
                     actor.actor_id, phase, st.error.rstrip())
        self.supervisor.on_down(actor, phase)

    def _release_pending(self, actor: Actor) -> None:
        if actor._sl.pending is not None:
            actor._sl.pending = None
            self._done()

    def _release_start_hold(self, actor: Actor) -> None:
        held, actor._sl.release_on_start = actor._sl.release_on_start, 0
        if held:
            self._done(held)

    def hold(self) -> None:
        """Count one unit of work in flight (a bridge copying a frame, a network
        receive being assembled...), so lock-step clocks and ``wait_idle`` wait
        for it. Pair every call with ``release()``."""
        with self._cond:
            self._inflight += 1

    def release(self) -> None:
        """End one unit of work counted by ``hold()``."""
        self._done()

    def _done(self, n: int = 1) -> None:
        with self._cond:
            self._inflight -= n
            if self._inflight <= 0:
                self._cond.notify_all()

    def _wake_waiters(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _wait_idle_or(self, stop: Callable[[], bool]) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._inflight == 0 or stop() or self._closed)

    # -- stopping actors --------------------------------------------------
    def _call(self, coro: Coroutine[Any, Any, None], timeout: float) -> None:
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            future.result(timeout)
        except FutureTimeoutError:
            future.cancel()
            raise

    def _stop_actor(self, actor: Actor, timeout: float) -> None:
        if threading.current_thread() is self._thread:
            self._loop.create_task(self._astop(actor))  # cannot block the loop
            return
        if not self._loop.is_running():
            actor._sl.status = ActorStatus.STOPPED
            actor._sl_run_close_callbacks()
            return
        self._call(stop_actors(self, [actor], time.monotonic() + timeout), timeout + 1.0)

    async def _astop(self, actor: Actor) -> None:
        await stop_actors(self, [actor], time.monotonic() + 5.0)


_NO_TICKS = (ActorStatus.FAILED, ActorStatus.STOPPED, ActorStatus.STALLED)
