"""``Watchdog``: marks an actor ``stalled`` when one ``process`` call overruns its budget.

One daemon thread per started runtime (``streamlib-watchdog-<name>``), owned
and stopped by ``Runtime.close()``. It is a thread, not a loop task, so it
also sees a call that blocks the loop itself (a sync actor on the asyncio
dispatcher). Budget: the actor's ``stall_timeout``, else the runtime's
(``Runtime(stall_timeout=5.0)``); 0 or None turns watching off. ``setup`` and
``teardown`` are not watched (loading a model may take long); ``close()``
bounds them instead.

A stalled actor gets no further ticks, like a failed one; the tick it held
and any waiting tick are released, so lock-step (offline) graphs go on
without it; a thread dispatcher abandons the stuck call's thread (queued work
moves to a fresh one, see ``streamlib.runtime.workerpool``); and the supervisor may
rebuild the actor. If the stuck call returns later, its result is ignored and
the actor stays stalled.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from streamlib.core.actor import ActorStatus

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime

logger = logging.getLogger("streamlib")

DEFAULT_STALL_TIMEOUT = 5.0


class Watchdog:
    """Scans the runtime's actors every ``period`` seconds (a quarter of the
    smallest budget, between 10 ms and 0.5 s)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name=f"streamlib-watchdog-{runtime.name}")

    def start(self) -> None:
        self.thread.start()

    def stop(self, timeout: float = 1.0) -> None:
        """Idempotent; joins the thread (it wakes at once)."""
        self._stop.set()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    def _period(self, actors: list[Actor]) -> float:
        budgets = [b for b in (a._sl_stall_budget() for a in actors) if b]
        return min(0.5, max(0.01, min(budgets, default=2.0) / 4))

    def _run(self) -> None:
        rt = self.runtime
        while True:
            actors = rt.actors()
            if self._stop.wait(self._period(actors)):
                return
            now = time.monotonic_ns()
            for actor in actors:
                budget = actor._sl_stall_budget()
                started = actor._sl.call_started_ns
                if budget and started and now - started > budget * 1e9:
                    try:
                        mark_stalled(rt, actor, actor._sl.call_seq, (now - started) / 1e9,
                                     budget)
                    except Exception:  # noqa: BLE001 - the watchdog must outlive any actor
                        logger.exception("watchdog: marking actor %r stalled failed",
                                         actor.actor_id)


def end_call(actor: Actor, seq: int) -> bool:
    """End call ``seq`` of ``actor``; True for the one caller (the runtime loop
    when the call returns, or the watchdog declaring it stalled) that then
    releases the call's tick."""
    st = actor._sl
    with st.lock:
        if st.call_seq != seq or not st.call_started_ns:
            return False
        st.call_started_ns = 0
        return True


def mark_stalled(rt: Runtime, actor: Actor, seq: int, elapsed: float, budget: float) -> None:
    """Watchdog thread: call ``seq`` of ``actor`` overran ``budget``; mark it stalled."""
    st = actor._sl
    if st.status is not ActorStatus.RUNNING or rt.closed:
        return
    rt.hold()  # no idle instant before the loop has decided about a restart
    if not end_call(actor, seq):
        rt.release()
        return
    st.status = ActorStatus.STALLED
    st.stalls += 1
    st.error = (f"actor '{actor.actor_id}' stalled: one process() call still running "
                f"after {elapsed:.3g} s (stall_timeout {budget:g} s); the call was abandoned")
    logger.error("%s; other actors keep running", st.error)
    rt.release()  # the stuck call's tick: lock-step clocks go on without it
    if st.dispatcher is not None:
        st.dispatcher.abandon(actor)
    try:
        rt.loop.call_soon_threadsafe(_after_stall, rt, actor)
    except RuntimeError:  # loop closed
        rt.release()


def _after_stall(rt: Runtime, actor: Actor) -> None:
    try:
        rt._release_pending(actor)
        rt.supervisor.on_down(actor, "stalled")
    finally:
        rt.release()
