"""``DrawingActor``: per-frame skia-python drawing into RGBA video frames.

Buffer strategy (measured at 1920x1080 on the 2-core dev box, scene of
``examples/drawing_overlay.py``): drawing into one reused surface and
publishing ``buffer.clone()`` cost ~2.3 ms/frame; allocating a fresh numpy
array per frame and wrapping it in a new ``skia.Surface`` (zero-copy, ~10 us)
cost ~0.4 ms/frame. The clear already writes every byte, so a fresh array needs
no extra pass, whereas clone adds a full 8 MB copy into newly faulted pages.
So each frame gets a fresh array that becomes the published frame's tensor and
is never written again (frames are immutable; no ring of buffers to track).
With ``clear=None`` (accumulate) the previous frame is copied in first.

User draw code that raises does not fail the actor: the error is logged once
per distinct error (with the user-code line number), counted in
``draw_errors`` and kept in ``last_error``; the last good frame is re-published
(re-stamped, ``metadata["draw_error"]`` set) so downstream keeps a picture.
"""

from __future__ import annotations

import linecache
import logging
import math
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np
import torch

from streamlib.core import trust
from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick
from streamlib.core.frames import VideoFrame
from streamlib.core.limits import check_frame_size
from streamlib.core.ports import StreamOutput
from streamlib.errors import ConfigError, ConfigTypeError

__all__ = ["DrawFunction", "DrawingActor", "DrawingContext", "parse_color"]

logger = logging.getLogger(__name__)

_NAMED_COLORS: dict[str, tuple[int, int, int, int]] = {
    "transparent": (0, 0, 0, 0), "black": (0, 0, 0, 255), "white": (255, 255, 255, 255),
    "red": (255, 0, 0, 255), "green": (0, 255, 0, 255), "blue": (0, 0, 255, 255),
    "yellow": (255, 255, 0, 255), "cyan": (0, 255, 255, 255), "magenta": (255, 0, 255, 255),
    "gray": (128, 128, 128, 255), "grey": (128, 128, 128, 255),
}
_MAX_SEEN_ERRORS = 256  # distinct errors remembered for log de-duplication


@dataclass(frozen=True, slots=True)
class DrawingContext:
    """What a draw function knows about the frame being drawn.

    ``time`` is seconds since the actor's first tick (from tick timestamps, so
    a VirtualClock gives exact times); ``frame_number`` is the tick's.
    """

    time: float
    frame_number: int
    width: int
    height: int
    fps: float
    timestamp_ns: int


DrawFunction = Callable[[Any, DrawingContext], object]
ColorSpec = Union[str, tuple[int, ...], list[int], None]


def parse_color(value: object, where: str = "color") -> tuple[int, int, int, int]:
    """``"red"``, ``"#RRGGBB"``, ``"#RRGGBBAA"``, ``(r, g, b)`` or ``(r, g, b, a)`` -> RGBA ints.

    Raises:
        ConfigError: unknown name, bad hex, wrong length or components outside 0..255.
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _NAMED_COLORS:
            return _NAMED_COLORS[text]
        if text.startswith("#") and len(text) in (7, 9):
            try:
                parts = [int(text[i:i + 2], 16) for i in range(1, len(text), 2)]
            except ValueError:
                parts = []
            if parts:
                return (parts[0], parts[1], parts[2], parts[3] if len(parts) == 4 else 255)
        raise ConfigError(
            f"{where}: unknown colour {value!r}; use a name ({', '.join(sorted(_NAMED_COLORS))}), "
            "'#RRGGBB', '#RRGGBBAA' or an (r, g, b[, a]) tuple"
        )
    if isinstance(value, (tuple, list)) and len(value) in (3, 4) and all(
        isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value
    ):
        r, g, b = int(value[0]), int(value[1]), int(value[2])
        return (r, g, b, int(value[3]) if len(value) == 4 else 255)
    raise ConfigError(f"{where}: expected a colour name, '#RRGGBB[AA]' or (r, g, b[, a]) ints 0..255, "
                      f"got {value!r}")


class DrawingActor(Actor):
    """Draws each frame with skia-python and publishes RGBA ``outputs['video']``.

    ``draw`` is a callable ``draw(canvas: skia.Canvas, ctx: DrawingContext)``,
    the name of one registered with ``streamlib.register_function``, or Python source defining ``def draw(canvas, ctx): ...`` (its namespace
    has ``skia``, ``math`` and ``torch``; module-level names persist across
    frames). Output pixels are straight (unpremultiplied) RGBA. Errors in the
    draw function are reported and counted, never fatal (see module docs).

    Args:
        draw: draw callable, or source code defining ``draw(canvas, ctx)``.
        width: frame width in pixels (1..16384).
        height: frame height in pixels (1..16384).
        fps: frame rate of the default ``SoftwareClock`` (ignored with ``clock=``).
        draw_file: path of a ``.py`` file defining ``draw`` (instead of ``draw``).
        clear: background each frame starts from: a colour name, ``"#RRGGBB[AA]"``
            or an (r, g, b[, a]) tuple (default ``"transparent"``); ``None`` keeps
            the previous frame and draws on top (accumulate).
        actor_id: unique id (default: auto).

    Raises:
        ConfigError: bad size/colour, neither or both of ``draw``/``draw_file``,
            draw code with a syntax error (message has the line number), code
            that raises at definition time, or code not defining ``draw``.
        ConfigTypeError: ``draw`` is neither a str nor a callable.
        OSError: ``draw_file`` cannot be read.
    """

    def __init__(self, draw: str | DrawFunction | None = None, width: int = 640,
                 height: int = 360, fps: float = 30, *, draw_file: str | None = None,
                 clear: ColorSpec = "transparent", actor_id: str | None = None,
                 clock: Clock | None = None, **kwargs: Any) -> None:
        super().__init__(actor_id=actor_id, clock=clock or SoftwareClock(fps), **kwargs)
        name = f"DrawingActor '{self.actor_id}'"
        self.width, self.height = check_frame_size(width, height, name)
        self.fps = float(self.clock.fps if self.clock is not None and self.clock.fps else fps)
        import skia  # loads with the first DrawingActor, not with `import streamlib`

        self._clear = None if clear is None else skia.Color(*parse_color(clear, f"{name}: clear"))
        self._code_filename: str | None = None
        self._draw = self._load_draw(name, draw, draw_file)
        self.draw_errors = 0
        self.last_error: str | None = None
        self._seen_errors: set[tuple[str, str, int]] = set()
        self._first_ns: int | None = None
        self._last: VideoFrame | None = None
        self.outputs["video"] = StreamOutput("video")

    # -- construction ------------------------------------------------------
    def _load_draw(self, name: str, draw: object, draw_file: str | None) -> DrawFunction:
        if (draw is None) == (draw_file is None):
            raise ConfigError(f"{name}: give exactly one of draw (callable or source) and "
                              "draw_file")
        if draw_file is not None:
            trust.check_code(f"{name}: field 'draw_file'", "draw code")
            path = Path(draw_file)
            return self._compile(name, path.read_text(encoding="utf-8"), str(path.resolve()),
                                 quote=False)
        if isinstance(draw, str):
            registered = trust.registered_function(draw.strip())
            if registered is not None:
                return self._load_draw(name, registered, None)
            trust.check_code(f"{name}: field 'draw'", "draw code (Python source)")
            return self._compile(name, draw, f"<draw_code:{self.actor_id}>")
        if callable(draw):
            code = getattr(draw, "__code__", None)
            self._code_filename = getattr(code, "co_filename", None)
            return draw
        raise ConfigTypeError(f"{name}: draw must be a callable or a str of source, got {type(draw).__name__}")

    def _compile(self, name: str, source: str, filename: str, *,
                 quote: bool = True) -> DrawFunction:
        """``quote=False`` (source read from a file): messages give line numbers and
        exception types only, never text of the file (it may not be draw code)."""
        import skia
        self._code_filename = filename
        if filename.startswith("<"):  # let tracebacks show the offending source line
            lines = source.splitlines(keepends=True)
            linecache.cache[filename] = (len(source), None, lines, filename)
        try:
            code = compile(source, filename, "exec")
        except SyntaxError as exc:
            if not quote:
                raise ConfigError(f"{name}: syntax error in draw_file {filename!r} at line "
                                  f"{exc.lineno}") from None
            text = (exc.text or "").strip()
            raise ConfigError(
                f"{name}: syntax error in draw code at line {exc.lineno}: {exc.msg}"
                + (f"\n    {text}" if text else "")
            ) from exc
        namespace: dict[str, Any] = {"skia": skia, "math": math, "torch": torch,
                                     "__name__": f"draw_code_{self.actor_id}"}
        try:
            exec(code, namespace)  # noqa: S102 - running the user's own draw code is the point
        except Exception as exc:
            where = self._user_location(exc)
            if not quote:
                raise ConfigError(f"{name}: draw_file raised {type(exc).__name__} while "
                                  f"loading{where}") from None
            raise ConfigError(f"{name}: draw code raised while loading{where}: "
                              f"{type(exc).__name__}: {exc}") from exc
        fn = namespace.get("draw")
        if not callable(fn):
            raise ConfigError(f"{name}: draw code must define a function draw(canvas, ctx)")
        return fn  # type: ignore[no-any-return]

    # -- errors ------------------------------------------------------------
    def _user_frame(self, exc: BaseException) -> traceback.FrameSummary | None:
        frames = traceback.extract_tb(exc.__traceback__)
        mine = [f for f in frames if f.filename == self._code_filename]
        if mine:
            return mine[-1]
        return frames[-1] if frames else None

    def _user_location(self, exc: BaseException) -> str:
        frame = self._user_frame(exc)
        if frame is None:
            return ""
        return f" at {frame.filename} line {frame.lineno} in {frame.name}"

    def _report(self, exc: Exception, tick: TimedTick) -> None:
        frame = self._user_frame(exc)
        lineno = (frame.lineno or 0) if frame is not None else 0
        message = f"{type(exc).__name__}: {exc}"
        where = self._user_location(exc)
        self.draw_errors += 1
        self.last_error = f"frame {tick.frame_number}{where}: {message}"
        key = (type(exc).__name__, str(exc), lineno)
        if key in self._seen_errors:
            return
        if len(self._seen_errors) >= _MAX_SEEN_ERRORS:
            self._seen_errors.clear()
        self._seen_errors.add(key)
        source_line = f"\n    {frame.line}" if frame is not None and frame.line else ""
        logger.error("DrawingActor %r: draw error%s: %s%s (frame %d; keeping the last good "
                     "frame, logged once per distinct error)", self.actor_id, where, message,
                     source_line, tick.frame_number)

    # -- the frame loop ----------------------------------------------------
    def _new_buffer(self) -> np.ndarray[Any, np.dtype[np.uint8]]:
        shape = (self.height, self.width, 4)
        if self._clear is None and self._last is not None:
            return self._last.data.numpy().copy()  # accumulate on the previous picture
        if self._clear is None:
            return np.zeros(shape, np.uint8)
        return np.empty(shape, np.uint8)  # fully overwritten by canvas.clear

    def process(self, tick: TimedTick) -> None:
        if self._first_ns is None:
            self._first_ns = tick.timestamp_ns
        ctx = DrawingContext(
            time=(tick.timestamp_ns - self._first_ns) / 1e9, frame_number=tick.frame_number,
            width=self.width, height=self.height, fps=self.fps, timestamp_ns=tick.timestamp_ns,
        )
        buffer = self._new_buffer()
        import skia

        surface = skia.Surface(buffer, colorType=skia.kRGBA_8888_ColorType,
                               alphaType=skia.kUnpremul_AlphaType)
        try:
            with surface as canvas:
                if self._clear is not None:
                    canvas.clear(self._clear)
                self._draw(canvas, ctx)
        except Exception as exc:  # noqa: BLE001 - user code: report, keep going
            self._report(exc, tick)
            if self._last is not None:
                self.outputs["video"].write(self._last.replace(
                    timestamp_ns=tick.timestamp_ns, frame_number=tick.frame_number,
                    clock_id=tick.clock_id, metadata={"draw_error": self.last_error},
                ))
            return
        finally:
            del surface  # the array outlives the surface; nothing draws into it again
        frame = VideoFrame(torch.from_numpy(buffer), timestamp_ns=tick.timestamp_ns,
                           frame_number=tick.frame_number, format="rgba", clock_id=tick.clock_id)
        self._last = frame
        self.outputs["video"].write(frame)
