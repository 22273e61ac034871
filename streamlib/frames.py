"""Frames and messages exchanged between actors.

Every frame is a frozen dataclass validated in ``__post_init__``; any failure
raises :class:`~streamlib.errors.FrameValidationError` (a ``ValueError``) whose
message starts with ``Class.field:``. Timestamps are integer nanoseconds on the
clock named by ``clock_id``. NumPy arrays are wrapped with ``torch.from_numpy``
without copying, so the frame and the array share memory.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self, TypeAlias

import numpy as np
import numpy.typing as npt
import torch

from streamlib.errors import FrameValidationError

__all__ = [
    "FRAME_KINDS", "AudioFrame", "DataMessage", "EventMessage", "Frame", "PixelFormat", "VideoFrame", "frame_kind",
]

FRAME_KINDS: tuple[str, ...] = ("video", "audio", "event", "data")

# Timestamps travel through ring buffers as int64; reject what would overflow there.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# What constructors accept for ``data``; fields are always torch.Tensor after validation.
_ArrayLike: TypeAlias = "torch.Tensor | npt.NDArray[Any]"
_NS_PER_S = 1_000_000_000


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
        dtype = _dtype_name(self.dtype)
        if self.is_planar:
            return f"(H*3//2, W) {dtype} with even H and W"
        return f"(H, W, {self.channels}) {dtype}"

    def expected_shape(self, width: int, height: int) -> tuple[int, ...]:
        """Tensor shape for a ``width`` x ``height`` image in this format.

        Raises FrameValidationError for non-positive sizes, or odd ones when planar.
        """
        w = _as_int(width, "PixelFormat.expected_shape.width", lo=1)
        h = _as_int(height, "PixelFormat.expected_shape.height", lo=1)
        if self.channels is None:
            if w % 2 or h % 2:
                raise FrameValidationError(
                    f"PixelFormat.expected_shape: {self.value} needs even width and height, got {w}x{h}"
                )
            return (h * 3 // 2, w)
        return (h, w, self.channels)


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


# ---------------------------------------------------------------- helpers


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _shape_text(shape: Iterable[int]) -> str:
    return str(tuple(int(s) for s in shape))


def _describe(value: object) -> str:
    # Never repr arbitrary objects: a tensor's repr would dump its data.
    if isinstance(value, (bool, int, float, str, np.generic)):
        text = repr(value)
        return f"{type(value).__name__} {text[:60]}"
    return type(value).__name__


def _as_int(value: object, where: str, lo: int | None = None, hi: int | None = None, hint: str = "") -> int:
    # bool is an int subclass, but True as a timestamp or count is always a bug.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FrameValidationError(f"{where}: expected int{hint}, got {_describe(value)}")
    result = int(value)
    if (lo is not None and result < lo) or (hi is not None and result > hi):
        bounds = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"between {lo} and {hi}"
        raise FrameValidationError(f"{where}: must be {bounds}, got {result}")
    return result


def _as_timestamp(value: object, where: str) -> int:
    return _as_int(value, where, _INT64_MIN, _INT64_MAX, hint=" (integer nanoseconds)")


def _as_tensor(value: object, where: str) -> torch.Tensor:
    """Return ``value`` as a tensor, wrapping numpy arrays without copying."""
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise FrameValidationError(f"{where}: expected torch.Tensor or numpy.ndarray, got {_describe(value)}")
    try:
        if value.flags.writeable:
            return torch.from_numpy(value)
        # Read-only input stays zero-copy; torch's warning is noise here. Only enter
        # catch_warnings when needed: it mutates global state and is not thread-safe.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*not writable.*", category=UserWarning)
            return torch.from_numpy(value)
    except (TypeError, ValueError, RuntimeError) as exc:  # odd dtype, negative strides, byte order
        raise FrameValidationError(f"{where}: cannot wrap numpy array without copying ({exc})") from exc


def _as_metadata(value: object, where: str) -> MappingProxyType[str, Any]:
    if not isinstance(value, Mapping):
        raise FrameValidationError(f"{where}: expected a mapping, got {_describe(value)}")
    items = dict(value)  # shallow copy: later edits to the caller's dict don't leak in
    bad = [k for k in items if not isinstance(k, str)]
    if bad:
        raise FrameValidationError(f"{where}: keys must be str, got {_describe(bad[0])}")
    return MappingProxyType(items)


def _as_clock(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise FrameValidationError(f"{where}: expected a non-empty str naming the clock, got {_describe(value)}")
    return value


def _empty_metadata() -> Mapping[str, Any]:
    return MappingProxyType({})


def _ts_text(ns: int, clock_id: str) -> str:
    # Exact decimal from integers: float seconds lose nanoseconds past ~104 days.
    sec, frac = divmod(abs(ns), _NS_PER_S)
    return f"{'-' if ns < 0 else ''}{sec}.{frac:09d}s@{clock_id}"


class _Stamped:
    """Shared behaviour of every frame and message (not a dataclass itself)."""

    timestamp_ns: int
    clock_id: str

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # frozen dataclass: only __post_init__ may do this

    @property
    def timestamp(self) -> float:
        """Timestamp in float seconds (lossy; prefer ``timestamp_ns``)."""
        return self.timestamp_ns / _NS_PER_S

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied; raises FrameValidationError like the constructor."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    # mappingproxy can neither be pickled nor deep-copied, and frames cross process
    # boundaries: ship metadata as a plain dict and re-wrap it on arrival.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if "metadata" in state:
            state["metadata"] = dict(state["metadata"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            self._set(name, MappingProxyType(value) if name == "metadata" else value)

    def _validate_stamp(self, owner: str, numbered: bool = True) -> None:
        self._set("timestamp_ns", _as_timestamp(self.timestamp_ns, f"{owner}.timestamp_ns"))
        self._set("clock_id", _as_clock(self.clock_id, f"{owner}.clock_id"))
        if numbered:
            self._set("frame_number", _as_int(getattr(self, "frame_number"), f"{owner}.frame_number", lo=0))
            self._set("metadata", _as_metadata(getattr(self, "metadata"), f"{owner}.metadata"))


class _TensorFrame(_Stamped):
    """Shared accessors of frames whose ``data`` is a tensor."""

    data: torch.Tensor

    @property
    def device(self) -> torch.device:
        return self.data.device

    @property
    def dtype(self) -> torch.dtype:
        return self.data.dtype

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def nbytes(self) -> int:
        return self.data.numel() * self.data.element_size()

    def numpy(self) -> npt.NDArray[Any]:
        """Zero-copy numpy view of ``data``; raises FrameValidationError if it is not on the CPU."""
        if self.data.device.type != "cpu":
            raise FrameValidationError(
                f"{type(self).__name__}.numpy: data is on device {self.data.device}; "
                "move it to cpu first (frame.data.cpu())"
            )
        return self.data.detach().numpy()


# ---------------------------------------------------------------- frames


@dataclass(frozen=True, repr=False, eq=False)
class VideoFrame(_TensorFrame):
    """One image; ``data`` layout is given by ``format`` (see :class:`PixelFormat`)."""

    KIND: ClassVar[str] = "video"

    data: torch.Tensor
    timestamp_ns: int
    frame_number: int = 0
    format: PixelFormat = PixelFormat.RGB24
    clock_id: str = "monotonic"
    metadata: Mapping[str, Any] = field(default_factory=_empty_metadata)

    if TYPE_CHECKING:  # the typed signature callers see: numpy data and str formats are accepted

        def __init__(
            self, data: _ArrayLike, timestamp_ns: int, frame_number: int = 0, format: PixelFormat | str = ...,
            clock_id: str = ..., metadata: Mapping[str, Any] = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        data = _as_tensor(self.data, "VideoFrame.data")
        fmt = PixelFormat.parse(self.format, where="VideoFrame.format")
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
                f"got {_shape_text(data.shape)} {_dtype_name(data.dtype)}"
            )
        if data.shape[0] == 0 or data.shape[1] == 0:
            got = _shape_text(data.shape)
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
            f"VideoFrame({self.width}x{self.height} {self.format.value} {_dtype_name(self.dtype)}, "
            f"device={self.device}, frame={self.frame_number}, ts={_ts_text(self.timestamp_ns, self.clock_id)})"
        )


@dataclass(frozen=True, repr=False, eq=False)
class AudioFrame(_TensorFrame):
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
    metadata: Mapping[str, Any] = field(default_factory=_empty_metadata)

    if TYPE_CHECKING:  # the typed signature callers see: numpy data is accepted

        def __init__(
            self, data: _ArrayLike, sample_rate: int, timestamp_ns: int, frame_number: int = 0,
            clock_id: str = ..., metadata: Mapping[str, Any] = ...,
        ) -> None: ...

    def __post_init__(self) -> None:
        data = _as_tensor(self.data, "AudioFrame.data")
        self._set("data", data)
        got = f"{data.dim()}-D shape {_shape_text(data.shape)} {_dtype_name(data.dtype)}"
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
        rate = _as_int(self.sample_rate, "AudioFrame.sample_rate", self.MIN_SAMPLE_RATE, self.MAX_SAMPLE_RATE)
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
        return self.samples * _NS_PER_S // self.sample_rate

    def __repr__(self) -> str:
        return (
            f"AudioFrame({self.samples}x{self.channels} float32 @{self.sample_rate}Hz, "
            f"device={self.device}, frame={self.frame_number}, ts={_ts_text(self.timestamp_ns, self.clock_id)})"
        )


EventKind: TypeAlias = Literal["key", "mouse", "window"]

_EVENT_ACTIONS: dict[str, tuple[str, ...]] = {
    "key": ("press", "release", "repeat"),
    "mouse": ("press", "release", "move", "scroll"),
    "window": ("resize", "close", "focus", "unfocus"),
}


def _as_coord(value: object, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise FrameValidationError(f"{where}: expected a finite number, got {_describe(value)}")
    return float(value)


@dataclass(frozen=True)
class EventMessage(_Stamped):
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
                f"EventMessage.kind: expected one of 'key', 'mouse', 'window', got {_describe(kind)}"
            )
        valid = _EVENT_ACTIONS[kind]
        if action not in valid:
            raise FrameValidationError(
                f"EventMessage.action: {_describe(action)} is not a valid {kind} action; "
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
                    raise FrameValidationError(f"{where}: expected a non-empty str, got {_describe(value)}")
            elif name in ("x", "y"):
                self._set(name, _as_coord(value, where))
            else:
                self._set(name, _as_int(value, where, lo=0 if name == "button" else 1))
        mods = self.modifiers
        if isinstance(mods, str) or not isinstance(mods, Iterable):
            raise FrameValidationError(f"EventMessage.modifiers: expected an iterable of str, got {_describe(mods)}")
        items = tuple(mods)  # check types before hashing: frozenset([[1]]) would raise TypeError
        if not all(isinstance(m, str) for m in items):
            raise FrameValidationError("EventMessage.modifiers: every modifier must be a str")
        self._set("modifiers", frozenset(items))
        if not isinstance(self.source, str):
            raise FrameValidationError(f"EventMessage.source: expected str, got {_describe(self.source)}")
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
        parts.append(f"ts={_ts_text(self.timestamp_ns, self.clock_id)}")
        return f"EventMessage({', '.join(parts)})"


@dataclass(frozen=True, repr=False, eq=False)
class DataMessage(_Stamped):
    """An arbitrary payload on a topic; the payload is neither copied nor validated."""

    KIND: ClassVar[str] = "data"

    payload: Any
    timestamp_ns: int
    topic: str = ""
    frame_number: int = 0
    clock_id: str = "monotonic"
    metadata: Mapping[str, Any] = field(default_factory=_empty_metadata)

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str):
            raise FrameValidationError(f"DataMessage.topic: expected str, got {_describe(self.topic)}")
        self._validate_stamp("DataMessage")

    def __repr__(self) -> str:
        p = self.payload
        if isinstance(p, torch.Tensor):
            desc = f"Tensor{_shape_text(p.shape)} {_dtype_name(p.dtype)} device={p.device}"
        elif isinstance(p, np.ndarray):
            desc = f"ndarray{_shape_text(p.shape)} {p.dtype}"
        else:
            desc = type(p).__name__
        return (
            f"DataMessage(topic={self.topic!r}, payload={desc}, frame={self.frame_number}, "
            f"ts={_ts_text(self.timestamp_ns, self.clock_id)})"
        )


Frame: TypeAlias = VideoFrame | AudioFrame | EventMessage | DataMessage

_KINDED = (VideoFrame, AudioFrame, EventMessage, DataMessage)


def frame_kind(item: object) -> str | None:
    """Return ``"video"``/``"audio"``/``"event"``/``"data"`` for a frame instance, else None."""
    return item.KIND if isinstance(item, _KINDED) else None
