"""CUDA-OpenGL interop: CUDA tensors into GL textures and back, no host round trip.

Two paths with one method signature each, chosen once per GL context:

* ``"cuda-gl-interop"`` (:class:`CudaGLUploader`, :class:`CudaGLReader`): on a
  CUDA machine whose GL context runs on the NVIDIA driver of the same GPU.
  Uploads go through a pixel buffer object registered with CUDA once
  (``cudaGraphicsGLRegisterBuffer``, write-discard): each frame maps it on the
  caller's CUDA stream, copies the contiguous tensor device-to-device
  (``cudaMemcpyAsync``), unmaps it (which orders the CUDA work before later GL
  calls) and lets GL copy the PBO into the texture on the GPU
  (``texture.write(pbo)``). Readback registers the texture image once
  (read-only) and copies its mapped array into a CUDA tensor
  (``cudaMemcpy2DFromArrayAsync``).
* ``"host"`` (:class:`HostUploader`, :class:`HostReader`): everywhere else
  (no CUDA, Mesa/llvmpipe, no ``cuda-bindings``, GL on another GPU): tensors go
  through host memory. A CUDA uploader given a CPU tensor also takes this path
  for that frame. Every ``upload``/``read`` returns the path it took, and
  every object carries ``path`` and ``reason`` so actors can say which one
  runs and why (``runtime.graph()``).

:func:`interop_available` makes the decision; its probes are module-level
functions so tests can replace them. ``STREAMLIB_GL_INTEROP=0`` forces the
host path. The GL context must be current on the calling thread for every
call here (actors holding one run on one thread).
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np
import torch

from streamlib.gpu import device as _device
from streamlib.errors import ClosedError, ConfigError, StreamlibError

if TYPE_CHECKING:  # moderngl is needed only by callers that already hold a context
    import moderngl

logger = logging.getLogger("streamlib")

__all__ = [
    "GL_TEXTURE_2D", "HOST", "INTEROP", "CudaGLReader", "CudaGLUploader", "HostReader",
    "HostUploader", "InteropError", "TextureReader", "TextureUploader", "UploadPath",
    "create_reader", "create_uploader", "interop_available",
]

UploadPath = Literal["cuda-gl-interop", "host"]
INTEROP: UploadPath = "cuda-gl-interop"
HOST: UploadPath = "host"
GL_TEXTURE_2D = 0x0DE1
# Register flags are plain ``unsigned int`` parameters in cuda-bindings; the enum
# parameters (cudaGLDeviceList, cudaMemcpyKind) take the runtime's enum members, which
# 12.8.0-12.9.5 and 13.0.0-13.1.1 require (a plain int raises AttributeError there).
_WRITE_DISCARD = 2  # cudaGraphicsRegisterFlagsWriteDiscard
_READ_ONLY = 1      # cudaGraphicsRegisterFlagsReadOnly
_BAD_VERSIONS = ("12.9.3",)  # cudaGraphicsGLRegisterImage returned a null handle


class InteropError(StreamlibError, RuntimeError):
    """A CUDA-GL interop call failed; the message names the call and CUDA's error."""


# -- probes (module level so tests can monkeypatch them) ----------------------------
def _load_runtime() -> Any:
    """``cuda.bindings.runtime``; ImportError when cuda-bindings is missing."""
    from cuda.bindings import runtime

    return runtime


def _bindings_version() -> str:
    try:
        import cuda.bindings

        return str(getattr(cuda.bindings, "__version__", ""))
    except ImportError:
        return ""


def _torch_cuda_available() -> bool:
    return _device.cuda_available()


def _gl_vendor(ctx: moderngl.Context) -> str:
    return str(ctx.info.get("GL_VENDOR", ""))


def _gl_renderer(ctx: moderngl.Context) -> str:
    return str(ctx.info.get("GL_RENDERER", ""))


def _default_device() -> torch.device:
    return _device.resolve_device(None)


def _check(rt: Any, result: Any, call: str) -> Any:
    """Unpack a cuda-bindings result tuple; raise InteropError unless cudaSuccess."""
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        name = str(getattr(err, "name", err))  # "cudaErrorInvalidDevice" for the real enum
        try:
            got = rt.cudaGetErrorString(err)
            if int(got[0]) == 0:
                name = f"{name}: {got[1].decode(errors='replace')}"
        except Exception:  # noqa: BLE001 - the message is best effort
            pass
        raise InteropError(f"{call} failed ({name})")
    if not rest:
        return None
    return rest[0] if len(rest) == 1 else tuple(rest)


def _gl_cuda_devices(rt: Any) -> list[int]:
    """CUDA devices of the current GL context (``cudaGLGetDevices``); InteropError if none."""
    every = rt.cudaGLDeviceList.cudaGLDeviceListAll
    count, devices = _check(rt, rt.cudaGLGetDevices(8, every), "cudaGLGetDevices")
    return [int(d) for d in list(devices)[: int(count)]]


def interop_available(ctx: moderngl.Context,
                      device: torch.device | str | None = None) -> tuple[bool, str]:
    """Whether CUDA-GL interop works for ``ctx`` (current on this thread) and ``device``.

    Returns ``(ok, reason)``; the reason says what was found, or every reason
    interop cannot run (no CUDA, GL vendor not NVIDIA, cuda-bindings missing or
    a known-bad version, the GL context on another GPU). Never raises.
    """
    if os.environ.get("STREAMLIB_GL_INTEROP", "").strip() == "0":
        return False, "disabled by STREAMLIB_GL_INTEROP=0"
    problems: list[str] = []
    if not _torch_cuda_available():
        problems.append("no CUDA device (torch.cuda.is_available() is False)")
    vendor = _gl_vendor(ctx)
    if "nvidia" not in vendor.lower():
        renderer = _gl_renderer(ctx)
        shown = f"{vendor!r}" + (f" ({renderer})" if renderer else "")
        problems.append(f"GL vendor is {shown}, not NVIDIA")
    try:
        rt = _load_runtime()
    except ImportError as exc:
        problems.append(f"cuda-bindings not importable ({exc}; pip install 'streamlib[cuda]')")
        rt = None
    version = _bindings_version()
    if rt is not None and version in _BAD_VERSIONS:
        problems.append(f"cuda-bindings {version} has a null-handle bug; install another version")
    if problems:
        return False, "; ".join(problems)
    try:
        dev = torch.device(device) if device is not None else _default_device()
    except (RuntimeError, TypeError, ValueError) as exc:
        return False, f"bad device {device!r} ({exc})"
    if dev.type != "cuda":
        return False, f"frames are on {dev}, not a CUDA device"
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    try:
        gl_devices = _gl_cuda_devices(rt)
    except InteropError as exc:
        return False, str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure here means "no interop"
        return False, f"cudaGLGetDevices failed ({type(exc).__name__}: {exc})"
    if index not in gl_devices:
        return False, f"the GL context runs on CUDA device(s) {gl_devices}, frames on cuda:{index}"
    return True, f"GL vendor {vendor!r} shares cuda:{index} with CUDA"


# -- CUDA helpers ---------------------------------------------------------------------
def _stream_handle(dev: torch.device) -> int:
    """Raw handle of the caller's current stream on ``dev`` (0 on the CPU: tests' fakes)."""
    return int(_device.current_stream(dev).cuda_stream)


def _on_device(dev: torch.device) -> contextlib.AbstractContextManager[Any]:
    """Make ``dev`` the thread's current CUDA device: cuda-bindings calls act on it."""
    return torch.cuda.device(dev) if dev.type == "cuda" else contextlib.nullcontext()


def _keep_alive(stream: Any, *tensors: torch.Tensor) -> None:
    """Stop the caching allocator from reusing ``tensors`` before ``stream``'s queued
    work (our asynchronous copies) has run, even if the caller drops them at once."""
    if isinstance(stream, torch.cuda.Stream):
        for t in tensors:
            if t.is_cuda:
                t.record_stream(stream)


class _Registered:
    """One registered GL object: register once, map/unmap per use, unregister on close."""

    def __init__(self, rt: Any, resource: Any, what: str) -> None:
        self.rt, self.resource, self.what = rt, resource, what

    def map(self, stream: int) -> None:
        _check(self.rt, self.rt.cudaGraphicsMapResources(1, self.resource, stream),
               f"cudaGraphicsMapResources({self.what})")

    def unmap(self, stream: int) -> None:
        _check(self.rt, self.rt.cudaGraphicsUnmapResources(1, self.resource, stream),
               f"cudaGraphicsUnmapResources({self.what})")

    def close(self) -> None:
        resource, self.resource = self.resource, None
        if resource is not None:
            _check(self.rt, self.rt.cudaGraphicsUnregisterResource(resource),
                   f"cudaGraphicsUnregisterResource({self.what})")


# -- uploaders -----------------------------------------------------------------------
class TextureUploader(Protocol):
    """Writes an (H, W, C) uint8 tensor into a texture of that size and component count."""

    path: UploadPath
    reason: str

    def upload(self, texture: moderngl.Texture, data: torch.Tensor, *, flip: bool = False,
               ready: Any = None) -> UploadPath: ...

    def close(self) -> None: ...


def _host_write(texture: moderngl.Texture, data: torch.Tensor, flip: bool) -> None:
    arr = data.detach().cpu().numpy()
    texture.write(np.ascontiguousarray(arr[::-1] if flip else arr), alignment=1)


class HostUploader:
    """Host-memory upload (``glTexSubImage2D`` from a CPU array); the fallback path."""

    path: UploadPath = HOST

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def upload(self, texture: moderngl.Texture, data: torch.Tensor, *, flip: bool = False,
               ready: Any = None) -> UploadPath:
        """Copy ``data`` (any device) to host memory and into ``texture``.

        ``flip=True`` stores the rows bottom-up (GL order). ``ready`` is
        accepted for signature parity; ``.cpu()`` synchronises anyway.
        """
        _host_write(texture, data, flip)
        return HOST

    def close(self) -> None:
        """Nothing to release; idempotent."""


class CudaGLUploader:
    """Uploads CUDA tensors through a CUDA-registered PBO (no host round trip).

    The PBO is created and registered on the first upload and again only when
    the frame size changes. Tensors on another device take the host path for
    that frame (the returned path says so). Raises InteropError when a CUDA
    call fails; ``close()`` unregisters and releases the PBO (idempotent).
    """

    path: UploadPath = INTEROP

    def __init__(self, ctx: moderngl.Context, device: torch.device | str, reason: str = "", *,
                 runtime: Any = None) -> None:
        self.ctx = ctx
        self.device = torch.device(device)
        self.reason = reason
        self.rt = runtime if runtime is not None else _load_runtime()
        self.registrations = 0  # how many times a PBO was registered (tests check "once")
        self._pbo: moderngl.Buffer | None = None
        self._res: _Registered | None = None

    def _ensure_pbo(self, nbytes: int) -> tuple[moderngl.Buffer, _Registered]:
        if self._pbo is not None and self._res is not None and self._pbo.size == nbytes:
            return self._pbo, self._res
        self._release()
        pbo = self.ctx.buffer(reserve=nbytes)
        try:
            resource = _check(self.rt, self.rt.cudaGraphicsGLRegisterBuffer(
                pbo.glo, _WRITE_DISCARD), "cudaGraphicsGLRegisterBuffer")
        except BaseException:
            pbo.release()
            raise
        self._pbo, self._res = pbo, _Registered(self.rt, resource, "pbo")
        self.registrations += 1
        return pbo, self._res

    def upload(self, texture: moderngl.Texture, data: torch.Tensor, *, flip: bool = False,
               ready: Any = None) -> UploadPath:
        """Write ``data`` (H, W, C) uint8 into ``texture`` on the GPU.

        ``flip=True`` stores rows bottom-up (a GPU-side flip first). ``ready``
        is an optional CUDA event the data's producer recorded; the copy waits
        for it on the caller's current stream.
        """
        if data.device != self.device:
            _host_write(texture, data, flip)
            return HOST
        with _on_device(self.device):
            pbo = self._copy_to_pbo(data, flip, ready)
        texture.write(pbo, alignment=1)  # PBO -> texture, on the GPU
        return INTEROP

    def _copy_to_pbo(self, data: torch.Tensor, flip: bool, ready: Any) -> moderngl.Buffer:
        cur = _device.current_stream(self.device)
        _device.wait_event(cur, ready)  # before anything on this stream reads the frame
        src = (data.flip(0) if flip else data).contiguous()
        _keep_alive(cur, data, src)
        nbytes = src.numel() * src.element_size()
        pbo, res = self._ensure_pbo(nbytes)
        stream = _stream_handle(self.device)  # cur's handle
        res.map(stream)
        try:
            ptr, size = _check(self.rt, self.rt.cudaGraphicsResourceGetMappedPointer(res.resource),
                               "cudaGraphicsResourceGetMappedPointer")
            if int(size) < nbytes:
                raise InteropError(f"mapped PBO holds {int(size)} bytes, frame needs {nbytes}")
            d2d = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice
            _check(self.rt, self.rt.cudaMemcpyAsync(ptr, src.data_ptr(), nbytes, d2d, stream),
                   "cudaMemcpyAsync")
        finally:
            res.unmap(stream)  # orders the copy before the caller's GL upload
        return pbo

    def _release(self) -> None:
        res, self._res = self._res, None
        pbo, self._pbo = self._pbo, None
        try:
            if res is not None:
                res.close()
        finally:
            if pbo is not None:
                pbo.release()

    def close(self) -> None:
        """Unregister and release the PBO; idempotent (GL context current).

        A failed unregistration is logged, not raised: closing runs on teardown
        and fallback paths that must go on.
        """
        try:
            with _on_device(self.device):
                self._release()
        except InteropError as exc:
            logger.warning("CUDA-GL interop: %s", exc)


# -- readers ---------------------------------------------------------------------------
class TextureReader(Protocol):
    """Reads a framebuffer's colour texture into a fresh top-down (H, W, C) uint8 tensor."""

    path: UploadPath
    reason: str

    def read(self, fbo: moderngl.Framebuffer, components: int, *,
             staging: np.ndarray[Any, Any] | None = None) -> torch.Tensor: ...

    def close(self) -> None: ...


class HostReader:
    """``glReadPixels`` into host memory; returns a CPU tensor. The fallback path."""

    path: UploadPath = HOST

    def __init__(self, reason: str = "") -> None:
        self.reason = reason

    def read(self, fbo: moderngl.Framebuffer, components: int, *,
             staging: np.ndarray[Any, Any] | None = None,
             out: torch.Tensor | None = None) -> torch.Tensor:
        """Colour attachment 0 of ``fbo``, rows top-down (see ``gl.read_framebuffer``)."""
        from streamlib.gpu.gl import read_framebuffer

        return read_framebuffer(fbo, components, staging=staging, out=out)

    def close(self) -> None:
        """Nothing to release; idempotent."""


class CudaGLReader:
    """Copies an RGBA8 texture (an FBO's colour target) into CUDA tensors on the GPU.

    The texture is registered once, read-only, at construction; each ``read``
    maps it on the caller's current stream, copies the mapped array into a
    reused (H, W, 4) tensor (``cudaMemcpy2DFromArrayAsync``), unmaps, and
    returns a fresh flipped (top-down) tensor of ``components`` channels, so
    nothing else references the published result. No host synchronisation.
    Raises InteropError when registration or a copy fails.
    """

    path: UploadPath = INTEROP

    def __init__(self, texture: moderngl.Texture, device: torch.device | str, reason: str = "",
                 *, runtime: Any = None) -> None:
        if texture.components != 4 or texture.dtype != "f1":
            raise ConfigError("CudaGLReader needs an RGBA8 texture (CUDA cannot map RGB8 images)")
        self.texture = texture
        self.device = torch.device(device)
        self.reason = reason
        self.rt = runtime if runtime is not None else _load_runtime()
        with _on_device(self.device):
            resource = _check(self.rt, self.rt.cudaGraphicsGLRegisterImage(
                texture.glo, GL_TEXTURE_2D, _READ_ONLY), "cudaGraphicsGLRegisterImage")
        self._res: _Registered | None = _Registered(self.rt, resource, "texture")
        width, height = texture.size
        self._raw = torch.empty((height, width, 4), dtype=torch.uint8, device=self.device)
        # bottom row first: one gather flips and drops components in a single copy
        self._rows_up = torch.arange(height - 1, -1, -1, device=self.device)

    def read(self, fbo: moderngl.Framebuffer, components: int, *,
             staging: np.ndarray[Any, Any] | None = None) -> torch.Tensor:
        """The registered texture as a new (H, W, components) tensor on ``device``.

        ``fbo`` must render into the registered texture; it is accepted for
        signature parity with ``HostReader`` (as is ``staging``, unused).
        """
        if components not in (1, 2, 3, 4):
            raise ConfigError(f"CudaGLReader.read: components must be 1..4, got {components!r}")
        res = self._res
        if res is None:
            raise ClosedError("CudaGLReader is closed")
        height, width, _ = self._raw.shape
        with _on_device(self.device):
            stream = _stream_handle(self.device)
            res.map(stream)  # waits for the GL rendering issued before it
            try:
                array = _check(self.rt, self.rt.cudaGraphicsSubResourceGetMappedArray(
                    res.resource, 0, 0), "cudaGraphicsSubResourceGetMappedArray")
                _check(self.rt, self.rt.cudaMemcpy2DFromArrayAsync(
                    self._raw.data_ptr(), width * 4, array, 0, 0, width * 4, height,
                    self.rt.cudaMemcpyKind.cudaMemcpyDeviceToDevice, stream),
                    "cudaMemcpy2DFromArrayAsync")
            finally:
                res.unmap(stream)
            # GL rows are bottom-up; the gather is the one copy that makes the result fresh
            # (flip, then slice, would copy twice below 4 components).
            return torch.index_select(self._raw[..., :components], 0, self._rows_up)

    def close(self) -> None:
        """Unregister the texture; idempotent (GL context current). Failures are logged."""
        res, self._res = self._res, None
        if res is not None:
            try:
                with _on_device(self.device):
                    res.close()
            except InteropError as exc:
                logger.warning("CUDA-GL interop: %s", exc)


# -- factories --------------------------------------------------------------------------
def create_uploader(ctx: moderngl.Context,
                    device: torch.device | str | None = None) -> CudaGLUploader | HostUploader:
    """The interop uploader when :func:`interop_available`, else the host one (never raises)."""
    ok, reason = interop_available(ctx, device)
    if not ok:
        return HostUploader(reason)
    dev = torch.device(device) if device is not None else _default_device()
    return CudaGLUploader(ctx, dev, reason)


def create_reader(ctx: moderngl.Context, texture: moderngl.Texture,
                  device: torch.device | str | None = None) -> CudaGLReader | HostReader:
    """The interop reader of ``texture`` when available and registrable, else the host one.

    A failed registration (e.g. GL and CUDA on different GPUs) falls back to the
    host reader with the CUDA error as its reason. Never raises.
    """
    ok, reason = interop_available(ctx, device)
    if not ok:
        return HostReader(reason)
    dev = torch.device(device) if device is not None else _default_device()
    try:
        return CudaGLReader(texture, dev, reason)
    except (InteropError, ValueError) as exc:
        return HostReader(f"texture registration failed: {exc}")
