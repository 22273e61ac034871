"""``DisplayActor``: shows video in a glfw window, or offscreen when headless.

Threading: a GL context is current on one thread only, so the actor owns one
GL thread (``streamlib-<id>-gl``) and runs *every* GL and glfw call there:
context/window creation, upload, draw, event polling, readback, destruction.
``process`` is ``async`` and awaits that thread, so the runtime loop never
blocks and any thread may call ``read_framebuffer()`` (the call hops to the GL
thread). glfw documents window creation and event polling as main-thread-only;
that is a hard rule on macOS (Cocoa) only. On Linux (X11, and Wayland through
glfw 3.4) a non-main thread works, which is what this actor relies on. glfw
state is process-global, so every glfw call made here holds one module lock.

A window closing (close button or ``glfw.set_window_should_close``) emits a
``window close`` event and then stops the actor. The stop is *scheduled* on the
runtime loop (``close()`` run there only queues the stop), because a stop
waits for the in-flight ``process`` call: calling it from inside ``process``
and blocking on it would deadlock.

Uploads go through ``streamlib.gpu.gl_interop``: on CUDA with the NVIDIA GL driver
a CUDA frame is copied device-to-device into a CUDA-registered pixel buffer
(registered once) and from there into the texture on the GPU, with no host
round trip; elsewhere (no CUDA, Mesa, CPU frames) it is a host upload.
``describe()["display"]`` says which path the last frame took and why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Callable, Literal, TypeVar

import numpy as np
import torch

from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.gpu.device import ready_event
from streamlib.errors import (
    ActorStateError, ConfigError, ConfigTypeError, FrameValidationError, UnavailableError,
)
from streamlib.core.frames import EventMessage, PixelFormat, VideoFrame
from streamlib.gpu.gl_interop import (
    HOST, CudaGLUploader, HostUploader, InteropError, TextureUploader, UploadPath,
    create_uploader,
)
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.actors._glfw import glfw_acquire, glfw_error_text, glfw_lock, glfw_release, install_callbacks

if TYPE_CHECKING:
    import moderngl

logger = logging.getLogger("streamlib")

DisplayMode = Literal["window", "headless"]
T = TypeVar("T")

# components and swizzle per accepted format; the swizzle maps stored channels to RGB.
_FORMATS: dict[PixelFormat, tuple[int, str]] = {
    PixelFormat.RGB24: (3, "RGBA"),
    PixelFormat.RGBA: (4, "RGBA"),
    PixelFormat.BGR24: (3, "BGRA"),
    PixelFormat.BGRA: (4, "BGRA"),
    PixelFormat.GRAY8: (1, "RRRA"),
}

_VERTEX = """
#version 330
in vec2 in_pos;
in vec2 in_uv;
out vec2 uv;
void main() { gl_Position = vec4(in_pos, 0.0, 1.0); uv = in_uv; }
"""
_FRAGMENT = """
#version 330
uniform sampler2D tex;
in vec2 uv;
out vec4 color;
void main() { color = vec4(texture(tex, uv).rgb, 1.0); }  // alpha ignored: the display is opaque
"""
# Texture row 0 is the frame's top row (frames are top-down), so v=0 maps to the top.
_QUAD = np.array([-1, -1, 0, 1, 1, -1, 1, 1, -1, 1, 0, 0, 1, 1, 1, 0], dtype="f4")


def letterbox_rect(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` (top-down) of a ``src`` image scaled to fit ``dst`` keeping aspect."""
    scale = min(dst_w / src_w, dst_h / src_h)
    w = max(1, min(dst_w, round(src_w * scale)))
    h = max(1, min(dst_h, round(src_h * scale)))
    return (dst_w - w) // 2, (dst_h - h) // 2, w, h


class DisplayActor(Actor):
    """Shows the newest frame of ``inputs['video']`` in a window; emits input events.

    A real glfw window (OpenGL 3.3 core, moderngl textured quad, NEAREST
    filtering, letterboxed to keep the aspect ratio) when a display is
    available, else an offscreen framebuffer of ``width`` x ``height``
    (headless: tests, servers). Accepts RGB24, RGBA, BGR24, BGRA and GRAY8
    frames; alpha is ignored. Without a clock it is ticked by upstream writes
    and shows each new frame once (a tick with nothing new only polls events);
    pass ``clock=SoftwareClock(60)`` to keep the window responsive while the
    upstream is idle.

    ``outputs['events']`` carries ``EventMessage``: ``key`` press/release/repeat
    (``key`` is the glfw key name, e.g. ``"a"``, ``"escape"``, ``"left_shift"``,
    layout-independent), ``mouse`` press/release (``button`` 0 left, 1 right,
    2 middle) and move (one per run of moves per tick) with ``x, y`` in window
    coordinates (top-left origin; ``window_to_frame`` maps them to frame
    pixels), ``mouse scroll`` with the offsets in ``x, y``, and ``window``
    resize (framebuffer pixels)/focus/unfocus/close. Closing the window emits
    ``window close`` and stops the actor.

    Args:
        window_name: Window title.
        width: Window width, and the offscreen framebuffer width when headless.
        height: Window height, and the offscreen framebuffer height when headless.
        vsync: Swap on vertical blank (``glfw.swap_interval(1)``); False swaps at once.
        headless: None picks automatically (offscreen when no DISPLAY or
            WAYLAND_DISPLAY is set or glfw cannot open a window); True always
            renders offscreen; False requires a window (setup fails otherwise).

    Raises:
        ConfigTypeError, ConfigError: at construction, for a bad parameter (named).
        UnavailableError: in setup, when ``headless=False`` and no window can be opened;
            ``streamlib.gpu.gl.GLContextError`` when no offscreen context can be made.
        FrameValidationError: in process, for a frame format it cannot show.
    """

    def __init__(self, window_name: str = "streamlib", width: int = 1280, height: int = 720,
                 vsync: bool = True, headless: bool | None = None, *,
                 actor_id: str | None = None, **kwargs: Any) -> None:
        who = f"DisplayActor{f' {actor_id!r}' if actor_id else ''}"
        if not isinstance(window_name, str):
            raise ConfigTypeError(f"{who}: window_name must be a str, got "
                                  f"{type(window_name).__name__}")
        for name, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 16384:
                raise ConfigError(f"{who}: {name} must be an int in 1..16384, got {value!r}")
        if not isinstance(vsync, bool):
            raise ConfigTypeError(f"{who}: vsync must be a bool, got {type(vsync).__name__}")
        if headless is not None and not isinstance(headless, bool):
            raise ConfigTypeError(f"{who}: headless must be None, True or False, got {headless!r}")
        super().__init__(actor_id=actor_id, **kwargs)
        self.window_name, self.width, self.height = window_name, width, height
        self.vsync, self.headless = vsync, headless
        self.inputs["video"] = StreamInput("video")
        self.outputs["events"] = StreamOutput("events")
        self.mode: DisplayMode | None = None if headless is None else (
            "headless" if headless else "window")
        self.frames_shown = 0
        self.last_frame_shown: int | None = None
        # GL thread state (touched on the GL thread only, except plain reads).
        self._gl: ThreadPoolExecutor | None = None
        self._gl_ident: int | None = None
        self._ctx: moderngl.Context | None = None
        self._fbo: moderngl.Framebuffer | None = None
        self._prog: moderngl.Program | None = None
        self._vao: moderngl.VertexArray | None = None
        self._vbo: moderngl.Buffer | None = None
        self._tex: moderngl.Texture | None = None
        self._tex_key: tuple[int, int, PixelFormat] | None = None
        self._uploader: TextureUploader | None = None
        self.upload_path: UploadPath = HOST  # the path the last frame took (or will take)
        self.upload_reason = "not set up"
        self._window: Any = None
        self._glfw_held = False
        self._closing = False
        self._dirty = False
        self._frame_size: tuple[int, int] | None = None  # of the last frame shown
        self._fb_size = (width, height)
        self._win_size = (width, height)
        # Filled by glfw callbacks during poll_events (possibly another actor's thread).
        self._events: list[EventMessage] = []
        self._events_lock = threading.Lock()

    # -- lifecycle (each hops to the GL thread) -----------------------------
    async def setup(self) -> None:
        if self._gl is None:
            self._gl = ThreadPoolExecutor(1, thread_name_prefix=f"streamlib-{self.actor_id}-gl")
        await self._on_gl(self._gl_setup)

    async def process(self, tick: TimedTick) -> None:
        frame = self.inputs["video"].read_new()
        events, closing = await self._on_gl(self._gl_tick, frame)
        for event in events:
            self.outputs["events"].write(event)
        if closing:
            self._request_stop()

    async def teardown(self) -> None:
        gl, self._gl = self._gl, None
        if gl is None:
            return
        try:
            await asyncio.wrap_future(gl.submit(self._gl_teardown))
        finally:
            gl.shutdown(wait=True)  # the thread is idle now: the join is immediate
            self._gl_ident = None

    def _request_stop(self) -> None:
        runtime = self.runtime
        if runtime is None:
            return
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is runtime.loop:
            self.close()  # on the loop thread close() only schedules the stop
            return
        try:
            runtime.loop.call_soon_threadsafe(self.close)
        except RuntimeError:
            pass  # loop already closed: the runtime is stopping everything anyway

    async def _on_gl(self, fn: Callable[..., T], *args: Any) -> T:
        gl = self._gl
        if gl is None:
            raise ActorStateError(f"DisplayActor '{self.actor_id}' is not set up")
        return await asyncio.wrap_future(gl.submit(fn, *args))

    # -- public helpers -----------------------------------------------------
    def read_framebuffer(self, timeout: float = 5.0) -> torch.Tensor:
        """What the display shows now: an (H, W, 3) uint8 top-down tensor.

        Headless: the offscreen framebuffer (``width`` x ``height``). Window:
        the last frame redrawn into the back buffer (not swapped) and read
        with glReadPixels, at the window's framebuffer size. Callable from any
        thread. Raises ActorStateError before setup or after teardown.
        """
        gl = self._gl
        if gl is None or self._ctx is None:
            raise ActorStateError(
                f"DisplayActor '{self.actor_id}': no GL context (not set up, or torn down)")
        if threading.get_ident() == self._gl_ident:
            return self._gl_read()
        return gl.submit(self._gl_read).result(timeout)

    def window_to_frame(self, x: float, y: float) -> tuple[float, float] | None:
        """Map window coordinates (as in mouse events) to pixel coordinates of the
        shown frame; None before any frame or outside the letterboxed image."""
        if self._frame_size is None:
            return None
        tw, th = self._frame_size
        (fw, fh), (ww, wh) = self._fb_size, self._win_size
        if min(fw, fh, ww, wh) <= 0:
            return None
        px, py = x * fw / ww, y * fh / wh  # HiDPI: window units -> framebuffer pixels
        rx, ry, rw, rh = letterbox_rect(tw, th, fw, fh)
        fx, fy = (px - rx) * tw / rw, (py - ry) * th / rh
        return (fx, fy) if 0 <= fx < tw and 0 <= fy < th else None

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["display"] = {
            "mode": self.mode, "upload": self.upload_path, "upload_reason": self.upload_reason,
            "width": self.width, "height": self.height,
            "vsync": self.vsync, "frames_shown": self.frames_shown,
            "last_frame_shown": self.last_frame_shown,
        }
        return info

    # -- GL thread ----------------------------------------------------------
    def _choose_mode(self) -> tuple[DisplayMode, str]:
        if self.headless:
            return "headless", "headless=True"
        has_display = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        if not has_display:
            why = "no DISPLAY or WAYLAND_DISPLAY is set"
            if self.headless is False:
                raise UnavailableError(
                    f"DisplayActor '{self.actor_id}': headless=False but {why}; run under "
                    "xvfb-run or a desktop session, or use headless=None/True")
            return "headless", why
        failure = glfw_acquire()
        if failure is None:
            self._glfw_held = True
            failure = self._open_window()
            if failure is None:
                where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                return "window", f"display {where}"
            self._glfw_held = False
            glfw_release()
        if self.headless is False:
            raise UnavailableError(f"DisplayActor '{self.actor_id}': cannot open a window: "
                                   f"{failure}")
        return "headless", failure

    def _open_window(self) -> str | None:
        import glfw
        import moderngl

        with glfw_lock:
            glfw.default_window_hints()
            glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
            glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
            glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
            glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
            window = glfw.create_window(self.width, self.height, self.window_name, None, None)
            if not window:
                return f"glfw.create_window failed ({glfw_error_text(glfw)})"
            self._window = window
            install_callbacks(glfw, window, self.actor_id, self._queue_event,
                              self._on_fb_size, self._on_win_size)
            self._fb_size = glfw.get_framebuffer_size(window)
            self._win_size = glfw.get_window_size(window)
        glfw.make_context_current(window)
        glfw.swap_interval(1 if self.vsync else 0)
        self._ctx = moderngl.create_context(require=330)
        self._fbo = self._ctx.detect_framebuffer()
        return None

    def _gl_setup(self) -> None:
        from streamlib.gpu.gl import create_offscreen_context, interop_cuda_ordinal

        self._gl_ident = threading.get_ident()
        mode, why = self._choose_mode()
        self.mode = mode
        if mode == "headless":
            # EGL first, on the GPU interop will use; GLContextError names why none worked
            self._ctx = create_offscreen_context(require=330, cuda_device=interop_cuda_ordinal(None))
            self._fbo = self._ctx.framebuffer(
                color_attachments=[self._ctx.renderbuffer((self.width, self.height), 4)])
            self._fb_size = (self.width, self.height)
        ctx = self._ctx
        assert ctx is not None and self._fbo is not None
        self._uploader = create_uploader(ctx)  # decided once per context; never raises
        self.upload_path, self.upload_reason = self._uploader.path, self._uploader.reason
        if isinstance(self._uploader, CudaGLUploader):
            # CUDA frames now come as they are (with their ready events), not as host
            # copies from the staging bridge, so the interop path is taken.
            self.request_input_device(self._uploader.device)
        logger.info("display %r: %s mode (%s; %dx%d, %s); %s upload (%s)", self.actor_id, mode,
                    why, self.width, self.height,
                    "vsync" if self.vsync and mode == "window" else "no vsync",
                    self.upload_path, self.upload_reason)
        self._prog = ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self._vbo = ctx.buffer(_QUAD.tobytes())
        self._vao = ctx.vertex_array(self._prog, [(self._vbo, "2f 2f", "in_pos", "in_uv")])
        self._fbo.use()
        self._fbo.clear(0.0, 0.0, 0.0, 1.0)

    def _gl_tick(self, frame: VideoFrame | None) -> tuple[list[EventMessage], bool]:
        closing = False
        if self._window is not None:
            import glfw

            with glfw_lock:
                glfw.poll_events()
                should_close = bool(glfw.window_should_close(self._window))
            if should_close and not self._closing:
                self._closing = closing = True
                self._queue_event(EventMessage("window", "close", time.monotonic_ns(),
                                               source=self.actor_id))
        with self._events_lock:
            events, self._events = self._events, []
        if self._closing:
            return events, closing
        if frame is not None:
            self._upload(frame)
            self._draw()
            self.frames_shown += 1
            self.last_frame_shown = frame.frame_number
        elif self._dirty and self._tex is not None:
            self._draw()  # resized: redraw the last frame at the new size
        return events, closing

    def _upload(self, frame: VideoFrame) -> None:
        spec = _FORMATS.get(frame.format)
        if spec is None:
            raise FrameValidationError(
                f"DisplayActor '{self.actor_id}': cannot show {frame.format.value} frames; "
                f"expected one of {', '.join(f.value for f in _FORMATS)}")
        components, swizzle = spec
        h, w = int(frame.data.shape[0]), int(frame.data.shape[1])
        key = (w, h, frame.format)
        ctx = self._ctx
        assert ctx is not None
        if self._tex is None or self._tex_key != key:
            import moderngl

            if self._tex is not None:
                self._tex.release()
            self._tex = ctx.texture((w, h), components, alignment=1)
            self._tex.filter = (moderngl.NEAREST, moderngl.NEAREST)
            self._tex.swizzle = swizzle
            self._tex_key = key
        self._frame_size = (w, h)
        self._write_texture(self._tex, frame)

    def _write_texture(self, tex: moderngl.Texture, frame: VideoFrame) -> None:
        uploader = self._uploader
        assert uploader is not None
        try:
            path = uploader.upload(tex, frame.data.detach(), ready=ready_event(frame))
        except InteropError as exc:
            # e.g. registration refused (GL on another GPU): fall back for good, say why.
            logger.warning("display %r: CUDA-GL interop failed, using host uploads: %s",
                           self.actor_id, exc)
            uploader.close()
            self._uploader = uploader = HostUploader(f"interop failed: {exc}")
            self.request_input_device(None)  # host copies from the staging bridge from now on
            path = uploader.upload(tex, frame.data.detach())
        if path != uploader.path:
            reason = f"frame on {frame.data.device}; interop needs frames on the GL's GPU"
        else:
            reason = uploader.reason
        self.upload_path, self.upload_reason = path, reason

    def _draw(self, present: bool = True) -> None:
        fbo, ctx, tex, vao = self._fbo, self._ctx, self._tex, self._vao
        assert fbo is not None and ctx is not None and vao is not None
        fw, fh = self._fb_size
        self._dirty = False
        if fw <= 0 or fh <= 0:
            return  # minimised
        fbo.use()
        fbo.clear(0.0, 0.0, 0.0, 1.0, viewport=(0, 0, fw, fh))
        if tex is not None and self._tex_key is not None:
            tw, th, _ = self._tex_key
            x, y, w, h = letterbox_rect(tw, th, fw, fh)
            ctx.viewport = (x, fh - y - h, w, h)  # GL viewports count rows from the bottom
            tex.use(0)
            vao.render(mode=ctx.TRIANGLE_STRIP)
        if present and self._window is not None:
            import glfw

            glfw.swap_buffers(self._window)

    def _gl_read(self) -> torch.Tensor:
        fbo = self._fbo
        assert fbo is not None
        fw, fh = self._fb_size
        if self._window is not None:
            self._draw(present=False)  # after a swap the back buffer is undefined: redraw it
        raw = fbo.read(viewport=(0, 0, fw, fh), components=3, alignment=1)
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(fh, fw, 3)
        return torch.from_numpy(np.ascontiguousarray(rows[::-1]))  # GL rows are bottom-up

    def _gl_teardown(self) -> None:
        uploader, self._uploader = self._uploader, None
        self.request_input_device(None)
        if uploader is not None:
            uploader.close()  # unregisters from CUDA while the context is still current
        owned_fbo = self._fbo if self._window is None else None  # glfw owns the window's
        for obj in (self._tex, self._vao, self._vbo, self._prog, owned_fbo):
            if obj is not None:
                obj.release()
        self._tex = self._vao = self._vbo = self._prog = self._fbo = None
        self._tex_key = None
        if self._ctx is not None:
            self._ctx.release()  # a no-op for the window's context (glfw owns it)
            self._ctx = None
        if self._window is not None:
            import glfw

            with glfw_lock:
                glfw.make_context_current(None)  # type: ignore[arg-type]  # None detaches
                glfw.destroy_window(self._window)
            self._window = None
        if self._glfw_held:
            self._glfw_held = False
            glfw_release()

    # -- glfw callbacks (run inside poll_events) -----------------------------
    def _queue_event(self, event: EventMessage) -> None:
        with self._events_lock:
            last = self._events[-1] if self._events else None
            if (event.kind == "mouse" and event.action == "move" and last is not None
                    and last.kind == "mouse" and last.action == "move"):
                self._events[-1] = event  # coalesce a run of moves into the newest
            else:
                self._events.append(event)

    def _on_fb_size(self, width: int, height: int) -> None:
        self._fb_size, self._dirty = (width, height), True

    def _on_win_size(self, width: int, height: int) -> None:
        self._win_size = (width, height)
