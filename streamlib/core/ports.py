"""Ports: the named, typed ends of links between actors.

A link joins one ``StreamOutput`` to one ``StreamInput``. Each input owns the
``RingBuffer`` of its link, so fan-out (one output, many inputs) writes the
same immutable frame reference into one buffer per reader and every link keeps
its own counters. An input has at most one upstream at a time.

Ports carry a kind (``video``, ``audio``, ``event``, ``data`` or ``any``),
inferred from the port name when not given, checked when connecting and when
writing, so a wrong connection fails at connect time with both port names.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any, Callable, Generic, Iterator, Literal, Mapping, TypeVar

import torch

from streamlib.gpu import staging as _staging
from streamlib.core.buffers import RingBuffer, RingBufferStats
from streamlib.errors import PortError, PortKindError
from streamlib.core.frames import frame_kind

if TYPE_CHECKING:
    from streamlib.core.actor import Actor

# Staging hook gate: True once CUDA is initialised in this process; never initialises it.
_cuda_in_use: Callable[[], bool] = torch.cuda.is_initialized

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
        raise ValueError(f"port name must be an identifier string, got {name!r}")
    return name


def _check_kind(name: str, kind: str | None) -> PortKind:
    if kind is None:
        return infer_kind(name)
    if kind not in PORT_KINDS:
        raise ValueError(f"port {name!r}: kind must be one of {PORT_KINDS}, got {kind!r}")
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

    __slots__ = ("slots", "_buffer", "_last_seq", "_upstream")
    _direction = "input"

    def __init__(self, name: str, kind: PortKind | None = None, *, slots: int = 3) -> None:
        super().__init__(name, kind)
        self.slots = slots
        self._buffer: RingBuffer[Any] = RingBuffer(slots, name=name)
        self._last_seq = 0
        self._upstream: StreamOutput | None = None

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
        return {"name": self.name, "kind": self.kind, "slots": self.slots}

    def __setstate__(self, state: dict[str, Any]) -> None:
        StreamInput.__init__(self, state["name"], state["kind"], slots=state["slots"])

    def __repr__(self) -> str:
        up = self._upstream.qualified_name if self._upstream else None
        return f"StreamInput({self.qualified_name!r}, kind={self.kind!r}, upstream={up!r})"


class StreamOutput(_Port):
    """The sending end: ``write`` puts an item into every linked input's buffer.

    Writing never blocks. Downstream actors without a clock of their own are
    ticked by the write (clock inheritance).
    """

    __slots__ = ("_links", "_lock", "_captured", "written")
    _direction = "output"

    def __init__(self, name: str, kind: PortKind | None = None) -> None:
        super().__init__(name, kind)
        # Copy-on-write tuple: write() iterates a snapshot without taking the lock.
        self._links: tuple[StreamInput, ...] = ()
        self._lock = threading.Lock()
        self._captured: list[Any] | None = None
        self.written = 0

    def write(self, item: Any) -> None:
        """Publish ``item`` to every connected input.

        Raises PortKindError (a TypeError) naming this port when the item's kind
        does not match; nothing is written in that case.
        """
        self._check_item(item)
        links = self._links
        if links and _cuda_in_use():
            # Staging hook (streamlib/gpu/staging.py). Only once CUDA is initialised can a
            # tensor be on a GPU; until then this branch costs one call. It gives CUDA
            # frames a ready event that GPU readers' streams wait on, stages one host
            # copy for CPU readers (published later, when the copy is done, so those
            # links are left out here) and uploads CPU frames once for GPU readers.
            pairs = _staging.route(self, item, links)
            for inp, staged in pairs:
                inp._buffer.write(staged)
            links = tuple(inp for inp, _ in pairs)
        else:
            for inp in links:
                inp._buffer.write(item)
        self.written += 1
        if self._captured is not None:
            self._captured.append(item)
        owner = self._owner
        if owner is not None and links:
            owner._sl_output_written(self, links, item)

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
            self._links = self._links + (inp,)
        if self._owner is not None:
            self._owner._sl_links_changed()
        return inp

    def disconnect(self, target: StreamInput | None = None) -> int:
        """Remove the link to ``target`` (or all links); returns how many were removed."""
        with self._lock:
            keep = tuple(i for i in self._links if target is not None and i is not target)
            removed = [i for i in self._links if i not in keep]
            for inp in removed:
                inp._upstream = None
            self._links = keep
        if removed and self._owner is not None:
            self._owner._sl_links_changed()
        return len(removed)

    @property
    def links(self) -> tuple[StreamInput, ...]:
        return self._links

    def __rshift__(self, target: StreamInput | Actor) -> Any:
        """``out >> inp`` connects; returns the downstream actor so chains read left to right."""
        inp = self.connect(target)
        return inp.actor if inp.actor is not None else inp

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind}

    def __setstate__(self, state: dict[str, Any]) -> None:
        StreamOutput.__init__(self, state["name"], state["kind"])

    def __repr__(self) -> str:
        names = [i.qualified_name for i in self._links]
        return f"StreamOutput({self.qualified_name!r}, kind={self.kind!r}, links={names!r})"


def _resolve_input(target: object, source: StreamOutput) -> StreamInput:
    if isinstance(target, StreamInput):
        return target
    from streamlib.core.actor import Actor  # local: actor imports this module

    if isinstance(target, Actor):
        return target.default_input(source.kind)
    raise TypeError(
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
            raise TypeError(
                f"{self._owner.actor_id}.{self._label}[{name!r}] must be a "
                f"{self._port_type.__name__}, got {type(port).__name__}"
            )
        if port.name != name:
            raise ValueError(
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
