"""streamlib.gpu.kernels: CUDA sources compile; torch references match the CPU oracles;
kernels match the references on a GPU."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch

from streamlib.gpu import kernel_refs as R
from streamlib.gpu import kernels as K
from streamlib.media.blend import Placed, composite_reference
from streamlib.media.smpte import render_smpte_bars
from streamlib.core.frames import VideoFrame
from streamlib.errors import FrameValidationError, UnavailableError

pytestmark = pytest.mark.timeout(120)
GEN = torch.Generator().manual_seed(4175)


def rand(*shape: int) -> torch.Tensor:
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=GEN)


# ------------------------------------------------------------------ sources compile

def test_kernel_files_are_the_shipped_sources() -> None:
    assert sorted(p.name for p in K.kernel_dir().glob("*.cu")) == sorted(K.KERNEL_FILES)
    assert "composite_rgb" in K.kernel_source("composite.cu")
    with pytest.raises(FileNotFoundError, match="found: color.cu"):
        K.kernel_source("nope.cu")


@pytest.mark.parametrize("name", K.KERNEL_FILES)
def test_nvcc_compiles_each_kernel(name: str, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc not found on PATH")
    ptx = tmp_path / f"{name}.ptx"
    res = subprocess.run([nvcc, "--ptx", "-arch=compute_75", "-fmad=false",
                          str(K.kernel_dir() / name), "-o", str(ptx)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert ".entry" in ptx.read_text()


@pytest.mark.parametrize("name", K.KERNEL_FILES)
def test_nvrtc_compiles_each_kernel(name: str) -> None:
    """The run-time compiler (what RawModule uses) accepts the same sources."""
    if importlib.util.find_spec("cupy") is None:
        pytest.skip("CuPy not installed (the [cuda] extra)")
    try:
        from cupy.cuda import nvrtc

        prog = nvrtc.createProgram(K.kernel_source(name), name, [], [])
    except Exception as exc:  # noqa: BLE001 - no libnvrtc here
        pytest.skip(f"NVRTC unavailable: {exc}")
    try:
        nvrtc.compileProgram(prog, ["-arch=compute_75", *K.NVRTC_OPTIONS])
    except nvrtc.NVRTCError:
        pytest.fail(nvrtc.getProgramLog(prog))
    assert b".entry" in nvrtc.getPTX(prog)


# ------------------------------------------------------------------ composite

def layer_set(n: int) -> list[Placed]:
    out: list[Placed] = []
    for i in range(n):
        h, w = 10 + 7 * i % 23, 15 + 11 * i % 31
        data = rand(h, w, 4 if i % 3 else 3)
        out.append((data, -6 + 9 * i % 70, -4 + 5 * i % 45, (0.0, 0.3, 0.5, 0.77, 1.0)[i % 5]))
    return out


@pytest.mark.parametrize("n_layers", [0, 1, 4, 11])
def test_composite_reference_parity(n_layers: int) -> None:
    layers = layer_set(n_layers)
    for base in (None, rand(40, 50, 3), rand(70, 90, 4)):
        want = composite_reference(64, 48, (12, 200, 7), layers, base)
        assert torch.equal(R.composite_ref(64, 48, (12, 200, 7), layers, base), want)
        assert torch.equal(K.composite(64, 48, (12, 200, 7), layers, base), want)


def test_composite_every_alpha_and_opacity() -> None:
    """All 256 alphas x a spread of opacities over all 256 destination values."""
    alpha = torch.arange(256, dtype=torch.uint8).view(1, 256, 1).expand(256, 256, 1)
    src = torch.cat([torch.full((256, 256, 3), 201, dtype=torch.uint8), alpha], dim=2)
    base = torch.arange(256, dtype=torch.uint8).view(256, 1, 1).expand(256, 256, 3)
    for opacity in (0.0, 0.1, 0.5, 0.999, 1.0):
        layers = [(src, 0, 0, opacity)]
        assert torch.equal(R.composite_ref(256, 256, (0, 0, 0), layers, base),
                           composite_reference(256, 256, (0, 0, 0), layers, base))


def test_composite_out_and_errors() -> None:
    out = torch.empty(48, 64, 3, dtype=torch.uint8)
    layers = layer_set(3)
    res = K.composite(64, 48, (1, 2, 3), layers, out=out)
    assert res is out and torch.equal(out, composite_reference(64, 48, (1, 2, 3), layers))
    with pytest.raises(FrameValidationError, match=r"layers must be \(h, w, 3\|4\) uint8"):
        K.composite(8, 8, layers=[(torch.zeros(2, 2, 2, dtype=torch.uint8), 0, 0, 1.0)])
    with pytest.raises(UnavailableError, match="backend='cuda' needs a CUDA tensor"):
        K.composite(8, 8, layers=[(rand(2, 2, 4), 0, 0, 1.0)], backend="cuda")
    with pytest.raises(ValueError, match="backend must be"):
        K.composite(8, 8, layers=[(rand(2, 2, 4), 0, 0, 1.0)], backend="gl")  # type: ignore[arg-type]


# ------------------------------------------------------------------ 4:2:0

def bt709_float(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unquantised BT.709 limited-range Y, Cb, Cr (float64) of full-range RGB."""
    x = rgb.double() / 255
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    return 16 + 219 * y, 128 + 224 * (b - y) / 1.8556, 128 + 224 * (r - y) / 1.5748


def test_nv12_is_within_half_a_code_of_the_float_formula() -> None:
    """Rounding plus 16-bit coefficient quantisation: at most 0.51 codes off the exact value."""
    rgb = rand(256, 512, 3)
    nv12 = K.rgb_to_nv12(rgb)
    y, cb, cr = bt709_float(rgb)
    assert (nv12[:256].double() - y).abs().max() <= 0.51
    mean = (rgb.double().view(128, 2, 256, 2, 3).mean(dim=(1, 3)) + 0.0)
    _, mcb, mcr = bt709_float(mean)
    uv = nv12[256:].view(128, 256, 2).double()
    assert (uv[..., 0] - mcb).abs().max() <= 0.51
    assert (uv[..., 1] - mcr).abs().max() <= 0.51


def test_i420_holds_the_same_samples_as_nv12() -> None:
    rgb = rand(32, 48, 4)  # RGBA: alpha ignored
    nv12, i420 = K.rgb_to_nv12(rgb), K.rgb_to_i420(rgb)
    assert torch.equal(nv12[:32], i420[:32])
    uv = nv12[32:].view(16, 24, 2)
    flat = i420.view(-1)
    assert torch.equal(flat[32 * 48:32 * 48 + 384], uv[..., 0].reshape(-1))
    assert torch.equal(flat[32 * 48 + 384:], uv[..., 1].reshape(-1))
    assert torch.equal(K.yuv420_to_rgb(nv12), K.yuv420_to_rgb(i420, nv12=False))
    VideoFrame(nv12, timestamp_ns=0, format="nv12")
    VideoFrame(i420, timestamp_ns=0, format="yuv420p")


def test_yuv420_round_trip_of_flat_blocks() -> None:
    """A 2x2 block of one colour comes back within 2 codes (8-bit limited range)."""
    colours = rand(64, 64, 3)
    rgb = colours.repeat_interleave(2, 0).repeat_interleave(2, 1)
    back = K.yuv420_to_rgb(K.rgb_to_nv12(rgb))
    assert int((back.int() - rgb.int()).abs().max()) <= 2


def test_yuv420_errors_and_out() -> None:
    with pytest.raises(ValueError, match="even width and height"):
        K.rgb_to_nv12(rand(3, 4, 3))
    with pytest.raises(ValueError, match=r"\(H, W, 3\|4\) uint8"):
        K.rgb_to_nv12(torch.zeros(4, 4, 3))
    with pytest.raises(ValueError, match=r"\(H\*3/2, W\) uint8"):
        K.yuv420_to_rgb(torch.zeros(5, 4, dtype=torch.uint8))
    out = torch.empty(6, 4, dtype=torch.uint8)
    assert K.rgb_to_nv12(rand(4, 4, 3), out=out) is out
    with pytest.raises(ValueError, match="out must be a contiguous"):
        K.rgb_to_nv12(rand(4, 4, 3), out=torch.empty(5, 4, dtype=torch.uint8))


# ------------------------------------------------------------------ pgroups

@pytest.fixture
def pgroup() -> Any:
    """The other CPU implementation (streamlib.net.pgroup), for byte parity."""
    return pytest.importorskip("streamlib.net.pgroup", reason="streamlib.net.pgroup not present")


def pgroup_frames() -> list[torch.Tensor]:
    ramp = torch.arange(256, dtype=torch.uint8)
    grid = torch.stack(torch.meshgrid(ramp, ramp, indexing="ij"), dim=-1)
    extremes = torch.cat([grid, ramp.flip(0).view(1, 256, 1).expand(256, 256, 1)], dim=-1)
    return [rand(36, 64, 3), rand(7, 18, 4), extremes.contiguous(),
            torch.zeros(2, 2, 3, dtype=torch.uint8), torch.full((2, 4, 3), 255, dtype=torch.uint8)]


def test_pgroup_bytes_match_the_cpu_implementation(pgroup: Any) -> None:
    for rgb in pgroup_frames():
        mine = K.rgb_to_pgroup422_10(rgb)
        assert mine.shape == (rgb.shape[0], rgb.shape[1] // 2 * 5)
        theirs = pgroup.rgb_to_ycbcr422_10(rgb)
        assert mine.reshape(-1).numpy().tobytes() == theirs.tobytes()


def test_pgroup_unpack_matches_the_cpu_implementation(pgroup: Any) -> None:
    for rgb in pgroup_frames():
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        buf = pgroup.rgb_to_ycbcr422_10(rgb)
        want = pgroup.unpack_ycbcr422_10(buf, w, h)
        got = K.pgroup422_10_to_rgb(torch.from_numpy(buf), w, h)
        assert got.numpy().tobytes() == want.tobytes()
    noise = rand(4 * 5 * 3)  # any bytes, including out-of-range codes, decode the same
    assert K.pgroup422_10_to_rgb(noise, 4, 3).numpy().tobytes() == \
        pgroup.unpack_ycbcr422_10(noise.numpy(), 4, 3).tobytes()


def test_pgroup_field_layout() -> None:
    """Cb Y0 Cr Y1, 10 bits each, most significant bit first (RFC 4175)."""
    white = K.rgb_to_pgroup422_10(torch.full((1, 2, 3), 255, dtype=torch.uint8)).view(-1)
    value = int.from_bytes(bytes(white.tolist()), "big")
    assert [(value >> s) & 0x3FF for s in (30, 20, 10, 0)] == [512, 940, 512, 940]
    with pytest.raises(ValueError, match="even width"):
        K.rgb_to_pgroup422_10(rand(2, 3, 3))
    with pytest.raises(ValueError, match="expected >= 10 uint8 bytes"):
        K.pgroup422_10_to_rgb(torch.zeros(9, dtype=torch.uint8), 4, 1)


# ------------------------------------------------------------------ SMPTE bars

@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (640, 360), (100, 50)])
@pytest.mark.parametrize("color_range", ["limited", "full"])
def test_smpte_bars_match_the_pattern_actor(size: tuple[int, int], color_range: str) -> None:
    w, h = size
    assert torch.equal(K.smpte_bars(w, h, color_range), render_smpte_bars(w, h, color_range))


def test_smpte_table_describes_the_layout() -> None:
    """The table patterns.cu reads, evaluated here in Python, gives the same image."""
    for w, h, rng in ((1920, 1080, "limited"), (333, 77, "full")):
        ends, table = K.smpte_table(w, h, rng)
        img = torch.empty(h, w, 3, dtype=torch.uint8)
        bands = [0, *ends, h]
        for band in range(4):
            for x0, x1, r, g, b in table[band].tolist():
                if x0 >= w:
                    continue
                rows = slice(bands[band], bands[band + 1])
                if r < 0:
                    n = x1 - x0
                    i = torch.arange(n, dtype=torch.float64)
                    v = torch.floor(i * (b - g) / max(1, n - 1) + g + 0.5).to(torch.uint8)
                    img[rows, x0:x1] = v.view(1, n, 1)
                else:
                    img[rows, x0:x1] = torch.tensor([r, g, b], dtype=torch.uint8)
        assert torch.equal(img, render_smpte_bars(w, h, rng))
    with pytest.raises(ValueError, match="color_range"):
        K.smpte_table(640, 360, "video")
    with pytest.raises(ValueError, match="larger frame"):
        K.smpte_bars(20, 6)


# ------------------------------------------------------------------ on a GPU (kernel vs reference)

def cuda(t: torch.Tensor) -> torch.Tensor:
    return t.to("cuda")


needs_cupy = pytest.mark.skipif(importlib.util.find_spec("cupy") is None,
                                reason="CuPy not installed (the [cuda] extra)")


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("n_layers", [0, 1, 4, 11])
def test_gpu_composite_is_bit_exact(n_layers: int) -> None:
    layers = [(cuda(d), x, y, o) for d, x, y, o in layer_set(n_layers)] or [
        (cuda(rand(1, 1, 4)), -5, -5, 1.0)]
    for base in (None, cuda(rand(40, 50, 3)), cuda(rand(70, 90, 4))):
        got = K.composite(64, 48, (12, 200, 7), layers, base, backend="cuda")
        assert got.is_cuda
        assert torch.equal(got.cpu(), R.composite_ref(64, 48, (12, 200, 7), layers, base).cpu())


@pytest.mark.gpu
@needs_cupy
def test_gpu_colour_kernels_are_bit_exact() -> None:
    for rgb in (rand(1080, 1920, 3), rand(36, 64, 4)):
        g = cuda(rgb)
        for fn in (K.rgb_to_nv12, K.rgb_to_i420, K.rgb_to_pgroup422_10):
            assert torch.equal(fn(g, backend="cuda").cpu(), fn(rgb, backend="torch"))
        nv12, i420 = K.rgb_to_nv12(rgb), K.rgb_to_i420(rgb)
        assert torch.equal(K.yuv420_to_rgb(cuda(nv12), backend="cuda").cpu(), K.yuv420_to_rgb(nv12))
        assert torch.equal(K.yuv420_to_rgb(cuda(i420), False, backend="cuda").cpu(),
                           K.yuv420_to_rgb(i420, False))
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        buf = K.rgb_to_pgroup422_10(rgb)
        assert torch.equal(K.pgroup422_10_to_rgb(cuda(buf), w, h, backend="cuda").cpu(),
                           K.pgroup422_10_to_rgb(buf, w, h))


@pytest.mark.gpu
@needs_cupy
@pytest.mark.parametrize("size", [(1920, 1080), (1280, 720), (100, 50)])
def test_gpu_smpte_bars_are_exact(size: tuple[int, int]) -> None:
    w, h = size
    for rng in ("limited", "full"):
        got = K.smpte_bars(w, h, rng, device="cuda", backend="cuda")
        assert torch.equal(got.cpu(), render_smpte_bars(w, h, rng))


@pytest.mark.gpu
@needs_cupy
def test_gpu_kernels_run_on_the_current_stream() -> None:
    """A kernel queued on a side stream orders after that stream's earlier work."""
    side = torch.cuda.Stream()  # type: ignore[no-untyped-call]
    rgb = cuda(rand(1080, 1920, 3))
    with torch.cuda.stream(side):
        src = torch.empty_like(rgb)
        big = torch.randn(2048, 2048, device="cuda")
        (big @ big @ big).sum()
        src.copy_(rgb)
        out = K.rgb_to_nv12(src, backend="cuda")
    side.synchronize()
    assert torch.equal(out.cpu(), K.rgb_to_nv12(rgb.cpu()))


# ------------------------------------------------------------------ kernels emulated on the CPU
# The .cu files are plain C++ apart from a few CUDA keywords, so g++ can build them for
# the host with the keywords defined away. The emulator runs every "thread" of a launch
# in order, and replaces streamlib.gpu.kernels._launch: the real argument marshalling (pointers,
# pitches, coefficients, grid sizes, 8-layer chaining) then drives the real kernel bodies.
# This checks the kernels' logic without a GPU; it cannot check NVRTC, launches or streams.

EMU_HEADER = r"""
#include <cmath>
#define __global__
#define __device__
#define __forceinline__ inline
struct emu_uint3 { unsigned int x, y, z; };
extern "C" { emu_uint3 blockIdx, blockDim, threadIdx; }
extern "C" void emu_set(unsigned bx, unsigned by, unsigned tx, unsigned ty, unsigned dx, unsigned dy) {
    blockIdx = {bx, by, 0}; threadIdx = {tx, ty, 0}; blockDim = {dx, dy, 1};
}
"""


# CuPy passes numpy scalars by value at their own width, so a np.int32 where the kernel
# declares unsigned long long would shift every later argument on a real GPU. The emulator
# therefore checks each launch's argument types against the declared parameters.
EMU_TYPES = {"unsigned long long": "uint64", "int": "int32"}


def kernel_signatures(gxx: str, path: Path) -> dict[str, list[str]]:
    """Parameter numpy dtypes of each ``extern "C"`` kernel in ``path`` (macros expanded)."""
    res = subprocess.run([gxx, "-E", "-P", "-x", "c++", "-D__global__=", "-D__device__=",
                          "-D__forceinline__=inline", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    sigs = {}
    for m in re.finditer(r'extern "C" void (\w+)\s*\(([^)]*)\)', res.stdout):
        params = [" ".join(p.split()[:-1]) for p in m.group(2).split(",")]
        unknown = [p for p in params if p not in EMU_TYPES]
        assert not unknown, f"{path.name}:{m.group(1)}: unsupported parameter types {unknown}"
        sigs[m.group(1)] = [EMU_TYPES[p] for p in params]
    return sigs


def test_kernel_signatures_are_parsed() -> None:
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found")
    sigs = kernel_signatures(gxx, K.kernel_dir() / "composite.cu")
    assert list(sigs) == ["composite_rgb"]
    assert len(sigs["composite_rgb"]) == 12 + 8 * K.MAX_LAYERS
    assert sigs["composite_rgb"][:4] == ["uint64", "int32", "int32", "uint64"]


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Any:
    import ctypes

    import numpy as np

    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ not found: cannot emulate the kernels")
    tmp = tmp_path_factory.mktemp("emu")
    (tmp / "emu.h").write_text(EMU_HEADER)
    libs, sigs = {}, {}
    for name in K.KERNEL_FILES:
        so = tmp / f"{name}.so"
        res = subprocess.run([gxx, "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-x", "c++",
                              "-include", str(tmp / "emu.h"), str(K.kernel_dir() / name),
                              "-o", str(so)], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        libs[name] = ctypes.CDLL(str(so))
        sigs[name] = kernel_signatures(gxx, K.kernel_dir() / name)
    ctype = {"uint64": ctypes.c_ulonglong, "int32": ctypes.c_int}
    launched: list[str] = []

    def launch(file: str, name: str, device: torch.device, grid: tuple[int, int],
               block: tuple[int, int], args: tuple[Any, ...]) -> None:
        declared = sigs[file][name]
        passed = [a.dtype.name if isinstance(a, np.generic) else type(a).__name__ for a in args]
        assert passed == declared, f"{file}:{name}: launched with {passed}, declared {declared}"
        lib = libs[file]
        fn = getattr(lib, name)
        fn.restype = None
        fn.argtypes = [ctype[t] for t in declared]
        values = [int(a) for a in args]
        for by in range(grid[1]):
            for bx in range(grid[0]):
                for ty in range(block[1]):
                    for tx in range(block[0]):
                        lib.emu_set(bx, by, tx, ty, block[0], block[1])
                        fn(*values)
        launched.append(name)

    launch.launched = launched  # type: ignore[attr-defined]
    return launch


@pytest.fixture
def on_emulator(emulated: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(K, "_launch", emulated)
    monkeypatch.setattr(K, "_use_cuda", lambda tensor, backend, what: True)
    emulated.launched.clear()
    yield
    assert emulated.launched, "the test never reached a kernel launch"


@pytest.mark.parametrize("n_layers", [0, 1, 3, 11])
def test_emulated_composite_kernel(on_emulator: Any, n_layers: int) -> None:
    layers = layer_set(n_layers)
    base_opts = [rand(40, 50, 3), rand(70, 90, 4), None] if n_layers else [rand(40, 50, 3)]
    for base in base_opts:
        strided = [(d.transpose(0, 1).contiguous().transpose(0, 1), x, y, o)
                   for d, x, y, o in layers]  # non-contiguous rows: the pitch path
        got = K.composite(64, 48, (12, 200, 7), strided, base)
        assert torch.equal(got, composite_reference(64, 48, (12, 200, 7), layers, base))


def test_emulated_colour_kernels(on_emulator: Any) -> None:
    for rgb in (rand(12, 20, 3), rand(6, 8, 4)):
        for fn, ref in ((K.rgb_to_nv12, lambda t: R.rgb_to_yuv420_ref(t, True)),
                        (K.rgb_to_i420, lambda t: R.rgb_to_yuv420_ref(t, False)),
                        (K.rgb_to_pgroup422_10, R.rgb_to_pgroup422_10_ref)):
            assert torch.equal(fn(rgb), ref(rgb))
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        for nv12 in (True, False):
            yuv = R.rgb_to_yuv420_ref(rgb, nv12)
            assert torch.equal(K.yuv420_to_rgb(yuv, nv12), R.yuv420_to_rgb_ref(yuv, nv12))
        buf = rand(h * w // 2 * 5)  # arbitrary bytes, out-of-range codes included
        assert torch.equal(K.pgroup422_10_to_rgb(buf, w, h), R.pgroup422_10_to_rgb_ref(buf, w, h))


def test_emulated_smpte_kernel(on_emulator: Any) -> None:
    K._tables.clear()
    for w, h, rng in ((128, 24, "limited"), (100, 50, "full")):
        assert torch.equal(K.smpte_bars(w, h, rng), render_smpte_bars(w, h, rng))
    K._tables.clear()


def test_emulated_kernel_drives_the_compositor_actor(on_emulator: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The CompositorActor's CUDA route (``composite_into`` -> one kernel pass with the
    output as its own base) gives the reference image."""
    from streamlib import Runtime
    from streamlib.actors import blending
    from streamlib.actors.compositor import CompositorActor

    monkeypatch.setattr(blending, "cuda_kernel_available", lambda out: True)
    layers = layer_set(10)
    base = rand(48, 64, 3)
    with Runtime():
        comp = CompositorActor(64, 48, background=(12, 200, 7))
        for i, (_, x, y, opacity) in enumerate(layers):
            comp.add_layer(f"l{i}", x=x, y=y, opacity=opacity)
        frames = {f"l{i}": VideoFrame(d, timestamp_ns=0, format="rgba" if d.shape[2] == 4
                                      else "rgb24") for i, (d, *_) in enumerate(layers)}
        got = comp.render(VideoFrame(base, timestamp_ns=0), frames)
    assert torch.equal(got, composite_reference(64, 48, (12, 200, 7), layers, base))
