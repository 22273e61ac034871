"""``ShaderActor``: a GLSL fragment shader rendered offscreen with moderngl.

The fragment shader runs over a full-screen triangle (``streamlib.gl``); input
frames are bound as ``sampler2D`` textures named after the input ports, and the
result is read back into a fresh CPU tensor per frame (frames are immutable;
the staging buffer and textures are reused). The GPU issue replaces the
readback with CUDA interop where available; this is the portable CPU path,
which also runs headless on Mesa llvmpipe through EGL.

Orientation follows GL: ``uv`` and ``gl_FragCoord`` have y up (uv (0, 0) is the
bottom-left of the image) and ``texture(input, uv)`` shows an input upright;
uploads and readback flip rows so published frames are top-down as usual.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Literal

import moderngl
import numpy as np
import numpy.typing as npt

from ..actor import Actor
from ..clocks import Clock, SoftwareClock, TimedTick
from ..frames import PixelFormat, VideoFrame
from ..gl import (
    FULLSCREEN_VERTEX_SHADER, GLContextError, ShaderCompileError, create_offscreen_context,
    read_framebuffer, upload_texture,
)
from ..ports import StreamInput, StreamOutput

__all__ = ["ShaderActor", "prepare_fragment_source"]

OutputFormat = Literal["rgba", "rgb24"]
_MAX_SIDE = 16384
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
    actor's own thread (default ``dispatcher="dedicated"``).

    Args:
        fragment_source: GLSL fragment shader source (or use ``fragment_file``).
        width: output width in pixels (1..16384).
        height: output height in pixels (1..16384).
        fps: rate of the default ``SoftwareClock`` when there are no inputs.
        inputs: names of video input ports, bound as ``sampler2D`` in order.
        output_format: ``"rgba"`` (default) or ``"rgb24"``.
        fragment_file: path of a GLSL file (instead of ``fragment_source``).
        actor_id: unique id (default: auto).

    Raises:
        ValueError: bad size, format, input names, neither or both sources.
        TypeError: ``inputs`` given as a str instead of a list.
        ShaderCompileError: (a ValueError) the shader fails to compile or link;
            the message names the actor and carries the GLSL log.
        GLContextError: no offscreen OpenGL 3.3 context can be created.
        OSError: ``fragment_file`` cannot be read.
    """

    def __init__(self, fragment_source: str | None = None, width: int = 640, height: int = 360,
                 fps: float = 30, inputs: list[str] | tuple[str, ...] = (),
                 output_format: OutputFormat = "rgba", *, fragment_file: str | None = None,
                 actor_id: str | None = None, clock: Clock | None = None,
                 **kwargs: Any) -> None:
        if isinstance(inputs, str):  # list("video") would silently make five inputs
            raise TypeError(f"ShaderActor: inputs must be a list of port names, got str {inputs!r}")
        names = list(inputs)
        if clock is None and not names:
            clock = SoftwareClock(fps)
        kwargs.setdefault("dispatcher", "dedicated")
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)
        label = f"ShaderActor '{self.actor_id}'"
        for field, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_SIDE:
                raise ValueError(f"{label}: {field} must be an int in 1..{_MAX_SIDE}, got {value!r}")
        if output_format not in ("rgba", "rgb24"):
            raise ValueError(f"{label}: output_format must be 'rgba' or 'rgb24', got {output_format!r}")
        bad = [n for n in names if not isinstance(n, str) or not n.isidentifier() or n.startswith("gl_")]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"{label}: inputs must be unique identifiers (GLSL sampler names, "
                             f"not starting with 'gl_'), got {names!r}")
        if (fragment_source is None) == (fragment_file is None):
            raise ValueError(f"{label}: give exactly one of fragment_source and fragment_file")
        if fragment_file is not None:
            fragment_source = Path(fragment_file).read_text(encoding="utf-8")
        if not isinstance(fragment_source, str) or not fragment_source.strip():
            raise ValueError(f"{label}: fragment_source must be non-empty GLSL source")
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

    # -- GL lifecycle (on the dedicated thread) ----------------------------
    def setup(self) -> None:
        ctx = create_offscreen_context()
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

    def teardown(self) -> None:
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
            raise ValueError(f"ShaderActor '{self.actor_id}': input {name!r} got a "
                             f"{frame.format.value} frame; accepted formats: {accepted}")
        tex = upload_texture(self._ctx, frame.data, self._textures.get(name))
        if tex.swizzle != swizzle:
            tex.swizzle = swizzle
        self._textures[name] = tex
        tex.use(location=unit)

    def process(self, tick: TimedTick) -> None:
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
        assert self._staging is not None
        data = read_framebuffer(fbo, int(self._staging.shape[2]), staging=self._staging)
        self.outputs["video"].write(VideoFrame(
            data, timestamp_ns=stamp[0], frame_number=stamp[1],
            format=self.output_format, clock_id=stamp[2],
        ))
