"""BT.709 limited-range R'G'B' <-> Y'CbCr coefficients in integer fixed point.

Every converter of the library (the numpy/numba pgroup packers of
``streamlib.net.pgroup``, the torch references and CUDA kernels of
``streamlib.gpu``) takes its coefficients from here, so their codes agree byte for
byte. Fixed point has ``FRAC = 16`` fractional bits; a coefficient ``k`` is
``floor(k * 2**16 + 1/2)``, and a converter rounds a sum ``acc`` as
``(acc + HALF) >> FRAC`` (round half up) before clamping to its legal range.

Limited ("narrow") range at ``depth`` bits, ``s = 2**(depth - 8)``: luma
``16 s + 219 s v``, chroma ``128 s + 224 s c`` (Y in 64-940, Cb/Cr in 64-960 at
10 bits; 16-235 / 16-240 at 8 bits).
"""

from __future__ import annotations

import math

__all__ = ["FRAC", "HALF", "KB", "KG", "KR", "dec_coeffs", "enc_coeffs", "fixed", "levels"]

KR, KB = 0.2126, 0.0722  # BT.709
KG = 1.0 - KR - KB
FRAC = 16
HALF = 1 << (FRAC - 1)


def fixed(x: float) -> int:
    """``x`` in fixed point: ``floor(x * 2**FRAC + 1/2)``."""
    return math.floor(x * (1 << FRAC) + 0.5)


def levels(depth: int) -> tuple[int, int, int, int]:
    """(luma offset, luma span, chroma mid, chroma span) in codes of ``depth`` bits."""
    s = 1 << (depth - 8)
    return 16 * s, 219 * s, 128 * s, 224 * s


def enc_coeffs(depth: int, pixels: int) -> tuple[int, ...]:
    """(yr, yg, yb, cbr, cbg, cbb, crr, crg, crb, y_off, c_off) for 8-bit R'G'B' to ``depth``-bit
    Y'CbCr, chroma from the sum of ``pixels`` pixels (2 for 4:2:2, 4 for 4:2:0); offsets
    pre-shifted by ``FRAC``.

    ``Cb = (B - Y') / (2 (1 - Kb))``, ``Cr = (R - Y') / (2 (1 - Kr))``, divided by
    ``pixels`` so the pixel sum gives the mean, rounded once.
    """
    yo, ys, cm, cs = levels(depth)
    y = [fixed(ys / 255 * k) for k in (KR, KG, KB)]
    cb = [fixed(cs / 255 * v / (2 * (1 - KB)) / pixels) for v in (-KR, -KG, 1 - KB)]
    cr = [fixed(cs / 255 * v / (2 * (1 - KR)) / pixels) for v in (1 - KR, -KG, -KB)]
    return (*y, *cb, *cr, yo << FRAC, cm << FRAC)


def dec_coeffs(depth: int) -> tuple[int, ...]:
    """(ky, rcr, gcb, gcr, bcb, y_off, c_mid) for decoding ``depth``-bit codes to 8-bit R'G'B':
    ``R = ky (Y - y_off) + rcr (Cr - c_mid)``, ``G = ky (Y - y_off) + gcb dCb + gcr dCr``,
    ``B = ky (Y - y_off) + bcb dCb``, each rounded by ``(x + HALF) >> FRAC``."""
    yo, ys, cm, cs = levels(depth)
    kc = 255 / cs
    return (fixed(255 / ys), fixed(kc * 2 * (1 - KR)), fixed(-kc * 2 * (1 - KB) * KB / KG),
            fixed(-kc * 2 * (1 - KR) * KR / KG), fixed(kc * 2 * (1 - KB)), yo, cm)
