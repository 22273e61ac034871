"""``WorkerPool``: the threads a thread dispatcher runs actor calls on.

Why not ``concurrent.futures.ThreadPoolExecutor``: a fixed pool shared by every
sync actor let a few calls stuck in user code stop every other actor, and its
non-daemon threads kept the interpreter from exiting until a stuck call
returned. Here:

* ``max_workers=None`` (the runtime's default) grows on demand: a call never
  queues behind another actor's call. The runtime gives an actor at most one
  call in flight, so the pool holds at most one thread per busy actor; idle
  threads are reused (LIFO, the warmest first) and exit after ``idle_timeout``.
* ``abandon(future)``: a call the watchdog found stalled stops counting against
  ``max_workers`` and queued work starts on a fresh thread; the stuck thread
  exits when (if ever) its call returns.
* Threads are daemon threads, deliberately: an abandoned call cannot keep the
  process alive. ``shutdown`` joins the idle threads, never a running one.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from concurrent.futures import Future
from queue import Empty, SimpleQueue
from typing import Any, Callable

from streamlib.errors import ConfigError, DispatcherShutdownError

_Job = tuple["Future[Any]", Callable[[], Any]]


class _Worker:
    __slots__ = ("pool", "inbox", "abandoned", "thread")

    def __init__(self, pool: WorkerPool, name: str) -> None:
        self.pool = pool
        self.inbox: SimpleQueue[_Job | None] = SimpleQueue()
        self.abandoned = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _loop(self) -> None:
        try:
            self._serve()
        finally:
            if self.pool.on_exit is not None:
                self.pool.on_exit()  # on this thread: per-thread state goes with it

    def _serve(self) -> None:
        pool = self.pool
        while True:
            try:
                job = self.inbox.get(timeout=pool.idle_timeout)
            except Empty:
                if pool._retire(self):
                    return
                continue  # handed a job just as the wait ended: it is in the inbox
            if job is None:  # shutdown
                with pool._lock:
                    pool._drop(self)
                return
            future, fn = job
            del job
            with pool._lock:  # before it shows as running, so abandon() finds it
                pool._running[future] = self
            if not future.set_running_or_notify_cancel():
                with pool._lock:
                    pool._running.pop(future, None)
            else:
                try:
                    result = fn()
                except BaseException as exc:  # noqa: BLE001 - handed to the awaiting caller
                    with pool._lock:
                        pool._running.pop(future, None)
                    future.set_exception(exc)
                else:
                    with pool._lock:
                        pool._running.pop(future, None)
                    future.set_result(result)
            del future, fn
            if not pool._next(self):
                return


class WorkerPool:
    """Daemon threads named ``<name_prefix>_N`` running submitted calls."""

    def __init__(self, max_workers: int | None = None, *, name_prefix: str = "streamlib-worker",
                 idle_timeout: float | None = 30.0,
                 on_exit: Callable[[], None] | None = None) -> None:
        """``idle_timeout``: seconds an idle thread waits for work before it
        exits (None: never, for thread-bound resources); ``on_exit`` runs on
        each worker thread as it exits. Raises ConfigError unless ``max_workers`` is None
        or >= 1."""
        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"max_workers must be None or >= 1, got {max_workers!r}")
        self.max_workers = max_workers
        self.name_prefix = name_prefix
        self.idle_timeout = idle_timeout
        self.on_exit = on_exit
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._running: dict[Future[Any], _Worker] = {}
        self._backlog: deque[_Job] = deque()
        self._counted = 0  # live workers not abandoned: what max_workers limits
        self._names = itertools.count()
        self._closed = False

    @property
    def threads(self) -> int:
        """Live worker threads, abandoned ones included."""
        with self._lock:
            return len(self._workers)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn()`` on a worker; DispatcherShutdownError after ``shutdown``."""
        future: Future[Any] = Future()
        job: _Job = (future, fn)
        with self._lock:
            if self._closed:
                raise DispatcherShutdownError(f"worker pool {self.name_prefix!r} is shut down")
            if self._idle:
                self._idle.pop().inbox.put(job)
            elif self.max_workers is None or self._counted < self.max_workers:
                self._spawn(job)
            else:
                self._backlog.append(job)
        return future

    def abandon(self, future: Future[Any]) -> bool:
        """Stop counting the worker running ``future``; True when it was running."""
        with self._lock:
            worker = self._running.get(future)
            if worker is None or worker.abandoned:
                return False
            worker.abandoned = True
            self._counted -= 1
            if self._backlog and not self._closed:
                self._spawn(self._backlog.popleft())
        return True

    def shutdown(self, *, cancel_queued: bool = True, join_timeout: float = 5.0) -> int:
        """Refuse work, cancel the queue, stop idle threads; returns calls still running."""
        with self._lock:
            self._closed = True
            queued = list(self._backlog) if cancel_queued else []
            if cancel_queued:
                self._backlog.clear()
            idle, self._idle = self._idle, []
            busy = set(self._running.values())
            finishing = [w for w in self._workers if w not in busy]
            running = len(self._running)
        for future, _ in queued:
            future.cancel()
        for worker in idle:
            worker.inbox.put(None)
        for worker in finishing:  # idle, or past their last call: they exit at once
            if worker.thread is not threading.current_thread():
                worker.thread.join(join_timeout)
        return running

    # -- worker side (called with the pool's threads) ----------------------
    def _spawn(self, job: _Job) -> None:  # with _lock held
        worker = _Worker(self, f"{self.name_prefix}_{next(self._names)}")
        worker.inbox.put(job)
        self._workers.add(worker)
        self._counted += 1
        worker.thread.start()

    def _next(self, worker: _Worker) -> bool:
        """After a call: queue the next job, or go idle (True); False: exit."""
        with self._lock:
            if worker.abandoned or self._closed:
                self._drop(worker)
                return False
            if self._backlog:
                worker.inbox.put(self._backlog.popleft())
            else:
                self._idle.append(worker)
            return True

    def _retire(self, worker: _Worker) -> bool:
        """Idle for ``idle_timeout``: exit unless a job was handed over meanwhile."""
        with self._lock:
            if worker not in self._idle:
                return False
            self._idle.remove(worker)
            self._drop(worker)
            return True

    def _drop(self, worker: _Worker) -> None:  # with _lock held
        self._workers.discard(worker)
        if not worker.abandoned:
            self._counted -= 1
