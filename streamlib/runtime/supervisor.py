"""Supervision: the one-for-one ``Supervisor`` of a runtime (policies: ``streamlib.core.policy``).

Like an Erlang/OTP one-for-one supervisor: when an actor fails (``process``
raised) or stalls (the watchdog, ``streamlib.runtime.watchdog``), and its policy says
so, that actor alone is torn down and rebuilt from the arguments its
constructor was called with (recorded by the actor metaclass), under the same
id, with the same links (every input fed by the same upstream output, every
output feeding the same inputs) and the same counters; ``restarts`` counts the
rebuilds. The old object is left ``failed``/``stalled`` with ``replaced_by``
set; ``runtime.get(actor_id)`` is the new one. (The constructor's arguments are
kept as long as the actor lives, to rebuild from.) A rebuild whose
constructor raises (a writer refusing to overwrite its own partial file, say)
leaves the actor failed, the reason appended to its error.

Policies (``Actor(restart=...)``, pipeline files and the control plane's
``restart`` field; ``RestartPolicy`` for the limits):

* ``"never"`` (default): a failed or stalled actor stays so.
* ``"on-failure"``: rebuilt after ``process`` raised or stalled.
* ``"always"``: also after ``setup`` raised (a broken configuration then
  retries until the rate limit).

At most ``max_restarts`` rebuilds within ``window`` seconds; the next failure
leaves the actor failed, with the reason appended to its error. Rebuild ``n``
(counted within the window) waits ``backoff * backoff_factor ** (n - 1)``
seconds, at most ``backoff_max``. While a rebuild is pending the runtime holds
one unit of work, so a lock-step (offline) graph waits for the new actor
instead of running ahead without it. A stalled actor's ``teardown`` is not
called: its stuck ``process`` call still owns it.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Callable

from streamlib.core import context
from streamlib.core.actor import ActorStatus
from streamlib.runtime.stopping import retire

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.core.policy import RestartPolicy
    from streamlib.runtime.runtime import Runtime

logger = logging.getLogger("streamlib")


class Supervisor:
    """The runtime's one-for-one supervisor; its methods run on the runtime loop.

    ``now`` is the time source of the rate window (inject a fake in tests).
    """

    def __init__(self, runtime: Runtime, now: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.now = now
        self._history: dict[str, deque[float]] = {}

    def on_down(self, actor: Actor, reason: str) -> bool:
        """``actor`` failed in ``reason``; schedule its rebuild (True) when its policy allows."""
        st = actor._sl
        policy = st.restart
        rt = self.runtime
        if policy is None or rt.closed or not policy.restarts_after(reason) \
                or st.status not in (ActorStatus.FAILED, ActorStatus.STALLED) \
                or st.replaced_by is not None:
            return False
        attempt = self.admit(actor.actor_id, policy)
        if attempt is None:
            note = (f"restart limit reached: {policy.max_restarts} restart(s) within "
                    f"{policy.window:g} s (max_restarts={policy.max_restarts}); "
                    f"left {st.status.value}")
            st.error = f"{st.error or ''}\n{note}".lstrip()
            logger.error("actor %r: %s", actor.actor_id, note)
            return False
        delay = policy.delay(attempt)
        rt.hold()  # lock-step clocks wait for the rebuilt actor
        what = "stalled" if reason == "stalled" else f"failed in {reason}()"
        logger.warning("actor %r %s; restarting in %.3g s (restart %d within %g s)",
                       actor.actor_id, what, delay, attempt, policy.window)
        rt.loop.call_later(delay, lambda: rt._spawn(f"restart:{actor.actor_id}",
                                                    self._restart(actor)))
        return True

    def admit(self, actor_id: str, policy: RestartPolicy) -> int | None:
        """Count one more restart of ``actor_id``: its number within the window,
        or None when ``policy.max_restarts`` were already made within it."""
        history = self._history.setdefault(actor_id, deque())
        now = self.now()
        while history and now - history[0] > policy.window:
            history.popleft()
        if len(history) >= policy.max_restarts:
            return None
        history.append(now)
        return len(history)

    async def _restart(self, old: Actor) -> None:
        rt = self.runtime
        handed_over = False
        try:
            if rt.closed or old._sl.status not in (ActorStatus.FAILED, ActorStatus.STALLED):
                return  # closed or removed meanwhile
            inputs = {name: p.upstream for name, p in old.inputs.items()}
            outputs = {name: list(p.links) for name, p in old.outputs.items()}
            await retire(rt, old)
            args, kwargs = old._sl.ctor
            if kwargs.get("runtime") is not None:
                kwargs = {**kwargs, "runtime": rt}
            id_token = context.rebuilding_id.set(old.actor_id)
            try:
                with context.entered(rt):
                    new = type(old)(*args, **kwargs)  # attaches and starts (setup is scheduled)
            finally:
                context.rebuilding_id.reset(id_token)
            st = new._sl
            st.counters = old._sl.counters
            st.restarts = old._sl.restarts + 1
            st.stalls = old._sl.stalls
            st.release_on_start += 1  # our hold() ends once the new actor runs
            handed_over = True
            for name, upstream in inputs.items():
                if upstream is not None and name in new.inputs:
                    upstream.connect(new.inputs[name])
            for name, links in outputs.items():
                for inp in links:
                    if name in new.outputs and inp.upstream is None:
                        new.outputs[name].connect(inp)
            old._sl.replaced_by = new
            _drop_clock_of(rt, old, new)
            logger.warning("actor %r restarted (%d restart(s))", new.actor_id, st.restarts)
        except Exception:  # noqa: BLE001 - a rebuild that fails leaves the actor failed
            old._sl.error = f"{old._sl.error or ''}\nrestart failed:\n{traceback.format_exc()}"
            old._sl.status = ActorStatus.FAILED
            with rt._lock:  # back in the table, so results report it
                rt._actors.setdefault(old.actor_id, old)
            if not handed_over:
                _drop_clock_of(rt, old, None)  # the driver kept for the rebuild has no one
            logger.exception("actor %r: restart failed; it stays failed", old.actor_id)
        finally:
            if not handed_over:
                rt.release()


def _drop_clock_of(rt: Runtime, old: Actor, new: Actor | None) -> None:
    """After a rebuild: stop the old actor's clock driver unless the new actor
    (None: the rebuild failed) kept that clock and so the driver."""
    clock = old.clock
    if clock is None or (new is not None and clock is new.clock):
        return
    with rt._lock:
        driver = rt._drivers.get(id(clock))
        if driver is None or driver.subscribers:
            return
        del rt._drivers[id(clock)]
    driver.stop()  # outside _lock (see Runtime._unsubscribe)
