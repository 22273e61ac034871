"""Staging between GPU and CPU actors: the router a runtime installs on its links.

Each ``Runtime`` owns one ``StagingBridge`` (``Runtime.staging``), created on a
machine with CUDA (or given as ``Runtime(staging=...)``) and closed with the
runtime. When a link is made, the runtime installs it as the output's router
(``StreamOutput.set_router``); ``StreamOutput.write`` then asks it what each
linked input gets. Until CUDA is initialised in the process no tensor can be
on a GPU, so ``route`` returns at once (one call to
``torch.cuda.is_initialized``). For each linked input, by where its owner
actor wants its inputs (``streamlib.gpu.device.input_device``):

* **CUDA frame -> GPU reader**: the frame keeps its tensor. A *ready* event is
  recorded on the writer's current stream unless the frame carries a current
  one; GPU readers get the frame carrying it (``ready_event``). A reader on a
  ``GPUDispatcher`` waits on it at read time (its stream, when ``process``
  starts); any other GPU reader's stream (the device's default stream) waits
  at write time. ``record_stream`` tells the caching allocator the reader's
  stream uses the memory. No host sync.
* **CUDA frame -> CPU reader**: one device->host copy into page-locked memory
  on a per-device *copy stream* (after waiting on the ready event), shared by
  every CPU reader of that output. The staged frame is published to those
  links by the bridge thread only once the copy's event completed, so a CPU
  actor never sees a half-copied frame and needs no code of its own; the
  writer does not block. Until then the runtime counts the frame as in
  flight, so lock-step ``VirtualClock`` graphs still lose nothing. At most
  ``max_pending`` copies wait; beyond that the oldest is dropped (counted).
* **CPU frame -> GPU reader**: one host->device copy per device (through a
  pinned buffer, on the copy stream), published at once with a ready event the
  reader's stream waits on.
* Inputs without an owner actor (test captures) and everything else get the
  item unchanged. Staged copies reach their inputs through
  ``StreamOutput.deliver``, the same path as a plain write.

Staged host memory comes from torch's pinned caching allocator: each staged
frame owns its block (a CPU reader may keep it, slice it, view it as numpy),
and the block is recycled once the frame is gone and its copy has finished, so
steady state makes no new page-locked allocations. ``GPURingBuffer(...,
device="cpu", pin_memory=True)`` is the explicit-release pinned ring for code
that manages its own slots.

On a CPU-only machine nothing here runs. The decisions (``is_device_tensor``,
``gpu_consumer``) are constructor arguments so the CPU tests drive the real
code paths with the CPU twins of streams and events.
"""

from __future__ import annotations

import collections
import logging
import threading
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch

from streamlib.clocks import TimedTick
from streamlib.errors import ConfigError
from streamlib.gpu.device import (
    CPU, CPUStream, Event, Stream, current_stream, default_stream, input_device, item_tensor,
    new_event, new_stream, pinned_empty, ready_event, record_event, record_stream, stream_context,
    wait_event, with_ready_event,
)

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.runtime.runtime import Runtime
    from streamlib.core.ports import StreamInput, StreamOutput

__all__ = ["StagingBridge", "StagingStats", "with_tensor"]

logger = logging.getLogger("streamlib")


def with_tensor(item: Any, tensor: torch.Tensor) -> Any:
    """``item`` with its tensor replaced (``data`` of a frame, a tensor ``payload``, or
    the tensor itself); a frame's ready event, which marked the old tensor, is dropped."""
    if isinstance(item, torch.Tensor):
        return tensor
    if isinstance(getattr(item, "data", None), torch.Tensor):
        return item.replace(data=tensor)
    return item.replace(payload=tensor)


def _is_cuda_tensor(tensor: torch.Tensor) -> bool:
    return tensor.is_cuda


def _gpu_consumer(actor: Actor) -> torch.device | None:
    dev = input_device(actor)
    return dev if dev.type == "cuda" else None


@dataclass(frozen=True, slots=True)
class StagingStats:
    """Counters of a ``StagingBridge``."""

    d2h_frames: int    # device->host copies started
    d2h_bytes: int
    h2d_frames: int    # host->device copies
    h2d_bytes: int
    published: int     # staged host frames delivered to CPU readers
    dropped: int       # staged host frames discarded (max_pending exceeded, or closed)
    pending: int       # copies waiting to complete now

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(eq=False)
class _Pending:
    done: Event
    staged: Any
    output: StreamOutput
    links: tuple[StreamInput, ...]
    tick: TimedTick
    runtime: Runtime | None


def _hold(runtime: Runtime | None) -> None:
    # The runtime's in-flight count is what lock-step clocks wait on; a staged frame
    # not yet published is work in flight.
    if runtime is not None:
        runtime.hold()


def _release(runtime: Runtime | None) -> None:
    if runtime is not None:
        runtime.release()


class StagingBridge:
    """Routes written frames between GPU and CPU readers (see the module docstring).

    Args:
        max_pending: device->host copies that may wait for completion at once.
        is_device_tensor: whether a tensor lives on the GPU (default ``t.is_cuda``).
        gpu_consumer: the device of a GPU reader actor, None for a CPU reader
            (default: ``input_device(actor)`` when it is CUDA).
        enabled: whether any tensor can be on a GPU yet (default
            ``torch.cuda.is_initialized``: never initialises CUDA); until then
            every item passes unchanged.

    Raises ConfigError when ``max_pending`` is below 1.
    """

    def __init__(self, max_pending: int = 8, *,
                 is_device_tensor: Callable[[torch.Tensor], bool] = _is_cuda_tensor,
                 gpu_consumer: Callable[[Actor], torch.device | None] = _gpu_consumer,
                 enabled: Callable[[], bool] = torch.cuda.is_initialized) -> None:
        if max_pending < 1:
            raise ConfigError(f"StagingBridge: max_pending must be >= 1, got {max_pending}")
        self.max_pending = max_pending
        self._enabled = enabled
        self._is_device_tensor = is_device_tensor
        self._gpu_consumer = gpu_consumer
        self._copy_streams: dict[torch.device, Stream] = {}
        self._cond = threading.Condition()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._unfinished = 0  # staged host frames neither published nor discarded
        self._counts = dict.fromkeys(("d2h_frames", "d2h_bytes", "h2d_frames", "h2d_bytes",
                                      "published", "dropped"), 0)

    # -- the hook ---------------------------------------------------------------
    def route(self, output: StreamOutput, item: Any,
              links: tuple[StreamInput, ...]) -> list[tuple[StreamInput, Any]] | None:
        """The (input, item) pairs to write now (None: the item to every link);
        staged host copies follow later, through ``output.deliver``."""
        if not links or not self._enabled():
            return None
        tensor = item_tensor(item)
        if tensor is None:
            return None
        if self._is_device_tensor(tensor):
            return self._from_device(output, item, tensor, links)
        return self._from_host(item, tensor, links)

    def _consumer_stream(self, actor: Actor, device: torch.device) -> Stream:
        stream_for = getattr(actor._sl.dispatcher, "stream_for", None)
        if stream_for is not None:
            stream: Stream = stream_for(actor)
            return stream
        return default_stream(device) if device.type == "cuda" else current_stream(CPU)

    @staticmethod
    def _waits_at_read(actor: Actor) -> bool:
        # GPUDispatcher makes the actor's stream wait on its inputs' ready events
        # when ``process`` starts: the event the frame carries is all it needs
        return getattr(actor._sl.dispatcher, "stream_for", None) is not None

    def _from_device(self, output: StreamOutput, item: Any, tensor: torch.Tensor,
                     links: Iterable[StreamInput]) -> list[tuple[StreamInput, Any]]:
        event = ready_event(item)
        ready = item
        if event is None:  # recorded after everything the writer queued so far
            event = record_event(current_stream(tensor.device))
            ready = with_ready_event(item, event)  # GPU readers get the frame carrying it
        now: list[tuple[StreamInput, Any]] = []
        cpu_links: list[StreamInput] = []
        for inp in links:
            owner = inp._owner
            if owner is None:  # a test capture: the item as written
                now.append((inp, item))
                continue
            device = self._gpu_consumer(owner)
            if device is None:
                cpu_links.append(inp)
                continue
            stream = self._consumer_stream(owner, device)
            if not self._waits_at_read(owner):
                # a wait queued now would hold the reader's next work behind this
                # frame; only readers whose dispatcher does not wait at read need it
                wait_event(stream, event)
            record_stream(tensor, stream)
            now.append((inp, ready))
        if cpu_links:
            self._stage_down(output, item, tensor, event, tuple(cpu_links))
        return now

    def _from_host(self, item: Any, tensor: torch.Tensor,
                   links: Iterable[StreamInput]) -> list[tuple[StreamInput, Any]]:
        now: list[tuple[StreamInput, Any]] = []
        uploads: dict[torch.device, Any] = {}
        for inp in links:
            owner = inp._owner
            device = None if owner is None else self._gpu_consumer(owner)
            if owner is None or device is None:
                now.append((inp, item))
                continue
            staged = uploads.get(device)
            if staged is None:
                staged = uploads[device] = self._stage_up(item, tensor, device)
            stream = self._consumer_stream(owner, device)
            wait_event(stream, ready_event(staged))
            record_stream(item_tensor(staged), stream)  # type: ignore[arg-type]
            now.append((inp, staged))
        return now

    # -- copies -----------------------------------------------------------------
    def copy_stream(self, device: torch.device) -> Stream:
        """The bridge's copy stream for ``device`` (created on first use)."""
        with self._cond:
            stream = self._copy_streams.get(device)
            if stream is None:
                stream = self._copy_streams[device] = new_stream(device)
            return stream

    def _stage_up(self, item: Any, tensor: torch.Tensor, device: torch.device) -> Any:
        pinned = pinned_empty(tensor.shape, tensor.dtype)
        pinned.copy_(tensor)  # pageable -> pinned on the host: the async copy needs pinned
        copy = self.copy_stream(device)
        with stream_context(copy):
            out = torch.empty(tensor.shape, dtype=tensor.dtype, device=device)
            out.copy_(pinned, non_blocking=True)
        staged = with_ready_event(with_tensor(item, out), record_event(copy))
        with self._cond:
            self._counts["h2d_frames"] += 1
            self._counts["h2d_bytes"] += tensor.numel() * tensor.element_size()
        return staged

    def _stage_down(self, output: StreamOutput, item: Any, tensor: torch.Tensor, event: Event,
                    links: tuple[StreamInput, ...]) -> None:
        copy = self.copy_stream(tensor.device)
        wait_event(copy, event)
        host = pinned_empty(tensor.shape, tensor.dtype)
        with stream_context(copy):
            host.copy_(tensor, non_blocking=True)
        record_stream(tensor, copy)  # the writer may free the frame before the copy ran
        # blocking: the bridge thread sleeps in synchronize() instead of spinning a core
        # through the producer's GPU time (the copy stream waits on the producer first)
        done = record_event(copy, new_event(copy, blocking=True))
        owner = output._owner
        runtime = None if owner is None else owner._sl.runtime
        tick = output.tick_for(item)
        pending = _Pending(done, with_tensor(item, host), output, links, tick, runtime)
        _hold(runtime)
        dropped: _Pending | None = None
        with self._cond:
            self._counts["d2h_frames"] += 1
            self._counts["d2h_bytes"] += tensor.numel() * tensor.element_size()
            self._unfinished += 1
            if self._closed:
                dropped = pending
            else:
                self._queue.append(pending)
                if len(self._queue) > self.max_pending:
                    dropped = self._queue.popleft()  # latest wins; its copy still runs
                if self._thread is None:
                    # Owned by the runtime, which closes (and joins) it; a daemon so that a
                    # runtime nobody closed cannot keep the interpreter from exiting.
                    self._thread = threading.Thread(target=self._serve, daemon=True,
                                                    name="streamlib-staging")
                    self._thread.start()
                self._cond.notify_all()
        if dropped is not None:
            self._discard(dropped)

    # -- the bridge thread ----------------------------------------------------
    def _serve(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                pending = self._queue[0]
            try:
                pending.done.synchronize()  # releases the GIL; the copy is all that is left
            except Exception:  # noqa: BLE001 - a failed copy must not kill the bridge
                logger.exception("staging: device->host copy failed; frame dropped")
                with self._cond:
                    if self._queue and self._queue[0] is pending:
                        self._queue.popleft()
                self._discard(pending)
                continue
            with self._cond:
                if not self._queue or self._queue[0] is not pending:
                    continue  # dropped meanwhile (and already released)
                self._queue.popleft()
            self._publish(pending)

    def _publish(self, p: _Pending) -> None:
        try:
            p.output.deliver(((inp, p.staged) for inp in p.links), p.tick)
            with self._cond:
                self._counts["published"] += 1
        finally:
            self._finished(p)

    def _discard(self, p: _Pending) -> None:
        with self._cond:
            self._counts["dropped"] += 1
        self._finished(p)

    def _finished(self, p: _Pending) -> None:
        with self._cond:
            self._unfinished -= 1
            self._cond.notify_all()
        _release(p.runtime)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every staged host frame is published (or dropped); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._unfinished == 0, timeout)

    # -- state ----------------------------------------------------------------
    def stats(self) -> StagingStats:
        with self._cond:
            return StagingStats(**self._counts, pending=self._unfinished)

    def close(self) -> None:
        """Stop the bridge thread; pending copies are dropped (counted). Idempotent."""
        with self._cond:
            self._closed = True
            left = list(self._queue)
            self._queue.clear()
            thread, self._thread = self._thread, None
            self._cond.notify_all()
        for p in left:
            self._discard(p)
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)
