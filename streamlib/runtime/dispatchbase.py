"""``Dispatcher``: the base class of every dispatcher, and CPU time per call.

A dispatcher runs an actor's ``setup``/``process``/``teardown`` somewhere (the
loop, a thread, a worker process); ``streamlib.runtime.dispatchers`` has the
thread-based ones and the resolver, ``streamlib.runtime.procpool`` the process
pool. ``timed_process`` is the call every dispatcher that runs ``process`` in
this process makes: it measures the CPU time of the thread it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Awaitable, Callable, ClassVar, Iterator, Self

from streamlib.core.samples import UNKNOWN
from streamlib.errors import DispatcherShutdownError, ShutdownTimeoutError

if TYPE_CHECKING:
    from streamlib.clocks import TimedTick
    from streamlib.core.actor import Actor

_Method = Callable[[], "Awaitable[None] | None"]


def _on_loop_thread() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Dispatcher(ABC):
    """Runs an actor's methods somewhere; one instance serves many actors.

    ``setup``/``dispatch``/``teardown`` re-raise what the actor raised and raise
    DispatcherShutdownError once ``shutdown`` was called.
    """

    name: ClassVar[str]

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._closed = False
        self._inflight = 0  # calls currently inside setup/dispatch/teardown

    @abstractmethod
    async def setup(self, actor: Actor) -> None:
        """Run ``actor.setup()`` where ``process`` will run."""

    @abstractmethod
    async def dispatch(self, actor: Actor, tick: TimedTick) -> None:
        """Run ``actor.process(tick)`` to completion."""

    @abstractmethod
    async def teardown(self, actor: Actor) -> None:
        """Run ``actor.teardown()`` and free what this dispatcher holds for the actor."""

    @property
    def is_shutdown(self) -> bool:
        return self._closed

    def abandon(self, actor: Actor) -> bool:
        """Give up on ``actor``'s call in flight (stalled); True when one was
        abandoned. The base class cannot: a call on the loop or in a worker
        process is left to finish (the actor is stalled all the same)."""
        return False

    def shutdown(self, timeout: float = 5.0) -> None:
        """Refuse new work, wait up to ``timeout`` s for running work, release everything.

        Idempotent. Raises ShutdownTimeoutError when work was still running at the
        deadline (resources are released anyway; a thread stuck in user code exits
        when that code returns).
        """
        with self._cond:
            if self._closed:
                return
            self._closed = True
        self._shutdown(max(0.0, timeout))

    close = shutdown

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<{type(self).__name__}{' shut down' if self._closed else ''}>"

    # -- helpers for subclasses --------------------------------------------
    def _shutdown(self, timeout: float) -> None:
        if not self._wait_idle(timeout):
            raise ShutdownTimeoutError(f"{self.name} dispatcher: work still running after {timeout} s")

    def _refused(self, actor: Actor, what: str) -> DispatcherShutdownError:
        return DispatcherShutdownError(
            f"{self.name} dispatcher is shut down; cannot {what} actor '{actor.actor_id}'")

    @contextlib.contextmanager
    def _work(self, actor: Actor, what: str) -> Iterator[None]:
        """Count one in-flight call; raises DispatcherShutdownError when shut down."""
        with self._cond:
            if self._closed:
                raise self._refused(actor, what)
            self._inflight += 1
        try:
            yield
        finally:
            with self._cond:
                self._inflight -= 1
                self._cond.notify_all()

    def _wait_idle(self, timeout: float) -> bool:
        with self._cond:
            if _on_loop_thread():  # in-flight coroutines need this very thread to finish
                return self._inflight == 0
            return self._cond.wait_for(lambda: self._inflight == 0, timeout)


def _measured(actor: Actor, tick: TimedTick) -> Awaitable[None] | None:
    st = actor._sl
    started = time.thread_time_ns()
    try:
        result = actor.process(tick)
    finally:
        st.cpu_ns = time.thread_time_ns() - started
    if result is not None:
        st.cpu_ns = UNKNOWN  # the work happens when the awaitable runs, elsewhere
    return result


def timed_process(actor: Actor, tick: TimedTick) -> _Method:
    """``actor.process(tick)`` as a call that, run on the thread doing the work,
    hands that thread's CPU time during the call to the runtime (``_sl.cpu_ns``).

    Metrics (``streamlib.observe.metrics``): the runtime awaits the dispatcher
    from its loop while ``process`` runs on a dispatcher thread, so only the
    dispatcher's code on that thread can read that thread's CPU clock; the cost
    is two ``thread_time_ns`` calls. ``async def process`` (and a sync one
    returning an awaitable) stays unknown, as does anything with
    ``Runtime(collect_metrics=False)``; direct ``actor.process(tick)`` calls
    are not measured.
    """
    if actor.is_async or not actor._sl.measure_cpu:
        return functools.partial(actor.process, tick)
    return functools.partial(_measured, actor, tick)
