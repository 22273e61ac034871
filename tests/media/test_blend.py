"""streamlib.media.blend: the 8-bit opacity factor, clipping, and the reference compositor."""

from __future__ import annotations

import torch

from streamlib.media.blend import clip_box, composite_reference, opacity_code


def solid(h: int, w: int, value: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.uint8).expand(h, w, len(value)).contiguous()


def test_opacity_code_rounds_halves_up() -> None:
    assert [opacity_code(o) for o in (0.0, 1 / 255, 0.5, 0.731, 1.0)] == [0, 1, 128, 186, 255]


def test_clip_box() -> None:
    assert clip_box(2, 1, 4, 3, 10, 8) == (2, 1, 0, 0, 4, 3)       # inside
    assert clip_box(-3, -2, 5, 4, 10, 8) == (0, 0, 3, 2, 2, 2)     # off the top-left
    assert clip_box(8, 6, 5, 4, 10, 8) == (8, 6, 0, 0, 2, 2)       # off the bottom-right
    assert clip_box(10, 0, 5, 4, 10, 8) is None                    # entirely outside
    assert clip_box(-5, 0, 5, 4, 10, 8) is None


def test_reference_values_worked_by_hand() -> None:
    out = composite_reference(8, 1, (100, 50, 200), [
        (solid(1, 2, (200, 0, 255, 0)), 0, 0, 1.0),
        (solid(1, 2, (200, 0, 255, 255)), 2, 0, 1.0),
        (solid(1, 2, (200, 0, 255, 128)), 4, 0, 1.0),
        (solid(1, 2, (200, 0, 255)), 6, 0, 0.5),
    ])
    assert out.dtype == torch.uint8 and out.shape == (1, 8, 3)
    # round((200*128 + 100*127)/255) = 150; round(50*127/255) = 25; round((255*128 + 200*127)/255) = 228
    assert [tuple(p) for p in out[0].tolist()] == [
        (100, 50, 200), (100, 50, 200), (200, 0, 255), (200, 0, 255),
        (150, 25, 228), (150, 25, 228), (150, 25, 228), (150, 25, 228)]


def test_reference_follows_the_rule_for_every_src_and_alpha() -> None:
    s = torch.arange(256, dtype=torch.uint8).view(256, 1).expand(256, 256)
    a = torch.arange(256, dtype=torch.uint8).view(1, 256).expand(256, 256)
    layer = torch.stack([s, s, s, a], -1).contiguous()
    src, alpha = s.double().unsqueeze(-1), a.double().unsqueeze(-1)
    for dst in ((0, 1, 2), (127, 128, 129), (253, 254, 255)):
        d = torch.tensor(dst, dtype=torch.float64)
        want = torch.floor((src * alpha + d * (255 - alpha)) / 255 + 0.5).to(torch.uint8)
        assert torch.equal(composite_reference(256, 256, dst, [(layer, 0, 0, 1.0)]), want), dst


def test_base_is_clipped_and_its_alpha_ignored() -> None:
    base = solid(4, 6, (9, 8, 7, 0))
    out = composite_reference(3, 5, (1, 2, 3), base=base)
    assert out.shape == (5, 3, 3)
    assert bool((out[:4] == torch.tensor((9, 8, 7), dtype=torch.uint8)).all())
    assert bool((out[4:] == torch.tensor((1, 2, 3), dtype=torch.uint8)).all())
