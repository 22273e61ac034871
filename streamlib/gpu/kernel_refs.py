"""Torch reference implementations of the CUDA kernels in ``streamlib/gpu/cuda/*.cu``.

They are the CPU path of ``streamlib.gpu.kernels`` (any device) and the oracle the
GPU parity tests compare against bit for bit. Integer fixed point with 16
fractional bits and round half up, with the BT.709 coefficients of
``streamlib.media.color`` that ``streamlib.net.pgroup`` uses too (the parity tests
compare bytes).
"""

from __future__ import annotations

from typing import Sequence

import torch

from streamlib.errors import ConfigError, FrameValidationError
from streamlib.media.blend import Placed, opacity_code
from streamlib.media.color import FRAC, HALF, dec_coeffs, enc_coeffs
from streamlib.media.smpte import render_smpte_bars

__all__ = [
    "composite_ref", "pgroup422_10_to_rgb_ref", "pgroup_input", "rgb_input",
    "rgb_to_pgroup422_10_ref", "rgb_to_yuv420_ref", "smpte_bars_ref", "yuv420_to_rgb_ref",
    "yuv_shape",
]


def rgb_input(rgb: torch.Tensor, what: str, even_h: bool = True) -> torch.Tensor:
    """``rgb`` as (H, W, 3|4) uint8 with packed pixels.

    Raises:
        FrameValidationError: another shape or dtype, or an odd width (or height).
    """
    if rgb.dtype != torch.uint8 or rgb.dim() != 3 or rgb.shape[2] not in (3, 4):
        raise FrameValidationError(f"{what}: expected an (H, W, 3|4) uint8 RGB(A) tensor, got "
                                   f"{tuple(rgb.shape)} {rgb.dtype}")
    if rgb.shape[1] % 2 or (even_h and rgb.shape[0] % 2):
        raise FrameValidationError(f"{what}: needs an even width{' and height' if even_h else ''}, "
                                   f"got {rgb.shape[1]}x{rgb.shape[0]}")
    if rgb.stride(2) != 1 or rgb.stride(1) != rgb.shape[2]:
        rgb = rgb.contiguous()
    return rgb


def _fx(acc: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    return ((acc + HALF) >> FRAC).clamp_(lo, hi)


def composite_ref(width: int, height: int, background: Sequence[int] = (0, 0, 0),
                  layers: Sequence[Placed] = (), base: torch.Tensor | None = None,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Torch reference of ``composite`` (int32 arithmetic, any device).

    Same arguments and result as ``streamlib.media.blend.composite_reference``;
    the device is ``device``, else the base's or first layer's, else the CPU.
    """
    if device is None:
        first = base if base is not None else (layers[0][0] if layers else None)
        device = first.device if first is not None else "cpu"
    out = torch.tensor(list(background), dtype=torch.int32, device=device).expand(
        height, width, 3).clone()
    if base is not None:
        h, w = min(height, base.shape[0]), min(width, base.shape[1])
        out[:h, :w] = base[:h, :w, :3].to(device=out.device, dtype=torch.int32)
    for data, x, y, opacity in layers:
        dx0, dy0 = max(x, 0), max(y, 0)
        dx1, dy1 = min(x + data.shape[1], width), min(y + data.shape[0], height)
        if dx1 <= dx0 or dy1 <= dy0:
            continue
        src = data[dy0 - y:dy1 - y, dx0 - x:dx1 - x].to(device=out.device, dtype=torch.int32)
        op = opacity_code(opacity)
        a = (src[..., 3:4] * op + 127) // 255 if data.shape[2] == 4 else torch.full_like(
            src[..., :1], op)
        dst = out[dy0:dy1, dx0:dx1]
        out[dy0:dy1, dx0:dx1] = (src[..., :3] * a + dst * (255 - a) + 127) // 255
    return out.to(torch.uint8)


def rgb_to_yuv420_ref(rgb: torch.Tensor, nv12: bool = True) -> torch.Tensor:
    """Torch reference: (H, W, 3|4) uint8 -> (H*3/2, W) uint8 NV12 (or I420)."""
    rgb = rgb_input(rgb, "rgb_to_yuv420")
    h, w = int(rgb.shape[0]), int(rgb.shape[1])
    yr, yg, yb, cbr, cbg, cbb, crr, crg, crb, yo, co = enc_coeffs(8, 4)
    x = rgb[..., :3].to(torch.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    luma = _fx(yr * r + yg * g + yb * b + yo, 0, 255)

    def block_sum(c: torch.Tensor) -> torch.Tensor:
        return c[0::2, 0::2] + c[0::2, 1::2] + c[1::2, 0::2] + c[1::2, 1::2]

    rs, gs, bs = block_sum(r), block_sum(g), block_sum(b)
    cb = _fx(cbr * rs + cbg * gs + cbb * bs + co, 0, 255)
    cr = _fx(crr * rs + crg * gs + crb * bs + co, 0, 255)
    out = torch.empty((h * 3 // 2, w), dtype=torch.uint8, device=rgb.device)
    out[:h] = luma.to(torch.uint8)
    if nv12:
        out[h:] = torch.stack((cb, cr), dim=-1).reshape(h // 2, w).to(torch.uint8)
    else:
        flat = out.view(-1)
        q = h * w // 4
        flat[h * w:h * w + q] = cb.reshape(-1).to(torch.uint8)
        flat[h * w + q:] = cr.reshape(-1).to(torch.uint8)
    return out


def yuv420_to_rgb_ref(yuv: torch.Tensor, nv12: bool = True) -> torch.Tensor:
    """Torch reference: (H*3/2, W) NV12 (or I420) uint8 -> (H, W, 3) uint8."""
    h, w = yuv_shape(yuv, "yuv420_to_rgb")
    ky, rcr, gcb, gcr, bcb, yo, cm = dec_coeffs(8)
    y = yuv[:h].to(torch.int32)
    if nv12:
        uv = yuv[h:].reshape(h // 2, w // 2, 2).to(torch.int32)
        cb, cr = uv[..., 0], uv[..., 1]
    else:
        flat = yuv.reshape(-1)
        q = h * w // 4
        cb = flat[h * w:h * w + q].reshape(h // 2, w // 2).to(torch.int32)
        cr = flat[h * w + q:].reshape(h // 2, w // 2).to(torch.int32)
    dcb, dcr = cb - cm, cr - cm

    def up(c: torch.Tensor) -> torch.Tensor:
        return c.repeat_interleave(2, 0).repeat_interleave(2, 1)

    c_r, c_g, c_b = up(rcr * dcr), up(gcb * dcb + gcr * dcr), up(bcb * dcb)
    ly = ky * (y - yo) + HALF
    rgb = [((ly + c) >> FRAC).clamp_(0, 255) for c in (c_r, c_g, c_b)]
    return torch.stack(rgb, dim=-1).to(torch.uint8)


def yuv_shape(yuv: torch.Tensor, what: str) -> tuple[int, int]:
    """(H, W) of an (H*3/2, W) 4:2:0 tensor; FrameValidationError for another shape or dtype."""
    if yuv.dtype != torch.uint8 or yuv.dim() != 2 or yuv.shape[0] % 3 or yuv.shape[1] % 2:
        raise FrameValidationError(
            f"{what}: expected an (H*3/2, W) uint8 tensor with even H and W, got "
            f"{tuple(yuv.shape)} {yuv.dtype}")
    return int(yuv.shape[0]) * 2 // 3, int(yuv.shape[1])


def rgb_to_pgroup422_10_ref(rgb: torch.Tensor) -> torch.Tensor:
    """Torch reference: RGB(A) uint8 (H, W, 3|4), even W -> (H, W/2*5) uint8 pgroups."""
    rgb = rgb_input(rgb, "rgb_to_pgroup422_10", even_h=False)
    yr, yg, yb, cbr, cbg, cbb, crr, crg, crb, yo, co = enc_coeffs(10, 2)
    x = rgb[..., :3].to(torch.int32)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    luma = _fx(yr * r + yg * g + yb * b + yo, 4, 1019)
    rs, gs, bs = r[:, 0::2] + r[:, 1::2], g[:, 0::2] + g[:, 1::2], b[:, 0::2] + b[:, 1::2]
    cb = _fx(cbr * rs + cbg * gs + cbb * bs + co, 4, 1019)
    cr = _fx(crr * rs + crg * gs + crb * bs + co, 4, 1019)
    y0, y1 = luma[:, 0::2], luma[:, 1::2]
    packed = torch.stack((cb >> 2, ((cb & 3) << 6) | (y0 >> 4), ((y0 & 15) << 4) | (cr >> 6),
                          ((cr & 63) << 2) | (y1 >> 8), y1 & 255), dim=-1)
    return packed.reshape(rgb.shape[0], -1).to(torch.uint8)


def pgroup_input(buf: torch.Tensor, width: int, height: int, what: str) -> torch.Tensor:
    """``buf`` as (H, W/2, 5) pgroup bytes.

    Raises:
        ConfigError: an odd or too small ``width``, or ``height`` < 1.
        FrameValidationError: ``buf`` is not uint8 or holds too few bytes.
    """
    need = height * width // 2 * 5
    if width < 2 or width % 2 or height < 1:
        raise ConfigError(f"{what}: width must be even and >= 2, height >= 1, got {width}x{height}")
    if buf.dtype != torch.uint8 or buf.numel() < need:
        raise FrameValidationError(f"{what}: expected >= {need} uint8 bytes for {width}x{height}, "
                                   f"got {buf.numel()} {buf.dtype}")
    return buf.reshape(-1)[:need].contiguous().view(height, width // 2, 5)


def pgroup422_10_to_rgb_ref(buf: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Torch reference: YCbCr-4:2:2/10 pgroup bytes -> RGB24 (H, W, 3) uint8."""
    s = pgroup_input(buf, width, height, "pgroup422_10_to_rgb").to(torch.int32)
    cb = (s[..., 0] << 2) | (s[..., 1] >> 6)
    y0 = ((s[..., 1] & 63) << 4) | (s[..., 2] >> 4)
    cr = ((s[..., 2] & 15) << 6) | (s[..., 3] >> 2)
    y1 = ((s[..., 3] & 3) << 8) | s[..., 4]
    ky, rcr, gcb, gcr, bcb, yo, cm = dec_coeffs(10)
    dcb, dcr = cb - cm, cr - cm
    chroma = (rcr * dcr, gcb * dcb + gcr * dcr, bcb * dcb)
    ys = torch.stack((y0, y1), dim=-1)  # (H, W/2, 2)
    ly = ky * (ys - yo) + HALF
    rgb = [((ly + c.unsqueeze(-1)) >> FRAC).clamp_(0, 255) for c in chroma]
    return torch.stack(rgb, dim=-1).reshape(height, width, 3).to(torch.uint8)


def smpte_bars_ref(width: int, height: int, color_range: str = "limited",
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """Torch reference: ``render_smpte_bars`` moved to ``device``."""
    return render_smpte_bars(width, height, color_range).to(device)
