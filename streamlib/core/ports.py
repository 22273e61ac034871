"""Ports: the named, typed ends of links between actors.

A link joins one ``StreamOutput`` to one ``StreamInput``. Each input owns the
``RingBuffer`` of its link, so fan-out (one output, many inputs) writes the
same immutable frame reference into one buffer per reader and every link keeps
its own counters. An input has at most one upstream at a time.

Ports carry a kind (``video``, ``audio``, ``event``, ``data`` or ``any``),
inferred from the port name when not given, checked when connecting and when
writing, so a wrong connection fails at connect time with both port names.

Delivery is written once, here (``StreamOutput.deliver``): items go into the
linked inputs' buffers, then the clock-less readers are ticked through the
writer's runtime. What an output's items become on the way (staged between GPU
and CPU memory, captured by a test harness) is a ``Router`` that the runtime
installs when a link is made (``streamlib.gpu.staging.StagingBridge``); this
module imports nothing of the GPU layer.
"""

from __future__ import annotations

import re
import threading
from typing import (
    TYPE_CHECKING, Any, Generic, Iterable, Iterator, Literal, Mapping, Protocol, Sequence, TypeVar,
)

from streamlib.clocks import TimedTick
from streamlib.core.buffers import RingBuffer, RingBufferStats
from streamlib.core.frames import frame_kind
from streamlib.errors import ConfigError, ConfigTypeError, PortError, PortKindError

if TYPE_CHECKING:
    from streamlib.core.actor import Actor


class Router(Protocol):
    """What a written item becomes for each link (installed on an output by the runtime)."""

    def route(self, output: StreamOutput, item: Any,
              links: tuple[StreamInput, ...]) -> Sequence[tuple[StreamInput, Any]] | None:
        """The (input, item) pairs to deliver now, or None: ``item`` to every link."""


class Capture:
    """A router that keeps every item its output writes (what one ``process`` call
    wrote: ``ActorHarness``, the process-pool worker), then routes like ``inner``."""

    __slots__ = ("items", "inner")

    def __init__(self, inner: Router | None = None) -> None:
        self.items: list[Any] = []
        self.inner = inner

    def route(self, output: StreamOutput, item: Any,
              links: tuple[StreamInput, ...]) -> Sequence[tuple[StreamInput, Any]] | None:
        self.items.append(item)
        return None if self.inner is None else self.inner.route(output, item, links)


def tick_from_item(item: object) -> TimedTick:
    """The tick of an item written outside ``process()``: its own stamp."""
    return TimedTick(int(getattr(item, "timestamp_ns", 0)), int(getattr(item, "frame_number", 0)),
                     str(getattr(item, "clock_id", "monotonic")))

PortKind = Literal["video", "audio", "event", "data", "any"]
PORT_KINDS: tuple[PortKind, ...] = ("video", "audio", "event", "data", "any")
_NAME_TO_KIND: dict[str, PortKind] = {
    "video": "video", "audio": "audio", "event": "event", "events": "event", "data": "data",
}
_FRAME_CLASS_FOR_KIND = {
    "video": "VideoFrame", "audio": "AudioFrame", "event": "EventMessage", "data": "DataMessage",
}


def infer_kind(name: str) -> PortKind:
    """Kind implied by a port name: ``video``, ``video_left``, ``events`` ... else ``any``."""
    head = re.split(r"[^a-zA-Z0-9]", name, maxsplit=1)[0].lower()
    return _NAME_TO_KIND.get(head, "any")


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(f"port name must be an identifier string, got {name!r}")
    return name


def _check_kind(name: str, kind: str | None) -> PortKind:
    if kind is None:
        return infer_kind(name)
    if kind not in PORT_KINDS:
        raise ConfigError(f"port {name!r}: kind must be one of {PORT_KINDS}, got {kind!r}")
    return kind  # narrowed by the membership test above


class _Port:
    __slots__ = ("name", "kind", "_owner")

    def __init__(self, name: str, kind: str | None) -> None:
        self.name = _check_name(name)
        self.kind: PortKind = _check_kind(self.name, kind)
        self._owner: Actor | None = None

    _direction = "port"

    @property
    def actor(self) -> Actor | None:
        """The actor that declared this port (None until assigned to one)."""
        return self._owner

    @property
    def qualified_name(self) -> str:
        owner = self._owner.actor_id if self._owner is not None else "<unowned>"
        return f"{owner}.{self.name}"

    def _label(self) -> str:
        return f"{self._direction} '{self.qualified_name}' ({self.kind})"

    def _check_item(self, item: object) -> None:
        if self.kind == "any":
            return
        got = frame_kind(item)
        if got != self.kind:
            raise PortKindError(
                f"{self._label()} got {type(item).__name__}; "
                f"expected {_FRAME_CLASS_FOR_KIND[self.kind]}"
            )


class StreamInput(_Port):
    """The receiving end of a link; reads are latest-first and never block.

    ``read_latest`` returns the newest item (or None); ``read_new`` returns the
    newest item only if it has not been seen by this input; ``read_all_new``
    returns every unseen item still held, oldest first (for audio).
    """

    __slots__ = ("slots", "_slots_given", "_buffer", "_last_seq", "_upstream")
    _direction = "input"

    def __init__(self, name: str, kind: PortKind | None = None, *,
                 slots: int | None = None) -> None:
        """``slots``: buffer depth (default 3, or the upstream output's ``slots``)."""
        super().__init__(name, kind)
        self._slots_given = slots is not None
        self.slots = 3 if slots is None else slots
        self._buffer: RingBuffer[Any] = RingBuffer(self.slots, name=name)
        self._last_seq = 0
        self._upstream: StreamOutput | None = None

    def _resize(self, slots: int) -> None:
        # Only before anything was written: a fresh buffer loses nothing.
        if self._buffer.sequence == 0 and slots != self.slots:
            self.slots = slots
            self._buffer = RingBuffer(slots, name=self.name)

    # -- reading ---------------------------------------------------------
    def read_latest(self) -> Any | None:
        """Newest item on this input, or None if nothing was ever written."""
        got = self._buffer.read_newer(0)
        if got is None:
            return None
        self._last_seq = max(self._last_seq, got[0])
        return got[1]

    def read_new(self) -> Any | None:
        """Newest item if this input has not returned it before, else None."""
        got = self._buffer.read_newer(self._last_seq)
        if got is None:
            return None
        self._last_seq = got[0]
        return got[1]

    def read_all_new(self) -> list[Any]:
        """Every unseen item still held (at most ``slots``), oldest first."""
        got = self._buffer.read_since(self._last_seq)
        if got:
            self._last_seq = got[-1][0]
        return [item for _, item in got]

    def peek_latest(self) -> Any | None:
        """Newest item (seen or not) without marking it seen; None when empty."""
        got = self._buffer.peek_latest()
        return None if got is None else got[1]

    def peek_new(self) -> Any | None:
        """Newest item if unseen by this input, without marking it seen."""
        got = self._buffer.peek_latest()
        if got is None or got[0] <= self._last_seq:
            return None
        return got[1]

    def has_new(self) -> bool:
        return self._buffer.sequence > self._last_seq

    # -- feeding and links -----------------------------------------------
    def feed(self, item: Any) -> int:
        """Write ``item`` straight into this input (tests, harnesses, bridges).

        Raises PortKindError if the item's kind does not match, PortError if the
        input is connected to an upstream output (it owns the buffer then).
        """
        if self._upstream is not None:
            raise PortError(
                f"input '{self.qualified_name}' is connected to "
                f"'{self._upstream.qualified_name}'; feed() is for unconnected inputs"
            )
        self._check_item(item)
        return self._buffer.write(item)

    @property
    def upstream(self) -> StreamOutput | None:
        return self._upstream

    @property
    def is_connected(self) -> bool:
        return self._upstream is not None

    def disconnect(self) -> None:
        """Detach from the upstream output; a no-op when not connected."""
        upstream = self._upstream
        if upstream is not None:
            upstream.disconnect(self)

    def stats(self) -> RingBufferStats:
        return self._buffer.stats()

    @property
    def sequence(self) -> int:
        return self._buffer.sequence

    def __getstate__(self) -> dict[str, Any]:
        # A port crosses to a worker process as a fresh, unconnected shell.
        return {"name": self.name, "kind": self.kind, "slots": self.slots,
                "slots_given": self._slots_given}

    def __setstate__(self, state: dict[str, Any]) -> None:
        StreamInput.__init__(self, state["name"], state["kind"], slots=state["slots"])
        self._slots_given = state.get("slots_given", True)

    def __repr__(self) -> str:
        up = self._upstream.qualified_name if self._upstream else None
        return f"StreamInput({self.qualified_name!r}, kind={self.kind!r}, upstream={up!r})"


class StreamOutput(_Port):
    """The sending end: ``write`` puts an item into every linked input's buffer.

    Writing never blocks. Downstream actors without a clock of their own are
    ticked by the write (clock inheritance). ``slots`` is the seed plan's
    buffer depth for this output's links: an input linked from it that was
    declared without ``slots`` gets this many.
    """

    __slots__ = ("_links", "_lock", "_router", "slots", "written")
    _direction = "output"

    def __init__(self, name: str, kind: PortKind | None = None, *,
                 slots: int | None = None) -> None:
        """Raises ConfigError for a bad name or kind, or ``slots`` below 1."""
        super().__init__(name, kind)
        if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)
                                  or slots < 1):
            raise ConfigError(f"output {name!r}: slots must be an int >= 1, got {slots!r}")
        self.slots = slots
        # Copy-on-write tuple: write() iterates a snapshot without taking the lock.
        self._links: tuple[StreamInput, ...] = ()
        self._lock = threading.Lock()
        self._router: Router | None = None
        self.written = 0

    def write(self, item: Any) -> None:
        """Publish ``item`` to every connected input.

        Raises PortKindError (a TypeError) naming this port when the item's kind
        does not match; nothing is written in that case.
        """
        self._check_item(item)
        links = self._links
        router = self._router
        routed = None if router is None else router.route(self, item, links)
        self.written += 1
        if links:
            self.deliver(((inp, item) for inp in links) if routed is None else routed,
                         self.tick_for(item))

    def deliver(self, pairs: Iterable[tuple[StreamInput, Any]], tick: TimedTick) -> None:
        """Put each item into its input (still linked to this output), then tick the
        clock-less readers: the one delivery path, for writes and staged copies."""
        delivered: list[StreamInput] = []
        for inp, item in pairs:
            if inp._upstream is self:  # a link removed meanwhile gets nothing
                inp._buffer.write(item)
                delivered.append(inp)
        owner = self._owner
        if owner is not None and delivered:
            owner._sl_tick_readers(delivered, tick)

    def tick_for(self, item: object) -> TimedTick:
        """The tick a write of ``item`` passes on: the writer's current tick, else the
        item's own stamp."""
        owner = self._owner
        tick = None if owner is None else owner._sl.current_tick
        return tick_from_item(item) if tick is None else tick

    @property
    def router(self) -> Router | None:
        return self._router

    def set_router(self, router: Router | None) -> Router | None:
        """Install ``router`` (the runtime's staging bridge, a harness capture); returns
        the one it replaces."""
        previous, self._router = self._router, router
        return previous

    def connect(self, target: StreamInput | Actor) -> StreamInput:
        """Link this output to ``target`` (an input, or an actor's default input).

        Raises PortKindError when kinds differ (naming both ports), PortError when
        the input already has an upstream.
        """
        inp = _resolve_input(target, self)
        if inp.kind != "any" and self.kind != "any" and inp.kind != self.kind:
            raise PortKindError(
                f"cannot connect {self._label()} to {inp._label()}: kinds differ"
            )
        with self._lock:
            if inp._upstream is self:
                return inp
            if inp._upstream is not None:
                raise PortError(
                    f"input '{inp.qualified_name}' is already connected to "
                    f"'{inp._upstream.qualified_name}'; disconnect it first"
                )
            inp._upstream = self
            if self.slots is not None and not inp._slots_given:
                inp._resize(self.slots)
            self._links = self._links + (inp,)
        if self._owner is not None:
            self._owner._sl_link_made(self, inp)
        return inp

    def disconnect(self, target: StreamInput | None = None) -> int:
        """Remove the link to ``target`` (or all links); returns how many were removed."""
        with self._lock:
            keep = tuple(i for i in self._links if target is not None and i is not target)
            removed = [i for i in self._links if i not in keep]
            for inp in removed:
                inp._upstream = None
            self._links = keep
        return len(removed)

    @property
    def links(self) -> tuple[StreamInput, ...]:
        return self._links

    def __rshift__(self, target: StreamInput | Actor) -> Any:
        """``out >> inp`` connects; returns the downstream actor so chains read left to right."""
        inp = self.connect(target)
        return inp.actor if inp.actor is not None else inp

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "slots": self.slots}

    def __setstate__(self, state: dict[str, Any]) -> None:
        StreamOutput.__init__(self, state["name"], state["kind"], slots=state.get("slots"))

    def __repr__(self) -> str:
        names = [i.qualified_name for i in self._links]
        return f"StreamOutput({self.qualified_name!r}, kind={self.kind!r}, links={names!r})"


def _resolve_input(target: object, source: StreamOutput) -> StreamInput:
    if isinstance(target, StreamInput):
        return target
    default_input = getattr(target, "default_input", None)  # an Actor (no import: actor uses us)
    if callable(default_input):
        found: StreamInput = default_input(source.kind)
        return found
    raise ConfigTypeError(
        f"cannot connect output '{source.qualified_name}' to {type(target).__name__}; "
        "expected a StreamInput or an Actor"
    )


P = TypeVar("P", StreamInput, StreamOutput)


class PortDict(Generic[P]):
    """``actor.inputs`` / ``actor.outputs``: a dict that stamps ports with their owner.

    Unknown names raise PortError listing the ports that exist.
    """

    __slots__ = ("_owner", "_ports", "_port_type", "_label")

    def __init__(self, owner: Actor, port_type: type[P], label: str) -> None:
        self._owner = owner
        self._ports: dict[str, P] = {}
        self._port_type: type[P] = port_type
        self._label = label

    def __setitem__(self, name: str, port: P) -> None:
        if not isinstance(port, self._port_type):
            raise ConfigTypeError(
                f"{self._owner.actor_id}.{self._label}[{name!r}] must be a "
                f"{self._port_type.__name__}, got {type(port).__name__}"
            )
        if port.name != name:
            raise ConfigError(
                f"{self._owner.actor_id}.{self._label}[{name!r}]: port is named {port.name!r}"
            )
        if port._owner is not None and port._owner is not self._owner:
            raise PortError(f"port {port.qualified_name!r} already belongs to another actor")
        port._owner = self._owner
        self._ports[name] = port

    def __getitem__(self, name: str) -> P:
        try:
            return self._ports[name]
        except KeyError:
            known = ", ".join(sorted(self._ports)) or "none"
            raise PortError(
                f"actor '{self._owner.actor_id}' has no {self._label[:-1]} {name!r} "
                f"(its {self._label}: {known})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._ports

    def __iter__(self) -> Iterator[str]:
        return iter(self._ports)

    def __len__(self) -> int:
        return len(self._ports)

    def keys(self) -> list[str]:
        return list(self._ports)

    def values(self) -> list[P]:
        return list(self._ports.values())

    def items(self) -> list[tuple[str, P]]:
        return list(self._ports.items())

    def get(self, name: str, default: P | None = None) -> P | None:
        return self._ports.get(name, default)

    def pop(self, name: str) -> P:
        """Remove and return port ``name`` (disconnect it first); PortError if absent."""
        port = self[name]
        del self._ports[name]
        port._owner = None
        return port

    def as_mapping(self) -> Mapping[str, P]:
        return dict(self._ports)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self._owner, self._ports, self._port_type, self._label)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self._owner, self._ports, self._port_type, self._label = state
        for port in self._ports.values():  # ports unpickle unowned; re-stamp them
            port._owner = self._owner

    def __repr__(self) -> str:
        return f"{self._label}({list(self._ports)})"
