"""Offline graphs that can never finish or progress: detected and named.

A lock-step (non-realtime, e.g. ``VirtualClock``) graph ends when its clocks
end. Two shapes used to hang or pass silently:

* an actor on an endless realtime clock (a source given no ``clock``, which
  then makes its own ``SoftwareClock``) in a graph whose lock-step clocks have
  all ended: ``run()`` without a limit blocked forever. ``Runtime.wait()``
  now returns (not finished) and ``RunResult.stuck`` names the actor;
* a source with no clock and no inputs in a lock-step graph is never ticked:
  when it wrote nothing by the end of the run, ``RunResult.stuck`` names it.

``reaches(a, b)`` (whether ``a``'s outputs lead to ``b``) lets an actor that
waits for its inputs skip an input fed back from its own output, which would
otherwise wait for itself forever.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime


def endless_offline(rt: Runtime) -> dict[str, str]:
    """Actors on endless realtime clocks once every lock-step clock has ended."""
    with rt._lock:
        drivers = list(rt._drivers.values())
    lockstep = [d for d in drivers if not d.clock.realtime]
    if not lockstep or not all(d.finished.is_set() for d in lockstep):
        return {}
    reasons: dict[str, str] = {}
    for driver in drivers:
        if driver.clock.realtime and not driver.finished.is_set():
            for actor in driver.subscribers:
                reasons[actor.actor_id] = (
                    f"actor '{actor.actor_id}' runs on realtime clock "
                    f"'{driver.clock.clock_id}' ({type(driver.clock).__name__}), which never "
                    "ends, after every lock-step clock of the graph ended: give it the "
                    "graph's virtual clock, or run with a time limit")
    return reasons


def never_ticked(rt: Runtime) -> dict[str, str]:
    """Linked sources (no clock, no inputs) of a lock-step graph that wrote nothing."""
    with rt._lock:
        drivers = list(rt._drivers.values())
        actors = list(rt._actors.values())
    if not any(not d.clock.realtime for d in drivers):
        return {}
    reasons: dict[str, str] = {}
    for actor in actors:
        outs = list(actor.outputs.values())
        if actor.clock is None and not len(actor.inputs) and outs \
                and any(o.links for o in outs) and not any(o.written for o in outs):
            reasons[actor.actor_id] = (
                f"actor '{actor.actor_id}' has no clock and no inputs, so nothing ticks it "
                "in this lock-step graph, and it wrote nothing: give it the graph's clock")
    return reasons


def reaches(start: Actor, target: Actor) -> bool:
    """Whether a path of links leads from ``start``'s outputs to ``target``."""
    seen: set[int] = set()
    todo = [start]
    while todo:
        actor = todo.pop()
        for out in actor.outputs.values():
            for inp in out.links:
                peer = inp.actor
                if peer is None:
                    continue
                if peer is target:
                    return True
                if id(peer) not in seen:
                    seen.add(id(peer))
                    todo.append(peer)
    return False
