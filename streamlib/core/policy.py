"""Restart policies and stall budgets: what an actor declares about its supervision.

``Actor(restart=..., stall_timeout=...)``, pipeline files and the control plane
validate these here, at construction; the runtime's ``Supervisor``
(``streamlib.runtime.supervisor``) and ``Watchdog`` (``streamlib.runtime.watchdog``)
act on them. See the supervisor's docstring for what each mode means.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable, Literal, Union

from streamlib.errors import ConfigError

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
