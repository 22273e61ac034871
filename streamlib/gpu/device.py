"""Device layer: the one place that knows whether CUDA is there.

Actor code asks this module for a device, streams and events and never
branches on CUDA itself. On a CUDA device the objects are the real
``torch.cuda.Stream`` / ``torch.cuda.Event``; on the CPU they are the cheap
twins ``CPUStream`` / ``CPUEvent`` with the same methods, whose work is always
complete (host code runs in program order), so every call is a no-op.

One rule makes the two worlds meet: *waiting on a CUDA event from a CPU
stream blocks the host* (``event.synchronize()``), because "work submitted to a
CPU stream" is the host code that follows. The reverse (a CUDA stream waiting
on a CPU event) is a no-op.

Frame readiness: a tensor written on a CUDA stream is complete only once that
stream reaches the point where it was written. The event that marks it is a
field of the frame (``ready_event``: ``with_ready_event`` returns the frame
carrying one; ``frame.replace(metadata=...)`` keeps it, new ``data`` drops it);
``wait_ready(frame, stream)`` makes ``stream`` wait for it. A frame written
without one gets one recorded on the writer's stream by the runtime's staging
bridge (``streamlib.gpu.staging``).
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, Sequence, Union

import torch

from streamlib.errors import ConfigError, ConfigTypeError

if TYPE_CHECKING:
    from streamlib.core.actor import Actor

__all__ = [
    "CPUEvent", "CPUStream", "DeviceLike", "Event", "Stream", "cuda_available",
    "current_stream", "default_stream", "input_device", "is_cuda", "item_tensor", "new_event",
    "new_stream", "own_device", "pinned_empty", "ready_event", "record_event", "record_stream",
    "resolve_device", "stream_context", "tensor_version", "wait_event", "wait_ready",
    "wants_gpu_dispatcher", "with_ready_event",
]

DeviceLike = Union[str, torch.device, int, None]
CPU = torch.device("cpu")

_cuda_ok: bool | None = None


def cuda_available() -> bool:
    """True when a CUDA device can be used; never raises (a broken driver means False).

    The answer is computed once per process.
    """
    global _cuda_ok
    if _cuda_ok is None:
        try:
            _cuda_ok = bool(torch.cuda.is_available())
        except Exception:  # noqa: BLE001 - any driver/runtime failure means "no CUDA"
            _cuda_ok = False
    return _cuda_ok


def resolve_device(device: DeviceLike = None, *, where: str = "device") -> torch.device:
    """The ``torch.device`` for ``device``: ``"cuda"``, ``"cuda:1"``, ``"cpu"``, an index
    or a ``torch.device``; None picks CUDA when available, else the CPU.

    CUDA devices come back with an explicit index (``cuda`` -> ``cuda:<current>``).

    Raises:
        ConfigError: unknown device string or type (only ``cpu`` and ``cuda`` are
            supported), CUDA requested without CUDA, or an index past the device
            count (ConfigTypeError for a value that is no device at all). The
            message starts with ``where``.
    """
    if device is None:
        device = "cuda" if cuda_available() else "cpu"
    if isinstance(device, bool) or not isinstance(device, (str, torch.device, int)):
        raise ConfigTypeError(f"{where}: expected 'cpu', 'cuda', 'cuda:N' or a torch.device, "
                         f"got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: unknown device {device!r} ({exc})") from None
    if dev.type == "cpu":
        return CPU
    if dev.type != "cuda":
        raise ConfigError(f"{where}: device type must be 'cpu' or 'cuda', got {str(dev)!r}")
    if not cuda_available():
        raise ConfigError(f"{where}: {str(dev)!r} requested but CUDA is not available "
                         "(use device='cpu' or leave it unset)")
    count = torch.cuda.device_count()
    index = torch.cuda.current_device() if dev.index is None else dev.index
    if index >= count:
        raise ConfigError(f"{where}: {str(dev)!r} does not exist ({count} CUDA device(s))")
    return torch.device("cuda", index)


def is_cuda(device: DeviceLike | torch.Tensor) -> bool:
    """True for a CUDA device (or a tensor on one). Never initialises CUDA."""
    if isinstance(device, torch.Tensor):
        return device.is_cuda
    if device is None:
        return False
    try:
        return torch.device(device).type == "cuda"
    except (RuntimeError, ValueError, TypeError):
        return False


# -------------------------------------------------------------------- CPU twins


class CPUEvent:
    """No-op twin of ``torch.cuda.Event``: complete as soon as it is recorded.

    ``elapsed_time`` measures host time between two records (ms), so timing code
    works unchanged on the CPU.
    """

    __slots__ = ("_t_ns", "enable_timing")
    device = CPU

    def __init__(self, enable_timing: bool = False, blocking: bool = False,
                 interprocess: bool = False) -> None:
        self.enable_timing = enable_timing
        self._t_ns = 0

    def record(self, stream: Any = None) -> None:
        self._t_ns = time.perf_counter_ns()

    def wait(self, stream: Any = None) -> None:
        """No-op: the host work this event marks is already done."""

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        """No-op (already complete)."""

    def elapsed_time(self, end_event: CPUEvent) -> float:
        """Milliseconds between this record and ``end_event``'s."""
        return (end_event._t_ns - self._t_ns) / 1e6

    def __repr__(self) -> str:
        return "<CPUEvent>"


class CPUStream:
    """No-op twin of ``torch.cuda.Stream``: host code is its own, always finished, stream.

    ``wait_event`` on a *CUDA* event blocks the host until that event completes
    (the host code after the call is this stream's "future work"). ``with stream:``
    does nothing and binds None (use ``stream_context`` in portable code).
    """

    __slots__ = ("priority",)
    device = CPU
    cuda_stream = 0

    def __init__(self, priority: int = 0) -> None:
        self.priority = priority

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        """No-op (nothing is ever pending)."""

    def wait_event(self, event: Any) -> None:
        if event is not None and not isinstance(event, CPUEvent):
            event.synchronize()  # a CUDA event: the host must not run ahead of it

    def wait_stream(self, stream: Any) -> None:
        if stream is not None and not isinstance(stream, CPUStream):
            stream.synchronize()

    def record_event(self, event: Any = None) -> Any:
        ev = CPUEvent() if event is None else event
        if isinstance(ev, CPUEvent):
            ev.record(self)
        return ev

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None

    def __repr__(self) -> str:
        return "<CPUStream>"


Stream = Union["torch.cuda.Stream", CPUStream]
Event = Union["torch.cuda.Event", CPUEvent]

_CPU_STREAM = CPUStream()


# -------------------------------------------------------------------- streams and events


def new_stream(device: DeviceLike = None, priority: int = 0) -> Stream:
    """A new stream on ``device`` (a ``torch.cuda.Stream``, or a ``CPUStream``).

    Torch hands out CUDA streams round-robin from a per-device pool of 32, so
    more actors than that share streams (still correct, less concurrent).
    Raises ValueError like ``resolve_device``.
    """
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.Stream(device=dev, priority=priority)  # type: ignore[no-untyped-call]
    return CPUStream(priority)


def new_event(device: DeviceLike | Stream = None, timing: bool = False,
              blocking: bool = False) -> Event:
    """A new, unrecorded event usable on ``device`` (or a stream's device).

    ``blocking=True``: a host ``synchronize()`` on it sleeps instead of spinning a core
    (``cudaEventBlockingSync``); for events a thread waits on."""
    if isinstance(device, CPUStream):
        return CPUEvent(timing, blocking)
    if isinstance(device, torch.cuda.Stream) or resolve_device(device).type == "cuda":
        return torch.cuda.Event(  # type: ignore[no-untyped-call]
            enable_timing=timing, blocking=blocking)
    return CPUEvent(timing, blocking)


def current_stream(device: DeviceLike = None) -> Stream:
    """The current stream of ``device`` on this thread (the shared ``CPUStream`` on CPU)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.current_stream(dev)
    return _CPU_STREAM


def default_stream(device: DeviceLike = None) -> Stream:
    """The default (null) stream of ``device`` (the shared ``CPUStream`` on CPU)."""
    dev = resolve_device(device)
    if dev.type == "cuda":
        return torch.cuda.default_stream(dev)
    return _CPU_STREAM


def stream_context(stream: Stream | None) -> contextlib.AbstractContextManager[Any]:
    """Context manager making ``stream`` current (and its device) on this thread.

    A no-op for a ``CPUStream`` or None.
    """
    if stream is None or isinstance(stream, CPUStream):
        return contextlib.nullcontext()
    return torch.cuda.stream(stream)


def record_event(stream: Stream | None = None, event: Event | None = None) -> Event:
    """Record ``event`` (a new one if None) on ``stream`` (the current one if None)."""
    if stream is None:
        stream = current_stream()
    if isinstance(stream, CPUStream):
        ev_cpu: Event = stream.record_event(event)
        return ev_cpu
    ev = torch.cuda.Event() if event is None or isinstance(event, CPUEvent) else event  # type: ignore[no-untyped-call]
    ev.record(stream)
    return ev


def wait_event(stream: Stream | None, event: Event | None) -> None:
    """Make work submitted to ``stream`` (current if None) after this call wait for ``event``.

    Never blocks the host, except for a CPU stream waiting on a CUDA event (see
    the module docstring). None events are ignored.
    """
    if event is None or isinstance(event, CPUEvent):
        return
    if stream is None:
        event.wait()  # torch: the current stream of the current device
    else:
        stream.wait_event(event)


def pinned_empty(shape: Sequence[int] | torch.Size, dtype: torch.dtype = torch.uint8,
                 pin: bool = True) -> torch.Tensor:
    """An uninitialised host tensor, page-locked when CUDA is available (fast async
    copies), plain memory otherwise."""
    if pin and cuda_available():
        return torch.empty(tuple(shape), dtype=dtype, pin_memory=True)
    return torch.empty(tuple(shape), dtype=dtype)


# -------------------------------------------------------------------- frame readiness


def item_tensor(item: object) -> torch.Tensor | None:
    """The tensor an item carries: a tensor itself, ``frame.data`` or a tensor payload."""
    if isinstance(item, torch.Tensor):
        return item
    data = getattr(item, "data", None)
    if isinstance(data, torch.Tensor):
        return data
    payload = getattr(item, "payload", None)
    return payload if isinstance(payload, torch.Tensor) else None


def tensor_version(tensor: torch.Tensor | None) -> int | None:
    """``tensor``'s version counter (bumped by every in-place write), None when it has
    none (no tensor, or an inference tensor)."""
    if tensor is None:
        return None
    try:
        return int(tensor._version)
    except RuntimeError:  # "Inference tensors do not track version counter"
        return None


def with_ready_event(item: Any, event: Event | None) -> Any:
    """``item`` carrying ``event`` (recorded after the work that fills its tensors):
    a frame's ``ready_event`` field, so the event travels with the frame, with its
    tensor's version then (``ready_version``). A bare tensor cannot carry one and
    comes back as it is (the staging bridge still makes each GPU reader's stream
    wait on it at write time)."""
    if not hasattr(item, "ready_event"):
        return item
    version = tensor_version(item_tensor(item))
    if item.ready_event is event and item.ready_version == version:
        return item
    return item.replace(ready_event=event, ready_version=version)


def ready_event(item: object) -> Event | None:
    """The event a frame or message carries (``ready_event``), or None; None too when
    its tensor was rewritten in place since the event was attached (the version
    counter moved on), so the writer's stream gets a fresh event recorded."""
    found: Event | None = getattr(item, "ready_event", None)
    if found is None:
        return None
    version = getattr(item, "ready_version", None)
    if version is not None and tensor_version(item_tensor(item)) != version:
        return None
    return found


def record_stream(tensor: torch.Tensor, stream: Stream) -> None:
    """Tell the caching allocator that ``stream`` uses ``tensor``'s memory, so freeing
    it cannot hand the block to new work before that stream's queued reads ran. Only
    for a CUDA stream of the tensor's own device (a no-op otherwise)."""
    if tensor.is_cuda and not isinstance(stream, CPUStream) and stream.device == tensor.device:
        tensor.record_stream(stream)


def wait_ready(item: object, stream: Stream | None = None) -> bool:
    """Make ``stream`` (current if None) wait until the item's tensor is written.

    Returns True when there was an event to wait on. On a CPU stream this blocks
    the host until the CUDA work is done; on a CUDA stream it never blocks, and
    the tensor is marked as used by that stream (``record_stream``), so the
    caching allocator cannot hand its memory to the producer's next allocation
    while this stream's reads are still queued.
    """
    event = ready_event(item)
    if event is None or isinstance(event, CPUEvent):
        return False
    tensor = item_tensor(item)
    if stream is None and tensor is not None and tensor.is_cuda:
        # the tensor's device, not the current one: on another GPU ``event.wait()``
        # would order the wrong stream
        stream = torch.cuda.current_stream(tensor.device)
    wait_event(stream, event)
    if tensor is not None and stream is not None:
        record_stream(tensor, stream)
    return True


def own_device(actor: Actor) -> torch.device | None:
    """The device ``actor`` declares for its work and outputs (``Actor.device``; a str
    from a user's subclass is resolved), None when unset or not on this machine."""
    dev = actor.device
    if dev is None or isinstance(dev, torch.device):
        return dev
    try:
        return resolve_device(dev, where=f"actor '{actor.actor_id}': device")
    except ConfigError:
        return None  # a device this machine lacks: the actor reports it itself


def input_device(actor: Actor | None) -> torch.device:
    """Where ``actor`` wants its input tensors; the one rule the staging bridge and the
    dispatchers follow. In order: the device it asked for
    (``Actor.request_input_device``: a display or shader reading CUDA frames
    through CUDA-GL interop), its own ``device``, its dispatcher's device (the GPU
    dispatcher has one), else the CPU."""
    if actor is None:
        return CPU
    wanted = actor.input_device
    if wanted is not None:
        return wanted
    own = own_device(actor)
    if own is not None:
        return own
    dev = getattr(actor._sl.dispatcher, "device", None)  # only the GPU dispatcher has one
    return dev if isinstance(dev, torch.device) else CPU


def wants_gpu_dispatcher(actor: Actor) -> bool:
    """An actor that declares a CUDA device gets a CUDA stream of its own (``"gpu"``)
    unless it names a dispatcher."""
    own = own_device(actor)
    return own is not None and own.type == "cuda"
