"""``GPURingBuffer``: preallocated frame slots shared by one producer and its readers.

Protocol (the same on CUDA and CPU; on CPU every event is a no-op twin):

* The producer ``acquire()``s a slot, writes ``slot.tensor`` on its own stream
  and ``commit()``s it, which records the slot's *written* event on that stream.
* A reader takes the latest committed slot (``with ring.read_latest() as view``):
  its stream waits on the *written* event (no host sync), it uses
  ``view.tensor``, and leaving the block records a *read done* event on its
  stream and releases the slot.
* When the producer gets that slot back, its stream waits on every *read done*
  event recorded since (one per reader stream): again no host sync.

Slot choice: ``acquire`` never hands out a slot a reader holds, the slot being
written, or the newest committed slot (so a reader always finds the newest
frame and latest-read never goes back in time). It takes an empty slot, else
the oldest committed one; that content is *dropped* if no reader took it. If no
slot qualifies (``slots - 2`` readers hold distinct older slots), ``acquire``
waits up to ``timeout`` seconds (0, the default: not at all) and then raises
``WouldBlock``, allocating nothing: a realtime producer skips that frame.

A reader's hold is explicit (the ``with`` block, or ``view.release()``),
because on the CPU twin there are no asynchronous streams to say when a read
is over. ``view.tensor`` is valid only until release; clone it to keep it.

The plan's three calls sit on top of that protocol, for one producer and one
reader that need no explicit holds:

* ``get_write_buffer()`` acquires a slot (once) and returns its tensor: the
  same tensor on every call until ``advance()``, which commits it (recording
  its *written* event, as ``commit`` does) so the next ``get_write_buffer()``
  acquires a fresh slot.
* ``get_read_buffer()`` returns the tensor of the newest committed slot (None
  before the first ``advance``/``commit``) and holds that slot until its next
  call, which releases it (recording *read done*) after taking the newest one.
  It is latest-read: when the writer laps the reader, the frames in between
  are never seen (counted in ``stats().dropped``), and the buffer the reader
  holds is never overwritten under it. With ``slots=2`` that hold can make
  ``get_write_buffer`` raise ``WouldBlock``; 3 (the default) never blocks.

Nothing is allocated after construction: ``stats().allocations`` stays at
``slots`` (on CUDA, ``torch.cuda.memory_allocated`` stays constant too).
Counters: ``written == read + dropped + unread`` always holds.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import contextlib

import torch

from streamlib.gpu.device import (
    CPUEvent, CPUStream, DeviceLike, Event, Stream, current_stream, new_event, pinned_empty,
    record_event, resolve_device, wait_event,
)
from streamlib.errors import ActorStateError, ClosedError, ConfigError, StreamlibError

__all__ = ["GPURingBuffer", "GPURingStats", "ReadView", "WouldBlock", "WriteSlot"]


class WouldBlock(StreamlibError, TimeoutError):
    """No slot (or no committed frame) was available within the timeout; nothing was allocated."""


@dataclass(frozen=True, slots=True)
class GPURingStats:
    """A consistent snapshot of a ring's counters."""

    written: int       # commits
    read: int          # committed frames taken by at least one reader
    dropped: int       # committed frames recycled by acquire() without any reader
    unread: int        # committed frames still held, never read
    would_block: int   # acquire() calls that raised WouldBlock
    allocations: int   # tensors allocated by the ring (== slots, forever)
    slots: int
    held: int          # slots held by readers right now

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class WriteSlot:
    """A slot handed out by ``acquire``: fill ``tensor``, then ``commit()`` or ``abort()``."""

    __slots__ = ("_ring", "index", "tensor", "_open")

    def __init__(self, ring: GPURingBuffer, index: int) -> None:
        self._ring, self.index = ring, index
        self.tensor: torch.Tensor = ring._buffers[index]
        self._open = True

    def commit(self, frame_number: int = 0, stream: Stream | None = None) -> int:
        """Publish the slot (see ``GPURingBuffer.commit``); returns its sequence number."""
        return self._ring.commit(self, frame_number, stream)

    def abort(self) -> None:
        """Give the slot back unpublished (its old content is gone either way)."""
        self._ring.abort(self)

    def __repr__(self) -> str:
        return f"<WriteSlot {self.index} {'open' if self._open else 'closed'}>"


class ReadView:
    """The newest committed slot, held by one reader until ``release()``.

    ``tensor`` (valid until release), ``sequence`` (1, 2, ... per commit) and
    ``frame_number`` (as given to commit). A context manager: leaving the block
    releases on the then-current stream.
    """

    __slots__ = ("_ring", "index", "tensor", "sequence", "frame_number", "_held", "_stream")

    def __init__(self, ring: GPURingBuffer, index: int, sequence: int, frame_number: int,
                 stream: Stream | None = None) -> None:
        self._ring, self.index = ring, index
        self.tensor: torch.Tensor = ring._buffers[index]
        self.sequence, self.frame_number = sequence, frame_number
        self._held = True
        self._stream = stream  # the stream the read was ordered on: read done is recorded there

    def release(self, stream: Stream | None = None) -> None:
        """Record *read done* on ``stream`` (default: the stream the read was taken on,
        else the current one) and free the slot. Idempotent."""
        if self._held:
            self._held = False
            self._ring._release(self.index, stream if stream is not None else self._stream)

    def __enter__(self) -> ReadView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"<ReadView slot={self.index} seq={self.sequence} frame={self.frame_number}>"


class GPURingBuffer:
    """``slots`` preallocated tensors of one shape/dtype on ``device`` (default: CUDA if
    available), exchanged with the acquire/commit/read protocol of the module docstring.

    ``pin_memory=True`` with a CPU device makes a page-locked host ring (what
    ``streamlib.gpu.staging`` copies through). Thread-safe; one producer at a time.

    Raises:
        ConfigError: bad shape, slots < 2, or a device ``resolve_device`` rejects.
    """

    def __init__(self, shape: Sequence[int], dtype: torch.dtype = torch.uint8, slots: int = 3,
                 device: DeviceLike = None, *, pin_memory: bool = False,
                 name: str = "gpu-ring") -> None:
        where = f"GPURingBuffer {name!r}"
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 2:
            raise ConfigError(f"{where}: slots must be an int >= 2, got {slots!r}")
        if not shape or not all(isinstance(s, int) and s > 0 for s in shape):
            raise ConfigError(f"{where}: shape must be positive ints, got {tuple(shape)!r}")
        self.name = name
        self.device = resolve_device(device, where=f"{where}: device")
        self.shape, self.dtype, self.slots = tuple(shape), dtype, slots
        if self.device.type == "cpu":
            self._buffers = [pinned_empty(self.shape, dtype, pin_memory) for _ in range(slots)]
        else:
            self._buffers = [torch.empty(self.shape, dtype=dtype, device=self.device)
                             for _ in range(slots)]
        self._allocations = slots
        self._cond = threading.Condition()
        self._seq = [0] * slots          # sequence of the committed content, 0: none
        self._frame = [0] * slots
        self._writing = [False] * slots
        self._holders = [0] * slots
        self._reads = [0] * slots        # readers that took the current content
        self._written_ev: list[Event] = [new_event(self.device) for _ in range(slots)]
        self._done: list[dict[Any, Event]] = [{} for _ in range(slots)]  # reader stream -> event
        self._pool: list[Event] = []     # recycled "read done" events
        self._sequence = 0
        self._written = self._read = self._dropped = self._would_block = 0
        self._closed = False
        self._plan_write: WriteSlot | None = None  # get_write_buffer's slot until advance()
        self._plan_read: ReadView | None = None    # get_read_buffer's hold until its next call

    # -- producer ------------------------------------------------------------
    def acquire(self, timeout: float = 0.0, stream: Stream | None = None) -> WriteSlot:
        """A free slot for the producer; its ``stream`` (current if None) waits on the
        *read done* events of the readers that used the slot.

        Raises WouldBlock (nothing allocated) when no slot frees within ``timeout``
        seconds, ClosedError (an ActorStateError) when the ring is closed.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                if self._closed:
                    raise ClosedError(f"GPURingBuffer {self.name!r} is closed")
                index = self._pick()
                if index is not None:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._would_block += 1
                    held = sum(1 for h in self._holders if h)
                    raise WouldBlock(
                        f"GPURingBuffer {self.name!r}: no free slot ({held} of {self.slots} held "
                        f"by readers, 1 newest); use more slots or release reads sooner")
                self._cond.wait(remaining)
            self._writing[index] = True
            if self._seq[index] and not self._reads[index]:
                self._dropped += 1
            self._seq[index] = 0
            waits = list(self._done[index].values())
            self._done[index].clear()
        if waits:
            target = stream if stream is not None else current_stream(self.device)
            for ev in waits:
                wait_event(target, ev)
            with self._cond:
                self._pool.extend(waits)  # re-recording later cannot affect the waits above
        return WriteSlot(self, index)

    def _pick(self) -> int | None:
        newest = max(range(self.slots), key=self._seq.__getitem__)
        if not self._seq[newest]:
            newest = -1
        best, best_seq = None, 0
        for i in range(self.slots):
            if self._writing[i] or self._holders[i] or i == newest:
                continue
            if not self._seq[i]:
                return i  # empty: nothing to drop
            if best is None or self._seq[i] < best_seq:
                best, best_seq = i, self._seq[i]
        return best

    def commit(self, slot: WriteSlot, frame_number: int = 0, stream: Stream | None = None) -> int:
        """Record the slot's *written* event on ``stream`` (current if None) and publish it.

        Returns the new sequence number. Raises ActorStateError for a slot that is
        not open (committed or aborted already) or from another ring.
        """
        self._check_slot(slot)
        target = stream if stream is not None else current_stream(self.device)
        i = slot.index
        event = self._written_ev[i]
        if isinstance(target, CPUStream) != isinstance(event, CPUEvent):
            event = new_event(target)  # a pinned host ring committed from a CUDA stream
        # record_event may return a new event (a CUDA one for a CPU twin): keep it, or
        # readers would not wait for the copy into the slot
        self._written_ev[i] = record_event(target, event)
        with self._cond:
            slot._open = False
            self._sequence += 1
            self._seq[i], self._frame[i] = self._sequence, int(frame_number)
            self._writing[i], self._reads[i] = False, 0
            self._written += 1
            self._cond.notify_all()
            return self._sequence

    def abort(self, slot: WriteSlot) -> None:
        """Return an acquired slot without publishing it. ActorStateError if not open."""
        self._check_slot(slot)
        with self._cond:
            slot._open = False
            self._writing[slot.index] = False
            self._cond.notify_all()

    @contextlib.contextmanager
    def write(self, frame_number: int = 0, timeout: float = 0.0) -> Iterator[torch.Tensor]:
        """``with ring.write(n) as t:`` acquire, yield the slot tensor, commit on success,
        abort if the block raises. Raises WouldBlock like ``acquire``."""
        slot = self.acquire(timeout)
        try:
            yield slot.tensor
        except BaseException:
            slot.abort()
            raise
        slot.commit(frame_number)

    def get_write_buffer(self, timeout: float = 0.0) -> torch.Tensor:
        """The tensor to write the next frame into (the same one until ``advance()``).

        Raises WouldBlock and ClosedError like ``acquire`` (whose stream rule it follows).
        """
        if self._plan_write is None:
            self._plan_write = self.acquire(timeout)
        return self._plan_write.tensor

    def advance(self, frame_number: int = 0, stream: Stream | None = None) -> int:
        """Commit the ``get_write_buffer()`` tensor (see ``commit``); returns its sequence.

        Raises ActorStateError when no ``get_write_buffer()`` is pending.
        """
        slot = self._plan_write
        if slot is None:
            raise ActorStateError(f"GPURingBuffer {self.name!r}: advance() without a "
                                  "get_write_buffer() to commit")
        self._plan_write = None
        return self.commit(slot, frame_number, stream)

    def _check_slot(self, slot: WriteSlot) -> None:
        if slot._ring is not self or not slot._open:
            raise ActorStateError(f"GPURingBuffer {self.name!r}: {slot!r} is not an open slot "
                                  "of this ring")

    # -- readers -------------------------------------------------------------
    def try_read_latest(self, newer_than: int = 0, stream: Stream | None = None) -> ReadView | None:
        """Hold the newest committed slot if its sequence is above ``newer_than``, else None.

        ``stream`` (current if None) waits on the slot's *written* event.
        """
        with self._cond:
            index = max(range(self.slots), key=self._seq.__getitem__)
            seq = self._seq[index]
            if not seq or seq <= newer_than or self._closed:
                return None
            self._holders[index] += 1
            self._reads[index] += 1
            if self._reads[index] == 1:
                self._read += 1
            event = self._written_ev[index]
            target = stream if stream is not None else current_stream(self.device)
            view = ReadView(self, index, seq, self._frame[index], target)
        wait_event(target, event)
        return view

    def read_latest(self, timeout: float = 0.0, newer_than: int = 0,
                    stream: Stream | None = None) -> ReadView:
        """Like ``try_read_latest`` but waits up to ``timeout`` s for a frame; raises
        WouldBlock when none comes (``with ring.read_latest() as view:``)."""
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            view = self.try_read_latest(newer_than, stream)
            if view is not None:
                return view
            with self._cond:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._closed:
                    raise WouldBlock(f"GPURingBuffer {self.name!r}: no committed frame newer "
                                     f"than sequence {newer_than}")
                if max(self._seq) <= newer_than:
                    self._cond.wait(remaining)

    def get_read_buffer(self, stream: Stream | None = None) -> torch.Tensor | None:
        """The newest committed tensor, held until the next call; None before any commit.

        ``stream`` (current if None) waits on its *written* event and records
        *read done* for the previous hold. Raises ClosedError when the ring is closed.
        """
        if self._closed:
            raise ClosedError(f"GPURingBuffer {self.name!r} is closed")
        view = self.try_read_latest(0, stream)
        previous, self._plan_read = self._plan_read, view
        if previous is not None:
            previous.release()  # on its own read's stream; after taking the newest, so its
            # slot cannot be reused in between
        return None if view is None else view.tensor

    def _release(self, index: int, stream: Stream | None) -> None:
        target = stream if stream is not None else current_stream(self.device)
        event: Event | None = None
        if not isinstance(target, CPUStream):
            with self._cond:
                event = self._done[index].pop(target, None) or (
                    self._pool.pop() if self._pool else None)
            event = record_event(target, event)
        with self._cond:
            if event is not None:
                self._done[index][target] = event  # one per reader stream: the last covers all
            self._holders[index] -= 1
            self._cond.notify_all()

    # -- state -----------------------------------------------------------------
    @property
    def sequence(self) -> int:
        """Sequence number of the last commit (0: none yet)."""
        return self._sequence

    def stats(self) -> GPURingStats:
        with self._cond:
            unread = sum(1 for i in range(self.slots) if self._seq[i] and not self._reads[i])
            return GPURingStats(
                written=self._written, read=self._read, dropped=self._dropped, unread=unread,
                would_block=self._would_block, allocations=self._allocations, slots=self.slots,
                held=sum(1 for h in self._holders if h))

    def close(self) -> None:
        """Refuse new acquires and reads, wake waiters. Idempotent; views stay valid."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __enter__(self) -> GPURingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"<GPURingBuffer {self.name!r} {self.slots}x{self.shape} {self.dtype} "
                f"on {self.device}>")
