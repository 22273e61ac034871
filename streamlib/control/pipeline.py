"""Declarative pipelines: a YAML (or JSON) file of actors, clocks and connections.

```yaml
name: overlay
clocks:
  video: {fps: 30}                 # shared by the actors that name it
actors:
  bars:    {type: TestPatternActor, clock: video, width: 640, height: 360, pattern: smpte_bars}
  invert:  {type: TransformActor}
  stats:   {type: StatsSink}
connections:
  - bars -> invert                 # default ports
  - invert.video -> stats.in       # named ports
```

Loading validates everything before any actor exists (unknown keys, types,
parameters, clocks, connection syntax) and every error names the file, the
actor and the field. Building creates the actors in a ``Runtime`` and links
them; port names are checked then, against the ports the actors declared.

Trust: a pipeline file that names modules (``type: package.module:Class``,
``model: package.module:factory``) is as powerful as a Python script: importing
a module runs its code. So by default a file gets built-in actor types and
functions registered by name (``streamlib.register_function``) only; modules
must be allowed by whoever runs it (``load_pipeline(path, allow_modules=[...])``,
``streamlib run --allow-module PKG``), and are checked before they are imported
(see ``streamlib.core.trust``). Inline draw and shader code is accepted: it is text
of the file the user chose to run.

Two modes: ``realtime`` uses ``SoftwareClock``s; ``offline`` replaces every
clock with a ``VirtualClock`` (one per distinct rate, shared, so sources of the
same rate stay frame-aligned) limited to the requested duration, and the graph
renders lock-step as fast as the machine allows.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Literal, Mapping

from streamlib.control.catalog import ActorType, resolve_actor_type
from streamlib.clocks import Clock, SoftwareClock, VirtualClock, parse_rate
from streamlib.errors import StreamlibError
from streamlib.control.runlimits import finite_duration, finite_sources
from streamlib.core.policy import check_restart, check_stall_field
from streamlib.core.trust import TrustPolicy, applied, check_modules

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime
    from streamlib.core.ports import StreamInput, StreamOutput

# Turns a message into the exception to raise: a PipelineError prefixed with
# the file here, an HTTP 400 in ``streamlib.control.server``.
Fail = Callable[[str], Exception]

Mode = Literal["realtime", "offline"]
_TOP_KEYS = {"name", "description", "clocks", "actors", "connections"}
_ACTOR_KEYS = {"type", "clock", "dispatcher", "when", "restart", "stall_timeout"}
_WHEN = ("display", "headless")
_DISPATCHERS = ("asyncio", "thread", "dedicated", "process", "gpu", "gpu-inline")
_CONNECTION = re.compile(r"^\s*([\w-]+)(?:\.(\w+))?\s*->\s*([\w-]+)(?:\.(\w+))?\s*$")
_ENDPOINT = re.compile(r"^\s*([\w-]+)(?:\.(\w+))?\s*$")


class PipelineError(StreamlibError, ValueError):
    """A pipeline file is invalid; the message names the file, actor and field."""


@dataclass(frozen=True)
class ActorSpec:
    name: str
    type: ActorType
    params: Mapping[str, Any]
    clock: str | None = None
    dispatcher: str | None = None
    when: str | None = None  # "display" | "headless": build only on such a machine
    restart: Any = None  # a streamlib.core.policy.RestartPolicy, or None
    stall_timeout: float | None = None  # streamlib.runtime.watchdog; None: the runtime's


@dataclass(frozen=True)
class ConnectionSpec:
    text: str
    src: str
    src_port: str | None
    dst: str
    dst_port: str | None


@dataclass(frozen=True)
class PipelineSpec:
    source: str
    name: str
    clocks: Mapping[str, Fraction]
    actors: Mapping[str, ActorSpec]
    connections: tuple[ConnectionSpec, ...]
    policy: TrustPolicy = field(default_factory=lambda: file_policy(()))

    def build(self, runtime: Runtime, *, mode: Mode = "realtime", seconds: float | None = None,
              overrides: Mapping[str, Mapping[str, Any]] | None = None,
              display: bool | None = None) -> Pipeline:
        """Create and link the actors inside ``runtime`` (not started).

        ``overrides`` maps an actor type name to parameters to force on every
        actor of that type (e.g. ``{"FileWriterActor": {"path": "x.mp4"}}``).
        Actors with ``when: display`` (``when: headless``) and their connections
        are left out unless ``display`` is true (false); ``display=None``
        detects it from ``DISPLAY``/``WAYLAND_DISPLAY``.
        Raises PipelineError naming the file and actor on any failure.
        """
        if display is None:
            display = has_display()
        skipped = {s.name for s in self.actors.values()
                   if s.when is not None and (s.when == "display") != display}
        named = {n: SoftwareClock(rate, clock_id="monotonic") for n, rate in self.clocks.items()}
        actors: dict[str, Actor] = {}
        try:
            for spec in self.actors.values():
                if spec.name in skipped:
                    continue
                params = dict(spec.params)
                params.update((overrides or {}).get(spec.type.name, {}))
                try:
                    with applied(self.policy):  # model/fn strings resolve under it
                        actors[spec.name] = create_actor(
                            spec.type, spec.name, params, runtime,
                            clock=None if spec.clock is None else named[spec.clock],
                            dispatcher=spec.dispatcher, restart=spec.restart,
                            stall_timeout=spec.stall_timeout)
                except Exception as exc:  # noqa: BLE001 - rewrapped with file and actor
                    raise PipelineError(
                        f"{self.source}: actor {spec.name!r} ({spec.type.name}): {exc}"
                    ) from exc
            for conn in self.connections:
                if conn.src not in skipped and conn.dst not in skipped:
                    self._connect(actors, conn)
        except BaseException:
            for actor in actors.values():
                actor.close()
            raise
        if mode == "offline":
            if seconds is None and not finite_sources(actors.values()):
                for actor in actors.values():
                    actor.close()
                raise PipelineError(
                    f"{self.source}: offline mode needs a duration: no actor ends on its own "
                    "(a FileReaderActor with loop: false would); give seconds "
                    "(streamlib run: --seconds or --frames)")
            _make_offline(actors.values(), seconds)
        return Pipeline(self, runtime, actors, mode)

    def _connect(self, actors: Mapping[str, Actor], conn: ConnectionSpec) -> None:
        src, dst = actors[conn.src], actors[conn.dst]
        where = f"{self.source}: connection {conn.text!r}"
        try:
            out, inp = resolve_link(src, conn.src_port, dst, conn.dst_port)
            out.connect(inp)
        except (KeyError, TypeError, ValueError) as exc:
            raise PipelineError(f"{where}: {exc}") from exc


def create_actor(atype: ActorType, name: str, params: Mapping[str, Any], runtime: Runtime, *,
                 clock: Clock | None = None, dispatcher: str | None = None,
                 restart: Any = None, stall_timeout: float | None = None) -> Actor:
    """Construct one actor of ``atype`` named ``name`` in ``runtime``.

    ``params`` should have passed ``check_params``. Raises whatever the
    constructor raises (ValueError/TypeError naming the field), and ValueError
    when ``runtime`` already has an actor ``name``.
    """
    kwargs: dict[str, Any] = {"actor_id": name, "runtime": runtime}
    if clock is not None:
        kwargs["clock"] = clock
    if dispatcher is not None:
        kwargs["dispatcher"] = dispatcher
    if restart is not None:  # streamlib.runtime.supervisor
        kwargs["restart"] = restart
    if stall_timeout is not None:
        kwargs["stall_timeout"] = stall_timeout
    return atype.cls(**params, **kwargs)


def resolve_link(src: Actor, src_port: str | None, dst: Actor,
                 dst_port: str | None) -> tuple[StreamOutput, StreamInput]:
    """The ports ``src[.src_port] -> dst[.dst_port]`` names: the default output,
    and the default input for its kind, where a port is not given.

    Raises PortError (a KeyError) naming an unknown port, PortKindError when
    ``dst`` has no input for the output's kind. Connecting is left to the caller.
    """
    out = src.outputs[src_port] if src_port else src.default_output()
    inp = dst.inputs[dst_port] if dst_port else dst.default_input(out.kind)
    return out, inp


def parse_endpoint(text: Any) -> tuple[str, str | None] | None:
    """``"actor"`` or ``"actor.port"`` (one side of a connection) as
    ``(actor, port or None)``; None when ``text`` is not in that form."""
    m = _ENDPOINT.match(text) if isinstance(text, str) else None
    return None if m is None else (m.group(1), m.group(2))


def has_display() -> bool:
    """True when a window system is reachable (X11 or Wayland)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _make_offline(actors: Any, seconds: float | None) -> None:
    """Swap every clock for a shared VirtualClock of the same rate (runtime not started).

    ``seconds=None``: run until the finite sources end (``streamlib.control.runlimits``):
    a clock driving one is unlimited (the source closes it at its end), the
    others stop after the longest finite source's duration.
    """
    actors = list(actors)
    # rates whose shared clock a finite source ends (when no seconds are given)
    ended_by_source: set[Fraction] = set() if seconds is not None else {
        a.clock.rate for a in finite_sources(actors) if a.clock is not None}
    limit = seconds if seconds is not None else finite_duration(actors)
    virtual: dict[Fraction, VirtualClock] = {}
    for actor in actors:
        clock: Clock | None = actor.clock
        if clock is None:
            continue
        rate = clock.rate
        if rate not in virtual:
            ticks = (None if limit is None or rate in ended_by_source
                     else max(1, math.ceil(limit * rate)))
            virtual[rate] = VirtualClock(rate, max_ticks=ticks, clock_id="virtual")
        clock.close()
        actor.clock = virtual[rate]


@dataclass
class Pipeline:
    """The built graph: actors by name, in the runtime that owns them."""

    spec: PipelineSpec
    runtime: Runtime
    actors: dict[str, Actor]
    mode: Mode
    outputs: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Actor:
        return self.actors[name]


# -- loading ------------------------------------------------------------------

def file_policy(allow_modules: Any, source: str = "a pipeline file") -> TrustPolicy:
    """The trust policy of a pipeline file: built-ins, registered names, inline
    code, and modules only from ``allow_modules``."""
    return TrustPolicy(source=source, allow_modules=check_modules(allow_modules, "allow_modules"),
                       hint="allow_modules=[...] (streamlib run --allow-module ...)")


def load_pipeline(path: str | Path, *, allow_modules: Any = ()) -> PipelineSpec:
    """Read and validate a pipeline file (``.yaml``/``.yml`` or ``.json``).

    ``allow_modules``: module names (a package allows its submodules) whose
    actor classes and functions the file may name; none by default.
    Raises FileNotFoundError naming the path, PipelineError for invalid content
    (a module not allowed included: it is not imported).
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"pipeline file not found: {p}")
    text = p.read_text()
    try:
        if p.suffix == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - yaml and json raise different types
        raise PipelineError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    return parse_pipeline(data, source=str(p), allow_modules=allow_modules)


def parse_pipeline(data: Any, *, source: str = "<pipeline>",
                   allow_modules: Any = ()) -> PipelineSpec:
    """Validate an already-parsed pipeline mapping; PipelineError on any problem.
    ``allow_modules`` as for ``load_pipeline``."""
    def fail(msg: str) -> PipelineError:
        return PipelineError(f"{source}: {msg}")

    try:
        policy = file_policy(allow_modules, f"pipeline file {source}")
    except ValueError as exc:
        raise fail(str(exc)) from None
    with applied(policy):
        return _parse(data, source, policy, fail)


def _parse(data: Any, source: str, policy: TrustPolicy, fail: Fail) -> PipelineSpec:

    if not isinstance(data, dict):
        raise fail(f"top level must be a mapping, got {type(data).__name__}")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise fail(f"unknown top-level keys {sorted(unknown)} (allowed: {sorted(_TOP_KEYS)})")
    clocks = _parse_clocks(data.get("clocks") or {}, fail)
    raw_actors = data.get("actors")
    if not isinstance(raw_actors, dict) or not raw_actors:
        raise fail("'actors' must be a non-empty mapping of name -> {type: ..., params}")
    actors = {name: _parse_actor(name, body, clocks, fail) for name, body in raw_actors.items()}
    raw_conns = data.get("connections") or []
    if not isinstance(raw_conns, list):
        raise fail("'connections' must be a list of 'a.port -> b.port' strings")
    conns = tuple(_parse_connection(i, c, actors, fail) for i, c in enumerate(raw_conns))
    return PipelineSpec(source, str(data.get("name") or Path(source).stem), clocks, actors, conns,
                        policy)


def _parse_clocks(raw: Any, fail: Fail) -> dict[str, Fraction]:
    if not isinstance(raw, dict):
        raise fail("'clocks' must be a mapping of name -> {fps: ...}")
    clocks: dict[str, Fraction] = {}
    for name, body in raw.items():
        if not isinstance(body, dict) or set(body) - {"fps", "type"} or "fps" not in body:
            raise fail(f"clock {name!r}: expected {{fps: N}} (optional type: software), got {body!r}")
        if body.get("type", "software") != "software":
            raise fail(f"clock {name!r}: field 'type': only 'software' is supported in files "
                       "(offline runs use virtual clocks automatically)")
        try:
            clocks[name] = parse_rate(body["fps"])
        except (TypeError, ValueError) as exc:
            raise fail(f"clock {name!r}: field 'fps': {exc}") from None
    return clocks


def check_actor_name(name: Any, fail: Fail) -> str:
    """``name`` when it is a valid actor name (letters, digits, ``_``, ``-``)."""
    if not isinstance(name, str) or not re.fullmatch(r"[\w-]+", name):
        raise fail(f"actor name {name!r} must be letters, digits, '_' or '-'")
    return name


def resolve_type_field(name: str, type_name: Any, fail: Fail) -> ActorType:
    """The actor type an actor's ``type`` field names (see ``resolve_actor_type``)."""
    try:
        return resolve_actor_type(str(type_name))
    except (ValueError, PermissionError) as exc:  # PermissionError: a module not allowed
        raise fail(f"actor {name!r}: field 'type': {exc}") from None


def check_params(name: str, atype: ActorType, params: Mapping[str, Any], fail: Fail, *,
                 also: str = "plus clock, dispatcher, restart, stall_timeout, when") -> None:
    """Every key of ``params`` is a constructor parameter of ``atype`` and every
    required one is there; ``also`` ends the list of accepted fields."""
    for key in params:
        if atype.param(key) is None:
            accepted = ", ".join(p.name for p in atype.params) or "none"
            raise fail(f"actor {name!r} ({atype.name}): unknown field {key!r} "
                       f"(accepted: {accepted}{'; ' + also if also else ''})")
    missing = [p.name for p in atype.params if p.required and p.name not in params]
    if missing:
        raise fail(f"actor {name!r} ({atype.name}): missing required field(s) {missing}")


def check_dispatcher(name: str, dispatcher: Any, fail: Fail) -> str | None:
    """``dispatcher`` when it is None or a dispatcher name."""
    if dispatcher is not None and dispatcher not in _DISPATCHERS:
        raise fail(f"actor {name!r}: field 'dispatcher': {dispatcher!r} is not one of "
                   f"{', '.join(_DISPATCHERS)}")
    return None if dispatcher is None else str(dispatcher)


def _parse_actor(name: Any, body: Any, clocks: Mapping[str, Fraction], fail: Fail) -> ActorSpec:
    name = check_actor_name(name, fail)
    if not isinstance(body, dict) or "type" not in body:
        raise fail(f"actor {name!r}: expected a mapping with a 'type' field")
    atype = resolve_type_field(name, body["type"], fail)
    params = {k: v for k, v in body.items() if k not in _ACTOR_KEYS}
    check_params(name, atype, params, fail)
    clock = body.get("clock")
    if clock is not None and clock not in clocks:
        raise fail(f"actor {name!r}: field 'clock': unknown clock {clock!r} "
                   f"(declared: {sorted(clocks) or 'none'})")
    dispatcher = check_dispatcher(name, body.get("dispatcher"), fail)
    when = body.get("when")
    if when is not None and when not in _WHEN:
        raise fail(f"actor {name!r}: field 'when': {when!r} is not one of {', '.join(_WHEN)}")
    restart = check_restart(name, body.get("restart"), fail)
    stall_timeout = check_stall_field(name, body.get("stall_timeout"), fail)
    return ActorSpec(name, atype, params, clock, dispatcher, when, restart, stall_timeout)


def _parse_connection(index: int, raw: Any, actors: Mapping[str, ActorSpec],
                      fail: Fail) -> ConnectionSpec:
    m = _CONNECTION.match(raw) if isinstance(raw, str) else None
    if m is None:
        raise fail(f"connection #{index + 1} {raw!r}: expected 'actor[.port] -> actor[.port]'")
    src, src_port, dst, dst_port = m.groups()
    for actor in (src, dst):
        if actor not in actors:
            raise fail(f"connection #{index + 1} {raw!r}: unknown actor {actor!r} "
                       f"(actors: {', '.join(actors)})")
    return ConnectionSpec(raw.strip(), src, src_port, dst, dst_port)
