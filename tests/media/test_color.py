"""streamlib.media.color: BT.709 limited-range fixed-point coefficients."""

from __future__ import annotations

import pytest

from streamlib.media.color import FRAC, HALF, KB, KG, KR, dec_coeffs, enc_coeffs, fixed, levels


def encode(depth: int, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    yr, yg, yb, cbr, cbg, cbb, crr, crg, crb, yo, co = enc_coeffs(depth, 1)
    r, g, b = rgb
    return ((yr * r + yg * g + yb * b + yo + HALF) >> FRAC,
            (cbr * r + cbg * g + cbb * b + co + HALF) >> FRAC,
            (crr * r + crg * g + crb * b + co + HALF) >> FRAC)


def decode(depth: int, y: int, cb: int, cr: int) -> tuple[int, int, int]:
    ky, rcr, gcb, gcr, bcb, yo, cm = dec_coeffs(depth)
    ly = ky * (y - yo) + HALF
    dcb, dcr = cb - cm, cr - cm
    return ((ly + rcr * dcr) >> FRAC, (ly + gcb * dcb + gcr * dcr) >> FRAC, (ly + bcb * dcb) >> FRAC)


def test_constants_and_fixed_point() -> None:
    assert (KR, KB) == (0.2126, 0.0722) and KG == 1.0 - KR - KB
    assert (FRAC, HALF) == (16, 32768)
    assert fixed(0.5) == 32768 and fixed(1 / 3) == 21845 and fixed(-0.25) == -16384
    assert levels(8) == (16, 219, 128, 224) and levels(10) == (64, 876, 512, 896)


def test_coefficients_are_unchanged() -> None:
    # The wire format depends on these exact integers (ST 2110 fixtures, CUDA kernels).
    assert enc_coeffs(10, 2) == (47864, 161017, 16255, -13192, -44377, 57569, 57569, -52290,
                                 -5279, 64 << 16, 512 << 16)
    assert enc_coeffs(8, 4) == (11966, 40254, 4064, -1649, -5547, 7196, 7196, -6536, -660,
                                16 << 16, 128 << 16)
    assert dec_coeffs(10) == (19077, 29372, -3494, -8731, 34610, 64, 512)
    assert dec_coeffs(8) == (76309, 117489, -13975, -34925, 138438, 16, 128)


@pytest.mark.parametrize("depth", [8, 10])
def test_every_grey_has_mid_chroma(depth: int) -> None:
    mid = levels(depth)[2]
    assert {encode(depth, (v, v, v))[1:] for v in range(256)} == {(mid, mid)}


def test_black_and_white_map_to_the_limited_range_ends() -> None:
    assert encode(10, (255, 255, 255)) == (940, 512, 512)
    assert encode(10, (0, 0, 0)) == (64, 512, 512)
    assert encode(8, (255, 255, 255)) == (235, 128, 128)
    assert encode(8, (0, 0, 0)) == (16, 128, 128)
    assert decode(10, 940, 512, 512) == (255, 255, 255)
    assert decode(10, 64, 512, 512) == (0, 0, 0)
    assert decode(8, 235, 128, 128) == (255, 255, 255)
    assert decode(8, 16, 128, 128) == (0, 0, 0)
