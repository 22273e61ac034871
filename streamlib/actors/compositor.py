"""``CompositorActor``: alpha-blend any number of video layers over a base frame.

Layers (RGBA or RGB24) are placed, scaled and ordered here; the pixels are
blended by the backends of :mod:`streamlib.actors.blending`, which follow the
exact 8-bit rounding rule of :mod:`streamlib.media.blend` bit for bit (its
``composite_reference`` is the oracle).
"""

from __future__ import annotations

import itertools
import math
import threading
from dataclasses import dataclass, replace
from typing import Any, Literal, Mapping, Sequence

import torch

from streamlib.core.actor import Actor
from streamlib.clocks import Clock, SoftwareClock, TimedTick
from streamlib.runtime.progress import reaches
from streamlib.gpu.device import resolve_device
from streamlib.core.frames import PixelFormat, VideoFrame
from streamlib.core.limits import check_frame_size
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.media.blend import Placed
from streamlib.actors.blending import composite_into, numba_available, numba_kernels, resize_layer
from streamlib.errors import ConfigError, FrameValidationError, PortError

__all__ = [
    "BASE_INPUTS", "LAYER_FIELDS", "Backend", "CompositorActor", "Interpolation", "LayerSpec", "parse_color",
]

Backend = Literal["auto", "numba", "torch"]
Interpolation = Literal["nearest", "bilinear"]
LAYER_FIELDS: tuple[str, ...] = ("x", "y", "scale", "opacity", "z")
# the two names of the base-layer input: the plan's "base" and the former "background"
BASE_INPUTS: tuple[str, ...] = ("base", "background")


def parse_color(value: object, where: str = "color") -> tuple[int, int, int]:
    """``(r, g, b)`` from a 3-sequence of ints 0..255 or ``"#rrggbb"``; ConfigError otherwise."""
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16))
            except ValueError:
                pass
    elif isinstance(value, Sequence) and len(value) == 3 and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in value):
        return (int(value[0]), int(value[1]), int(value[2]))
    raise ConfigError(f"{where} must be (r, g, b) ints 0..255 or '#rrggbb', got {value!r}")


# -- the actor -------------------------------------------------------------------

@dataclass(frozen=True)
class LayerSpec:
    """Placement of one layer: top-left ``(x, y)`` after scaling, z-order, opacity."""

    name: str
    x: int = 0
    y: int = 0
    scale: float = 1.0
    opacity: float = 1.0
    z: int = 0
    order: int = 0  # insertion counter: ties in z draw in insertion order


@dataclass
class _ScaleCacheEntry:
    data: torch.Tensor  # the input tensor (held so its identity cannot be reused)
    version: int
    scale: float
    resized: torch.Tensor


class CompositorActor(Actor):
    """Alpha-blends video layers (RGBA or RGB24) over a base frame or colour into RGB24.

    Inputs: ``base`` (the optional base layer: full-frame RGB/RGBA video;
    alpha ignored; placed at (0, 0) and clipped, the rest filled with the
    ``background`` colour), also reachable under its former name
    ``background`` (two ports for the one base layer: connect or feed one of
    them, both raises PortError), and one ``video`` input per layer, named
    after it. Output:
    ``video`` (RGB24, ``width`` x ``height``), a new tensor every frame; input
    tensors are never modified. See the module docstring for the exact rounding.

    Layers are added with ``add_layer`` (also while the graph runs; it returns
    the new input port, so ``src >> comp.add_layer("logo", x=10)`` works),
    changed with ``update_layer`` and removed with ``remove_layer``. They draw
    in (z, insertion) order; parts outside the frame are clipped; a layer
    whose input has no frame yet is skipped.

    Ticking: without ``fps``/``clock`` the compositor composites once per new
    frame on the trigger input (reading the latest frame of every other input)
    and stamps the output with the trigger frame's timestamp and frame number.
    With ``fps`` (or ``clock=``) it composites on every clock tick instead.

    Args:
        width: output width in pixels (> 0).
        height: output height in pixels (> 0).
        background: background colour, ``(r, g, b)`` or ``"#rrggbb"``.
        layers: ``{name: {x, y, scale, opacity, z}}`` added in order at
            construction (for graph files).
        trigger: input whose new frames cause a composite: the base layer
            (``"base"`` or ``"background"``) or a layer from ``layers``.
            Default: the base layer when it is connected or fed, else the
            first layer still present.
        fps: composite on an own ``SoftwareClock`` at this rate instead.
        interpolation: ``"nearest"`` or ``"bilinear"`` for layers with
            ``scale != 1`` (resized once per distinct input tensor).
        backend: ``"auto"`` (CPU: numba when installed, else torch; CUDA: the
            one-pass kernel of ``streamlib.gpu.kernels`` when CuPy is installed,
            else torch), ``"numba"`` (torch for CUDA frames), ``"torch"``.
        sync: hold a trigger frame until every layer whose upstream is running
            has a frame at least as new (same timestamp or later), so layers
            are frame-aligned. Default (None): only for frames on a virtual
            clock (offline lock-step renders, where the wait always ends within
            the tick); live streams composite the latest of each layer.
        device: where to composite: ``"cpu"``, ``"cuda"``, ``"cuda:N"``. The
            inputs are delivered there (CPU frames copied up once through the
            staging bridge) and the output lives there. None (default): where
            the inputs are (the CPU unless the actor runs on a GPU dispatcher).
            A CUDA device also makes ``dispatcher="gpu"`` the default.
        actor_id, clock, **kwargs: see ``Actor``.

    Raises:
        ConfigError: bad size, colour, layer parameters, trigger, interpolation,
            backend (``"numba"`` when numba is missing) or device.
    """

    default_output_name = "video"

    def __init__(self, width: int = 1280, height: int = 720,
                 background: str | Sequence[int] = "#000000", *,
                 layers: Mapping[str, Mapping[str, Any]] | None = None,
                 trigger: str | None = None, fps: float | None = None,
                 interpolation: Interpolation = "bilinear", backend: Backend = "auto",
                 sync: bool | None = None, device: str | None = None,
                 actor_id: str | None = None, clock: Clock | None = None,
                 **kwargs: object) -> None:
        where = f"CompositorActor{'' if actor_id is None else f' {actor_id!r}'}"
        if not isinstance(width, int) or not isinstance(height, int) or width <= 0 or height <= 0:
            raise ConfigError(f"{where}: width and height must be ints > 0, got {width!r}x{height!r}")
        check_frame_size(width, height, where)  # before allocating anything
        color = parse_color(background, f"{where}: background")
        if interpolation not in ("nearest", "bilinear"):
            raise ConfigError(f"{where}: interpolation must be 'nearest' or 'bilinear', "
                              f"got {interpolation!r}")
        if backend not in ("auto", "numba", "torch"):
            raise ConfigError(f"{where}: backend must be 'auto', 'numba' or 'torch', got {backend!r}")
        if backend == "numba" and not numba_available():
            raise ConfigError(f"{where}: backend='numba' but numba is not installed "
                              "(pip install numba, or use backend='auto')")
        dev = None if device is None else resolve_device(device, where=f"{where}: device")
        if fps is not None and clock is None:
            try:
                clock = SoftwareClock(fps)
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"{where}: fps: {exc}") from None
        super().__init__(actor_id=actor_id, clock=clock, **kwargs)  # type: ignore[arg-type]
        self.width, self.height = width, height
        self.background = color
        self.interpolation = interpolation
        self.backend: str = "numba" if backend == "numba" or (
            backend == "auto" and numba_available()) else "torch"  # the CPU backend
        self._blend_backend = backend  # "auto" lets CUDA frames take the CUDA kernel
        self.device = dev  # read by the staging bridge: inputs arrive on this device
        self._lock = threading.Lock()
        self._order = itertools.count()
        self._layers: tuple[LayerSpec, ...] = ()  # copy-on-write, sorted by (z, order)
        self._ports: dict[str, StreamInput] = {}
        self._cache: dict[str, _ScaleCacheEntry] = {}
        self._bg_image = torch.tensor(color, dtype=torch.uint8).expand(height, width, 3).contiguous()
        self._bg_on: dict[str, torch.Tensor] = {}
        # "background" first: ``src >> comp`` connects it, as before "base" existed
        self.inputs["background"] = StreamInput("background", kind="video")
        self.inputs["base"] = StreamInput("base", kind="video")
        self.outputs["video"] = StreamOutput("video")
        for name, params in (layers or {}).items():
            if not isinstance(params, Mapping):
                raise ConfigError(f"{self._where()}: layers[{name!r}] must be a mapping of "
                                  f"{', '.join(LAYER_FIELDS)}, got {params!r}")
            self.add_layer(name, **params)
        if trigger is not None and trigger not in BASE_INPUTS and trigger not in self._ports:
            raise ConfigError(f"{self._where()}: trigger must be 'base', 'background' or a layer "
                              f"given in layers ({', '.join(self._ports) or 'none'}), got {trigger!r}")
        self.trigger = trigger
        self.sync = sync

    def _where(self) -> str:
        return f"CompositorActor '{self.actor_id}'"

    def _base_port(self) -> StreamInput:
        """The input carrying the base layer: ``background`` if it is used, else ``base``.

        Raises PortError when both are connected or fed.
        """
        base, background = self.inputs["base"], self.inputs["background"]
        base_used = base.is_connected or base.sequence > 0
        if not (background.is_connected or background.sequence > 0):
            return base
        if base_used:
            raise PortError(f"{self._where()}: inputs 'base' and 'background' are the same base "
                            "layer; connect or feed only one of them")
        return background

    # -- layers ------------------------------------------------------------
    def _check(self, name: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        where = f"{self._where()}: layer {name!r}"
        out: dict[str, Any] = {}
        for key, value in changes.items():
            if key not in LAYER_FIELDS:
                raise ConfigError(f"{where}: unknown field {key!r} (fields: {', '.join(LAYER_FIELDS)})")
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if key in ("x", "y", "z"):
                if not isinstance(value, int) or isinstance(value, bool):
                    raise ConfigError(f"{where}: {key} must be an int, got {value!r}")
            elif not number or not math.isfinite(value):
                raise ConfigError(f"{where}: {key} must be a finite number, got {value!r}")
            elif key == "opacity" and not 0.0 <= value <= 1.0:
                raise ConfigError(f"{where}: opacity must be in [0, 1], got {value!r}")
            elif key == "scale" and not 0.0 < value <= 64.0:
                raise ConfigError(f"{where}: scale must be in (0, 64], got {value!r}")
            out[key] = float(value) if key in ("scale", "opacity") else value
        return out

    def add_layer(self, name: str, *, x: int = 0, y: int = 0, scale: float = 1.0,
                  opacity: float = 1.0, z: int = 0) -> StreamInput:
        """Add layer ``name`` with a new video input of the same name; returns that input.

        Safe while the graph runs. Raises ConfigError for a bad or taken name
        (``base`` and ``background`` are reserved) or bad parameters.
        """
        if not isinstance(name, str) or not name.isidentifier() or name in BASE_INPUTS:
            raise ConfigError(f"{self._where()}: layer name must be an identifier other than "
                              f"'base' and 'background', got {name!r}")
        fields = self._check(name, {"x": x, "y": y, "scale": scale, "opacity": opacity, "z": z})
        port = StreamInput(name, kind="video")
        with self._lock:
            if name in self._ports or name in self.inputs:
                raise ConfigError(f"{self._where()}: layer {name!r} already exists")
            spec = LayerSpec(name, order=next(self._order), **fields)
            self.inputs[name] = port  # the one structure shared with the runtime
            self._ports[name] = port
            self._publish(self._layers + (spec,))
        return port

    def update_layer(self, name: str, **changes: Any) -> LayerSpec:
        """Change fields (x, y, scale, opacity, z) of layer ``name``; returns the new spec.

        Raises PortError (a KeyError) for an unknown layer, ConfigError for bad fields.
        """
        fields = self._check(name, changes)
        with self._lock:
            old = self._find(name)
            new = replace(old, **fields)
            self._publish(tuple(new if s is old else s for s in self._layers))
        return new

    def remove_layer(self, name: str) -> None:
        """Disconnect and remove layer ``name`` and its input; KeyError if unknown."""
        with self._lock:
            old = self._find(name)
            port = self._ports.pop(name)
            self._publish(tuple(s for s in self._layers if s is not old))
            port.disconnect()
            self.inputs.pop(name)
            self._cache.pop(name, None)

    def layers(self) -> list[LayerSpec]:
        """The current layers in drawing order."""
        return list(self._layers)

    def _find(self, name: str) -> LayerSpec:
        for spec in self._layers:
            if spec.name == name:
                return spec
        known = ", ".join(s.name for s in self._layers) or "none"
        raise PortError(f"{self._where()}: no layer {name!r} (layers: {known})")

    def _publish(self, layers: tuple[LayerSpec, ...]) -> None:
        self._layers = tuple(sorted(layers, key=lambda s: (s.z, s.order)))

    # -- compositing ---------------------------------------------------------
    def _scaled(self, spec: LayerSpec, data: torch.Tensor) -> torch.Tensor:
        if spec.scale == 1.0:
            return data
        hit = self._cache.get(spec.name)
        if (hit is not None and hit.data is data and hit.version == data._version
                and hit.scale == spec.scale):
            return hit.resized
        resized = resize_layer(data, spec.scale, self.interpolation)
        self._cache[spec.name] = _ScaleCacheEntry(data, data._version, spec.scale, resized)
        return resized

    def render(self, background: VideoFrame | None = None,
               layers: Mapping[str, VideoFrame | None] | None = None) -> torch.Tensor:
        """Composite ``background`` and the named layer frames with the current
        layer settings; returns a new (height, width, 3) uint8 tensor.

        Layers missing from ``layers`` (or None) are skipped; names that are
        not layers are ignored. Raises FrameValidationError for a frame that is not
        RGB24/RGBA.
        """
        frames = layers or {}
        placed: list[Placed] = []
        device = self.device or (background.data.device if background is not None else None)
        for spec in self._layers:
            frame = frames.get(spec.name)
            if frame is None:
                continue
            self._check_format(frame, f"layer {spec.name!r}")
            device = device or frame.data.device
            data = self._scaled(spec, frame.data)
            placed.append((data, spec.x, spec.y, spec.opacity))
        device = device or torch.device("cpu")
        out = torch.empty((self.height, self.width, 3), dtype=torch.uint8, device=device)
        fill = self._bg_image
        if fill.device != device:  # uploaded once per device: no host sync every frame
            on = self._bg_on.get(str(device))
            if on is None:
                on = self._bg_on[str(device)] = fill.to(device)
            fill = on
        if background is None:
            out.copy_(fill)
        else:
            self._check_format(background, "background")
            bg = background.data
            h, w = min(self.height, bg.shape[0]), min(self.width, bg.shape[1])
            if h < self.height or w < self.width:
                out.copy_(fill)
            out[:h, :w] = bg[:h, :w, :3]
        placed = [(d.to(device), x, y, o) for d, x, y, o in placed]
        composite_into(out, placed, self._blend_backend)
        return out

    def _check_format(self, frame: VideoFrame, what: str) -> None:
        if frame.format not in (PixelFormat.RGB24, PixelFormat.RGBA):
            raise FrameValidationError(f"{self._where()}: {what} must be rgb24 or rgba, "
                                       f"got {frame.format.value}")

    def _trigger_port(self) -> StreamInput | None:
        if self.trigger in BASE_INPUTS:
            return self._base_port()
        if self.trigger is not None and self.trigger in self.inputs:
            return self.inputs[self.trigger]
        bg = self._base_port()
        if bg.is_connected or bg.sequence > 0:
            return bg
        first = min(self._layers, key=lambda s: s.order, default=None)
        return None if first is None else self._ports.get(first.name)

    def _layers_behind(self, trigger: StreamInput, stamp: VideoFrame) -> bool:
        if not (self.sync if self.sync is not None else stamp.clock_id == "virtual"):
            return False
        ports = [self._ports.get(spec.name) for spec in self._layers]
        ports.append(self._base_port())
        for port in ports:
            if port is None or port is trigger or port.upstream is None:
                continue
            upstream = port.upstream.actor
            if upstream is not None and upstream.status.value != "running":
                continue  # a failed or stopped layer must not stall the composite
            if upstream is not None and (upstream is self or reaches(self, upstream)):
                continue  # fed back from our own output: it would wait for itself
            latest = port.peek_latest()
            if latest is None or latest.timestamp_ns < stamp.timestamp_ns:
                return True
        return False

    def setup(self) -> None:
        if self.backend == "numba":
            numba_kernels()  # compile/load before the first frame, on the process thread

    def process(self, tick: TimedTick) -> None:
        stamp: VideoFrame | None = None
        if self.clock is None:
            trigger = self._trigger_port()
            stamp = trigger.peek_new() if trigger is not None else None
            if trigger is None or stamp is None or self._layers_behind(trigger, stamp):
                return  # a later write (the lagging layer's) ticks us again
            trigger.read_new()
        frames: dict[str, VideoFrame | None] = {}
        for spec in self._layers:
            port = self._ports.get(spec.name)  # None if removed meanwhile
            if port is not None:
                frames[spec.name] = port.read_latest()
        background = self._base_port().read_latest()
        data = self.render(background, frames)
        if stamp is None:
            out = VideoFrame(data, timestamp_ns=tick.timestamp_ns,
                             frame_number=tick.frame_number, clock_id=tick.clock_id)
        else:
            out = VideoFrame(data, timestamp_ns=stamp.timestamp_ns,
                             frame_number=stamp.frame_number, clock_id=stamp.clock_id)
        self.outputs["video"].write(out)

    # The lock cannot cross to a worker process; a fresh one is made there.
    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_lock", None)
        state.pop("_order", None)
        state["_cache"] = {}
        state["_next_order"] = max((s.order for s in self._layers), default=-1) + 1
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        start = state.pop("_next_order", 0)
        super().__setstate__(state)
        self._lock = threading.Lock()
        self._order = itertools.count(start)
