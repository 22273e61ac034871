"""Host data to a device through one reused page-locked buffer.

A pageable ``tensor.to("cuda")`` stages through a driver buffer and blocks the
host for the whole copy. Here the host fills a pinned buffer, the copy is queued
``non_blocking`` on the caller's current stream, and a blocking event marks its
end; the host waits on that event only before it overwrites the buffer for the
next frame, so a frame's upload overlaps the next frame's host work.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from streamlib.errors import ActorStateError
from streamlib.gpu.device import Event, current_stream, new_event, pinned_empty, record_event


class PinnedUpload:
    """``buffer()`` for the host to fill, then ``upload(device)`` for a fresh device tensor.

    Not thread-safe: one owner (an actor) calls both from its own thread.
    """

    def __init__(self) -> None:
        self._buf: torch.Tensor | None = None
        self._done: Event | None = None

    def buffer(self, shape: Sequence[int], dtype: torch.dtype = torch.uint8) -> torch.Tensor:
        """The reused pinned buffer, once the previous upload out of it has finished."""
        if self._done is not None:
            self._done.synchronize()  # the last copy may still be reading it
            self._done = None
        if self._buf is None or tuple(self._buf.shape) != tuple(shape) or self._buf.dtype != dtype:
            self._buf = pinned_empty(shape, dtype)
        return self._buf

    def upload(self, device: torch.device) -> torch.Tensor:
        """A new tensor on ``device`` holding the buffer, copied asynchronously on the current stream.

        Raises:
            ActorStateError: ``buffer()`` was never called.
        """
        if self._buf is None:
            raise ActorStateError("PinnedUpload.upload before buffer(): nothing to upload")
        out = torch.empty(self._buf.shape, dtype=self._buf.dtype, device=device)
        out.copy_(self._buf, non_blocking=True)
        stream = current_stream(device)
        self._done = record_event(stream, new_event(stream, blocking=True))
        return out
