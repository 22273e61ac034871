"""RFC 4175 / ST 2110-20 pixel groups (pgroups): pack RGB frames, unpack to RGB.

Formats (``VideoFormat.name``):

* ``YCbCr-4:2:2/10``: 5 bytes per 2 pixels, ``Cb Y0 Cr Y1`` as four big-endian 10-bit
  fields (GStreamer ``UYVP``, FFmpeg ``bitpacked``).
* ``YCbCr-4:2:2/8``: 4 bytes per 2 pixels, ``Cb Y0 Cr Y1`` (``UYVY``).
* ``RGB/8``: 3 bytes per pixel, ``R G B`` (passthrough).

Colour: BT.709 (Kr=0.2126, Kb=0.0722; coefficients from ``streamlib.media.color``), limited ("narrow") range: Y in 64-940 and
Cb/Cr in 64-960 at 10 bits (16-235 / 16-240 at 8 bits). Arithmetic is integer fixed
point (16 fractional bits) so every backend (numpy here, numba/CUDA elsewhere) can
produce bit-identical codes. Rounding: round half up, ``floor(x + 1/2)``, then clamp
to the legal range (10-bit 4-1019, 8-bit 1-254: the SDI timing codes are never
produced). 4:2:2 chroma is the mean of the two pixels of a pair (computed before
rounding); unpacking repeats each pair's chroma for both pixels.

Round trip RGB -> YCbCr -> RGB (tested): a pixel whose pair partner has the same
colour comes back within 1 code value at 10 bits, within 2 at 8 bits.

All functions are pure: numpy/torch in, numpy out, no state, so a CUDA kernel can
replace them one for one.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from streamlib.media.color import FRAC, dec_coeffs, enc_coeffs, levels
from streamlib.errors import ConfigError, FrameValidationError

__all__ = ["VideoFormat", "FORMATS", "parse_format", "format_from_fmtp", "pack_rgb",
           "unpack_to_rgb", "pack_rgb_fast", "unpack_to_rgb_fast", "rgb_to_ycbcr422_10", "rgb_to_ycbcr422_8", "rgb_to_rgb8",
           "unpack_ycbcr422_10", "unpack_ycbcr422_8", "unpack_rgb8",
           "ycbcr422_10_to_planes", "planes_to_ycbcr422_10"]

U8 = npt.NDArray[np.uint8]
I32 = npt.NDArray[np.int32]

_ONE = 1 << FRAC


@dataclass(frozen=True)
class VideoFormat:
    """An ST 2110-20 sampling/depth pair and its pgroup geometry."""

    name: str            # "YCbCr-4:2:2/10"
    sampling: str        # SDP "sampling"
    depth: int           # SDP "depth"
    pgroup_bytes: int    # octets per pgroup
    pgroup_pixels: int   # pixels per pgroup

    def line_bytes(self, width: int) -> int:
        """Octets of one line of ``width`` pixels. ConfigError if width is not a whole
        number of pgroups."""
        if width < 1 or width % self.pgroup_pixels:
            raise ConfigError(f"{self.name}: width must be a positive multiple of "
                              f"{self.pgroup_pixels}, got {width}")
        return width // self.pgroup_pixels * self.pgroup_bytes

    def frame_bytes(self, width: int, height: int) -> int:
        return self.line_bytes(width) * height


FORMATS: dict[str, VideoFormat] = {
    f.name: f for f in (
        VideoFormat("YCbCr-4:2:2/10", "YCbCr-4:2:2", 10, 5, 2),
        VideoFormat("YCbCr-4:2:2/8", "YCbCr-4:2:2", 8, 4, 2),
        VideoFormat("RGB/8", "RGB", 8, 3, 1),
    )
}


def parse_format(name: str | VideoFormat) -> VideoFormat:
    """``"YCbCr-4:2:2/10"`` etc. to a VideoFormat. ConfigError lists the valid names."""
    if isinstance(name, VideoFormat):
        return name
    fmt = FORMATS.get(name) if isinstance(name, str) else None
    if fmt is None:
        raise ConfigError(f"unknown video format {name!r}; valid: {', '.join(FORMATS)}")
    return fmt


def format_from_fmtp(sampling: str, depth: int | str) -> VideoFormat:
    """Format for SDP ``sampling``/``depth``. ConfigError for unsupported pairs."""
    return parse_format(f"{sampling}/{int(depth)}")


# -- fixed-point coefficients (streamlib.media.color) -------------------------------------

def _enc_matrix(depth: int) -> tuple[list[int], list[int], list[int]]:
    """Luma, Cb and Cr rows of the 4:2:2 encoder (chroma from a pixel pair's sum)."""
    k = enc_coeffs(depth, 2)
    return list(k[0:3]), list(k[3:6]), list(k[6:9])


def _limits(depth: int) -> tuple[int, int]:
    return (4, 1019) if depth == 10 else (1, 254)


def _rgb_array(frame: torch.Tensor | npt.NDArray[Any], pair: bool) -> I32:
    """(H, W, 3) int32 view of an RGB/RGBA uint8 frame; FrameValidationError for other shapes."""
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise FrameValidationError(f"expected an (H, W, 3|4) uint8 RGB(A) frame, got "
                                   f"{arr.shape} {arr.dtype}")
    if pair and arr.shape[1] % 2:
        raise FrameValidationError(f"4:2:2 needs an even width, got {arr.shape[1]}")
    return arr[:, :, :3].astype(np.int32)


def _to_ycbcr422(frame: torch.Tensor | npt.NDArray[Any],
                 depth: int) -> tuple[I32, I32, I32, I32]:
    """Integer (Cb, Y0, Cr, Y1) planes of shape (H, W/2)."""
    rgb = _rgb_array(frame, True)
    y, cb, cr = _enc_matrix(depth)
    yo, _, cm, _ = levels(depth)
    lo, hi = _limits(depth)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    half = _ONE >> 1
    luma = (y[0] * r + y[1] * g + y[2] * b + (yo << FRAC) + half) >> FRAC
    np.clip(luma, lo, hi, out=luma)
    rs, gs, bs = r[:, 0::2] + r[:, 1::2], g[:, 0::2] + g[:, 1::2], b[:, 0::2] + b[:, 1::2]
    cbv = (cb[0] * rs + cb[1] * gs + cb[2] * bs + (cm << FRAC) + half) >> FRAC
    crv = (cr[0] * rs + cr[1] * gs + cr[2] * bs + (cm << FRAC) + half) >> FRAC
    np.clip(cbv, lo, hi, out=cbv)
    np.clip(crv, lo, hi, out=crv)
    return cbv, luma[:, 0::2], crv, luma[:, 1::2]


def _out(out: U8 | None, size: int) -> U8:
    if out is None:
        return np.empty(size, np.uint8)
    if out.dtype != np.uint8 or out.ndim != 1 or out.size != size:
        raise ConfigError(f"out must be a 1-D uint8 array of {size} bytes, got {out.shape} "
                          f"{out.dtype}")
    return out


def planes_to_ycbcr422_10(cb: I32, y0: I32, cr: I32, y1: I32, out: U8 | None = None) -> U8:
    """Pack integer 10-bit planes (each (H, W/2)) into 5-byte pgroups, line-major."""
    v = ((cb.astype(np.uint64) << np.uint64(30)) | (y0.astype(np.uint64) << np.uint64(20))
         | (cr.astype(np.uint64) << np.uint64(10)) | y1.astype(np.uint64))
    res = _out(out, v.size * 5)
    be = v.astype(">u8").view(np.uint8).reshape(-1, 8)
    res.reshape(-1, 5)[:] = be[:, 3:]
    return res


def ycbcr422_10_to_planes(buf: U8 | bytes | memoryview, width: int,
                          height: int) -> tuple[I32, I32, I32, I32]:
    """Inverse of ``planes_to_ycbcr422_10``: (Cb, Y0, Cr, Y1) int32 planes (H, W/2).
    FrameValidationError if ``buf`` is short."""
    src = np.frombuffer(buf, np.uint8)
    n = width // 2 * height
    if src.size < n * 5:
        raise FrameValidationError(f"buffer holds {src.size} bytes, {width}x{height} 4:2:2/10 "
                                   f"needs {n * 5}")
    wide = np.zeros((n, 8), np.uint8)
    wide[:, 3:] = src[:n * 5].reshape(n, 5)
    v = wide.view(">u8")[:, 0].astype(np.int64).reshape(height, width // 2)
    mask = 0x3FF
    return (((v >> 30) & mask).astype(np.int32), ((v >> 20) & mask).astype(np.int32),
            ((v >> 10) & mask).astype(np.int32), (v & mask).astype(np.int32))


def rgb_to_ycbcr422_10(frame: torch.Tensor | npt.NDArray[Any], out: U8 | None = None) -> U8:
    """RGB(A) uint8 (H, W, 3|4) -> ``YCbCr-4:2:2/10`` pgroups (H*W*5/2 bytes). FrameValidationError
    for odd widths, non-uint8 data or a wrong-sized ``out``."""
    return planes_to_ycbcr422_10(*_to_ycbcr422(frame, 10), out=out)


def rgb_to_ycbcr422_8(frame: torch.Tensor | npt.NDArray[Any], out: U8 | None = None) -> U8:
    """RGB(A) uint8 (H, W, 3|4) -> ``YCbCr-4:2:2/8`` (UYVY) bytes (H*W*2)."""
    cb, y0, cr, y1 = _to_ycbcr422(frame, 8)
    res = _out(out, cb.size * 4)
    v = res.reshape(-1, 4)
    for i, plane in enumerate((cb, y0, cr, y1)):
        v[:, i] = plane.reshape(-1)
    return res


def rgb_to_rgb8(frame: torch.Tensor | npt.NDArray[Any], out: U8 | None = None) -> U8:
    """RGB(A) uint8 (H, W, 3|4) -> ``RGB/8`` bytes (H*W*3): alpha dropped, no conversion.
    FrameValidationError for another shape or dtype, ConfigError for a bad ``out``."""
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise FrameValidationError(f"expected an (H, W, 3|4) uint8 RGB(A) frame, got {arr.shape} "
                                   f"{arr.dtype}")
    res = _out(out, arr.shape[0] * arr.shape[1] * 3)
    res.reshape(arr.shape[0], arr.shape[1], 3)[:] = arr[:, :, :3]
    return res


def _dec_matrix(depth: int) -> tuple[int, int, int, int, int]:
    ky, rcr, gcb, gcr, bcb, _, _ = dec_coeffs(depth)
    return ky, rcr, gcb, gcr, bcb


def _from_ycbcr422(cb: I32, y0: I32, cr: I32, y1: I32, depth: int,
                   out: U8 | None) -> U8:
    h, half_w = cb.shape
    ky, rcr, gcb, gcr, bcb = _dec_matrix(depth)
    yo, _, cm, _ = levels(depth)
    res = np.empty((h, half_w * 2, 3), np.uint8) if out is None else out
    if res.shape != (h, half_w * 2, 3) or res.dtype != np.uint8:
        raise ConfigError(f"out must be ({h}, {half_w * 2}, 3) uint8, got {res.shape} {res.dtype}")
    dcb, dcr = cb - cm, cr - cm
    cr_r = rcr * dcr
    cg = gcb * dcb + gcr * dcr
    cb_b = bcb * dcb
    half = _ONE >> 1
    for col, yy in ((0, y0), (1, y1)):
        ly = ky * (yy - yo) + half
        for ch, c in ((0, cr_r), (1, cg), (2, cb_b)):
            v = (ly + c) >> FRAC
            np.clip(v, 0, 255, out=v)
            res[:, col::2, ch] = v
    return res


def unpack_ycbcr422_10(buf: U8 | bytes | memoryview, width: int, height: int,
                       out: U8 | None = None) -> U8:
    """``YCbCr-4:2:2/10`` pgroups -> RGB uint8 (H, W, 3). FrameValidationError if ``buf`` is
    short."""
    return _from_ycbcr422(*ycbcr422_10_to_planes(buf, width, height), 10, out)


def unpack_ycbcr422_8(buf: U8 | bytes | memoryview, width: int, height: int,
                      out: U8 | None = None) -> U8:
    """``YCbCr-4:2:2/8`` (UYVY) -> RGB uint8 (H, W, 3). FrameValidationError if ``buf`` is short."""
    src = np.frombuffer(buf, np.uint8)
    n = width * height * 2
    if src.size < n:
        raise FrameValidationError(f"buffer holds {src.size} bytes, {width}x{height} 4:2:2/8 "
                                   f"needs {n}")
    q = src[:n].reshape(height, width // 2, 4).astype(np.int32)
    return _from_ycbcr422(q[..., 0], q[..., 1], q[..., 2], q[..., 3], 8, out)


def unpack_rgb8(buf: U8 | bytes | memoryview, width: int, height: int,
                out: U8 | None = None) -> U8:
    """``RGB/8`` -> RGB uint8 (H, W, 3) (a copy). FrameValidationError if ``buf`` is short."""
    src = np.frombuffer(buf, np.uint8)
    n = width * height * 3
    if src.size < n:
        raise FrameValidationError(f"buffer holds {src.size} bytes, {width}x{height} RGB/8 needs "
                                   f"{n}")
    res = np.empty((height, width, 3), np.uint8) if out is None else out
    res[:] = src[:n].reshape(height, width, 3)
    return res


# -- numba fast path -------------------------------------------------------------------
# The same integer formulas as above, fused per pixel pair (numpy needs ~160 ms for a
# 1080p 10-bit pack on this machine; this needs a few ms). Tests check the two agree
# bit for bit. Compiled on first use so importing this module never imports numba.

def _nb_pack422(rgb: Any, out: Any, ten: bool, m: Any) -> None:  # pragma: no cover - numba
    h, w = rgb.shape[0], rgb.shape[1]
    pb = 5 if ten else 4
    yr, yg, yb, cbr, cbg, cbb, crr, crg, crb, yo, cm, lo, hi = (
        m[0], m[1], m[2], m[3], m[4], m[5], m[6], m[7], m[8], m[9], m[10], m[11], m[12])
    half = 32768
    for row in range(h):
        o = row * (w // 2) * pb
        for p in range(w // 2):
            r0, g0, b0 = np.int64(rgb[row, 2 * p, 0]), np.int64(rgb[row, 2 * p, 1]), \
                np.int64(rgb[row, 2 * p, 2])
            r1, g1, b1 = np.int64(rgb[row, 2 * p + 1, 0]), np.int64(rgb[row, 2 * p + 1, 1]), \
                np.int64(rgb[row, 2 * p + 1, 2])
            y0 = min(max((yr * r0 + yg * g0 + yb * b0 + yo + half) >> 16, lo), hi)
            y1 = min(max((yr * r1 + yg * g1 + yb * b1 + yo + half) >> 16, lo), hi)
            rs, gs, bs = r0 + r1, g0 + g1, b0 + b1
            cb = min(max((cbr * rs + cbg * gs + cbb * bs + cm + half) >> 16, lo), hi)
            cr = min(max((crr * rs + crg * gs + crb * bs + cm + half) >> 16, lo), hi)
            if ten:
                out[o] = cb >> 2
                out[o + 1] = ((cb & 3) << 6) | (y0 >> 4)
                out[o + 2] = ((y0 & 15) << 4) | (cr >> 6)
                out[o + 3] = ((cr & 63) << 2) | (y1 >> 8)
                out[o + 4] = y1 & 255
            else:
                out[o], out[o + 1], out[o + 2], out[o + 3] = cb, y0, cr, y1
            o += pb


def _nb_unpack422(src: Any, out: Any, ten: bool, m: Any) -> None:  # pragma: no cover - numba
    h, w = out.shape[0], out.shape[1]
    pb = 5 if ten else 4
    ky, rcr, gcb, gcr, bcb, yo, cm = m[0], m[1], m[2], m[3], m[4], m[5], m[6]
    half = 32768
    for row in range(h):
        o = row * (w // 2) * pb
        for p in range(w // 2):
            if ten:
                b0, b1, b2 = np.int64(src[o]), np.int64(src[o + 1]), np.int64(src[o + 2])
                b3, b4 = np.int64(src[o + 3]), np.int64(src[o + 4])
                cb = (b0 << 2) | (b1 >> 6)
                y0 = ((b1 & 63) << 4) | (b2 >> 4)
                cr = ((b2 & 15) << 6) | (b3 >> 2)
                y1 = ((b3 & 3) << 8) | b4
            else:
                cb, y0 = np.int64(src[o]), np.int64(src[o + 1])
                cr, y1 = np.int64(src[o + 2]), np.int64(src[o + 3])
            o += pb
            dcb, dcr = cb - cm, cr - cm
            c_r, c_g, c_b = rcr * dcr, gcb * dcb + gcr * dcr, bcb * dcb
            for k in range(2):
                ly = ky * ((y0 if k == 0 else y1) - yo) + half
                out[row, 2 * p + k, 0] = min(max((ly + c_r) >> 16, 0), 255)
                out[row, 2 * p + k, 1] = min(max((ly + c_g) >> 16, 0), 255)
                out[row, 2 * p + k, 2] = min(max((ly + c_b) >> 16, 0), 255)


_nb: dict[str, Any] = {}
_nb_lock = threading.Lock()


def numba_kernels() -> dict[str, Any] | None:
    """The compiled kernels, or None when numba is missing (or STREAMLIB_NO_NUMBA is set)."""
    with _nb_lock:
        if not _nb:
            if os.environ.get("STREAMLIB_NO_NUMBA") or importlib.util.find_spec("numba") is None:
                return None
            import numba  # noqa: PLC0415 - optional, imported on first use

            jit = numba.njit(cache=True, nogil=True, boundscheck=False)
            _nb.update(pack=jit(_nb_pack422), unpack=jit(_nb_unpack422))
        return _nb


def _enc_params(depth: int) -> npt.NDArray[np.int64]:
    y, cb, cr = _enc_matrix(depth)
    yo, _, cm, _ = levels(depth)
    lo, hi = _limits(depth)
    return np.array([*y, *cb, *cr, yo << FRAC, cm << FRAC, lo, hi], np.int64)


def _dec_params(depth: int) -> npt.NDArray[np.int64]:
    yo, _, cm, _ = levels(depth)
    return np.array([*_dec_matrix(depth), yo, cm], np.int64)


def pack_rgb_fast(frame: torch.Tensor | npt.NDArray[Any], fmt: str | VideoFormat,
                  out: U8 | None = None) -> U8:
    """``pack_rgb`` through the numba kernels when available (bit-identical), else numpy."""
    f = parse_format(fmt)
    k = numba_kernels()
    if k is None or f.sampling != "YCbCr-4:2:2":
        return pack_rgb(frame, f, out)
    arr = frame.detach().cpu().numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.shape[1] % 2:
        return pack_rgb(frame, f, out)  # the reference raises
    res = _out(out, f.frame_bytes(arr.shape[1], arr.shape[0]))
    k["pack"](np.ascontiguousarray(arr), res, f.depth == 10, _enc_params(f.depth))
    return res


def unpack_to_rgb_fast(buf: U8 | bytes | memoryview, fmt: str | VideoFormat, width: int,
                       height: int, out: U8 | None = None) -> U8:
    """``unpack_to_rgb`` through the numba kernels when available (bit-identical); raises
    as it does (FrameValidationError for a short ``buf``, ConfigError for a bad ``out``)."""
    f = parse_format(fmt)
    k = numba_kernels()
    if k is None or f.sampling != "YCbCr-4:2:2":
        return unpack_to_rgb(buf, f, width, height, out)
    src = np.frombuffer(buf, np.uint8)
    if src.size < f.frame_bytes(width, height):
        return unpack_to_rgb(buf, f, width, height, out)  # the reference raises
    res = np.empty((height, width, 3), np.uint8) if out is None else out
    if res.shape != (height, width, 3) or res.dtype != np.uint8 or not res.flags.c_contiguous:
        raise ConfigError(f"out must be contiguous ({height}, {width}, 3) uint8, got {res.shape}")
    k["unpack"](src, res, f.depth == 10, _dec_params(f.depth))
    return res


_PACKERS = {"YCbCr-4:2:2/10": rgb_to_ycbcr422_10, "YCbCr-4:2:2/8": rgb_to_ycbcr422_8,
            "RGB/8": rgb_to_rgb8}
_UNPACKERS = {"YCbCr-4:2:2/10": unpack_ycbcr422_10, "YCbCr-4:2:2/8": unpack_ycbcr422_8,
              "RGB/8": unpack_rgb8}


def pack_rgb(frame: torch.Tensor | npt.NDArray[Any], fmt: str | VideoFormat,
             out: U8 | None = None) -> U8:
    """Pack an RGB(A) uint8 frame into ``fmt`` pgroups (dispatch on the format name)."""
    return _PACKERS[parse_format(fmt).name](frame, out)


def unpack_to_rgb(buf: U8 | bytes | memoryview, fmt: str | VideoFormat, width: int,
                  height: int, out: U8 | None = None) -> U8:
    """Unpack ``fmt`` pgroups of a ``width`` x ``height`` frame to RGB uint8 (H, W, 3)."""
    return _UNPACKERS[parse_format(fmt).name](buf, width, height, out)
