"""``POST /actors`` of the control plane: a request body checked and turned into an actor.

Everything a request names is checked before anything is imported, read,
allocated or called (see ``streamlib.core.trust``): the type (built-in, or a class
of an allowed module), the parameters (known names, frame size within the
server's limits, file paths confined to its folders), then the constructor
runs under the server's ``TrustPolicy`` so that ``model``/``fn``/``draw``
strings resolve only to registered names or allowed modules, and draw or
shader code only with ``allow_code``. A refusal of the policy is a 403, any
other bad field a 400; both name the actor and the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamlib.net.httpguard import Refusal
from streamlib.core.limits import MAX_FRAME_PIXELS, MAX_FRAME_SIDE, check_frame_size
from streamlib.core.trust import TrustPolicy, applied, confine_params

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.control.catalog import ActorType
    from streamlib.clocks import Clock
    from streamlib.runtime.runtime import Runtime

ACTOR_FIELDS = ("type", "id", "params", "clock", "dispatcher", "restart", "stall_timeout")
CLOCK_FIELDS = ("fps", "type", "max_ticks")


def bad(message: str) -> Refusal:
    return Refusal(400, message)


def check_fields(body: dict[str, Any], accepted: tuple[str, ...], where: str = "") -> None:
    unknown = [k for k in body if k not in accepted]
    if unknown:
        raise bad(f"{where}unknown field {unknown[0]!r} "
                  f"(accepted: {', '.join(accepted) or 'none'})")


def refusal(where: str, exc: Exception) -> Refusal:
    """403 for what the policy refuses (PermissionError), else 400."""
    return Refusal(403 if isinstance(exc, PermissionError) else 400, f"{where}{exc}")


@dataclass(frozen=True)
class ActorRequest:
    """A checked ``POST /actors`` body (no actor exists yet)."""

    actor_id: str
    atype: ActorType
    params: dict[str, Any]
    clock: Any
    dispatcher: str | None
    restart: Any = None  # streamlib.core.policy.RestartPolicy or None
    stall_timeout: float | None = None  # streamlib.runtime.watchdog; None: the runtime's


@dataclass(frozen=True)
class CreationRules:
    """What a control server lets a request create."""

    policy: TrustPolicy
    max_frame_side: int = MAX_FRAME_SIDE
    max_frame_pixels: int = MAX_FRAME_PIXELS
    allow_remote_media: bool = False  # may requests send or join beyond loopback?

    def check(self, body: dict[str, Any]) -> ActorRequest:
        """The request ``body`` checked; raises Refusal (400/403) naming the field."""
        from streamlib.control.catalog import resolve_actor_type
        from streamlib.control.pipeline import check_actor_name, check_dispatcher, check_params

        check_fields(body, ACTOR_FIELDS)
        for name in ("id", "type"):
            if name not in body:
                raise bad(f"field {name!r} is required")
        actor_id = check_actor_name(body["id"], bad)
        with applied(self.policy):  # a module is checked before it is imported
            try:
                atype = resolve_actor_type(str(body["type"]))
            except (ValueError, PermissionError) as exc:
                raise refusal(f"actor {actor_id!r}: field 'type': ", exc) from None
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise bad(f"actor {actor_id!r}: field 'params' must be a JSON object, "
                      f"got {type(params).__name__}")
        check_params(actor_id, atype, params, bad,
                     also="id, type, clock and dispatcher go beside 'params'")
        where = f"actor {actor_id!r} ({atype.name})"
        self._check_size(where, atype, params)
        if params.get("allow_remote") and not self.allow_remote_media:
            # Media egress is the control plane's to grant, like files and code.
            raise Refusal(403, f"{where}: field 'allow_remote': the control plane does not "
                               "allow network destinations beyond loopback (start it with "
                               "allow_remote_media=True / --allow-remote-media)")
        with applied(self.policy):
            try:
                params = confine_params(atype.name, params, where)
            except (ValueError, PermissionError) as exc:
                raise refusal("", exc) from None
        dispatcher = check_dispatcher(actor_id, body.get("dispatcher"), bad)
        from streamlib.core.policy import check_restart, check_stall_field

        restart = check_restart(actor_id, body.get("restart"), bad)
        stall_timeout = check_stall_field(actor_id, body.get("stall_timeout"), bad)
        return ActorRequest(actor_id, atype, params, body.get("clock"), dispatcher,
                            restart, stall_timeout)

    def _check_size(self, where: str, atype: ActorType, params: dict[str, Any]) -> None:
        sizes = []
        for name in ("width", "height"):
            info = atype.param(name)
            sizes.append(params.get(name, None if info is None else info.default))
        if sizes == [None, None]:
            return
        if sizes[0] is None or sizes[1] is None:  # one given, the other derived (e.g. SDP)
            sizes = [1 if v is None else v for v in sizes]
        try:
            check_frame_size(sizes[0], sizes[1], where, max_side=self.max_frame_side,
                             max_pixels=self.max_frame_pixels)
        except ValueError as exc:
            raise bad(str(exc)) from None

    def create(self, request: ActorRequest, runtime: Runtime, clock: Clock | None) -> Actor:
        """Construct the actor under the policy; raises what the constructor raises."""
        from streamlib.control.pipeline import create_actor

        with applied(self.policy):
            return create_actor(request.atype, request.actor_id, request.params, runtime,
                                clock=clock, dispatcher=request.dispatcher,
                                restart=request.restart, stall_timeout=request.stall_timeout)


def parse_clock(actor_id: str, spec: Any, find: Any) -> tuple[Clock | None, bool]:
    """The clock a request names (``find(id)`` looks up an actor to share one),
    and whether it was made here (the caller closes it on failure)."""
    from streamlib.clocks import SoftwareClock, VirtualClock, parse_rate

    where = f"actor {actor_id!r}: field 'clock'"
    if spec is None:
        return None, False
    if isinstance(spec, str):
        other = find(spec, f"{where}: ")
        if other.clock is None:
            raise bad(f"{where}: actor {spec!r} has no clock to share")
        return other.clock, False
    if not isinstance(spec, dict):
        raise bad(f"{where}: expected {{\"fps\": N}} (optional \"type\": \"software\" or "
                  f"\"virtual\", \"max_ticks\": N) or the id of an actor whose clock to "
                  f"share, got {spec!r}")
    check_fields(spec, CLOCK_FIELDS, f"{where}: ")
    if "fps" not in spec:
        raise bad(f"{where}: field 'fps' is required")
    kind = spec.get("type", "software")
    if kind not in ("software", "virtual"):
        raise bad(f"{where}: field 'type': {kind!r} is not one of software, virtual")
    max_ticks = spec.get("max_ticks")
    if max_ticks is not None and (kind != "virtual" or isinstance(max_ticks, bool)
                                  or not isinstance(max_ticks, int) or max_ticks < 1):
        raise bad(f"{where}: field 'max_ticks' must be an int >= 1 on a virtual clock, "
                  f"got {max_ticks!r} (type {kind})")
    try:
        rate = parse_rate(spec["fps"])
    except (TypeError, ValueError) as exc:
        raise bad(f"{where}: field 'fps': {exc}") from None
    if kind == "virtual":
        return VirtualClock(rate, max_ticks=max_ticks, clock_id="virtual"), True
    return SoftwareClock(rate, clock_id="monotonic"), True


__all__ = ["ActorRequest", "CreationRules", "parse_clock", "check_fields", "bad", "refusal"]
