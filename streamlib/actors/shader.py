"""``ShaderActor``: a GLSL fragment shader rendered offscreen with moderngl.

The fragment shader runs over a full-screen triangle (``streamlib.gpu.gl``); input
frames are bound as ``sampler2D`` textures named after the input ports, and the
result is read back into a fresh tensor per frame (frames are immutable; the
staging buffer and textures are reused).

Transfers go through ``streamlib.gpu.gl_interop``: with CUDA and the NVIDIA GL
driver, CUDA input frames are copied into their textures through a
CUDA-registered pixel buffer and the output texture is mapped and copied into
a CUDA tensor, with no host round trip. Everywhere else (CPU frames, no CUDA,
Mesa llvmpipe headless through EGL) the host path runs; ``describe()["shader"]``
says which path each direction took and why.

Orientation follows GL: ``uv`` and ``gl_FragCoord`` have y up (uv (0, 0) is the
bottom-left of the image) and ``texture(input, uv)`` shows an input upright;
uploads and readback flip rows so published frames are top-down as usual.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import torch

from streamlib.core import trust
from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick
from streamlib.gpu.device import ready_event, resolve_device
from streamlib.core.frames import PixelFormat, VideoFrame
from streamlib.core.limits import check_frame_size
from streamlib.gpu.gl import (
    FULLSCREEN_VERTEX_SHADER, GLContextError, ShaderCompileError, create_offscreen_context,
    interop_cuda_ordinal, upload_texture,
)
from streamlib.gpu.gl_interop import (
    HOST, CudaGLUploader, HostReader, HostUploader, InteropError, TextureReader,
    TextureUploader, UploadPath, create_reader, create_uploader,
)
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.gpu.pinned_upload import PinnedUpload
from streamlib.errors import ConfigError, ConfigTypeError, FrameValidationError

if TYPE_CHECKING:
    import moderngl  # run time: imported where used, with the first ShaderActor

__all__ = ["ShaderActor", "prepare_fragment_source"]

OutputFormat = Literal["rgba", "rgb24"]
# How each accepted input format is read by the shader: channels in GL order
# plus the swizzle that makes ``texture()`` return RGBA.
_INPUT_FORMATS: dict[PixelFormat, str] = {
    PixelFormat.RGB24: "RGB1", PixelFormat.RGBA: "RGBA", PixelFormat.BGR24: "BGR1",
    PixelFormat.BGRA: "BGRA", PixelFormat.GRAY8: "RRR1",
}
_VERSION_RE = re.compile(r"^\s*#\s*version\b", re.MULTILINE)
_UV_RE = re.compile(r"\bin\s+(?:(?:highp|mediump|lowp)\s+)?vec2\s+uv\s*;")
_OUT_RE = re.compile(r"\bout\s+(?:(?:highp|mediump|lowp)\s+)?vec4\s+\w+\s*;")


def prepare_fragment_source(source: str) -> str:
    """Complete a fragment shader body into GLSL 330 core source.

    Source without a ``#version`` line gets ``#version 330 core`` plus the
    ``in vec2 uv;`` and ``out vec4 fragColor;`` declarations it lacks, then
    ``#line 1`` so compiler messages keep the user's line numbers. Source with
    a ``#version`` line is used unchanged.
    """
    if _VERSION_RE.search(source):
        return source
    header = ["#version 330 core"]
    if not _UV_RE.search(source):
        header.append("in vec2 uv;")
    if not _OUT_RE.search(source):
        header.append("out vec4 fragColor;")
    header.append("#line 1")
    return "\n".join(header) + "\n" + source


def _set_uniform(prog: moderngl.Program, name: str, value: object) -> None:
    """Set uniform ``name`` if the program has it (unused uniforms are compiled out)."""
    import moderngl
    member = prog.get(name, None)
    if isinstance(member, moderngl.Uniform):
        member.value = value


def _compile_check(fragment: str) -> BaseException | None:
    """Compile ``fragment`` in a throwaway context on a throwaway thread.

    A thread of its own so the caller's current GL context (if any) is left
    untouched; returns the exception instead of raising it across threads.
    """
    result: list[BaseException | None] = [None]

    def work() -> None:
        try:
            ctx = create_offscreen_context()
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller
            result[0] = exc
            return
        try:
            ctx.program(vertex_shader=FULLSCREEN_VERTEX_SHADER, fragment_shader=fragment).release()
        except BaseException as exc:  # noqa: BLE001
            result[0] = exc
        finally:
            ctx.release()

    thread = threading.Thread(target=work, name="streamlib-shader-compile-check", daemon=True)
    thread.start()
    thread.join()
    return result[0]


class ShaderActor(Actor):
    """Renders a GLSL fragment shader to ``outputs['video']`` (RGBA or RGB24).

    The source is GLSL 330 core reading ``in vec2 uv`` (0..1, y up) and
    writing ``out vec4 fragColor`` (both declared automatically when the
    source has no ``#version`` line). Uniforms set when declared:
    ``float u_time`` (seconds since the first rendered tick), ``int u_frame``
    (tick frame number), ``vec2 u_resolution`` (width, height), and one
    ``sampler2D`` per input, named like the input port. Accepted input
    formats: rgb24, rgba, bgr24, bgra, gray8. Without inputs it is a source
    on its own clock; with inputs it has no clock and renders whenever the
    first input has a new frame (other inputs: latest frame; an input that
    never received one samples as transparent black). The output keeps the
    first input's timestamp and frame number. The GL context lives on the
    actor's own thread (default ``dispatcher="dedicated"``). Output frames are
    on ``device``: by default the first input frame's device (a CUDA input
    gives a CUDA output, read back through CUDA-GL interop where available),
    the CPU for a shader without inputs. Where interop runs and CUDA is in use,
    inputs are delivered on the GPU (CPU frames uploaded once by the staging
    bridge), so outputs are then on the GPU too unless ``device`` says otherwise.

    Args:
        fragment_source: GLSL fragment shader source (or use ``fragment_file``).
        width: output width in pixels (1..16384).
        height: output height in pixels (1..16384).
        fps: rate of the default ``SoftwareClock`` when there are no inputs.
        inputs: names of video input ports, bound as ``sampler2D`` in order.
        output_format: ``"rgba"`` (default) or ``"rgb24"``.
        fragment_file: path of a GLSL file (instead of ``fragment_source``).
        device: output device (``"cpu"``, ``"cuda"``, ``"cuda:1"``); None
            follows the first input frame (CPU without inputs).
        actor_id: unique id (default: auto).

    Raises:
        ConfigError: bad size, format, input names, device, neither or both sources.
        ConfigTypeError: ``inputs`` given as a str instead of a list.
        ShaderCompileError: (a ValueError) the shader fails to compile or link;
            the message names the actor and carries the GLSL log.
        GLContextError: no offscreen OpenGL 3.3 context can be created.
        OSError: ``fragment_file`` cannot be read.
    """

    def __init__(self, fragment_source: str | None = None, width: int = 640, height: int = 360,
                 fps: float = 30, inputs: list[str] | tuple[str, ...] = (),
                 output_format: OutputFormat = "rgba", *, fragment_file: str | None = None,
                 device: str | None = None,
                 actor_id: str | None = None, clock: Clock | None = None,
                 **kwargs: Any) -> None:
        import moderngl
        if isinstance(inputs, str):  # list("video") would silently make five inputs
            raise ConfigTypeError("ShaderActor: inputs must be a list of port names, got str "
                                  f"{inputs!r}")
        names = list(inputs)
        if clock is None and not names:
            clock = SoftwareClock(fps)
        kwargs.setdefault("dispatcher", "dedicated")
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)
        label = f"ShaderActor '{self.actor_id}'"
        check_frame_size(width, height, label)
        if output_format not in ("rgba", "rgb24"):
            raise ConfigError(f"{label}: output_format must be 'rgba' or 'rgb24', got {output_format!r}")
        bad = [n for n in names if not isinstance(n, str) or not n.isidentifier() or n.startswith("gl_")]
        if bad or len(set(names)) != len(names):
            raise ConfigError(f"{label}: inputs must be unique identifiers (GLSL sampler names, "
                              f"not starting with 'gl_'), got {names!r}")
        self.device = None if device is None else resolve_device(device, where=f"{label}: device")
        if (fragment_source is None) == (fragment_file is None):
            raise ConfigError(f"{label}: give exactly one of fragment_source and fragment_file")
        trust.check_code(f"{label}: field "
                         f"{'fragment_file' if fragment_file is not None else 'fragment_source'!r}",
                         "shader code")
        if fragment_file is not None:
            fragment_source = Path(fragment_file).read_text(encoding="utf-8")
        if not isinstance(fragment_source, str) or not fragment_source.strip():
            raise ConfigError(f"{label}: fragment_source must be non-empty GLSL source")
        self.width, self.height = width, height
        self.output_format: OutputFormat = output_format
        self.input_names = names
        self.fragment_source = prepare_fragment_source(fragment_source)
        failure = _compile_check(self.fragment_source)
        if isinstance(failure, moderngl.Error):
            raise ShaderCompileError(
                f"{label}: fragment shader failed to compile:\n{str(failure).strip()}"
            ) from failure
        if failure is not None:
            raise GLContextError(f"{label}: {failure}") from failure
        for name in names:
            self.inputs[name] = StreamInput(name, "video")
        self.outputs["video"] = StreamOutput("video")
        self._ctx: moderngl.Context | None = None
        self._gl_objects: dict[str, Any] = {}
        self._textures: dict[str, moderngl.Texture] = {}
        self._staging: npt.NDArray[np.uint8] | None = None
        self._first_ns: int | None = None
        self._uploader: TextureUploader | None = None
        self._readers: dict[str, TextureReader] = {}  # by output device
        self._to_device = PinnedUpload()  # host readback -> device output
        self.upload_path: UploadPath = HOST  # path of the last input upload
        self.upload_reason = "no input uploaded yet"
        self.readback_path: UploadPath = HOST  # path of the last output readback
        self.readback_reason = "nothing rendered yet"

    # -- GL lifecycle (on the dedicated thread) ----------------------------
    def setup(self) -> None:
        ctx = create_offscreen_context(cuda_device=interop_cuda_ordinal(self.device))
        self._ctx = ctx
        prog = ctx.program(vertex_shader=FULLSCREEN_VERTEX_SHADER,
                           fragment_shader=self.fragment_source)
        target = ctx.texture((self.width, self.height), 4)
        self._gl_objects = {
            "program": prog,
            "vao": ctx.vertex_array(prog, []),
            "target": target,
            "fbo": ctx.framebuffer(color_attachments=[target]),
            "black": ctx.texture((1, 1), 4, bytes(4)),
        }
        for unit, name in enumerate(self.input_names):
            _set_uniform(prog, name, unit)
        _set_uniform(prog, "u_resolution", (float(self.width), float(self.height)))
        comps = 4 if self.output_format == "rgba" else 3
        self._staging = np.empty((self.height, self.width, comps), np.uint8)
        cuda_out = self.device if self.device is not None and self.device.type == "cuda" else None
        uploader = self._uploader = create_uploader(ctx, cuda_out)  # decided once; never raises
        self.upload_reason = uploader.reason
        # Where the staging bridge delivers inputs: with interop, CUDA inputs arrive as they are (no
        # host copy) and CPU inputs are uploaded once; else everything comes as host data.
        self.request_input_device(uploader.device if isinstance(uploader, CudaGLUploader) else None)
        self._readers = {"cpu": HostReader(
            uploader.reason if uploader.path == HOST else "output device is the CPU")}

    def teardown(self) -> None:
        uploader, self._uploader = self._uploader, None
        self.request_input_device(None)
        if uploader is not None:
            uploader.close()  # unregister from CUDA while the context is current
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()
        for tex in self._textures.values():
            tex.release()
        for obj in reversed(list(self._gl_objects.values())):
            obj.release()
        self._textures.clear()
        self._gl_objects.clear()
        if self._ctx is not None:
            self._ctx.release()
            self._ctx = None

    # -- rendering ---------------------------------------------------------
    def _bind_input(self, unit: int, name: str, frame: VideoFrame | None) -> None:
        assert self._ctx is not None
        if frame is None:
            self._gl_objects["black"].use(location=unit)
            return
        swizzle = _INPUT_FORMATS.get(frame.format)
        if swizzle is None:
            accepted = ", ".join(f.value for f in _INPUT_FORMATS)
            raise FrameValidationError(f"ShaderActor '{self.actor_id}': input {name!r} got a "
                                       f"{frame.format.value} frame; accepted formats: {accepted}")
        tex = self._upload(name, frame)
        if tex.swizzle != swizzle:
            tex.swizzle = swizzle
        self._textures[name] = tex
        tex.use(location=unit)

    def _upload(self, name: str, frame: VideoFrame) -> moderngl.Texture:
        import moderngl
        ctx, uploader, data = self._ctx, self._uploader, frame.data
        assert ctx is not None and uploader is not None
        old = self._textures.get(name)
        if not isinstance(uploader, CudaGLUploader):
            self.upload_path, self.upload_reason = HOST, uploader.reason
            return upload_texture(ctx, data, old)
        if data.device != uploader.device:
            self.upload_path = HOST
            self.upload_reason = f"frame on {data.device}; interop needs {uploader.device}"
            return upload_texture(ctx, data, old)
        height, width = int(data.shape[0]), int(data.shape[1])
        comps = 1 if data.dim() == 2 else int(data.shape[2])
        tex = old
        if tex is None or tex.size != (width, height) or tex.components != comps:
            if tex is not None:
                tex.release()
            tex = ctx.texture((width, height), comps, alignment=1)
            tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
            tex.repeat_x = tex.repeat_y = False
        try:
            path = uploader.upload(tex, data, flip=True, ready=ready_event(frame))
            reason = uploader.reason
        except InteropError as exc:  # e.g. registration refused: host uploads from now on
            uploader.close()
            self._uploader = uploader = HostUploader(f"interop failed: {exc}")
            self.request_input_device(None)  # host copies from the staging bridge from now on
            path, reason = uploader.upload(tex, data, flip=True), uploader.reason
        self.upload_path, self.upload_reason = path, reason
        return tex

    def _reader(self, device: torch.device) -> TextureReader:
        key = str(device)
        reader = self._readers.get(key)
        if reader is None:
            assert self._ctx is not None
            reader = create_reader(self._ctx, self._gl_objects["target"], device)
            self._readers[key] = reader
        return reader

    def _read_output(self, device: torch.device) -> torch.Tensor:
        fbo = self._gl_objects["fbo"]
        assert self._staging is not None
        comps = int(self._staging.shape[2])
        reader = self._reader(device)
        if not isinstance(reader, HostReader):
            try:
                data = reader.read(fbo, comps, staging=self._staging)
                self.readback_path, self.readback_reason = reader.path, reader.reason
                return data
            except InteropError as exc:
                reader.close()
                reader = self._readers[str(device)] = HostReader(f"interop failed: {exc}")
        self.readback_path, self.readback_reason = reader.path, reader.reason
        if device.type == "cpu":
            return reader.read(fbo, comps, staging=self._staging)
        # Host readback for a device output: into the reused pinned buffer, then one async upload.
        buf = self._to_device.buffer(self._staging.shape)
        reader.read(fbo, comps, staging=self._staging, out=buf)
        return self._to_device.upload(device)

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["shader"] = {
            "width": self.width, "height": self.height, "output_format": self.output_format,
            "device": None if self.device is None else str(self.device),
            "upload": self.upload_path, "upload_reason": self.upload_reason,
            "readback": self.readback_path, "readback_reason": self.readback_reason,
        }
        return info

    def process(self, tick: TimedTick) -> None:
        import moderngl
        stamp = (tick.timestamp_ns, tick.frame_number, tick.clock_id)
        frames: list[VideoFrame | None] = []
        if self.input_names:
            ports = [self.inputs[n] for n in self.input_names]
            if self.clock is None:  # upstream-driven: render on a new first-input frame
                first: VideoFrame | None = ports[0].read_new()
                if first is None:
                    return
                stamp = (first.timestamp_ns, first.frame_number, first.clock_id)
                frames = [first] + [p.read_latest() for p in ports[1:]]
            else:
                frames = [p.read_latest() for p in ports]
        prog = self._gl_objects["program"]
        for unit, (name, frame) in enumerate(zip(self.input_names, frames)):
            if isinstance(prog.get(name, None), moderngl.Uniform):  # unused samplers are compiled out
                self._bind_input(unit, name, frame)
        if self._first_ns is None:
            self._first_ns = stamp[0]
        _set_uniform(prog, "u_time", (stamp[0] - self._first_ns) / 1e9)
        _set_uniform(prog, "u_frame", stamp[1])
        fbo = self._gl_objects["fbo"]
        fbo.use()
        self._gl_objects["vao"].render(moderngl.TRIANGLES, vertices=3)
        device = self.device
        if device is None:
            first_frame = frames[0] if frames else None
            device = first_frame.data.device if first_frame is not None else torch.device("cpu")
        data = self._read_output(device)
        self.outputs["video"].write(VideoFrame(
            data, timestamp_ns=stamp[0], frame_number=stamp[1],
            format=self.output_format, clock_id=stamp[2],
        ))
