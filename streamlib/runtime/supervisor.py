"""Supervision: restart policies and the one-for-one ``Supervisor`` of a runtime.

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
import math
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal, Union

from streamlib.errors import ConfigError

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime

logger = logging.getLogger("streamlib")

RestartMode = Literal["never", "on-failure", "always"]
RESTART_MODES: tuple[str, ...] = ("never", "on-failure", "always")
RestartSpec = Union["RestartPolicy", str, None]


def _number(where: str, name: str, value: Any, *, minimum: float, integer: bool = False) -> None:
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or not math.isfinite(value) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise ConfigError(f"{where}: {name!r} must be {kind} >= {minimum:g}, got {value!r}")


def check_stall_timeout(value: Any, *, where: str) -> float | None:
    """``value`` as seconds (None: the runtime's budget, 0: unwatched); ConfigError
    otherwise, starting with ``where`` (the subject: "actor 'x': stall_timeout")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where} must be a number of seconds >= 0 "
                          f"(0: not watched), got {value!r}")
    return float(value)


def check_restart(name: str, value: Any, fail: Callable[[str], Exception]) -> RestartPolicy | None:
    """The ``restart`` field of actor ``name`` in a pipeline file or a control-plane
    request, as a policy; ``fail(message)`` is raised for a bad one."""
    try:
        return RestartPolicy.coerce(value, where=f"actor {name!r}: field 'restart'")
    except ConfigError as exc:
        raise fail(str(exc)) from None


def check_stall_field(name: str, value: Any, fail: Callable[[str], Exception]) -> float | None:
    """The ``stall_timeout`` field of actor ``name`` (see ``check_restart``)."""
    try:
        return check_stall_timeout(value, where=f"actor {name!r}: field 'stall_timeout'")
    except ConfigError as exc:
        raise fail(str(exc)) from None


@dataclass(frozen=True)
class RestartPolicy:
    """When and how fast the supervisor rebuilds an actor (see the module docstring)."""

    mode: RestartMode = "never"
    max_restarts: int = 3
    window: float = 60.0
    backoff: float = 0.1
    backoff_factor: float = 2.0
    backoff_max: float = 5.0

    FIELDS = ("mode", "max_restarts", "window", "backoff", "backoff_factor", "backoff_max")

    def __post_init__(self) -> None:
        self.validate("restart policy")

    def validate(self, where: str) -> None:
        if self.mode not in RESTART_MODES:
            raise ConfigError(f"{where}: 'mode' must be one of {', '.join(RESTART_MODES)}, "
                              f"got {self.mode!r}")
        _number(where, "max_restarts", self.max_restarts, minimum=0, integer=True)
        _number(where, "window", self.window, minimum=0)
        _number(where, "backoff", self.backoff, minimum=0)
        _number(where, "backoff_factor", self.backoff_factor, minimum=1)
        _number(where, "backoff_max", self.backoff_max, minimum=0)

    @classmethod
    def coerce(cls, spec: Any, *, where: str) -> RestartPolicy | None:
        """None for no supervision; a policy from a mode name, a mapping
        (``{"mode": ..., "max_restarts": ...}``, as in pipeline files) or a
        policy. ConfigError starting with ``where`` (the subject: "actor 'x':
        restart") otherwise."""
        if spec is None or spec == "never":
            return None
        if isinstance(spec, RestartPolicy):
            policy = spec
        elif isinstance(spec, str):
            if spec not in RESTART_MODES:
                raise ConfigError(f"{where} must be one of {', '.join(RESTART_MODES)}, "
                                  f"got {spec!r}")
            policy = cls(mode=spec)  # type: ignore[arg-type]
        elif isinstance(spec, dict):
            unknown = sorted(set(spec) - set(cls.FIELDS))
            if unknown:
                raise ConfigError(f"{where}: unknown field(s) {unknown} "
                                  f"(accepted: {', '.join(cls.FIELDS)})")
            if "mode" not in spec:
                raise ConfigError(f"{where}: missing field 'mode' "
                                  f"(one of {', '.join(RESTART_MODES)})")
            try:
                policy = cls(**spec)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace("restart policy", where, 1)) from None
        else:
            raise ConfigError(f"{where} must be one of {', '.join(RESTART_MODES)}, "
                              f"a mapping or a RestartPolicy, got {type(spec).__name__}")
        return None if policy.mode == "never" else policy

    def restarts_after(self, reason: str) -> bool:
        """Whether a failure of kind ``reason`` ("process", "stalled", "setup") is restarted."""
        if self.mode == "always":
            return True
        return self.mode == "on-failure" and reason in ("process", "stalled")

    def delay(self, attempt: int) -> float:
        """Seconds before rebuild number ``attempt`` (1-based, within the window)."""
        return min(self.backoff_max, self.backoff * self.backoff_factor ** max(0, attempt - 1))

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        from streamlib.core.actor import ActorStatus

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
        from streamlib.core.actor import ActorStatus, rebuilding_id
        from streamlib.runtime.runtime import _current
        from streamlib.runtime.stopping import retire

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
            id_token = rebuilding_id.set(old.actor_id)
            rt_token = _current.set(rt)
            try:
                new = type(old)(*args, **kwargs)  # attaches and starts (setup is scheduled)
            finally:
                _current.reset(rt_token)
                rebuilding_id.reset(id_token)
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
            import traceback

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
