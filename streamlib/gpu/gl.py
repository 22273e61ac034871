"""Small shared OpenGL helpers (moderngl): offscreen contexts and frame <-> texture.

Public API (kept deliberately small; ``ShaderActor`` and ``DisplayActor`` use it):

* :func:`create_offscreen_context` -- a headless OpenGL >= 3.3 core context,
  EGL first (works without a display on Mesa/llvmpipe and NVIDIA), then the
  platform default (GLX/WGL/CGL) when a display exists. Raises
  :class:`GLContextError` naming each backend tried and why it failed. With
  ``cuda_device`` (see :func:`interop_cuda_ordinal`) it opens EGL on that GPU.
* :func:`upload_texture` -- an (H, W[, C]) uint8 tensor/array into a texture,
  reusing the given texture when size and channel count match.
* :func:`read_framebuffer` -- a framebuffer's colour attachment back to a fresh
  top-down (H, W, C) uint8 tensor.
* :data:`FULLSCREEN_VERTEX_SHADER` -- a full-screen triangle drawn with
  ``vao.render(moderngl.TRIANGLES, vertices=3)`` and no vertex buffer; it
  passes ``out vec2 uv`` in [0, 1] to the fragment shader.

Orientation: GL convention throughout. ``uv``/``gl_FragCoord`` have y up, and
GL stores row 0 at the *bottom*, whereas frames are top-down (row 0 = top). So
``upload_texture`` flips by default (``texture(tex, uv)`` then shows the frame
upright, uv (0, 0) = bottom-left of the image) and ``read_framebuffer`` flips
back. Each flip is fused into a copy that is needed anyway (a contiguous upload
buffer; a fresh tensor per frame, since published frames are immutable).
Textures use NEAREST filtering and clamp-to-edge, so an upload followed by a
pixel-centre sample and a readback reproduces the bytes exactly.

Contexts are bound to the thread that created them: create, use and release a
context on one thread (actors holding one use ``dispatcher="dedicated"``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from streamlib.errors import ConfigError, FrameValidationError, StreamlibError

if TYPE_CHECKING:
    import moderngl  # loads when a context is created, not with `import streamlib`

__all__ = [
    "FULLSCREEN_VERTEX_SHADER", "GLContextError", "ShaderCompileError",
    "create_offscreen_context", "interop_cuda_ordinal", "read_framebuffer", "upload_texture",
]

FULLSCREEN_VERTEX_SHADER = """#version 330 core
out vec2 uv;
void main() {
    // One triangle covering the viewport: vertices (-1,-1), (3,-1), (-1,3).
    vec2 p = vec2(float((gl_VertexID << 1) & 2), float(gl_VertexID & 2));
    uv = p;
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""


class GLContextError(StreamlibError, RuntimeError):
    """No OpenGL context could be created (message lists each backend's failure)."""


class ShaderCompileError(StreamlibError, ValueError):
    """A GLSL program failed to compile or link; the message carries the GLSL log."""


def interop_cuda_ordinal(device: torch.device | None) -> int | None:
    """The CUDA GPU a GL context should be on for interop with ``device``: its ordinal
    when it is a CUDA device, else the current CUDA device (interop's default) when
    CUDA is available, else None."""
    if device is not None and device.type == "cuda" and device.index is not None:
        return device.index
    from streamlib.gpu.device import cuda_available

    return torch.cuda.current_device() if cuda_available() else None


def create_offscreen_context(require: int = 330, *,
                             cuda_device: int | None = None) -> moderngl.Context:
    """Create a standalone (windowless) moderngl context of GL version >= ``require``.

    EGL is tried first because it needs no display server (Mesa llvmpipe
    renders on the CPU in containers); with ``DISPLAY``/``WAYLAND_DISPLAY`` set
    the platform default backend is tried next. With ``cuda_device``, the EGL
    device of that CUDA ordinal is tried before EGL's default device, so CUDA-GL
    interop finds GL on the same GPU (see ``egl_devices``). The context is current
    on the calling thread; release it with ``ctx.release()`` on the same thread.

    Raises:
        GLContextError: every backend failed; the message names each one, its
            error, and the packages that usually fix it.
    """
    import moderngl

    from streamlib.gpu.egl_devices import egl_index_for_cuda

    attempts: list[tuple[str, dict[str, Any]]] = []
    index = None if cuda_device is None else egl_index_for_cuda(cuda_device)
    if index:  # index 0 is EGL's default device, tried next anyway
        attempts.append((f"EGL device {index} (CUDA {cuda_device})",
                         {"backend": "egl", "device_index": index}))
    attempts.append(("EGL", {"backend": "egl"}))
    has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                       or os.name == "nt")
    if has_display:
        attempts.append(("platform default (GLX/WGL/CGL)", {}))
    failures: list[str] = []
    for label, settings in attempts:
        try:
            return moderngl.create_context(standalone=True, require=require, **settings)
        except Exception as exc:  # noqa: BLE001 - moderngl/glcontext raise assorted types
            failures.append(f"{label}: {type(exc).__name__}: {exc}".strip())
    if not has_display:
        failures.append("platform default: skipped (no DISPLAY or WAYLAND_DISPLAY)")
    detail = "; ".join(failures)
    raise GLContextError(
        f"could not create an offscreen OpenGL {require // 100}.{require % 100 // 10} core "
        f"context ({detail}). On Debian/Ubuntu install Mesa EGL "
        "(apt: libegl1 libgl1-mesa-dri), or run under a display (xvfb-run)."
    )


def _as_image_array(image: torch.Tensor | npt.NDArray[Any]) -> npt.NDArray[np.uint8]:
    if isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.dtype != np.uint8 or arr.ndim != 3 or not 1 <= arr.shape[2] <= 4:
        raise FrameValidationError(
            f"upload_texture: expected an (H, W) or (H, W, 1..4) uint8 image, "
            f"got shape {tuple(arr.shape)} {arr.dtype}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise FrameValidationError(f"upload_texture: image is empty, shape {tuple(arr.shape)}")
    return arr


def upload_texture(ctx: moderngl.Context, image: torch.Tensor | npt.NDArray[Any],
                   texture: moderngl.Texture | None = None, *,
                   flip: bool = True) -> moderngl.Texture:
    """Upload a top-down (H, W[, C]) uint8 image into a texture and return it.

    ``texture`` is reused when its size, channel count and dtype match the
    image; otherwise it is released and a new one is created (NEAREST
    filtering, clamp-to-edge). ``flip=True`` (default) stores the image in GL
    row order (bottom row first) so ``texture(tex, uv)`` with y-up ``uv``
    shows it upright. CUDA tensors are copied to the CPU first.

    Raises:
        FrameValidationError: not a uint8 image with 1-4 channels, or empty.
    """
    import moderngl
    arr = _as_image_array(image)
    if flip:
        arr = arr[::-1]
    data = np.ascontiguousarray(arr)  # the one copy, and only when flipped or strided
    height, width, comps = data.shape
    if texture is not None and (
        texture.size != (width, height) or texture.components != comps or texture.dtype != "f1"
    ):
        texture.release()
        texture = None
    if texture is None:
        texture = ctx.texture((width, height), comps, data, alignment=1)
        texture.filter = (moderngl.NEAREST, moderngl.NEAREST)
        texture.repeat_x = False
        texture.repeat_y = False
    else:
        texture.write(data, alignment=1)
    return texture


def read_framebuffer(fbo: moderngl.Framebuffer, components: int = 4, *,
                     staging: npt.NDArray[np.uint8] | None = None,
                     flip: bool = True, out: torch.Tensor | None = None) -> torch.Tensor:
    """Read colour attachment 0 of ``fbo`` into a new (H, W, components) uint8 tensor.

    GL returns rows bottom-up; ``flip=True`` (default) returns them top-down.
    ``staging`` is an optional reusable (H, W, components) uint8 C-contiguous
    array for the raw read (avoids one allocation per frame); the result is
    always a fresh tensor that nothing else references, safe to publish, unless
    ``out`` (a CPU uint8 tensor of that shape, e.g. a pinned upload buffer) is
    given: then the result is written into ``out`` and ``out`` is returned.

    Raises:
        ConfigError: ``components`` not in 1..4, or ``staging`` / ``out`` of the wrong shape.
    """
    if components not in (1, 2, 3, 4):
        raise ConfigError(f"read_framebuffer: components must be 1..4, got {components!r}")
    width, height = fbo.size
    shape = (height, width, components)
    if staging is None:
        staging = np.empty(shape, np.uint8)
    elif staging.shape != shape or staging.dtype != np.uint8 or not staging.flags.c_contiguous:
        raise ConfigError(
            f"read_framebuffer: staging must be a C-contiguous uint8 array of shape {shape}, "
            f"got {staging.shape} {staging.dtype}"
        )
    if out is None:
        out = torch.empty(shape, dtype=torch.uint8)
    elif (tuple(out.shape) != shape or out.dtype != torch.uint8 or out.device.type != "cpu"
          or not out.is_contiguous()):
        raise ConfigError(
            f"read_framebuffer: out must be a contiguous CPU uint8 tensor of shape {shape}, "
            f"got {tuple(out.shape)} {out.dtype} on {out.device}"
        )
    fbo.read_into(staging, components=components, alignment=1)
    np.copyto(out.numpy(), staging[::-1] if flip else staging)
    return out
