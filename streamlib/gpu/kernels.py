"""CUDA kernels (``streamlib/gpu/cuda/*.cu``) and their torch reference implementations.

Each public function runs the CUDA kernel when its input is on a CUDA device
and CuPy is installed (the ``[cuda]`` extra), else the torch reference (any
device). The references (``streamlib.gpu.kernel_refs``) are the
oracle: GPU tests compare kernel and reference bit for bit.

* ``composite``: RGB/RGBA layers with position and opacity over a base image
  or background colour, one pass (8 layers per launch). The rounding rule of
  ``streamlib.media.blend``; equals its ``composite_reference`` exactly.
* ``rgb_to_nv12`` / ``rgb_to_i420`` / ``yuv420_to_rgb``: BT.709 limited range
  8-bit 4:2:0, integer fixed point (16 fractional bits, round half up, chroma
  from the 2x2 mean before rounding, decoding repeats chroma), the conventions
  of ``streamlib.net.pgroup``.
* ``rgb_to_pgroup422_10`` / ``pgroup422_10_to_rgb``: RFC 4175 YCbCr-4:2:2/10
  pgroups (5 bytes per 2 pixels, ``Cb Y0 Cr Y1``, 10-bit big-endian fields),
  byte-identical to ``streamlib.net.pgroup``.
* ``smpte_bars``: RP 219-1 bars, identical to ``render_smpte_bars``.

Kernels are compiled at run time by NVRTC through ``cupy.RawModule`` (cached
per device) and launched on the caller's current torch stream, so they order
with the actor's other work without a sync. Sources ship in the wheel as
package data (``streamlib/gpu/cuda/*.cu``); ``STREAMLIB_KERNEL_DIR`` overrides the
directory.

CuPy importing is not enough: ``cupy-cuda12x`` without its ``[ctk]`` extra finds no
NVRTC 12 next to a CUDA 13 torch, and then every ``RawModule.get_function`` raises.
So the first CUDA call of the process compiles a tiny probe kernel through the same
``RawModule`` path; if that fails, ``backend="auto"`` runs the torch references
from then on, with one warning (logger ``streamlib``) naming the reason, and
``kernel_backend()`` (in ``Runtime.graph()``) reports it; ``backend="cuda"``
raises UnavailableError with the same reason.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from streamlib.media.blend import Placed, opacity_code
from streamlib.media.color import dec_coeffs, enc_coeffs
from streamlib.media.smpte import code_level, smpte_color, smpte_regions
from streamlib.gpu.kernel_refs import (
    composite_ref, pgroup422_10_to_rgb_ref, pgroup_input, rgb_input, rgb_to_pgroup422_10_ref,
    rgb_to_yuv420_ref, smpte_bars_ref, yuv420_to_rgb_ref, yuv_shape,
)
from streamlib.errors import ConfigError, FrameValidationError, UnavailableError

__all__ = [
    "KERNEL_FILES", "MAX_LAYERS", "NVRTC_OPTIONS", "composite", "cuda_kernels_ready",
    "cupy_available", "kernel_backend", "kernel_dir", "kernel_source", "pgroup422_10_to_rgb", "rgb_to_i420", "rgb_to_nv12", "rgb_to_pgroup422_10",
    "smpte_bars", "yuv420_to_rgb",
]

Backend = Literal["auto", "cuda", "torch"]
KERNEL_FILES: tuple[str, ...] = ("color.cu", "composite.cu", "patterns.cu", "pgroup.cu")
NVRTC_OPTIONS: tuple[str, ...] = ("--std=c++14", "-fmad=false")
MAX_LAYERS = 8          # layers per composite launch (composite.cu)
_MAX_REGIONS = 12       # regions per SMPTE band (patterns.cu)
logger = logging.getLogger("streamlib")


# ---------------------------------------------------------------- sources and loading


def kernel_dir() -> Path:
    """Directory of the ``.cu`` sources: ``$STREAMLIB_KERNEL_DIR`` or the package's ``cuda/``."""
    env = os.environ.get("STREAMLIB_KERNEL_DIR")
    return Path(env) if env else Path(__file__).resolve().parent / "cuda"


def kernel_source(name: str) -> str:
    """Text of kernel file ``name`` (e.g. ``"composite.cu"``); FileNotFoundError lists them."""
    path = kernel_dir() / name
    if not path.is_file():
        found = ", ".join(sorted(p.name for p in kernel_dir().glob("*.cu"))) or "none"
        raise FileNotFoundError(f"kernel source {name!r} not found in {kernel_dir()} (found: {found})")
    return path.read_text()


@functools.cache  # asked per frame on the GPU path; find_spec costs ~30 us each time
def cupy_available() -> bool:
    """True when CuPy can be imported (checked once, without importing it); never raises."""
    try:
        return importlib.util.find_spec("cupy") is not None
    except (ImportError, ValueError):
        return False


_modules: dict[tuple[str, int], Any] = {}
_streams: dict[tuple[int, int], Any] = {}
_tables: dict[tuple[int, int, str, str], tuple[list[int], torch.Tensor]] = {}
_lock = threading.Lock()


def _function(file: str, name: str, index: int) -> Any:
    """Kernel ``name`` of ``file`` compiled for device ``index`` (compiled once, cached)."""
    import cupy  # noqa: PLC0415 - optional dependency, imported on first use

    with _lock:
        fn = _modules.get((f"{file}:{name}", index))
        if fn is None:
            module = _modules.get((file, index))
            with cupy.cuda.Device(index):
                if module is None:
                    module = _modules[(file, index)] = cupy.RawModule(
                        code=kernel_source(file), options=NVRTC_OPTIONS)
                fn = _modules[(f"{file}:{name}", index)] = module.get_function(name)
    return fn


_PROBE_SOURCE = 'extern "C" __global__ void streamlib_probe(int* out) { if (out) *out = 1; }'
_probe_result: tuple[bool, str] | None = None  # (usable, why): once per process
_probe_lock = threading.Lock()


def _cuda_majors(cupy: Any) -> tuple[int | None, int | None]:
    """(CuPy's CUDA major, torch's CUDA major), None where unknown."""
    try:
        cupy_major: int | None = int(cupy.cuda.runtime.runtimeGetVersion()) // 1000
    except Exception:  # noqa: BLE001 - only for the message
        cupy_major = None
    cuda = torch.version.cuda
    return cupy_major, int(cuda.split(".")[0]) if cuda else None


def _run_probe(index: int) -> tuple[bool, str]:
    try:
        import cupy  # noqa: PLC0415

        with cupy.cuda.Device(index):
            cupy.RawModule(code=_PROBE_SOURCE, options=NVRTC_OPTIONS).get_function(
                "streamlib_probe")
    except Exception as exc:  # noqa: BLE001 - NVRTC/driver errors have no common type
        why = f"{type(exc).__name__}: {exc}"
        majors = _cuda_majors(sys.modules.get("cupy"))
        if None not in majors and majors[0] != majors[1]:
            why += (f" (CuPy is built for CUDA {majors[0]}, torch for CUDA {majors[1]}: "
                    f"install cupy-cuda{majors[0]}x[ctk] for its own NVRTC, or "
                    f"cupy-cuda{majors[1]}x[ctk])")
        else:
            why += " (CuPy needs NVRTC: pip install 'streamlib[cuda]', cupy with [ctk])"
        return False, why
    return True, f"CuPy {getattr(cupy, '__version__', '?')} compiled a probe kernel (NVRTC)"


def _probe(index: int) -> tuple[bool, str]:
    """Compile the probe kernel once per process; warn once when it fails."""
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _run_probe(index)
            if not _probe_result[0]:
                logger.warning("streamlib.gpu.kernels: CUDA kernels unavailable, using the "
                               "torch reference implementations: %s", _probe_result[1])
        return _probe_result


def _device_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def cuda_kernels_ready(tensor: torch.Tensor) -> bool:
    """Whether the CUDA kernels can run on ``tensor``: a CUDA tensor, CuPy installed and
    the probe kernel compiled (probed on the first call of the process)."""
    if not (tensor.is_cuda and cupy_available()):
        return False
    result = _probe_result  # the per-frame path: no lock once probed
    return (result if result is not None else _probe(_device_index(tensor.device)))[0]


def kernel_backend() -> dict[str, str]:
    """What the kernels run on and why (``Runtime.graph()["kernels"]``): backend
    ``"cuda"``, ``"torch"`` or ``"unprobed"`` (CuPy is installed, no kernel ran on a
    CUDA tensor yet). Never probes, never initialises CUDA."""
    if not cupy_available():
        return {"backend": "torch", "reason": "CuPy is not installed (pip install 'streamlib[cuda]')"}
    result = _probe_result
    if result is None:
        return {"backend": "unprobed", "reason": "no kernel has run on a CUDA tensor yet"}
    return {"backend": "cuda" if result[0] else "torch", "reason": result[1]}


def _cupy_stream(stream: torch.cuda.Stream, index: int) -> Any:
    """A CuPy view of the torch stream (cached), on CuPy's current device ``index``:
    ``Stream.from_external`` (CuPy >= 14, the CUDA stream protocol of torch's stream),
    else ``ExternalStream`` (deprecated in CuPy 14)."""
    import cupy  # noqa: PLC0415

    key = (int(stream.cuda_stream), index)
    with _lock:
        cs = _streams.get(key)
        if cs is None:
            from_external = getattr(cupy.cuda.Stream, "from_external", None)
            if from_external is not None and hasattr(stream, "__cuda_stream__"):
                cs = from_external(stream)
            else:
                cs = cupy.cuda.ExternalStream(int(stream.cuda_stream), index)
            _streams[key] = cs
    return cs


def _launch(file: str, name: str, device: torch.device, grid: tuple[int, int],
            block: tuple[int, int], args: tuple[Any, ...]) -> None:
    """Launch on torch's current stream of ``device``."""
    import cupy  # noqa: PLC0415

    index = _device_index(device)
    fn = _function(file, name, index)
    with cupy.cuda.Device(index), _cupy_stream(torch.cuda.current_stream(device), index):
        fn((grid[0], grid[1], 1), (block[0], block[1], 1), args)


def _use_cuda(tensor: torch.Tensor, backend: Backend, what: str) -> bool:
    if backend == "torch":
        return False
    if backend not in ("auto", "cuda"):
        raise ConfigError(f"{what}: backend must be 'auto', 'cuda' or 'torch', got {backend!r}")
    ok = cuda_kernels_ready(tensor)
    if backend == "cuda" and not ok:
        if not tensor.is_cuda:
            reason = f"the input is on {tensor.device}"
        elif not cupy_available():
            reason = "CuPy is not installed (pip install 'streamlib[cuda]')"
        else:
            reason = f"the CUDA kernels cannot be compiled: {kernel_backend()['reason']}"
        raise UnavailableError(f"{what}: backend='cuda' needs a CUDA tensor and CuPy; {reason}")
    return ok


def _ptr(t: torch.Tensor) -> np.uint64:
    return np.uint64(t.data_ptr())


def _i(*values: int) -> tuple[np.int32, ...]:
    return tuple(np.int32(v) for v in values)


def _grid(w: int, h: int, block: tuple[int, int] = (32, 8)) -> tuple[int, int]:
    return (-(-w // block[0]), -(-h // block[1]))




def _out_tensor(out: torch.Tensor | None, shape: tuple[int, ...], like: torch.Tensor,
                what: str) -> torch.Tensor:
    if out is None:
        return torch.empty(shape, dtype=torch.uint8, device=like.device)
    if tuple(out.shape) != shape or out.dtype != torch.uint8 or not out.is_contiguous() \
            or out.device != like.device:
        raise ConfigError(f"{what}: out must be a contiguous {shape} uint8 tensor on "
                          f"{like.device}, got {tuple(out.shape)} {out.dtype} on {out.device}")
    return out


# ---------------------------------------------------------------- composite




def composite(width: int, height: int, background: Sequence[int] = (0, 0, 0),
              layers: Sequence[Placed] = (), base: torch.Tensor | None = None, *,
              device: torch.device | str | None = None, out: torch.Tensor | None = None,
              backend: Backend = "auto") -> torch.Tensor:
    """Blend ``layers`` ((data, x, y, opacity), data (h, w, 3|4) uint8) in order over
    ``base`` (placed at (0, 0), alpha ignored) or the ``background`` colour.

    Returns (height, width, 3) uint8 on the layers' device (``out`` if given).
    Raises FrameValidationError for bad layers, ConfigError for a bad ``out``,
    UnavailableError for backend='cuda'
    without CUDA/CuPy.
    """
    for data, *_ in layers:
        if data.dtype != torch.uint8 or data.dim() != 3 or data.shape[2] not in (3, 4):
            raise FrameValidationError(f"composite: layers must be (h, w, 3|4) uint8, got "
                                       f"{tuple(data.shape)} {data.dtype}")
    probe = base if base is not None else (layers[0][0] if layers else None)
    if probe is None or not _use_cuda(probe, backend, "composite"):
        ref = composite_ref(width, height, background, layers, base, device)
        if out is None:
            return ref
        out.copy_(ref)
        return out
    dev = probe.device
    res = _out_tensor(out, (height, width, 3), probe, "composite")
    placed = []
    for data, x, y, opacity in layers:
        if data.device != dev:
            raise FrameValidationError(f"composite: every layer must be on {dev}, got "
                                       f"{data.device}")
        if data.stride(2) != 1 or data.stride(1) != data.shape[2]:
            data = data.contiguous()
        placed.append((data, int(x), int(y), opacity_code(opacity)))
    src = base
    if src is not None and (src.stride(2) != 1 or src.stride(1) != src.shape[2]):
        src = src.contiguous()
    chunks = [placed[i:i + MAX_LAYERS] for i in range(0, len(placed), MAX_LAYERS)] or [[]]
    for chunk in chunks:
        args: list[Any] = [_ptr(res), *_i(width, height)]
        if src is None:
            args += [np.uint64(0), *_i(0, 0, 0, 3)]
        else:
            args += [_ptr(src), *_i(src.shape[1], src.shape[0], src.stride(0), src.shape[2])]
        args += [*_i(*background), np.int32(len(chunk))]
        for k in range(MAX_LAYERS):
            if k < len(chunk):
                d, x, y, op = chunk[k]
                args += [_ptr(d), *_i(x, y, d.shape[1], d.shape[0], d.stride(0), d.shape[2], op)]
            else:
                args += [np.uint64(0), *_i(0, 0, 0, 0, 0, 3, 0)]
        _launch("composite.cu", "composite_rgb", dev, _grid(width, height), (32, 8), tuple(args))
        src = res  # next chunk blends over this result, in place (each thread its own pixel)
    # Contiguous copies made above were allocated on this stream, so the caching
    # allocator reuses them only for work queued after these launches.
    return res


# ---------------------------------------------------------------- 4:2:0








def _rgb_to_yuv420(rgb: torch.Tensor, nv12: bool, out: torch.Tensor | None,
                   backend: Backend) -> torch.Tensor:
    what = "rgb_to_nv12" if nv12 else "rgb_to_i420"
    rgb = rgb_input(rgb, what)
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    if not _use_cuda(rgb, backend, what):
        ref = rgb_to_yuv420_ref(rgb, nv12)
        return ref if out is None else _out_tensor(out, tuple(ref.shape), rgb, what).copy_(ref)
    res = _out_tensor(out, (h * 3 // 2, w), rgb, what)
    args = (_ptr(rgb), *_i(w, h, rgb.stride(0), rgb.shape[2]), _ptr(res), np.int32(nv12),
            *_i(*enc_coeffs(8, 4)))
    _launch("color.cu", "rgb_to_yuv420", rgb.device, _grid(w // 2, h // 2), (32, 8), args)
    return res


def rgb_to_nv12(rgb: torch.Tensor, out: torch.Tensor | None = None, *,
                backend: Backend = "auto") -> torch.Tensor:
    """RGB(A) uint8 (H, W, 3|4), even H and W -> NV12 (H*3/2, W) uint8 (a ``VideoFrame``
    of format ``nv12``). Raises FrameValidationError for bad shapes."""
    return _rgb_to_yuv420(rgb, True, out, backend)


def rgb_to_i420(rgb: torch.Tensor, out: torch.Tensor | None = None, *,
                backend: Backend = "auto") -> torch.Tensor:
    """RGB(A) uint8 -> I420 (``yuv420p``) (H*3/2, W) uint8. Raises FrameValidationError for bad shapes."""
    return _rgb_to_yuv420(rgb, False, out, backend)


def yuv420_to_rgb(yuv: torch.Tensor, nv12: bool = True, out: torch.Tensor | None = None, *,
                  backend: Backend = "auto") -> torch.Tensor:
    """NV12 (or I420 with ``nv12=False``) (H*3/2, W) uint8 -> RGB24 (H, W, 3) uint8."""
    what = "yuv420_to_rgb"
    h, w = yuv_shape(yuv, what)
    if not _use_cuda(yuv, backend, what):
        ref = yuv420_to_rgb_ref(yuv, nv12)
        return ref if out is None else _out_tensor(out, (h, w, 3), yuv, what).copy_(ref)
    yuv = yuv.contiguous()
    res = _out_tensor(out, (h, w, 3), yuv, what)
    args = (_ptr(yuv), *_i(w, h), np.int32(nv12), _ptr(res), *_i(*dec_coeffs(8)))
    _launch("color.cu", "yuv420_to_rgb", yuv.device, _grid(w // 2, h // 2), (32, 8), args)
    return res


# ---------------------------------------------------------------- 4:2:2 10-bit pgroups








def rgb_to_pgroup422_10(rgb: torch.Tensor, out: torch.Tensor | None = None, *,
                        backend: Backend = "auto") -> torch.Tensor:
    """RGB(A) uint8 (H, W, 3|4), even W -> YCbCr-4:2:2/10 pgroups, (H, W/2*5) uint8
    (line-major: ``.reshape(-1)`` is the RFC 4175 payload of the frame)."""
    what = "rgb_to_pgroup422_10"
    rgb = rgb_input(rgb, what, even_h=False)
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    if not _use_cuda(rgb, backend, what):
        ref = rgb_to_pgroup422_10_ref(rgb)
        return ref if out is None else _out_tensor(out, tuple(ref.shape), rgb, what).copy_(ref)
    res = _out_tensor(out, (h, w // 2 * 5), rgb, what)
    args = (_ptr(rgb), *_i(w, h, rgb.stride(0), rgb.shape[2]), _ptr(res),
            *_i(*enc_coeffs(10, 2), 4, 1019))
    _launch("pgroup.cu", "rgb_to_pgroup422_10", rgb.device, _grid(w // 2, h), (32, 8), args)
    return res


def pgroup422_10_to_rgb(buf: torch.Tensor, width: int, height: int,
                        out: torch.Tensor | None = None, *,
                        backend: Backend = "auto") -> torch.Tensor:
    """YCbCr-4:2:2/10 pgroup bytes (any shape, >= H*W/2*5 bytes) -> RGB24 (H, W, 3) uint8."""
    what = "pgroup422_10_to_rgb"
    src = pgroup_input(buf, width, height, what)
    if not _use_cuda(src, backend, what):
        ref = pgroup422_10_to_rgb_ref(buf, width, height)
        return ref if out is None else _out_tensor(out, (height, width, 3), src, what).copy_(ref)
    res = _out_tensor(out, (height, width, 3), src, what)
    args = (_ptr(src), *_i(width, height), _ptr(res), *_i(*dec_coeffs(10)))
    _launch("pgroup.cu", "pgroup422_10_to_rgb", src.device, _grid(width // 2, height), (32, 8),
            args)
    return res


# ---------------------------------------------------------------- SMPTE bars




def smpte_table(width: int, height: int, color_range: str = "limited") -> tuple[list[int], torch.Tensor]:
    """Band end rows [r1, r2, r3] and the (4, 12, 5) int32 region table ``patterns.cu`` reads.

    Raises ConfigError like ``smpte_regions`` (frame too small, unknown range).
    """
    code_level(0.0, color_range)  # ConfigError for an unknown range
    regions = smpte_regions(width, height)
    table = torch.zeros((4, _MAX_REGIONS, 5), dtype=torch.int32)
    table[:, :, 0] = table[:, :, 1] = 1 << 30  # padding: never reached (x < width)
    ends: list[int] = []
    band, k, y0 = -1, 0, -1
    for reg in regions:
        if reg.y0 != y0:
            band, k, y0 = band + 1, 0, reg.y0
            ends.append(reg.y1)
        if reg.name == "ramp":
            row = (reg.x0, reg.x1, -1, code_level(0.0, color_range), code_level(1.0, color_range))
        else:
            row = (reg.x0, reg.x1, *smpte_color(reg.name, color_range))
        table[band, k] = torch.tensor(row, dtype=torch.int32)
        k += 1
    return ends[:3], table


def smpte_bars(width: int, height: int, color_range: str = "limited", *,
               device: torch.device | str | None = None, out: torch.Tensor | None = None,
               backend: Backend = "auto") -> torch.Tensor:
    """RP 219-1 bars (H, W, 3) uint8 on ``device`` (default CPU), generated on the GPU
    for a CUDA device. Raises ConfigError like ``render_smpte_bars``."""
    dev = torch.device(device) if device is not None else (
        out.device if out is not None else torch.device("cpu"))
    probe = torch.empty(0, device=dev)
    if not _use_cuda(probe, backend, "smpte_bars"):
        ref = smpte_bars_ref(width, height, color_range, dev)
        return ref if out is None else _out_tensor(out, (height, width, 3), probe,
                                                   "smpte_bars").copy_(ref)
    key = (width, height, color_range, str(dev))
    with _lock:
        cached = _tables.get(key)
    if cached is None:  # once per size and range: the layout table lives on the device
        ends, host = smpte_table(width, height, color_range)
        cached = (ends, host.to(dev))
        with _lock:
            _tables[key] = cached
    rows, table = cached
    res = _out_tensor(out, (height, width, 3), probe, "smpte_bars")
    args = (_ptr(res), *_i(width, height, *rows), _ptr(table))
    _launch("patterns.cu", "smpte_bars", dev, _grid(width, height), (32, 8), args)
    return res
