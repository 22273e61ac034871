"""The compositor's blending backends; each follows the rule of :mod:`streamlib.media.blend`.

``x / 255`` rounded is computed by the torch path as
``t = x + 128; (t + (t >> 8)) >> 8`` (exact for ``0 <= x <= 255 * 255``), by the
numba path as ``floor((x + 127.5) * float32(1/255))`` (also exact, see the
kernels).

Backends of ``composite_into``: ``numba`` (row kernels compiled with
``@njit(cache=True, nogil=True)``, auto-vectorised; picked automatically when
numba is installed and the frames are on the CPU), the CUDA kernel of
``streamlib.gpu.kernels`` (every layer in one pass; picked automatically for CUDA
frames when CuPy is installed) and ``torch`` (int16 wrap-around arithmetic on
the covered region only, in 64-row bands; any device). All of them match
``streamlib.media.blend.composite_reference`` bit for bit. ``resize_layer``
scales a layer. ``CompositorActor`` (:mod:`streamlib.actors.compositor`) is the
actor built on them.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import threading
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from streamlib.media.blend import Placed, clip_box, opacity_code

__all__ = ["composite_into", "cuda_kernel_available", "numba_available", "numba_kernels",
           "resize_layer"]


@functools.cache  # composite_into asks per frame; find_spec costs ~30 us each time
def numba_available() -> bool:
    """True when numba can be imported (checked once, without importing it)."""
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):  # e.g. sys.modules["numba"] = None blocks it
        return False


# -- torch backend --------------------------------------------------------------

def _div255_i16(t: torch.Tensor) -> torch.Tensor:
    """round(x / 255) of ``t = x + 128`` held mod 2**16 in int16 (x <= 65025), in place."""
    t += (t >> 8) & 255  # arithmetic shift + mask = the unsigned high byte
    t >>= 8
    t &= 255
    return t


def _torch_blend(dst: torch.Tensor, src: torch.Tensor, op: int) -> None:
    """Blend ``src`` (h, w, 3|4) into ``dst`` (h, w, 3) in place, 64 rows at a time."""
    for row in range(0, dst.shape[0], 64):
        d, s = dst[row:row + 64], src[row:row + 64]
        if s.shape[2] == 4:
            a = s[..., 3:4].to(torch.int16)
            if op != 255:
                a *= op
                a += 128
                a = _div255_i16(a)
            ia = 255 - a
        else:
            a, ia = torch.tensor(op, dtype=torch.int16), torch.tensor(255 - op, dtype=torch.int16)
        # Products up to 65025 wrap in int16, but the low 16 bits are the
        # unsigned value exactly, which is all _div255_i16 needs.
        t = s[..., :3].to(torch.int16)
        t *= a
        u = d.to(torch.int16)
        u *= ia
        t += u
        t += 128
        d.copy_(_div255_i16(t))


# -- numba backend ---------------------------------------------------------------
# Plain functions, compiled on first use by numba_kernels() so importing this
# module never imports numba. Rows are taken as 1-D contiguous views so LLVM
# vectorises the inner loop. float32, not integers: numba widens integer
# arithmetic to 64-bit lanes, float32 keeps 16 lanes per AVX-512 register
# (1.6 vs 2.4 ms per 1080p layer here). It is still exact: every product and
# sum is an integer or half-integer below 2**24, and floor((x + 127.5) / 255)
# is at least 0.5/255 from an integer, far more than float32's error on the
# final multiply by 1/255 (checked for every x in 0..65025 by the tests).

def _nb_blend_rgba(dst: Any, src: Any, op: int, dy: int, dx: int, sy: int, sx: int,
                   h: int, w: int) -> None:  # pragma: no cover - compiled by numba
    f32, inv = np.float32, np.float32(1.0 / 255.0)
    o, half = f32(op), f32(127.5)
    for y in range(h):
        d = dst[dy + y].ravel()[dx * 3:(dx + w) * 3]
        s = src[sy + y].ravel()[sx * 4:(sx + w) * 4]
        for x in range(w):
            a = f32(np.int32((f32(s[4 * x + 3]) * o + half) * inv))
            ia = f32(255.0) - a
            d[3 * x] = np.uint8(np.int32((f32(s[4 * x]) * a + f32(d[3 * x]) * ia + half) * inv))
            d[3 * x + 1] = np.uint8(
                np.int32((f32(s[4 * x + 1]) * a + f32(d[3 * x + 1]) * ia + half) * inv))
            d[3 * x + 2] = np.uint8(
                np.int32((f32(s[4 * x + 2]) * a + f32(d[3 * x + 2]) * ia + half) * inv))


def _nb_blend_rgb(dst: Any, src: Any, op: int, dy: int, dx: int, sy: int, sx: int,
                  h: int, w: int) -> None:  # pragma: no cover - compiled by numba
    f32, inv = np.float32, np.float32(1.0 / 255.0)
    a, half = f32(op), f32(127.5)
    ia = f32(255.0) - a
    for y in range(h):
        d = dst[dy + y].ravel()[dx * 3:(dx + w) * 3]
        s = src[sy + y].ravel()[sx * 3:(sx + w) * 3]
        for i in range(3 * w):
            d[i] = np.uint8(np.int32((f32(s[i]) * a + f32(d[i]) * ia + half) * inv))


_kernels: dict[str, Callable[..., None]] = {}
_kernels_lock = threading.Lock()


def numba_kernels() -> dict[str, Callable[..., None]]:
    """Compile (or load from numba's cache) the kernels; ImportError without numba."""
    with _kernels_lock:
        if not _kernels:
            import numba  # noqa: PLC0415 - optional dependency, imported on first use

            jit = numba.njit(cache=True, nogil=True, boundscheck=False)
            kernels = {"rgba": jit(_nb_blend_rgba), "rgb": jit(_nb_blend_rgb)}
            # Compile now on tiny arrays rather than during the first real frame.
            d = np.zeros((2, 2, 3), np.uint8)
            kernels["rgba"](d, np.zeros((2, 2, 4), np.uint8), 255, 0, 0, 0, 0, 2, 2)
            kernels["rgb"](d, np.zeros((2, 2, 3), np.uint8), 128, 0, 0, 0, 0, 2, 2)
            _kernels.update(kernels)
        return _kernels


def cuda_kernel_available(out: torch.Tensor) -> bool:
    """Whether ``out`` can be composited by the one-pass CUDA kernel
    (``streamlib.gpu.kernels.composite``): a CUDA tensor, CuPy installed and NVRTC working."""
    if not out.is_cuda:
        return False
    from streamlib.gpu.kernels import cuda_kernels_ready  # noqa: PLC0415 - kernels imports this package

    return cuda_kernels_ready(out)


def composite_into(out: torch.Tensor, layers: Sequence[Placed], backend: str = "auto") -> None:
    """Blend ``layers`` (data, x, y, opacity), in order, into ``out`` (H, W, 3) in place.

    ``backend``: ``"numba"``, ``"torch"`` or ``"auto"``: numba if installed and
    ``out`` is on the CPU; on CUDA the one-pass kernel of ``streamlib.gpu.kernels``
    (every layer in one launch per 8, on the current stream) when CuPy is
    installed, else torch. Layer data must be uint8 (h, w, 3|4) on ``out``'s
    device. Raises ImportError for ``"numba"`` without numba.
    """
    height, width = out.shape[0], out.shape[1]
    if backend == "auto" and layers and cuda_kernel_available(out):
        from streamlib.gpu.kernels import composite  # noqa: PLC0415

        # ``out`` is its own base: each thread reads its pixel before writing it.
        composite(width, height, layers=layers, base=out, out=out, backend="cuda")
        return
    use_numba = out.device.type == "cpu" and (
        backend == "numba" or (backend == "auto" and numba_available()))
    kernels = numba_kernels() if use_numba else {}
    dst_np = out.numpy() if use_numba else None
    for data, x, y, opacity in layers:
        op = opacity_code(opacity)
        box = clip_box(x, y, data.shape[1], data.shape[0], width, height)
        if box is None or op <= 0:
            continue
        dx, dy, sx, sy, cw, ch = box
        rgba = data.shape[2] == 4
        if not rgba and op >= 255:  # opaque RGB: a plain copy
            out[dy:dy + ch, dx:dx + cw] = data[sy:sy + ch, sx:sx + cw]
        elif use_numba:
            src = data.contiguous().numpy()
            kernels["rgba" if rgba else "rgb"](dst_np, src, op, dy, dx, sy, sx, ch, cw)
        else:
            _torch_blend(out[dy:dy + ch, dx:dx + cw], data[sy:sy + ch, sx:sx + cw], op)


def resize_layer(data: torch.Tensor, scale: float, interpolation: str = "bilinear") -> torch.Tensor:
    """``data`` (h, w, C) uint8 resized to ``w*scale`` x ``h*scale`` (halves up, at least 1).

    Bilinear works on straight (not premultiplied) RGBA and antialiases when
    shrinking. Returns a new contiguous (h', w', C) uint8 tensor.
    """
    h, w = data.shape[0], data.shape[1]
    size = (max(1, math.floor(h * scale + 0.5)), max(1, math.floor(w * scale + 0.5)))
    nchw = data.permute(2, 0, 1).unsqueeze(0)
    kw: dict[str, Any] = {} if interpolation == "nearest" else {
        "align_corners": False, "antialias": scale < 1}
    if data.device.type == "cpu":  # native uint8 kernels on the CPU
        resized = F.interpolate(nchw.contiguous(memory_format=torch.channels_last), size=size,
                                mode=interpolation, **kw)
    else:
        resized = F.interpolate(nchw.float(), size=size, mode=interpolation, **kw)
        resized = resized.round_().clamp_(0, 255).to(torch.uint8)
    return resized[0].permute(1, 2, 0).contiguous()
