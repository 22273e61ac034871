"""``Actor``: the one base class users subclass.

An actor declares ports in ``__init__`` and implements one method,
``process(tick)`` (``async def`` or plain ``def``). Optional ``setup`` and
``teardown`` hold resources. Everything the runtime tracks about an actor lives
in one private object (``_sl``) so user state stays separate from bookkeeping
and an actor can cross to a worker process without the runtime's locks.

Actors start when created: the metaclass attaches a fully constructed actor to
the current runtime (the ``with Runtime()`` block, or the default background
runtime), so a subclass's ports exist before the first tick can arrive.
"""

from __future__ import annotations

import inspect
import itertools
import threading
from abc import ABCMeta, abstractmethod
from dataclasses import asdict, dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Literal, Union

from streamlib.clocks import Clock, TimedTick
from streamlib.core import context
from streamlib.core.policy import RestartPolicy, RestartSpec, check_stall_timeout
from streamlib.core.ports import PortDict, PortKind, StreamInput, StreamOutput
from streamlib.core.registry import ActorURI
from streamlib.core.samples import UNKNOWN, SampleWindow
from streamlib.errors import ConfigError, ConfigTypeError, PortError, PortKindError

if TYPE_CHECKING:
    import torch

    from streamlib.runtime.dispatchbase import Dispatcher
    from streamlib.runtime.runtime import Runtime

DispatcherName = Literal["asyncio", "thread", "dedicated", "process", "gpu", "gpu-inline"]
DispatcherSpec = Union["Dispatcher", DispatcherName, None]


class ActorStatus(str, Enum):
    CREATED = "created"    # constructed, runtime not started yet
    STARTING = "starting"  # setup() running
    RUNNING = "running"
    FAILED = "failed"      # setup() or process() raised; no further ticks
    STALLED = "stalled"    # one process() call overran its stall budget; no further ticks
    STOPPED = "stopped"    # closed; teardown() done


@dataclass
class ActorCounters:
    """Per-actor counters; updated only on the runtime's loop thread."""

    ticks: int = 0          # ticks delivered (clock or upstream)
    processed: int = 0      # process() calls that returned normally
    failed: int = 0         # process() calls that raised
    overruns: int = 0       # ticks replaced by a newer one while process() was busy
    process_ns_last: int = 0
    process_ns_max: int = 0
    process_ns_total: int = 0
    # Metrics (streamlib.observe.metrics): CPU time inside process() on the thread that
    # ran it, and tick-origin -> end-of-process latency, summed over the calls
    # where each was measured (``*_samples`` of them).
    cpu_ns_total: int = 0
    cpu_samples: int = 0
    latency_ns_total: int = 0
    latency_samples: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _ActorState:
    """Runtime bookkeeping for one actor. Never pickled, never user-visible."""

    __slots__ = (
        "runtime", "status", "error", "busy", "pending", "current_tick",
        "counters", "close_callbacks", "lock", "dispatcher", "inherits_ticks",
        "window", "measure_cpu", "cpu_ns",
        "call_started_ns", "call_seq", "stall_timeout", "restart", "restarts", "stalls",
        "ctor", "replaced_by", "release_on_start", "input_device",
    )

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.status = ActorStatus.CREATED
        self.error: str | None = None
        self.busy = False
        self.pending: TimedTick | None = None
        self.current_tick: TimedTick | None = None
        self.counters = ActorCounters()
        self.close_callbacks: list[Callable[[], None]] = []
        self.lock = threading.Lock()
        self.dispatcher: Dispatcher | None = None
        self.inherits_ticks = True
        # Metrics (see streamlib.observe.metrics): the last calls' (done, process,
        # cpu, latency) samples; ``cpu_ns`` is handed from the dispatcher (on the
        # thread that ran process()) to the runtime loop after each call.
        self.window = SampleWindow()
        self.measure_cpu = True
        self.cpu_ns = UNKNOWN
        # Watchdog (streamlib.runtime.watchdog): when the process() call in flight began
        # (monotonic ns, 0: none) and which call it is; the watchdog and the
        # loop race to end a call under ``lock``, the winner releases its tick.
        self.call_started_ns = 0
        self.call_seq = 0
        self.stall_timeout: float | None = None  # None: the runtime's
        # Supervisor (streamlib.runtime.supervisor): policy, history, how to rebuild.
        self.restart: RestartPolicy | None = None
        self.restarts = 0
        self.stalls = 0
        self.ctor: tuple[tuple[Any, ...], dict[str, Any]] = ((), {})
        self.replaced_by: Actor | None = None
        self.release_on_start = 0  # runtime.hold() units released once running
        self.input_device: torch.device | None = None  # Actor.request_input_device


_ids: dict[str, itertools.count[int]] = {}
_ids_lock = threading.Lock()


def _auto_id(cls: type) -> str:
    with _ids_lock:
        counter = _ids.setdefault(cls.__name__, itertools.count(1))
        return f"{cls.__name__.lower()}-{next(counter)}"


class _ActorMeta(ABCMeta):
    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        actor = super().__call__(*args, **kwargs)
        if not hasattr(actor, "_sl"):
            raise ConfigTypeError(
                f"{cls.__name__}.__init__ must call super().__init__() (actor not initialised)"
            )
        actor._sl.ctor = (args, dict(kwargs))  # the supervisor rebuilds from these
        actor._sl_attach()  # after the subclass __init__ so its ports exist
        return actor


class Actor(metaclass=_ActorMeta):
    """Base class of every actor.

    Subclasses call ``super().__init__(actor_id=..., clock=...)``, declare ports
    (``self.inputs['video'] = StreamInput('video')``) and implement ``process``.

    * ``clock``: an actor with a clock is ticked by it and reads the latest
      input; an actor without one is ticked whenever an upstream output writes.
    * ``dispatcher``: where ``process`` runs: ``"asyncio"`` (default for
      ``async def process``), ``"thread"`` (default for ``def process``),
      ``"dedicated"`` (one thread of its own, for GL contexts and other
      thread-bound resources), ``"process"`` (a worker process; frames cross
      in shared memory), ``"gpu"`` (a worker thread with a CUDA stream of the
      actor's own), ``"gpu-inline"`` (that stream, on the runtime loop thread:
      for enqueue-only GPU actors) or a ``Dispatcher`` instance (which the caller owns and shuts down).
    * ``stall_timeout``: seconds one ``process`` call may take before the
      watchdog marks the actor ``stalled`` (None: the runtime's budget; 0:
      never watched). See ``streamlib.runtime.watchdog``.
    * ``restart``: ``"never"`` (default), ``"on-failure"``, ``"always"`` or a
      ``RestartPolicy`` (rate limit, backoff; ``streamlib.core.policy``); see
      ``streamlib.runtime.supervisor``.
    * ``runtime``: defaults to the enclosing ``with Runtime()`` block, else the
      process-wide default runtime that starts actors immediately.
    """

    default_output_name: str | None = None  # else the first declared output
    # Where this actor's work and outputs live: None is the CPU (or its dispatcher's
    # device). Actors taking ``device=`` set it in ``__init__``; where its inputs must
    # arrive is ``input_device`` (streamlib.gpu.device.input_device is the one rule).
    device: torch.device | None = None

    def __init__(
        self,
        actor_id: str | None = None,
        *,
        clock: Clock | None = None,
        dispatcher: DispatcherSpec = None,
        runtime: Runtime | None = None,
        host: str = "localhost",
        stall_timeout: float | None = None,
        restart: RestartSpec = None,
    ) -> None:
        forced = context.rebuilding_id.get()
        if forced is not None:
            context.rebuilding_id.set(None)  # actors built inside this one keep their own ids
            actor_id = forced
        if actor_id is None:
            actor_id = _auto_id(type(self))
        if not isinstance(actor_id, str) or not actor_id:
            raise ConfigError(f"actor_id must be a non-empty str, got {actor_id!r}")
        if clock is not None and not isinstance(clock, Clock):
            raise ConfigTypeError(f"actor '{actor_id}': clock must be a Clock, got "
                                  f"{type(clock).__name__}")
        policy = RestartPolicy.coerce(restart, where=f"actor '{actor_id}': restart")
        stall_timeout = check_stall_timeout(stall_timeout,
                                            where=f"actor '{actor_id}': stall_timeout")
        self.actor_id = actor_id
        self.clock = clock
        self.dispatcher = dispatcher
        self.host = host
        self.inputs: PortDict[StreamInput] = PortDict(self, StreamInput, "inputs")
        self.outputs: PortDict[StreamOutput] = PortDict(self, StreamOutput, "outputs")
        self._sl = _ActorState()
        self._sl.restart = policy
        self._sl.stall_timeout = stall_timeout
        self._sl_requested_runtime = runtime

    # -- the one method --------------------------------------------------
    @abstractmethod
    def process(self, tick: TimedTick) -> Awaitable[None] | None:
        """Handle one tick: read inputs, write outputs. May be ``async``."""

    def setup(self) -> Awaitable[None] | None:
        """Acquire resources before the first tick (runs where ``process`` runs)."""
        return None

    def teardown(self) -> Awaitable[None] | None:
        """Release resources; called once when the actor stops."""
        return None

    # -- introspection ---------------------------------------------------
    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(type(self).process)

    @property
    def status(self) -> ActorStatus:
        return self._sl.status

    @property
    def failed(self) -> bool:
        return self._sl.status is ActorStatus.FAILED

    @property
    def stalled(self) -> bool:
        return self._sl.status is ActorStatus.STALLED

    @property
    def restarts(self) -> int:
        """How many times the supervisor rebuilt this actor (kept across rebuilds)."""
        return self._sl.restarts

    @property
    def replaced_by(self) -> Actor | None:
        """The actor the supervisor rebuilt in this one's place (``runtime.get(id)``), or None."""
        return self._sl.replaced_by

    @property
    def error(self) -> str | None:
        """Traceback text of the failure, or None."""
        return self._sl.error

    @property
    def counters(self) -> ActorCounters:
        return self._sl.counters

    @property
    def runtime(self) -> Runtime | None:
        return self._sl.runtime

    @property
    def input_device(self) -> torch.device | None:
        """The device this actor asked to get its input frames on
        (``request_input_device``); None: wherever ``device`` says."""
        return self._sl.input_device

    def request_input_device(self, device: torch.device | None) -> None:
        """Ask for input frames on ``device`` from now on (None: back to ``device``'s
        rule). The staging bridge delivers them there: a display or shader calls this
        once its CUDA-GL interop is up, and with None when it falls back to host copies."""
        self._sl.input_device = device

    @property
    def uri(self) -> ActorURI:
        return ActorURI(self.host, type(self).__name__, self.actor_id)

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description used by ``Runtime.graph()``."""
        clock = self.clock
        disp = self._sl.dispatcher
        return {
            "id": self.actor_id,
            "uri": str(self.uri),
            "class": type(self).__name__,
            "status": self._sl.status.value,
            "error": self._sl.error,
            "clock": None if clock is None else {
                "type": type(clock).__name__, "clock_id": clock.clock_id, "fps": clock.fps,
            },
            "ticked_by": "clock" if clock is not None else "upstream",
            "dispatcher": None if disp is None else disp.name,
            "inputs": [
                {"name": p.name, "kind": p.kind,
                 "upstream": p.upstream.qualified_name if p.upstream else None}
                for p in self.inputs.values()
            ],
            "outputs": [
                {"name": p.name, "kind": p.kind, "written": p.written,
                 "links": [i.qualified_name for i in p.links]}
                for p in self.outputs.values()
            ],
            "counters": self._sl.counters.as_dict(),
            "stall_timeout": self._sl_stall_budget(),
            "stalls": self._sl.stalls,
            "restart": None if self._sl.restart is None else self._sl.restart.as_dict(),
            "restarts": self._sl.restarts,
            **({} if self._sl.runtime is None else self._sl.runtime.describe_samples(self)),
        }

    def _sl_stall_budget(self) -> float | None:
        """Seconds one process() call may take (the actor's, else the runtime's);
        None: not watched."""
        budget = self._sl.stall_timeout
        if budget is None and self._sl.runtime is not None:
            budget = self._sl.runtime.stall_timeout
        return budget or None

    # -- connections -----------------------------------------------------
    def default_output(self) -> StreamOutput:
        """The output ``>>`` uses: ``default_output_name`` or the first declared."""
        if not len(self.outputs):
            raise PortError(f"actor '{self.actor_id}' has no outputs to connect from")
        name = self.default_output_name or next(iter(self.outputs))
        return self.outputs[name]

    def default_input(self, kind: PortKind = "any") -> StreamInput:
        """First unconnected input accepting ``kind`` (exact kind preferred over ``any``)."""
        if not len(self.inputs):
            raise PortError(f"actor '{self.actor_id}' has no inputs to connect to")
        ports = self.inputs.values()
        candidates = [p for p in ports if p.kind == kind] + [
            p for p in ports if p.kind != kind and (p.kind == "any" or kind == "any")
        ]
        if not candidates:
            listed = ", ".join(f"{p.name} ({p.kind})" for p in ports)
            raise PortKindError(
                f"actor '{self.actor_id}' has no input accepting {kind} (inputs: {listed})"
            )
        free = [p for p in candidates if not p.is_connected]
        return (free or candidates)[0]

    def __rshift__(self, other: Actor | StreamInput) -> Any:
        """``a >> b`` links a's default output to b's default input; returns ``b``."""
        return self.default_output() >> other

    def disconnect(self, other: Actor | None = None) -> int:
        """Remove links from this actor's outputs (to ``other`` only, if given)."""
        removed = 0
        for out in self.outputs.values():
            for inp in out.links:
                if other is None or inp.actor is other:
                    removed += out.disconnect(inp)
        return removed

    # -- lifecycle -------------------------------------------------------
    def add_close_callback(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when the actor closes (registries use this)."""
        self._sl.close_callbacks.append(callback)

    def close(self, timeout: float = 5.0) -> None:
        """Stop ticking, run ``teardown`` and detach. Idempotent. On an actor
        the supervisor rebuilt, closes the rebuilt one too."""
        with self._sl.lock:
            if self._sl.status is ActorStatus.STOPPED:
                return
        if self._sl.replaced_by is not None:
            self._sl.replaced_by.close(timeout)
        runtime = self._sl.runtime
        if runtime is not None:
            runtime._stop_actor(self, timeout=timeout)
        else:
            self._sl.status = ActorStatus.STOPPED
            self._sl_run_close_callbacks()

    stop = close

    def __enter__(self) -> Actor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runtime hooks (called by ports and the runtime) ------------------
    def _sl_attach(self) -> None:
        runtime = self._sl_requested_runtime or context.current_runtime()
        del self._sl_requested_runtime
        runtime._attach(self)

    def _sl_tick_readers(self, inputs: list[StreamInput], tick: TimedTick) -> None:
        """Tick the clock-less owners of ``inputs`` (just written by this actor)."""
        runtime = self._sl.runtime
        if runtime is None:
            return
        for inp in inputs:
            downstream = inp._owner
            if downstream is not None and downstream.clock is None:
                runtime._notify(downstream, tick)

    def _sl_link_made(self, output: StreamOutput, inp: StreamInput) -> None:
        """A link from ``output``: the runtime chooses its router (staging) now."""
        runtime = self._sl.runtime
        if runtime is not None and output.router is None:
            output.set_router(runtime.link_router(output, inp))

    def _sl_run_close_callbacks(self) -> None:
        callbacks, self._sl.close_callbacks = self._sl.close_callbacks, []
        for callback in callbacks:
            callback()

    # -- pickling (process dispatcher) ------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_sl", None)
        state.pop("_sl_requested_runtime", None)
        state["clock"] = None  # the worker is ticked by the parent, never by a clock
        state["dispatcher"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sl = _ActorState()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.actor_id!r} {self._sl.status.value}>"
