"""Frames and messages exchanged between actors.

Every frame is a frozen dataclass validated in ``__post_init__``; any failure
raises :class:`~streamlib.errors.FrameValidationError` (a ``ValueError``) whose
message starts with ``Class.field:``. Timestamps are integer nanoseconds on the
clock named by ``clock_id``. NumPy arrays are wrapped with ``torch.from_numpy``
without copying, so the frame and the array share memory. The field checks
and the shared base classes live in :mod:`streamlib.core.framebase`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from streamlib.errors import FrameValidationError
from streamlib.core.framebase import (
    NS_PER_S, ReadyEvent, Stamped, TensorFrame, as_coord, as_int, as_tensor, describe, dtype_name,
    empty_metadata, shape_text, ts_text,
)

__all__ = [
    "FRAME_KINDS", "AudioFrame", "DataMessage", "EventMessage", "Frame", "PixelFormat", "VideoFrame", "frame_kind",
]

FRAME_KINDS: tuple[str, ...] = ("video", "audio", "event", "data")

# What constructors accept for ``data``; fields are always torch.Tensor after validation.
_ArrayLike: TypeAlias = "torch.Tensor | npt.NDArray[Any]"


class PixelFormat(str, Enum):
    """Pixel layout of a :class:`VideoFrame`; planar formats use one 2-D tensor."""

    RGB24 = "rgb24"
    RGBA = "rgba"
    BGR24 = "bgr24"
    BGRA = "bgra"
    GRAY8 = "gray8"
    YUV420P = "yuv420p"
    NV12 = "nv12"
    RGBF32 = "rgbf32"

    def __str__(self) -> str:  # str-mixin enums print "PixelFormat.RGBA" otherwise
        return self.value

    @classmethod
    def parse(cls, value: PixelFormat | str, *, where: str = "PixelFormat") -> PixelFormat:
        """Return the member for ``value`` (member or string, case-insensitive).

        Raises FrameValidationError listing the valid formats.
        """
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            try:
                return cls(value.strip().lower())
            except ValueError:
                pass
        valid = ", ".join(m.value for m in cls)
        raise FrameValidationError(f"{where}: unknown pixel format {value!r}; valid formats: {valid}")

    @property
    def channels(self) -> int | None:
        """Channels in the last axis, or None for planar formats."""
        return _FORMAT_SPECS[self][0]

    @property
    def dtype(self) -> torch.dtype:
        """Torch dtype the data tensor must have."""
        return _FORMAT_SPECS[self][1]

    @property
    def is_planar(self) -> bool:
        return self.channels is None

    @property
    def has_alpha(self) -> bool:
        return self in (PixelFormat.RGBA, PixelFormat.BGRA)

    @property
    def shape_rule(self) -> str:
        """Human-readable shape/dtype rule, as used in error messages."""
        dtype = dtype_name(self.dtype)
        if self.is_planar:
            return f"(H*3//2, W) {dtype} with even H and W"
        return f"(H, W, {self.channels}) {dtype}"

    def expected_shape(self, width: int, height: int) -> tuple[int, ...]:
        """Tensor shape for a ``width`` x ``height`` image in this format.

        Raises FrameValidationError for non-positive sizes, or odd ones when planar.
        """
        w = as_int(width, "PixelFormat.expected_shape.width", lo=1)
        h = as_int(height, "PixelFormat.expected_shape.height", lo=1)
        if self.channels is None:
            if w % 2 or h % 2:
                raise FrameValidationError(
                    f"PixelFormat.expected_shape: {self.value} needs even width and height, got {w}x{h}"
                )
            return (h * 3 // 2, w)
        return (h, w, self.channels)


def _infer_format(data: torch.Tensor) -> PixelFormat:
    """The format of ``data`` given without one: rgb24 or rgba from a uint8 ``(H, W, 3|4)``."""
    if data.dim() == 3 and data.dtype == torch.uint8:
        if data.shape[2] == 3:
            return PixelFormat.RGB24
        if data.shape[2] == 4:
            return PixelFormat.RGBA
    raise FrameValidationError(
        "VideoFrame.data: no format given, and one is inferred only for (H, W, 3) uint8 (rgb24) "
        f"or (H, W, 4) uint8 (rgba), got {shape_text(data.shape)} {dtype_name(data.dtype)}"
    )


_FORMAT_SPECS: dict[PixelFormat, tuple[int | None, torch.dtype]] = {
    PixelFormat.RGB24: (3, torch.uint8),
    PixelFormat.RGBA: (4, torch.uint8),
    PixelFormat.BGR24: (3, torch.uint8),
    PixelFormat.BGRA: (4, torch.uint8),
    PixelFormat.GRAY8: (1, torch.uint8),
    PixelFormat.YUV420P: (None, torch.uint8),
    PixelFormat.NV12: (None, torch.uint8),
    PixelFormat.RGBF32: (3, torch.float32),
}


# ---------------------------------------------------------------- frames


@dataclass(frozen=True, repr=False, eq=False)
class VideoFrame(TensorFrame):
    """One image; ``data`` layout is given by ``format`` (see :class:`PixelFormat`).

    Without ``format`` it is inferred from the channel count of a uint8
    ``(H, W, C)`` tensor: 3 is ``rgb24``, 4 is ``rgba``; any other data needs
    an explicit ``format`` (FrameValidationError on ``VideoFrame.data``).
    """

    KIND: ClassVar[str] = "video"

    data: torch.Tensor
    timestamp_ns: int
    frame_number: int = 0
    # None (not given) is replaced by the inferred format in __post_init__
    format: PixelFormat = None  # type: ignore[assignment]
    clock_id: str = "monotonic"
    metadata: Mapping[str, Any] = field(default_factory=empty_metadata)
    # Recorded after the GPU work that fills the tensor; readers on other streams wait
    # on it (streamlib.gpu.device.wait_ready). Not compared, not pickled. ready_version:
    # the tensor's version counter when the event was attached (an in-place rewrite
    # since makes the event stale; None: not tracked).
    ready_event: ReadyEvent | None = field(default=None, kw_only=True, compare=False)
    ready_version: int | None = field(default=None, kw_only=True, compare=False, repr=False)

    if TYPE_CHECKING:  # the typed signature callers see: numpy data and str formats are accepted

        def __init__(
            self, data: _ArrayLike, timestamp_ns: int, frame_number: int = 0,
            format: PixelFormat | str | None = ..., clock_id: str = ..., metadata: Mapping[str, Any] = ...,
            *, ready_event: ReadyEvent | None = ..., ready_version: int | None = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        data = as_tensor(self.data, "VideoFrame.data")
        given: PixelFormat | str | None = self.format
        fmt = _infer_format(data) if given is None else PixelFormat.parse(given, where="VideoFrame.format")
        self._set("data", data)
        self._set("format", fmt)
        ok = data.dtype == fmt.dtype
        if fmt.is_planar:
            # rows = H*3//2 with H = 2k even, so rows = 3k: any multiple of 3 works.
            ok = ok and data.dim() == 2 and data.shape[0] % 3 == 0 and data.shape[1] % 2 == 0
        else:
            ok = ok and data.dim() == 3 and data.shape[2] == fmt.channels
        if not ok:
            raise FrameValidationError(
                f"VideoFrame.data: format {fmt.value} expects shape {fmt.shape_rule}, "
                f"got {shape_text(data.shape)} {dtype_name(data.dtype)}"
            )
        if data.shape[0] == 0 or data.shape[1] == 0:
            got = shape_text(data.shape)
            raise FrameValidationError(f"VideoFrame.data: width and height must be > 0, got shape {got}")
        self._validate_stamp("VideoFrame")

    @property
    def width(self) -> int:
        return int(self.data.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.data.shape[0])
        return rows * 2 // 3 if self.format.is_planar else rows

    def __repr__(self) -> str:
        return (
            f"VideoFrame({self.width}x{self.height} {self.format.value} {dtype_name(self.dtype)}, "
            f"device={self.device}, frame={self.frame_number}, ts={ts_text(self.timestamp_ns, self.clock_id)})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class AudioFrame(TensorFrame):
    """A block of float32 samples shaped (samples, channels)."""

    KIND: ClassVar[str] = "audio"
    MIN_SAMPLE_RATE: ClassVar[int] = 1000
    MAX_SAMPLE_RATE: ClassVar[int] = 768_000
    MAX_CHANNELS: ClassVar[int] = 64

    data: torch.Tensor
    sample_rate: int
    timestamp_ns: int
    frame_number: int = 0
    clock_id: str = "monotonic"
    metadata: Mapping[str, Any] = field(default_factory=empty_metadata)
    # Recorded after the GPU work that fills the tensor; readers on other streams wait
    # on it (streamlib.gpu.device.wait_ready). Not compared, not pickled. ready_version:
    # the tensor's version counter when the event was attached (an in-place rewrite
    # since makes the event stale; None: not tracked).
    ready_event: ReadyEvent | None = field(default=None, kw_only=True, compare=False)
    ready_version: int | None = field(default=None, kw_only=True, compare=False, repr=False)

    if TYPE_CHECKING:  # the typed signature callers see: numpy data is accepted

        def __init__(
            self, data: _ArrayLike, sample_rate: int, timestamp_ns: int, frame_number: int = 0,
            clock_id: str = ..., metadata: Mapping[str, Any] = ...,
            *, ready_event: ReadyEvent | None = ..., ready_version: int | None = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        data = as_tensor(self.data, "AudioFrame.data")
        self._set("data", data)
        got = f"{data.dim()}-D shape {shape_text(data.shape)} {dtype_name(data.dtype)}"
        if data.dim() != 2:
            hint = "; reshape mono audio to (samples, 1)" if data.dim() == 1 else ""
            raise FrameValidationError(f"AudioFrame.data: expected 2-D (samples, channels) float32, got {got}{hint}")
        if data.dtype != torch.float32:
            raise FrameValidationError(f"AudioFrame.data: expected dtype float32, got {got}")
        samples, channels = int(data.shape[0]), int(data.shape[1])
        if samples < 1:
            raise FrameValidationError(f"AudioFrame.data: need at least 1 sample, got {got}")
        if not 1 <= channels <= self.MAX_CHANNELS:
            raise FrameValidationError(
                f"AudioFrame.data: channels must be between 1 and {self.MAX_CHANNELS}, got {got}"
            )
        rate = as_int(self.sample_rate, "AudioFrame.sample_rate", self.MIN_SAMPLE_RATE, self.MAX_SAMPLE_RATE)
        self._set("sample_rate", rate)
        self._validate_stamp("AudioFrame")

    @property
    def samples(self) -> int:
        return int(self.data.shape[0])

    @property
    def channels(self) -> int:
        return int(self.data.shape[1])

    @property
    def duration_ns(self) -> int:
        """Duration in whole nanoseconds (floor), computed with integers only."""
        return self.samples * NS_PER_S // self.sample_rate

    def __repr__(self) -> str:
        return (
            f"AudioFrame({self.samples}x{self.channels} float32 @{self.sample_rate}Hz, "
            f"device={self.device}, frame={self.frame_number}, ts={ts_text(self.timestamp_ns, self.clock_id)})"
        )


EventKind: TypeAlias = Literal["key", "mouse", "window"]

_EVENT_ACTIONS: dict[str, tuple[str, ...]] = {
    "key": ("press", "release", "repeat"),
    "mouse": ("press", "release", "move", "scroll"),
    "window": ("resize", "close", "focus", "unfocus"),
}

@dataclass(frozen=True)
class EventMessage(Stamped):
    """A key, mouse or window event. Compared by value (no tensors inside)."""

    KIND: ClassVar[str] = "event"

    kind: EventKind
    action: str
    timestamp_ns: int
    key: str | None = None
    x: float | None = None
    y: float | None = None
    button: int | None = None
    width: int | None = None
    height: int | None = None
    modifiers: frozenset[str] = frozenset()
    source: str = ""
    clock_id: str = "monotonic"

    if TYPE_CHECKING:  # the typed signature callers see: any iterable of modifiers is accepted

        def __init__(
            self, kind: EventKind, action: str, timestamp_ns: int, key: str | None = None,
            x: float | None = None, y: float | None = None, button: int | None = None,
            width: int | None = None, height: int | None = None, modifiers: Iterable[str] = ...,
            source: str = "", clock_id: str = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        kind, action = self.kind, self.action
        if not isinstance(kind, str) or kind not in _EVENT_ACTIONS:
            raise FrameValidationError(
                f"EventMessage.kind: expected one of 'key', 'mouse', 'window', got {describe(kind)}"
            )
        valid = _EVENT_ACTIONS[kind]
        if action not in valid:
            raise FrameValidationError(
                f"EventMessage.action: {describe(action)} is not a valid {kind} action; "
                f"expected one of {', '.join(valid)}"
            )
        # Optional fields are type-checked whenever given, required ones per kind/action.
        required = {
            "key": kind == "key",
            "x": kind == "mouse",
            "y": kind == "mouse",
            "button": kind == "mouse" and action in ("press", "release"),
            "width": kind == "window" and action == "resize",
            "height": kind == "window" and action == "resize",
        }
        for name, needed in required.items():
            value = getattr(self, name)
            if value is None:
                if needed:
                    raise FrameValidationError(f"EventMessage.{name}: required for {kind} {action} events")
                continue
            where = f"EventMessage.{name}"
            if name == "key":
                if not isinstance(value, str) or not value:
                    raise FrameValidationError(f"{where}: expected a non-empty str, got {describe(value)}")
            elif name in ("x", "y"):
                self._set(name, as_coord(value, where))
            else:
                self._set(name, as_int(value, where, lo=0 if name == "button" else 1))
        mods = self.modifiers
        if isinstance(mods, str) or not isinstance(mods, Iterable):
            raise FrameValidationError(f"EventMessage.modifiers: expected an iterable of str, got {describe(mods)}")
        items = tuple(mods)  # check types before hashing: frozenset([[1]]) would raise TypeError
        if not all(isinstance(m, str) for m in items):
            raise FrameValidationError("EventMessage.modifiers: every modifier must be a str")
        self._set("modifiers", frozenset(items))
        if not isinstance(self.source, str):
            raise FrameValidationError(f"EventMessage.source: expected str, got {describe(self.source)}")
        self._validate_stamp("EventMessage", numbered=False)

    def __repr__(self) -> str:
        parts = [f"{self.kind} {self.action}"]
        for name in ("key", "x", "y", "button", "width", "height"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.modifiers:
            parts.append(f"modifiers={'+'.join(sorted(self.modifiers))}")
        if self.source:
            parts.append(f"source={self.source!r}")
        parts.append(f"ts={ts_text(self.timestamp_ns, self.clock_id)}")
        return f"EventMessage({', '.join(parts)})"


@dataclass(frozen=True, repr=False, eq=False)
class DataMessage(Stamped):
    """An arbitrary payload on a topic; the payload is neither copied nor validated."""

    KIND: ClassVar[str] = "data"

    payload: Any
    timestamp_ns: int
    topic: str = ""
    frame_number: int = 0
    clock_id: str = "monotonic"
    metadata: Mapping[str, Any] = field(default_factory=empty_metadata)
    # Recorded after the GPU work that fills the tensor; readers on other streams wait
    # on it (streamlib.gpu.device.wait_ready). Not compared, not pickled. ready_version:
    # the tensor's version counter when the event was attached (an in-place rewrite
    # since makes the event stale; None: not tracked).
    ready_event: ReadyEvent | None = field(default=None, kw_only=True, compare=False)
    ready_version: int | None = field(default=None, kw_only=True, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str):
            raise FrameValidationError(f"DataMessage.topic: expected str, got {describe(self.topic)}")
        self._validate_stamp("DataMessage")

    def __repr__(self) -> str:
        p = self.payload
        if isinstance(p, torch.Tensor):
            desc = f"Tensor{shape_text(p.shape)} {dtype_name(p.dtype)} device={p.device}"
        elif isinstance(p, np.ndarray):
            desc = f"ndarray{shape_text(p.shape)} {p.dtype}"
        else:
            desc = type(p).__name__
        return (
            f"DataMessage(topic={self.topic!r}, payload={desc}, frame={self.frame_number}, "
            f"ts={ts_text(self.timestamp_ns, self.clock_id)})"
        )


Frame: TypeAlias = VideoFrame | AudioFrame | EventMessage | DataMessage

_KINDED = (VideoFrame, AudioFrame, EventMessage, DataMessage)


def frame_kind(item: object) -> str | None:
    """Return ``"video"``/``"audio"``/``"event"``/``"data"`` for a frame instance, else None."""
    return item.KIND if isinstance(item, _KINDED) else None
