"""Stopping actors within a deadline, and retiring one the supervisor rebuilds.

``stop_actors`` (``Runtime.close()``, ``Actor.close()``) runs on the runtime
loop in three phases, so one deadline bounds the whole stop however many
calls are stuck (it used to cost the timeout once per hung actor):

1. every actor is marked stopped and unsubscribed from its clock at once;
2. the calls in flight get until half of the remaining time to return; one
   still running then is abandoned (its dispatcher lets its thread go: a
   daemon thread that exits if the call ever returns) and never torn down,
   since that call still owns the actor; a stalled actor is not waited for;
3. the others are torn down in order, each ``teardown`` bounded by what is
   left of the deadline (at least ``TEARDOWN_FLOOR`` s, so writers behind a
   stuck actor still finalise their files).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from streamlib.core.actor import ActorStatus
from streamlib.errors import ShutdownTimeoutError

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime

logger = logging.getLogger("streamlib")

TEARDOWN_FLOOR = 0.25


async def stop_actors(rt: Runtime, actors: list[Actor], deadline: float) -> None:
    """Stop ``actors`` (see the module docstring); idempotent per actor."""
    started = time.monotonic()
    entries: list[tuple[Actor, bool, bool]] = []  # actor, ran setup, abandoned
    for actor in actors:
        st = actor._sl
        if st.status is ActorStatus.STOPPED:
            continue
        if st.replaced_by is not None:  # retired by the supervisor: nothing left to do
            st.status = ActorStatus.STOPPED
            continue
        ran_setup = st.status in (ActorStatus.RUNNING, ActorStatus.FAILED,
                                  ActorStatus.STARTING, ActorStatus.STALLED)
        stalled = st.status is ActorStatus.STALLED
        st.status = ActorStatus.STOPPED
        rt._unsubscribe(actor)
        rt._release_start_hold(actor)
        entries.append((actor, ran_setup, stalled))

    current = asyncio.current_task()
    waiting: dict[asyncio.Task[None], int] = {}
    for index, (actor, _, stalled) in enumerate(entries):
        task = rt._tasks.get(actor.actor_id)
        if task is None or task.done() or task is current:
            continue
        if stalled:
            task.cancel()  # its call is abandoned already; do not wait for it
        else:
            waiting[task] = index
    if waiting:
        budget = max(0.0, (deadline - started) / 2)
        _, pending = await asyncio.wait(set(waiting), timeout=budget)
        for task in pending:
            index = waiting[task]
            actor, ran_setup, _ = entries[index]
            entries[index] = (actor, ran_setup, True)
            abandon(actor, f"process() still running {budget:.3g} s into close()")
            task.cancel()

    for actor, ran_setup, abandoned in entries:
        st = actor._sl
        rt._release_pending(actor)
        for inp in actor.inputs.values():
            inp.disconnect()
        actor.disconnect()
        if ran_setup and not abandoned and st.dispatcher is not None:
            left = max(TEARDOWN_FLOOR, deadline - time.monotonic())
            try:
                await asyncio.wait_for(st.dispatcher.teardown(actor), left)
            except asyncio.TimeoutError:
                abandon(actor, f"teardown() still running after {left:.3g} s")
            except Exception:  # noqa: BLE001
                logger.exception("actor %r: teardown() failed", actor.actor_id)
        elif abandoned:
            logger.warning("actor %r: teardown() skipped (its process() call was abandoned)",
                           actor.actor_id)
        await _drop_dedicated(rt, actor, deadline)
        with rt._lock:
            if rt._actors.get(actor.actor_id) is actor:
                del rt._actors[actor.actor_id]
        actor._sl_run_close_callbacks()


def abandon(actor: Actor, why: str) -> None:
    disp = actor._sl.dispatcher
    released = disp.abandon(actor) if disp is not None else False
    logger.warning("actor %r: %s; %s", actor.actor_id, why,
                   "its thread was abandoned" if released else "left to finish on its own")


async def _drop_dedicated(rt: Runtime, actor: Actor, deadline: float) -> None:
    dedicated = rt._dispatchers.pop(f"dedicated:{actor.actor_id}", None)
    if dedicated is None:
        return
    try:  # its one thread is idle (or abandoned) now: the join is brief
        dedicated.shutdown(min(1.0, max(0.0, deadline - time.monotonic())))
    except ShutdownTimeoutError:
        logger.warning("actor %r: its dedicated thread is still busy; abandoned", actor.actor_id)


async def retire(rt: Runtime, actor: Actor) -> None:
    """Take a failed or stalled ``actor`` out of the graph for the supervisor to
    rebuild it: unlinked, torn down (not when stalled), out of the runtime's
    table, its clock driver kept for the rebuilt actor."""
    st = actor._sl
    stalled = st.status is ActorStatus.STALLED
    rt._unsubscribe(actor, stop_idle=False)
    rt._release_pending(actor)
    for inp in actor.inputs.values():
        inp.disconnect()
    actor.disconnect()
    if not stalled and st.dispatcher is not None:
        try:
            await asyncio.wait_for(st.dispatcher.teardown(actor), actor._sl_stall_budget() or 5.0)
        except asyncio.TimeoutError:
            abandon(actor, "teardown() before its restart did not return")
        except Exception:  # noqa: BLE001
            logger.exception("actor %r: teardown() before its restart failed", actor.actor_id)
    await _drop_dedicated(rt, actor, time.monotonic() + 1.0)
    with rt._lock:
        if rt._actors.get(actor.actor_id) is actor:
            del rt._actors[actor.actor_id]
    actor._sl_run_close_callbacks()
