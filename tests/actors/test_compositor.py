"""CompositorActor: exact blend values, clipping, z-order, scale, runtime layer changes,
backend parity (numba and torch) with composite_reference, errors, example, benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import streamlib.actors.compositor as compositor
from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame, VirtualClock
from streamlib.actors.blending import composite_into, numba_available, resize_layer
from streamlib.actors.compositor import CompositorActor, parse_color
from streamlib.media.blend import composite_reference, opacity_code
from streamlib.actors.patterns import TestPatternActor
from streamlib.clocks import deadline_ns
from streamlib.testing import ActorHarness

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = [
    pytest.param("numba", marks=pytest.mark.skipif(not numba_available(), reason="numba missing")),
    "torch",
]


def vf(data: torch.Tensor, n: int = 0) -> VideoFrame:
    return VideoFrame(data, timestamp_ns=n * 1000, frame_number=n,
                      format="rgba" if data.shape[2] == 4 else "rgb24")


def solid(h: int, w: int, value: tuple[int, ...]) -> torch.Tensor:
    return torch.tensor(value, dtype=torch.uint8).expand(h, w, len(value)).contiguous()


def px(img: torch.Tensor, x: int, y: int) -> tuple[int, ...]:
    return tuple(img[y, x].tolist())


@pytest.fixture
def rt() -> object:
    with Runtime() as runtime:
        yield runtime


# -- exact values ---------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_alpha_0_255_and_128_round_exactly(rt: Runtime, backend: str) -> None:
    comp = CompositorActor(8, 4, (100, 50, 200), backend=backend)  # type: ignore[arg-type]
    comp.add_layer("a0", x=0)
    comp.add_layer("a255", x=2)
    comp.add_layer("a128", x=4)
    comp.add_layer("rgb_half", x=6, opacity=0.5)
    out = comp.render(None, {
        "a0": vf(solid(4, 2, (200, 0, 255, 0))),
        "a255": vf(solid(4, 2, (200, 0, 255, 255))),
        "a128": vf(solid(4, 2, (200, 0, 255, 128))),
        "rgb_half": vf(solid(4, 2, (200, 0, 255))),
    })
    assert px(out, 0, 0) == (100, 50, 200)  # alpha 0: background untouched
    assert px(out, 2, 0) == (200, 0, 255)   # alpha 255: the layer
    # round((200*128 + 100*127)/255) = round(150.2) = 150; (50*127)/255 = 24.9 -> 25;
    # (255*128 + 200*127)/255 = 227.6 -> 228
    assert px(out, 4, 3) == (150, 25, 228)
    # opacity 0.5 -> op = floor(127.5 + 0.5) = 128: the same as alpha 128
    assert opacity_code(0.5) == 128
    assert px(out, 7, 1) == (150, 25, 228)


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_src_dst_alpha_combination_matches_the_rule(backend: str) -> None:
    """All 256**3 (src, dst, alpha) triples: src = row, alpha = column, dst cycles by channel."""
    s = torch.arange(256, dtype=torch.uint8).view(256, 1).expand(256, 256)
    a = torch.arange(256, dtype=torch.uint8).view(1, 256).expand(256, 256)
    layer = torch.stack([s, s, s, a], -1).contiguous()
    src, alpha = s.double().unsqueeze(-1), a.double().unsqueeze(-1)
    for d0 in range(0, 256, 3):
        dst = torch.tensor([d0, min(d0 + 1, 255), min(d0 + 2, 255)], dtype=torch.uint8)
        out = dst.expand(256, 256, 3).clone()
        composite_into(out, [(layer, 0, 0, 1.0)], backend)
        want = torch.floor((src * alpha + dst.double() * (255 - alpha)) / 255 + 0.5)
        assert torch.equal(out, want.to(torch.uint8)), d0


def random_layers(gen: torch.Generator, width: int, height: int, count: int
                  ) -> list[tuple[torch.Tensor, int, int, float]]:
    layers = []
    for i in range(count):
        h = int(torch.randint(1, height + 20, (1,), generator=gen))
        w = int(torch.randint(1, width + 20, (1,), generator=gen))
        ch = 4 if i % 3 else 3
        data = torch.randint(0, 256, (h, w, ch), dtype=torch.uint8, generator=gen)
        if ch == 4:  # bands of exact 0 and 255 alpha among random alpha
            data[: h // 4, :, 3] = 0
            data[h // 4: h // 2, :, 3] = 255
        x = int(torch.randint(-w, width + 1, (1,), generator=gen))
        y = int(torch.randint(-h, height + 1, (1,), generator=gen))
        opacity = [1.0, 0.5, 0.0, 0.731, 1 / 255][i % 5]
        layers.append((data, x, y, opacity))
    return layers


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("seed", range(6))
def test_fast_paths_are_bit_exact_with_the_reference(backend: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    width, height = 123, 77
    layers = random_layers(gen, width, height, 7)
    layers.append((layers[1][0], -5, -5, 1.0))  # partly off the top-left
    layers.append((layers[2][0], width - 3, height - 2, 1.0))  # hanging off bottom-right
    layers.append((layers[1][0], width, 0, 1.0))  # entirely outside
    base = torch.randint(0, 256, (height, width, 3), dtype=torch.uint8, generator=gen)
    want = composite_reference(width, height, (1, 2, 3), layers, base=base)
    out = base.clone()
    composite_into(out, layers, backend)
    assert torch.equal(out, want)


def test_float32_division_used_by_numba_is_exact() -> None:
    x = np.arange(0, 255 * 255 + 1, dtype=np.float32)
    fast = ((x + np.float32(127.5)) * np.float32(1 / 255)).astype(np.int32)
    assert (fast == np.floor(np.arange(0, 255 * 255 + 1) / 255 + 0.5)).all()
    t = np.arange(0, 255 * 255 + 1, dtype=np.int64) + 128
    assert ((t + (t >> 8)) >> 8 == fast).all()  # the torch path's integer form agrees


# -- placement --------------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_clipping_at_negative_and_far_edges(rt: Runtime, backend: str) -> None:
    comp = CompositorActor(20, 10, "#000000", backend=backend)  # type: ignore[arg-type]
    comp.add_layer("tl", x=-3, y=-2)
    comp.add_layer("br", x=17, y=8)
    comp.add_layer("out", x=25, y=0)
    layer = torch.zeros(5, 5, 4, dtype=torch.uint8)
    layer[..., 3] = 255
    layer[..., 0] = torch.arange(5, dtype=torch.uint8).view(1, 5) * 10  # red = 10 * column
    layer[..., 1] = torch.arange(5, dtype=torch.uint8).view(5, 1) * 10  # green = 10 * row
    frames = {"tl": vf(layer), "br": vf(layer), "out": vf(layer)}
    out = comp.render(None, frames)
    assert px(out, 0, 0) == (30, 20, 0)   # layer pixel (3, 2)
    assert px(out, 1, 2) == (40, 40, 0)   # layer pixel (4, 4)
    assert px(out, 2, 0) == (0, 0, 0)     # right of the clipped layer
    assert px(out, 17, 8) == (0, 0, 0) and px(out, 19, 9) == (20, 10, 0)
    assert int(out.bool().any(-1).sum()) == 2 * 3 + 3 * 2 - 1  # nothing else drawn


def test_z_order_then_insertion_order_and_update(rt: Runtime) -> None:
    comp = CompositorActor(4, 4)
    comp.add_layer("red", z=1)
    comp.add_layer("green", z=0)
    comp.add_layer("blue", z=1)  # same z as red, added later: drawn after it
    frames = {"red": vf(solid(4, 4, (255, 0, 0))), "green": vf(solid(4, 4, (0, 255, 0))),
              "blue": vf(solid(2, 2, (0, 0, 255)))}
    out = comp.render(None, frames)
    assert px(out, 0, 0) == (0, 0, 255) and px(out, 3, 3) == (255, 0, 0)
    assert [s.name for s in comp.layers()] == ["green", "red", "blue"]
    comp.update_layer("green", z=5)
    out = comp.render(None, frames)
    assert px(out, 0, 0) == (0, 255, 0) and px(out, 3, 3) == (0, 255, 0)


def test_opacity_on_rgb_and_rgba(rt: Runtime) -> None:
    comp = CompositorActor(2, 1, (0, 0, 0), layers={"a": {"opacity": 0.25}, "b": {"x": 1, "opacity": 0.25}})
    out = comp.render(None, {"a": vf(solid(1, 1, (255, 255, 255))),
                             "b": vf(solid(1, 1, (255, 255, 255, 128)))})
    # op = floor(63.75 + 0.5) = 64; RGB: a = 64 -> 64; RGBA: a = round(128*64/255) = 32 -> 32
    assert px(out, 0, 0) == (64, 64, 64) and px(out, 1, 0) == (32, 32, 32)


def test_scale_resizes_once_per_input_tensor(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    real = resize_layer

    def counting(data: torch.Tensor, scale: float, interpolation: str = "bilinear") -> torch.Tensor:
        calls.append(scale)
        return real(data, scale, interpolation)

    monkeypatch.setattr(compositor, "resize_layer", counting)
    comp = CompositorActor(16, 16, interpolation="nearest")
    comp.add_layer("logo", x=2, y=3, scale=2.0)
    data = torch.zeros(3, 4, 3, dtype=torch.uint8)
    data[:, :2] = 200  # left half bright
    frame = vf(data)
    out = comp.render(None, {"logo": frame})
    assert bool((out[3:9, 2:6] == 200).all()) and bool((out[3:9, 6:10] == 0).all())
    assert px(out, 10, 3) == (0, 0, 0) and px(out, 2, 9) == (0, 0, 0)  # 8x6 exactly
    comp.render(None, {"logo": vf(data, 1)})  # a new frame sharing the same tensor
    assert len(calls) == 1
    comp.update_layer("logo", scale=0.5)
    out = comp.render(None, {"logo": frame})
    assert len(calls) == 2 and px(out, 2, 3) == (200, 200, 200) and px(out, 4, 3) == (0, 0, 0)
    bilinear = CompositorActor(16, 16, layers={"logo": {"scale": 1.5}})
    out = bilinear.render(None, {"logo": frame})  # 4x3 -> 6x5 (4.5 rounds up)
    assert px(out, 0, 4) == (200, 200, 200) and px(out, 5, 4) == (0, 0, 0)
    assert px(out, 0, 5) == (0, 0, 0) and px(out, 6, 0) == (0, 0, 0)
    assert 0 < px(out, 2, 0)[0] < 200 or 0 < px(out, 3, 0)[0] < 200  # interpolated edge
    assert resize_layer(data, 1.5).shape == (5, 6, 3)


def test_background_is_uploaded_once_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    # "meta" stands in for a GPU (any device other than the host background's): each
    # Tensor.to onto it would be a blocking host->device copy every frame.
    uploads: list[str] = []
    real_to = torch.Tensor.to

    def counting_to(self: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        uploads.append(str(args[0]) if args else str(kwargs.get("device")))
        return real_to(self, *args, **kwargs)  # type: ignore[arg-type]

    comp = CompositorActor(8, 4, background=(10, 20, 30))
    comp.device = torch.device("meta")
    monkeypatch.setattr(torch.Tensor, "to", counting_to)
    outs = [comp.render() for _ in range(3)]
    assert uploads == ["meta"]
    assert [o.device.type for o in outs] == ["meta"] * 3 and outs[0].shape == (4, 8, 3)


def test_missing_layer_and_background_frames(rt: Runtime) -> None:
    comp = CompositorActor(6, 4, "#102030", layers={"empty": {}, "full": {"x": 4}})
    out = comp.render(None, {"full": vf(solid(4, 4, (9, 9, 9)))})
    assert px(out, 0, 0) == (16, 32, 48) and px(out, 5, 3) == (9, 9, 9)
    small_bg = vf(solid(2, 3, (1, 2, 3, 0)))  # RGBA background: alpha ignored, clipped/filled
    out = comp.render(small_bg, {})
    assert px(out, 2, 1) == (1, 2, 3) and px(out, 3, 1) == (16, 32, 48) and px(out, 0, 2) == (16, 32, 48)
    big_bg = vf(torch.full((9, 9, 3), 7, dtype=torch.uint8))
    assert bool((comp.render(big_bg, {}) == 7).all())


def test_inputs_are_never_modified_and_outputs_are_fresh(rt: Runtime) -> None:
    comp = CompositorActor(32, 32, layers={"a": {"opacity": 0.6}, "b": {"x": 5}})
    gen = torch.Generator().manual_seed(3)
    bg = torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=gen)
    la = torch.randint(0, 256, (20, 20, 4), dtype=torch.uint8, generator=gen)
    lb = torch.randint(0, 256, (20, 40, 3), dtype=torch.uint8, generator=gen)
    copies = [t.clone() for t in (bg, la, lb)]
    first = comp.render(vf(bg), {"a": vf(la), "b": vf(lb)})
    second = comp.render(vf(bg), {"a": vf(la), "b": vf(lb)})
    assert all(torch.equal(t, c) for t, c in zip((bg, la, lb), copies))
    assert torch.equal(first, second) and first.data_ptr() != second.data_ptr()


def test_bad_formats_raise(rt: Runtime) -> None:
    comp = CompositorActor(4, 4, layers={"x": {}}, actor_id="c")
    gray = VideoFrame(torch.zeros(4, 4, 1, dtype=torch.uint8), timestamp_ns=0, format="gray8")
    with pytest.raises(ValueError, match="CompositorActor 'c': layer 'x' must be rgb24 or rgba"):
        comp.render(None, {"x": gray})


# -- configuration errors ------------------------------------------------------------

def test_bad_parameters_name_the_compositor_and_field(rt: Runtime) -> None:
    comp = CompositorActor(8, 8, actor_id="comp")
    with pytest.raises(ValueError, match=r"CompositorActor 'comp': layer 'l': opacity must be in \[0, 1\], got 1.5"):
        comp.add_layer("l", opacity=1.5)
    with pytest.raises(ValueError, match="CompositorActor 'comp': layer 'l': scale"):
        comp.add_layer("l", scale=0)
    with pytest.raises(ValueError, match="CompositorActor 'comp': layer 'l': x must be an int"):
        comp.add_layer("l", x=1.5)  # type: ignore[arg-type]
    for reserved in ("background", "base"):
        with pytest.raises(ValueError, match="layer name must be an identifier other than 'base' and "
                                             f"'background', got '{reserved}'"):
            comp.add_layer(reserved)
    comp.add_layer("l")
    with pytest.raises(ValueError, match="CompositorActor 'comp': layer 'l' already exists"):
        comp.add_layer("l")
    with pytest.raises(KeyError, match=r"CompositorActor 'comp': no layer 'nope' \(layers: l\)"):
        comp.update_layer("nope", x=1)
    with pytest.raises(KeyError, match="no layer 'nope'"):
        comp.remove_layer("nope")
    with pytest.raises(ValueError, match="CompositorActor 'comp': layer 'l': unknown field 'alpha'"):
        comp.update_layer("l", alpha=0.5)
    with pytest.raises(ValueError, match="CompositorActor 'comp': layer 'l': opacity"):
        comp.update_layer("l", opacity=-0.1)
    assert comp.layers()[0].opacity == 1.0  # failed updates change nothing
    with pytest.raises(ValueError, match="CompositorActor 'b': background must be"):
        CompositorActor(8, 8, "#12345g", actor_id="b")
    with pytest.raises(ValueError, match="CompositorActor 't': trigger must be 'base', 'background' or a layer"):
        CompositorActor(8, 8, layers={"x": {}}, trigger="y", actor_id="t")
    with pytest.raises(ValueError, match=r"CompositorActor 'l2': layers\['x'\] must be a mapping"):
        CompositorActor(8, 8, layers={"x": 3}, actor_id="l2")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="CompositorActor 'l3': layer 'x': opacity"):
        CompositorActor(8, 8, layers={"x": {"opacity": 2}}, actor_id="l3")
    with pytest.raises(ValueError, match="CompositorActor: width and height"):
        CompositorActor(0, 8)
    with pytest.raises(ValueError, match="CompositorActor: interpolation"):
        CompositorActor(8, 8, interpolation="cubic")  # type: ignore[arg-type]
    assert parse_color("#0a0B0c") == (10, 11, 12) and parse_color([1, 2, 3]) == (1, 2, 3)


def test_backend_falls_back_to_torch_without_numba(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compositor, "numba_available", lambda: False)
    comp = CompositorActor(16, 8, layers={"a": {"x": -2, "opacity": 0.4}})
    assert comp.backend == "torch"
    layer = torch.randint(0, 256, (8, 8, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    want = composite_reference(16, 8, (0, 0, 0), [(layer, -2, 0, 0.4)])
    assert torch.equal(comp.render(None, {"a": vf(layer)}), want)
    with pytest.raises(ValueError, match="backend='numba' but numba is not installed"):
        CompositorActor(8, 8, backend="numba")


def test_without_numba_importable_auto_uses_torch() -> None:
    code = (
        "import sys; sys.modules['numba'] = None\n"
        "import torch\n"
        "from streamlib import Runtime, VideoFrame\n"
        "from streamlib.actors.compositor import CompositorActor\n"
        "from streamlib.media.blend import composite_reference\n"
        "layer = torch.randint(0, 256, (10, 40, 4), dtype=torch.uint8)\n"
        "with Runtime():\n"
        "    comp = CompositorActor(32, 16, layers={'a': {'x': -3, 'opacity': 0.7}})\n"
        "    out = comp.render(None, {'a': VideoFrame(layer, 0, format='rgba')})\n"
        "want = composite_reference(32, 16, (0, 0, 0), [(layer, -3, 0, 0.7)])\n"
        "print(comp.backend, torch.equal(out, want), 'numba' in sys.modules and sys.modules['numba'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["torch", "True", "None"]


# -- in a graph ----------------------------------------------------------------------

class Collect(Actor):
    def __init__(self, on_frame: object = None) -> None:
        super().__init__()
        self.inputs["video"] = StreamInput("video")
        self.frames: list[VideoFrame] = []
        self.on_frame = on_frame

    def process(self, tick: TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        if frame is not None:
            self.frames.append(frame)
            if callable(self.on_frame):
                self.on_frame(frame)


class Numbered(Actor):
    """A source writing solid frames whose value is the frame number."""

    def __init__(self, h: int, w: int, channels: int = 3, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.outputs["video"] = StreamOutput("video")
        self.shape = (h, w, channels)

    def process(self, tick: TimedTick) -> None:
        value = (tick.frame_number % 200,) * 3 + ((255,) if self.shape[2] == 4 else ())
        self.outputs["video"].write(VideoFrame(
            solid(self.shape[0], self.shape[1], value), timestamp_ns=tick.timestamp_ns,
            frame_number=tick.frame_number, format="rgba" if self.shape[2] == 4 else "rgb24"))


def test_graph_composites_once_per_background_frame() -> None:
    with Runtime() as rt:
        clock = VirtualClock(30, max_ticks=6)
        bg = TestPatternActor(64, 36, pattern="smpte_bars", clock=clock)
        logo = TestPatternActor(16, 16, pattern="solid", color=(1, 2, 3), clock=clock)
        comp = CompositorActor(64, 36)
        assert (bg >> comp) is comp and comp.inputs["background"].upstream is not None
        assert (logo >> comp.add_layer("logo", x=60, y=30)) is comp
        sink = comp >> Collect()
        assert rt.run(30)
    assert [f.frame_number for f in sink.frames] == list(range(6))  # not 12: one per trigger
    assert [f.timestamp_ns for f in sink.frames] == [deadline_ns(clock.rate, n, 0) for n in range(6)]
    last = sink.frames[-1].data
    assert px(last, 62, 32) == (1, 2, 3) and px(last, 59, 32) == px(bg._base, 59, 32)
    assert sink.frames[-1].format.value == "rgb24" and sink.frames[-1].shape == (36, 64, 3)


def test_base_input_composites_a_base_frame_with_one_layer() -> None:
    # the plan's base layer: 4x2 RGB base, a 2x2 RGBA layer at x=2 with alpha 128
    with ActorHarness(CompositorActor, 4, 2, "#ffffff", backend="torch", actor_id="c") as h:
        comp = h.actor
        assert comp.inputs["base"].name == "base" and comp.inputs["base"].kind == "video"
        port = comp.add_layer("logo", x=2)
        assert comp.inputs["logo"] is port
        h.feed("base", vf(solid(2, 4, (10, 20, 30)), n=7))
        h.feed("logo", vf(solid(2, 2, (200, 0, 255, 128))))
        (out,) = h.tick()["video"]
    # round((200*128 + 10*127)/255) = 105, round(20*127/255) = 10, round((255*128 + 30*127)/255) = 143
    assert [px(out.data, x, y) for y in (0, 1) for x in range(4)] == [
        (10, 20, 30), (10, 20, 30), (105, 10, 143), (105, 10, 143)] * 2
    assert (out.frame_number, out.timestamp_ns) == (7, 7000)  # the base frame triggered it


def test_base_and_background_are_one_base_layer() -> None:
    with ActorHarness(CompositorActor, 2, 1, actor_id="c") as h:
        h.feed("background", vf(solid(1, 2, (1, 2, 3))))
        (out,) = h.tick()["video"]
        assert px(out.data, 1, 0) == (1, 2, 3)  # today's name still carries the base layer
        h.feed("base", vf(solid(1, 2, (4, 5, 6))))
        with pytest.raises(KeyError, match="CompositorActor 'c': inputs 'base' and 'background' are the "
                                           "same base layer; connect or feed only one of them"):
            h.tick()
    with ActorHarness(CompositorActor, 2, 1, layers={"a": {}}, trigger="base") as h:
        h.feed("a", vf(solid(1, 1, (9, 9, 9))))
        assert h.tick()["video"] == []  # the trigger is the base layer: no base frame yet
        h.feed("base", vf(solid(1, 2, (4, 5, 6)), n=3))
        (out,) = h.tick()["video"]
        assert (px(out.data, 0, 0), px(out.data, 1, 0), out.frame_number) == ((9, 9, 9), (4, 5, 6), 3)


def test_first_layer_triggers_without_background() -> None:
    with Runtime() as rt:
        src = Numbered(4, 4, clock=VirtualClock(30, max_ticks=4))
        comp = CompositorActor(8, 8, "#ffffff")
        src >> comp.add_layer("only", x=2, y=2)
        sink = comp >> Collect()
        assert rt.run(30)
    assert [f.frame_number for f in sink.frames] == [0, 1, 2, 3]
    assert [px(f.data, 3, 3) for f in sink.frames] == [(n, n, n) for n in range(4)]
    assert px(sink.frames[0].data, 0, 0) == (255, 255, 255)


def test_own_clock_composites_every_tick() -> None:
    with Runtime() as rt:
        comp = CompositorActor(4, 4, (5, 6, 7), clock=VirtualClock(10, max_ticks=3))
        sink = comp >> Collect()
        assert rt.run(30)
    assert [f.frame_number for f in sink.frames] == [0, 1, 2]
    assert all(px(f.data, 1, 1) == (5, 6, 7) for f in sink.frames)
    with Runtime():
        assert CompositorActor(4, 4, fps=25).clock is not None


def test_add_and_remove_layers_while_the_graph_runs() -> None:
    comp_holder: list[CompositorActor] = []
    logo = solid(4, 4, (250, 0, 0, 255))
    errors: list[BaseException] = []

    def on_frame(frame: VideoFrame) -> None:  # runs on a runtime worker thread
        comp = comp_holder[0]
        try:
            if frame.frame_number == 3:
                port = comp.add_layer("logo", x=2, y=2)
                port.feed(vf(logo))
            elif frame.frame_number == 5:
                comp.update_layer("logo", x=6, opacity=0.5)
            elif frame.frame_number == 8:
                comp.remove_layer("logo")
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with Runtime() as rt:
        bg = Numbered(12, 12, clock=VirtualClock(30, max_ticks=12))
        comp = CompositorActor(12, 12)
        comp_holder.append(comp)
        bg >> comp
        sink = comp >> Collect(on_frame)
        assert rt.run(30)
    assert not errors, errors
    got = {f.frame_number: f.data for f in sink.frames}
    assert sorted(got) == list(range(12))
    for n, img in got.items():
        bgv = n % 200
        at_2, at_6 = px(img, 3, 3), px(img, 7, 3)
        if n <= 3 or n >= 9:
            assert at_2 == (bgv,) * 3 and at_6 == (bgv,) * 3, n
        elif n <= 5:
            assert at_2 == (250, 0, 0) and at_6 == (bgv,) * 3, n
        else:  # moved to x=6 at half opacity: a = 128
            half = (round((250 * 128 + bgv * 127) / 255), round(bgv * 127 / 255), round(bgv * 127 / 255))
            assert at_2 == (bgv,) * 3 and at_6 == half, n
    assert "logo" not in comp.inputs and comp.layers() == []


def test_concurrent_add_remove_is_safe() -> None:
    with Runtime() as rt:
        bg = Numbered(8, 8, clock=VirtualClock(1000, max_ticks=100))
        comp = CompositorActor(8, 8)
        bg >> comp
        sink = comp >> Collect()
        rt.start()
        stop = threading.Event()

        def churn() -> None:
            i = 0
            while not stop.is_set():
                port = comp.add_layer(f"l{i}", x=i % 8)
                port.feed(vf(solid(2, 2, (1, 1, 1, 255))))
                comp.update_layer(f"l{i}", y=3)
                comp.remove_layer(f"l{i}")
                i += 1

        worker = threading.Thread(target=churn)
        worker.start()
        finished = rt.wait(30)
        stop.set()
        worker.join(10)
    assert finished and not comp.failed, comp.error
    assert len(sink.frames) == 100


# -- GPU, example, benchmark ----------------------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["torch", "auto"])  # auto: the CUDA kernel with CuPy
def test_cuda_paths_match_the_reference(backend: str) -> None:
    gen = torch.Generator().manual_seed(11)
    layers = random_layers(gen, 200, 120, 11)  # > 8 layers: two chained kernel launches
    base = torch.randint(0, 256, (120, 200, 3), dtype=torch.uint8, generator=gen)
    out = base.cuda()
    composite_into(out, [(d.cuda(), x, y, o) for d, x, y, o in layers], backend)
    assert torch.equal(out.cpu(), composite_reference(200, 120, (0, 0, 0), layers, base=base))


class _GpuCollect(Actor):
    def __init__(self, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.inputs["video"] = StreamInput("video", slots=16)
        self.frames: list[VideoFrame] = []

    def process(self, tick: TimedTick) -> None:
        self.frames += self.inputs["video"].read_all_new()


@pytest.mark.gpu
def test_pattern_to_compositor_stays_on_the_gpu() -> None:
    with Runtime() as rt:
        bars = TestPatternActor(320, 180, pattern="smpte_bars", device="cuda",
                                clock=VirtualClock(30, max_ticks=6), actor_id="bars")
        box = TestPatternActor(320, 180, pattern="moving_box", device="cuda",
                               clock=VirtualClock(30, max_ticks=6), actor_id="box")
        comp = CompositorActor(320, 180, device="cuda")
        comp.add_layer("box", opacity=0.5)
        sink = _GpuCollect(dispatcher="gpu")
        bars >> comp.inputs["background"]
        box >> comp.inputs["box"]
        comp >> sink
        assert rt.staging is not None  # a CUDA machine: the runtime has its bridge
        assert rt.run(60)
        staged = rt.staging.stats()
    assert len(sink.frames) == 6 and all(f.data.is_cuda for f in sink.frames)
    assert staged.d2h_frames == 0 and staged.h2d_frames == 0
    with Runtime():  # never started: the actors only render
        ref_bars = TestPatternActor(320, 180, pattern="smpte_bars")
        ref_box = TestPatternActor(320, 180, pattern="moving_box")
    last = sink.frames[-1]
    expected = composite_reference(320, 180, (0, 0, 0), [(ref_box.render(last.frame_number), 0, 0,
                                                          0.5)], base=ref_bars.render(0))
    assert torch.equal(last.data.cpu(), expected)


def test_example_renders_and_prints_pixels() -> None:
    script = ROOT / "examples" / "compositor_layers.py"
    proc = subprocess.run([sys.executable, str(script), "12"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "composited 12 frames, last frame_number=11"
    assert "pixel (300, 150) = (16, 180, 16)" in lines[1]
    assert "pixel (100, 40) = (98, 98, 98)" in lines[2]  # round((16*128 + 180*127)/255)
    assert "= (16, 16, 16)" in lines[3] and "= (235, 235, 235)" in lines[4]


def test_benchmark_quick_writes_a_record(tmp_path: Path) -> None:
    from benchmarks import compositor as bench

    figures = bench.main(["--quick", "--out", str(tmp_path), "--cases", "small3"])
    record = json.loads((tmp_path / "compositor.json").read_text())
    assert record["name"] == "compositor" and record["figures"] == figures
    case = figures["small3"]
    assert case["bit_exact_torch"] and case["torch"]["count"] == 5
    if numba_available():  # no speed claim here: the machines are shared
        assert case["bit_exact_numba"] and case["ratio_naive_over_numba"] > 0


def test_offline_layers_are_frame_aligned_with_the_trigger() -> None:
    """On a virtual clock the composite waits for lagging layers (sync)."""
    import threading as _threading

    from streamlib import Actor, Runtime, StreamInput, StreamOutput, TimedTick, VideoFrame
    from streamlib.actors import CompositorActor, TestPatternActor

    bg_written: dict[int, _threading.Event] = {n: _threading.Event() for n in range(12)}

    class Background(TestPatternActor):
        def process(self, tick: TimedTick) -> None:
            super().process(tick)
            bg_written[tick.frame_number].set()

    class SlowLayer(Actor):
        """A 4x4 RGBA layer (red = frame number) written only after the background."""

        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)  # type: ignore[arg-type]
            self.outputs["video"] = StreamOutput("video")

        def process(self, tick: TimedTick) -> None:
            assert bg_written[tick.frame_number].wait(10), "background never wrote"
            data = torch.zeros((4, 4, 4), dtype=torch.uint8)
            data[..., 0] = tick.frame_number
            data[..., 3] = 255
            self.outputs["video"].write(VideoFrame(data, tick.timestamp_ns, tick.frame_number,
                                                   format="rgba", clock_id=tick.clock_id))

    class Grab(Actor):
        def __init__(self, **kw: object) -> None:
            super().__init__(**kw)  # type: ignore[arg-type]
            self.inputs["video"] = StreamInput("video")
            self.got: list[tuple[int, int]] = []

        def process(self, tick: TimedTick) -> None:
            f = self.inputs["video"].read_new()
            if f is not None:
                self.got.append((f.frame_number, int(f.data[0, 0, 0])))

    clock = VirtualClock(30, max_ticks=12)
    with Runtime() as rt:
        bg = Background(8, 8, pattern="solid", clock=clock)
        layer = SlowLayer(clock=clock)
        comp = CompositorActor(8, 8, layers={"top": {}})
        grab = Grab()
        bg >> comp.inputs["background"]
        layer >> comp.inputs["top"]
        comp >> grab
        assert rt.run(60)
    assert grab.got == [(n, n) for n in range(12)]
