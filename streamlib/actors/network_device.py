"""The device->host path of ``NetworkSendActor``: a CUDA frame crosses to the host in one
non-blocking copy into page-locked memory, on the current stream of the frame's device
(the actor's own stream under the GPU dispatcher), after waiting on the frame's ready
event (``streamlib.gpu.device.wait_ready``).

* ``YCbCr-4:2:2/10``: the pgroup kernel packs on the device; the packed bytes are copied
  straight into the sender's buffer, which is pinned (``alloc``).
* ``RGB/8``: the frame's RGB bytes (alpha dropped on the device) are the payload: the
  same single copy into the sender's buffer.
* ``YCbCr-4:2:2/8`` (no kernel): one copy into a reused pinned (H, W, C) tensor, then the
  CPU packer.

A blocking event is recorded after the copy. For the first two the sender's thread
synchronises on it before it packetises the buffer, so ``process`` never waits for the
GPU; a buffer returns to the sender's free list only once it was sent, so the next
frame's copy never lands in a buffer still being sent or copied into. For 4:2:2/8 this
thread synchronises and packs before it returns, before the next frame's copy can be
queued, so one staging tensor is enough.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch

from streamlib.core.frames import VideoFrame
from streamlib.gpu.device import (
    Event, Stream, current_stream, new_event, pinned_empty, record_event, wait_ready,
)
from streamlib.net.pgroup import VideoFormat, pack_rgb_fast

__all__ = ["DeviceFramePacker"]


def _done_event(stream: Stream) -> Event:
    # blocking: synchronize() sleeps in the driver instead of spinning a core through
    # the copy (CUDA's default for events without cudaEventBlockingSync)
    return new_event(stream, blocking=True)


class DeviceFramePacker:
    """Packs CUDA frames of one stream format into host buffers (see the module docstring).

    ``alloc`` makes the sender's buffers (``VideoStreamSender(alloc=...)``) when
    ``direct``: page-locked, so the copy into them is asynchronous.
    """

    def __init__(self, fmt: VideoFormat) -> None:
        self.fmt = fmt
        # the pgroup kernel or the plain RGB bytes land in the sender's buffer as they are
        self.direct = fmt.sampling == "RGB" or (fmt.sampling == "YCbCr-4:2:2" and
                                                 fmt.depth == 10)
        self._host: dict[int, torch.Tensor] = {}  # sender buffer address -> its pinned tensor
        self._staging: torch.Tensor | None = None

    def alloc(self, nbytes: int) -> npt.NDArray[np.uint8]:
        """A zeroed page-locked buffer of ``nbytes`` (plain memory without CUDA)."""
        pinned = pinned_empty((nbytes,), torch.uint8)
        pinned.zero_()
        buf: npt.NDArray[np.uint8] = pinned.numpy()
        self._host[buf.ctypes.data] = pinned
        return buf

    def forget(self) -> None:
        """Drop the buffers of a closed sender (each stays alive while its array does)."""
        self._host.clear()

    def pack(self, frame: VideoFrame, buf: npt.NDArray[np.uint8]) -> Event | None:
        """Queue ``frame``'s bytes into ``buf``; the event to synchronise before reading
        ``buf`` (None: ``buf`` is complete already)."""
        data = frame.data
        stream = current_stream(data.device)
        wait_ready(frame, stream)
        if not self.direct:
            staging = self._staging
            if staging is None or staging.shape != data.shape or staging.dtype != data.dtype:
                staging = self._staging = pinned_empty(data.shape, data.dtype)
            staging.copy_(data, non_blocking=True)
            record_event(stream, _done_event(stream)).synchronize()
            pack_rgb_fast(staging.numpy(), self.fmt, out=buf)
            return None
        if self.fmt.sampling == "RGB":
            src = data[..., :3]
        else:
            from streamlib.gpu.kernels import rgb_to_pgroup422_10  # noqa: PLC0415 - CuPy, lazily

            src = rgb_to_pgroup422_10(data)  # on the current stream
        dst = self._host.get(buf.ctypes.data)
        if dst is None:  # not one of ours: pageable, the copy is synchronous
            dst = torch.from_numpy(buf)
        dst[: src.numel()].view(src.shape).copy_(src, non_blocking=True)
        return record_event(stream, _done_event(stream))
