"""What every frame and message shares: field validation and the base classes.

Each ``as_*`` check returns the validated (possibly normalised) value or raises
:class:`~streamlib.errors.FrameValidationError` (a ``ValueError``) whose
message starts with the ``where`` it is given (``Class.field:``); error texts
describe values by type and never repr them (a tensor's repr would dump its
data). ``Stamped`` and ``TensorFrame`` are the non-dataclass bases of the
frame types in :mod:`streamlib.core.frames`, where the public names live.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt
import torch

from streamlib.errors import FrameValidationError

__all__ = [
    "NS_PER_S", "ReadyEvent", "Stamped", "TensorFrame", "as_clock", "as_coord", "as_int", "as_metadata",
    "as_tensor", "as_timestamp", "describe", "dtype_name", "empty_metadata", "shape_text",
    "ts_text",
]

NS_PER_S = 1_000_000_000
# Timestamps travel through ring buffers as int64; reject what would overflow there.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def shape_text(shape: Iterable[int]) -> str:
    return str(tuple(int(s) for s in shape))


def describe(value: object) -> str:
    # Never repr arbitrary objects: a tensor's repr would dump its data.
    if isinstance(value, (bool, int, float, str, np.generic)):
        text = repr(value)
        return f"{type(value).__name__} {text[:60]}"
    return type(value).__name__


def as_int(value: object, where: str, lo: int | None = None, hi: int | None = None, hint: str = "") -> int:
    # bool is an int subclass, but True as a timestamp or count is always a bug.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise FrameValidationError(f"{where}: expected int{hint}, got {describe(value)}")
    result = int(value)
    if (lo is not None and result < lo) or (hi is not None and result > hi):
        bounds = f">= {lo}" if hi is None else f"<= {hi}" if lo is None else f"between {lo} and {hi}"
        raise FrameValidationError(f"{where}: must be {bounds}, got {result}")
    return result


def as_timestamp(value: object, where: str) -> int:
    return as_int(value, where, _INT64_MIN, _INT64_MAX, hint=" (integer nanoseconds)")


def as_tensor(value: object, where: str) -> torch.Tensor:
    """Return ``value`` as a tensor, wrapping numpy arrays without copying."""
    if isinstance(value, torch.Tensor):
        return value
    if not isinstance(value, np.ndarray):
        raise FrameValidationError(f"{where}: expected torch.Tensor or numpy.ndarray, got {describe(value)}")
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


def as_metadata(value: object, where: str) -> MappingProxyType[str, Any]:
    if not isinstance(value, Mapping):
        raise FrameValidationError(f"{where}: expected a mapping, got {describe(value)}")
    items = dict(value)  # shallow copy: later edits to the caller's dict don't leak in
    bad = [k for k in items if not isinstance(k, str)]
    if bad:
        raise FrameValidationError(f"{where}: keys must be str, got {describe(bad[0])}")
    return MappingProxyType(items)


def as_clock(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise FrameValidationError(f"{where}: expected a non-empty str naming the clock, got {describe(value)}")
    return value


def as_coord(value: object, where: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise FrameValidationError(f"{where}: expected a finite number, got {describe(value)}")
    return float(value)


def empty_metadata() -> Mapping[str, Any]:
    return MappingProxyType({})


def ts_text(ns: int, clock_id: str) -> str:
    # Exact decimal from integers: float seconds lose nanoseconds past ~104 days.
    sec, frac = divmod(abs(ns), NS_PER_S)
    return f"{'-' if ns < 0 else ''}{sec}.{frac:09d}s@{clock_id}"


class ReadyEvent(Protocol):
    """What a frame's ``ready_event`` is: a ``torch.cuda.Event`` or its CPU twin
    (``streamlib.gpu.device.CPUEvent``)."""

    def query(self) -> bool: ...

    def synchronize(self) -> None: ...


class Stamped:
    """Shared behaviour of every frame and message (not a dataclass itself)."""

    timestamp_ns: int
    clock_id: str

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)  # frozen dataclass: only __post_init__ may do this

    @property
    def timestamp(self) -> float:
        """Timestamp in float seconds (lossy; prefer ``timestamp_ns``)."""
        return self.timestamp_ns / NS_PER_S

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied; raises FrameValidationError like the constructor.

        New ``data`` or ``payload`` drops the ready event (it marked the old tensor's
        work) unless ``ready_event`` is given too."""
        if ("data" in changes or "payload" in changes) and "ready_event" not in changes:
            changes["ready_event"] = changes["ready_version"] = None
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    # mappingproxy can neither be pickled nor deep-copied, and frames cross process
    # boundaries: ship metadata as a plain dict and re-wrap it on arrival.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if "metadata" in state:
            state["metadata"] = dict(state["metadata"])
        if "ready_event" in state:
            state["ready_event"] = state["ready_version"] = None  # a CUDA event is per process
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for name, value in state.items():
            self._set(name, MappingProxyType(value) if name == "metadata" else value)

    def _validate_stamp(self, owner: str, numbered: bool = True) -> None:
        self._set("timestamp_ns", as_timestamp(self.timestamp_ns, f"{owner}.timestamp_ns"))
        self._set("clock_id", as_clock(self.clock_id, f"{owner}.clock_id"))
        if numbered:
            self._set("frame_number", as_int(getattr(self, "frame_number"), f"{owner}.frame_number", lo=0))
            self._set("metadata", as_metadata(getattr(self, "metadata"), f"{owner}.metadata"))


class TensorFrame(Stamped):
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
