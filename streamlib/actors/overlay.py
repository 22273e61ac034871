"""Boxes from model results drawn onto video: ``OverlayBoxesActor`` and ``draw_boxes``.

``OverlayBoxesActor`` pairs each video frame with the ``DataMessage`` of the
same ``frame_number`` (``InferenceActor``'s output; frames and results arrive
on separate links) and draws the boxes with tensor ops on the frame's device:
no host synchronisation on CUDA, where it waits for the result's ready event
on its own stream (``streamlib.gpu.device.wait_ready``).
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping, Sequence

import torch

from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.gpu.device import current_stream, resolve_device, wait_ready
from streamlib.core.frames import DataMessage, PixelFormat, VideoFrame
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.errors import ConfigError, FrameValidationError

__all__ = ["OverlayBoxesActor", "draw_boxes"]


def _boxes_of(payload: Any, key: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, 4) boxes and optional (N,) scores from a payload (dict, tensor, list)."""
    scores = None
    if isinstance(payload, Mapping):
        boxes = payload[key]
        scores = payload.get("scores")
    else:
        boxes = payload
    boxes = torch.as_tensor(boxes)
    boxes = boxes.reshape(-1, 4)
    if scores is not None:
        scores = torch.as_tensor(scores).reshape(-1)
    return boxes, scores


def draw_boxes(image: torch.Tensor, boxes: torch.Tensor, color: Sequence[int] | torch.Tensor,
               thickness: int = 2, keep: torch.Tensor | None = None) -> torch.Tensor:
    """A copy of ``image`` (H, W, C) uint8 with box outlines drawn in ``color``
    (C values; a tensor already on the image's device and of its dtype costs no copy).

    ``boxes`` is (N, 4) ``x0, y0, x1, y1`` in pixels (x1, y1 exclusive,
    rounded); each outline is ``thickness`` pixels wide inside the box.
    ``keep`` (N,) bool hides boxes where it is False. Pure tensor ops on the
    image's device (no host synchronisation): row and column coverage per box
    and two matrix products count, per pixel, the boxes whose outline covers it.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    dev = image.device
    b = boxes.to(dev).round().to(torch.int64)
    x0, y0, x1, y1 = (b[:, i:i + 1] for i in range(4))
    ys = torch.arange(height, device=dev).unsqueeze(0)
    xs = torch.arange(width, device=dev).unsqueeze(0)
    work = torch.float32
    rows = ((ys >= y0) & (ys < y1)).to(work)
    cols = ((xs >= x0) & (xs < x1)).to(work)
    rows_in = ((ys >= y0 + thickness) & (ys < y1 - thickness)).to(work)
    cols_in = ((xs >= x0 + thickness) & (xs < x1 - thickness)).to(work)
    if keep is not None:
        k = keep.to(dev).reshape(-1, 1).to(work)
        rows, rows_in = rows * k, rows_in * k
    mask = (rows.T @ cols - rows_in.T @ cols_in) > 0.5  # (H, W): on some outline
    if isinstance(color, torch.Tensor):
        paint = color.to(device=dev, dtype=image.dtype)  # a no-op when it already matches
    else:
        paint = torch.tensor(list(color), dtype=image.dtype, device=dev)
    return torch.where(mask.unsqueeze(-1), paint, image)


class OverlayBoxesActor(Actor):
    """Draws boxes from ``inputs['data']`` onto the matching frames of ``inputs['video']``.

    A ``DataMessage`` payload is a dict with ``boxes`` ((N, 4) ``x0, y0, x1,
    y1`` pixels, x1/y1 exclusive) and optionally ``scores`` ((N,)), or the boxes
    tensor itself. With ``sync=True`` a frame waits for the message of the
    same ``frame_number`` (frames and results arrive on separate links); a
    frame whose result will not come (a newer result arrived, or more than
    ``max_pending`` frames wait) goes out with the newest older result.
    ``sync=False`` draws the newest result on each new frame at once. Drawing
    runs on the frame's device (a CUDA payload on a CPU frame is copied, which
    synchronises); output frames keep the input's stamps and format.

    Args:
        color: RGB outline colour, 3 ints 0..255 (alpha 255 for RGBA frames).
        thickness: outline width in pixels (>= 1).
        score_threshold: boxes whose score is below it are not drawn.
        sync: wait for each frame's own result (see above).
        max_pending: frames held while waiting for results (>= 1).
        key: payload key holding the boxes.
        device: where frames are drawn (``"cpu"``, ``"cuda"``, ``"cuda:N"``):
            frames are delivered there by the staging bridge. None (default):
            the CPU, unless the actor runs on a GPU dispatcher. A CUDA device
            also makes ``dispatcher="gpu"`` the default.
        actor_id, **kwargs: see ``Actor``.

    Raises:
        ConfigError: bad color, thickness, max_pending, device.
        FrameValidationError: at run time, a frame format other than rgb24, rgba,
            bgr24, bgra.
    """

    def __init__(self, color: Sequence[int] = (255, 0, 0), thickness: int = 2,
                 score_threshold: float = 0.5, sync: bool = True, max_pending: int = 8,
                 key: str = "boxes", device: str | None = None, *, actor_id: str | None = None,
                 **kwargs: Any) -> None:
        where = f"OverlayBoxesActor{'' if actor_id is None else f' {actor_id!r}'}"
        if len(color) != 3 or not all(isinstance(c, int) and 0 <= c <= 255 for c in color):
            raise ConfigError(f"{where}: color must be 3 ints in 0..255, got {color!r}")
        for name, value in (("thickness", thickness), ("max_pending", max_pending)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{where}: {name} must be an int >= 1, got {value!r}")
        dev = None if device is None else resolve_device(device, where=f"{where}: device")
        super().__init__(actor_id=actor_id, **kwargs)
        self.device = dev  # read by the staging bridge
        self.color = tuple(color)
        self.thickness, self.score_threshold = thickness, float(score_threshold)
        self.sync, self.max_pending, self.key = bool(sync), max_pending, key
        self.inputs["video"] = StreamInput("video", slots=max(16, 2 * max_pending))
        self.inputs["data"] = StreamInput("data", slots=max(16, 2 * max_pending))
        self.outputs["video"] = StreamOutput("video")
        self._frames: deque[VideoFrame] = deque()
        self._results: dict[int, DataMessage] = {}
        self._newest: DataMessage | None = None
        # (device, dtype, channel values) -> paint tensor: built once, because building it
        # per frame is a blocking host->device copy on CUDA
        self._paints: dict[tuple[torch.device, torch.dtype, tuple[int, ...]], torch.Tensor] = {}
        self.drawn = 0      # frames published with their own result
        self.unmatched = 0  # frames published with an older result or none

    def _paint(self, fmt: PixelFormat, image: torch.Tensor) -> torch.Tensor:
        r, g, b = self.color
        table = {PixelFormat.RGB24: (r, g, b), PixelFormat.RGBA: (r, g, b, 255),
                 PixelFormat.BGR24: (b, g, r), PixelFormat.BGRA: (b, g, r, 255)}
        if fmt not in table:
            raise FrameValidationError(f"OverlayBoxesActor '{self.actor_id}': cannot draw on "
                                       f"{fmt.value} frames (rgb24, rgba, bgr24, bgra)")
        key = (image.device, image.dtype, table[fmt])
        paint = self._paints.get(key)
        if paint is None:
            paint = self._paints[key] = torch.tensor(key[2], dtype=image.dtype,
                                                     device=image.device)
        return paint

    def _publish(self, frame: VideoFrame, msg: DataMessage | None) -> None:
        data = frame.data
        color = self._paint(frame.format, data)
        if msg is not None:
            # The producer's GPU work must be done (a CPU frame blocks the host until then).
            wait_ready(msg, current_stream(data.device))
            boxes, scores = _boxes_of(msg.payload, self.key)
            keep = None if scores is None else scores >= self.score_threshold
            if boxes.numel():
                data = draw_boxes(data, boxes, color, self.thickness, keep)
        self.outputs["video"].write(frame.replace(data=data))

    def _older_result(self, number: int) -> DataMessage | None:
        older = [n for n in self._results if n <= number]
        return self._results[max(older)] if older else None

    def process(self, tick: TimedTick) -> None:
        for msg in self.inputs["data"].read_all_new():
            self._results[msg.frame_number] = msg
            if self._newest is None or msg.frame_number >= self._newest.frame_number:
                self._newest = msg
        if not self.sync:
            frame = self.inputs["video"].read_new()
            if frame is not None:
                self.drawn += self._newest is not None and \
                    self._newest.frame_number == frame.frame_number
                self._publish(frame, self._newest)
            return
        self._frames.extend(self.inputs["video"].read_all_new())
        newest = -1 if self._newest is None else self._newest.frame_number
        while self._frames:
            frame = self._frames[0]
            own = self._results.get(frame.frame_number)
            waiting = len(self._frames) <= self.max_pending
            if own is None and frame.frame_number >= newest and waiting:
                break  # its result may still come
            self._frames.popleft()
            if own is not None:
                self.drawn += 1
                self._publish(frame, own)
            else:
                self.unmatched += 1
                self._publish(frame, self._older_result(frame.frame_number))
        if self._frames:  # forget results older than every waiting frame, but the newest
            first = self._frames[0].frame_number
            for n in [n for n in self._results if n < first and n != newest]:
                del self._results[n]
        else:
            self._results = {} if self._newest is None else {newest: self._newest}

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["overlay"] = {"drawn": self.drawn, "unmatched": self.unmatched,
                           "waiting": len(self._frames), "sync": self.sync}
        return info
