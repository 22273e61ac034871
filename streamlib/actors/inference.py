"""Model inference on video: ``InferenceActor`` and a demo detector.

``InferenceActor`` runs a ``torch.nn.Module`` (or any callable) on each frame
of one input and publishes the result as a ``DataMessage`` (boxes, scores,
embeddings...) or as video. On CUDA it enqueues everything on a CUDA stream of
its own (or the GPU dispatcher's) and never waits for the GPU: no ``.item()``,
no ``.cpu()``, no synchronisation in the default path. The published payload
therefore holds *device* tensors; the message carries the CUDA event recorded
after the work (its ``ready_event``): a CUDA consumer on another stream calls
``streamlib.gpu.device.wait_ready(msg, stream)`` before reading it (never
blocks the host); a CPU consumer calls ``to_cpu(msg)`` (waits for that event,
then copies) or receives host copies through the staging bridge.
A bare ``.cpu()`` is not enough: it orders only after the consumer's current
stream, not the actor's.

``OverlayBoxesActor`` (``streamlib.actors.overlay``)
draws the boxes of such messages onto the matching video frames.
``BrightBoxDetector`` is a tiny
fixed-weight model (no download) that finds the bright box of
``TestPatternActor(pattern="moving_box")``: examples and tests use it.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Callable, Literal, Mapping, Sequence

import torch

from streamlib.core import trust
from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.gpu.device import (
    Stream, current_stream, default_stream, new_stream, record_event, resolve_device,
    stream_context, wait_ready, with_ready_event,
)
from streamlib.core.frames import DataMessage, PixelFormat, VideoFrame
from streamlib.core.ports import StreamInput, StreamOutput, tick_from_item
from streamlib.errors import ConfigError, ConfigTypeError, FrameValidationError, PortKindError

__all__ = ["BrightBoxDetector", "InferenceActor", "resolve_object", "to_cpu"]

OutputKind = Literal["data", "video"]
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
    "float64": torch.float64,
}
_FORMAT_FOR_CHANNELS = {1: PixelFormat.GRAY8, 3: PixelFormat.RGB24, 4: PixelFormat.RGBA}


# -- resolving "package.module:name" ------------------------------------------------------
def resolve_object(spec: str, where: str = "") -> Any:
    """The object named by ``"package.module:attr"`` (``attr`` may be dotted), as
    the current ``streamlib.core.trust`` policy allows (anything, from Python code).

    Raises:
        ValueError: the string is not of that form, the module cannot be
            imported, or it has no such attribute; the message starts with
            ``where`` and quotes ``spec``.
        AccessDeniedError: the policy does not allow the module (not imported).
    """
    return trust.resolve_object(spec, where)


def _index(value: Any, i: int) -> Any:
    """Item ``i`` of a batched model output: tensors sliced on dim 0, containers recursed."""
    if isinstance(value, torch.Tensor):
        return value[i] if value.dim() > 0 else value
    if isinstance(value, Mapping):
        return {k: _index(v, i) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_index(v, i) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def to_cpu(value: Any) -> Any:
    """``value`` with every tensor (in dicts, lists, tuples too) copied to the host.

    Given a frame or message, its ready event (``ready_event``) is waited for
    first, so results computed on another actor's stream are complete, and the
    same kind of item comes back with its ``data``/``payload`` on the host. Pass
    the message, not its payload: a bare payload has no event to wait on. CPU
    tensors are returned as they are.
    """
    if hasattr(value, "ready_event"):  # a frame or message: the event travels with it
        wait_ready(value)  # the current stream waits for the producer's stream
        if isinstance(getattr(value, "data", None), torch.Tensor):
            return value.replace(data=_host(value.data))
        if hasattr(value, "payload"):
            return value.replace(payload=_host(value.payload))
        return value
    return _host(value)


def _host(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu() if value.is_cuda else value
    if isinstance(value, Mapping):
        return {k: _host(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [_host(v) for v in value]
        return type(value)(*items) if hasattr(value, "_fields") else type(value)(items)
    return value


def _stamp(item: Any) -> tuple[int, int, str]:
    tick = tick_from_item(item)  # the one rule for an item's stamp
    return tick.timestamp_ns, tick.frame_number, tick.clock_id


class InferenceActor(Actor):
    """Runs a model on each frame of ``inputs[input]``; publishes ``DataMessage`` or video.

    Per frame (or per ``batch`` frames): ``preprocess(frame)`` -> a tensor with
    a leading batch dimension of 1 (moved to ``device`` if it is not there;
    frames of a batch are concatenated on dim 0); ``model(x)`` under
    ``torch.inference_mode()``; the output is split per frame (tensors indexed
    on dim 0, dicts/lists/tuples recursively, anything else shared); then
    ``postprocess(output_i, frame_i)`` -> the payload. Each result carries its
    frame's ``timestamp_ns``, ``frame_number`` and ``clock_id``.

    With ``output="data"`` the payload goes out as ``DataMessage(payload,
    topic=topic)`` on ``outputs['data']``; on CUDA the payload stays on the
    GPU and each of its tensors carries a ready event (a consumer on another
    stream calls ``streamlib.gpu.device.wait_ready``; a CPU consumer calls
    ``to_cpu(payload)``). With ``output="video"`` the payload must be a
    ``VideoFrame`` or an (H, W[, C]) uint8 tensor (1, 3 or 4 channels); the
    default postprocess turns a (C, H, W) float output in [0, 1] into one.

    Batching: ``batch=N`` collects N frames (``read_all_new``) before running,
    then writes N results in frame order. It raises throughput on a GPU at the
    cost of latency: the first frame of a batch waits N-1 frame periods, and a
    partial batch at the end of a stream is never run. Consumers should read
    with ``read_all_new`` and ``slots >= batch``. With ``batch=1`` each tick
    runs the newest unseen frame (stale frames are skipped, latest wins).

    Args:
        model: a ``torch.nn.Module``, any callable, or ``"package.module:factory"``
            (imported; a class or function is called with ``model_kwargs`` to
            build the model, an instance is used as is) so pipeline files can
            name one. A module is moved to ``device``/``dtype`` once in setup
            and put in eval mode.
        input: name of the input port (``"video"``; a name that does not start
            with ``video`` accepts any item).
        output: ``"data"`` (``outputs['data']``) or ``"video"`` (``outputs['video']``).
        preprocess: ``frame -> tensor`` (callable or ``"module:function"``);
            default: (H, W, C) uint8 -> (1, C, H, W) ``dtype`` in [0, 1] on
            ``device`` (non-blocking copy, channel order as in the frame).
        postprocess: ``(output, frame) -> payload`` (callable or ``"module:function"``);
            default: the output itself (data) or its uint8 image (video).
        batch: frames per model call (>= 1).
        dtype: ``"float32"``, ``"float16"``, ``"bfloat16"``, ``"float64"``;
            None: float16 on CUDA, float32 on CPU. Applies to the default
            preprocess and to a module's floating-point parameters.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``; None: CUDA if available, else CPU.
        topic: ``DataMessage.topic`` of the results.
        model_kwargs: keyword arguments for a model factory named by string.
        actor_id, **kwargs: see ``Actor`` (dispatcher defaults to ``"gpu"`` on CUDA).

    Raises:
        ConfigError: at construction, for a missing or unresolvable model or
            hook string, a bad output, batch, dtype, device or port name.
        ConfigTypeError: a model or hook that is not callable.
        PortKindError: in process, an input the default preprocess cannot take or a
            video postprocess result that is not a frame or tensor.
        FrameValidationError: in process, a video result without 1, 3 or 4 channels.
        Exceptions from the model or the hooks at run time fail the actor
        (the rest of the graph keeps running).
    """

    device: torch.device  # always resolved in __init__

    def __init__(self, model: Any = None, input: str = "video", output: OutputKind = "data",
                 preprocess: Any = None, postprocess: Any = None, batch: int = 1,
                 dtype: str | None = None, device: str | None = None, topic: str = "inference",
                 model_kwargs: dict[str, Any] | None = None, *, actor_id: str | None = None,
                 **kwargs: Any) -> None:
        where = f"InferenceActor{'' if actor_id is None else f' {actor_id!r}'}"
        if not isinstance(input, str) or not input.isidentifier():
            raise ConfigError(f"{where}: input must be a port name (identifier), got {input!r}")
        if output not in ("data", "video"):
            raise ConfigError(f"{where}: output must be 'data' or 'video', got {output!r}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"{where}: batch must be an int >= 1, got {batch!r}")
        if not isinstance(topic, str):
            raise ConfigTypeError(f"{where}: topic must be a str, got {type(topic).__name__}")
        self.device = resolve_device(device, where=f"{where}: device")
        if dtype is None:
            dtype = "float16" if self.device.type == "cuda" else "float32"
        if dtype not in _DTYPES:
            raise ConfigError(f"{where}: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        self.model = self._resolve_model(model, model_kwargs, where)
        self._preprocess = self._resolve_hook(preprocess, "preprocess", where)
        self._postprocess = self._resolve_hook(postprocess, "postprocess", where)
        super().__init__(actor_id=actor_id, **kwargs)  # CUDA device: "gpu" by default
        self.input_name, self.output_kind, self.batch = input, output, batch
        self.dtype_name, self.dtype = dtype, _DTYPES[dtype]
        self.topic = topic
        self.model_name = model if isinstance(model, str) else type(self.model).__name__
        self.inputs[input] = StreamInput(input, slots=max(3, 2 * batch))
        self.outputs[output] = StreamOutput(output, output)
        self._pending: deque[Any] = deque()
        self._stream: Stream | None = None  # where this actor enqueues (a CPUStream on CPU)
        self.stream_source: str | None = None  # "own" or "dispatcher" on CUDA
        self.frames_in = 0
        self.batches_run = 0
        self.results_out = 0

    # -- configuration helpers --------------------------------------------------------
    @staticmethod
    def _resolve_model(model: Any, model_kwargs: dict[str, Any] | None, where: str) -> Any:
        if model is None:
            raise ConfigError(f"{where}: model is required (a torch.nn.Module, a callable "
                              "or 'package.module:factory')")
        if model_kwargs is not None and not isinstance(model_kwargs, dict):
            raise ConfigTypeError(f"{where}: model_kwargs must be a dict, got "
                                  f"{type(model_kwargs).__name__}")
        if isinstance(model, str):
            # A registered name, else 'module:attr'; the policy vets an object
            # before it is called (a factory from a module not allowed is refused).
            target = trust.registered_function(model.strip())
            if target is None:
                target = trust.resolve_object(model, f"{where}: model", kind="model")
            if isinstance(target, torch.nn.Module):
                model = target
            elif callable(target):
                try:
                    model = target(**(model_kwargs or {}))
                except Exception as exc:  # noqa: BLE001 - the factory's failure, named
                    raise ConfigError(f"{where}: model factory {model!r} raised "
                                      f"{type(exc).__name__}: {exc}") from exc
            else:
                raise ConfigTypeError(f"{where}: model {model!r} names a {type(target).__name__}, "
                                      "not a model or factory")
        elif model_kwargs:
            raise ConfigError(f"{where}: model_kwargs only apply to a model given as a string")
        if not callable(model):
            raise ConfigTypeError(f"{where}: model must be callable, got {type(model).__name__}")
        return model

    @staticmethod
    def _resolve_hook(hook: Any, name: str, where: str) -> Callable[..., Any] | None:
        if hook is None:
            return None
        if isinstance(hook, str):
            found = trust.registered_function(hook.strip())
            hook = found if found is not None else trust.resolve_object(
                hook, f"{where}: {name}", kind="function")
        if not callable(hook):
            raise ConfigTypeError(f"{where}: {name} must be callable or 'module:function', "
                                  f"got {type(hook).__name__}")
        return hook  # type: ignore[no-any-return]

    # -- lifecycle ---------------------------------------------------------------------
    def setup(self) -> None:
        model = self.model
        if isinstance(model, torch.nn.Module):
            model.to(device=self.device)
            if any(p.is_floating_point() for p in model.parameters()):
                model.to(dtype=self.dtype)
            model.eval()
        current = current_stream(self.device)
        if self.device.type != "cuda":
            self._stream, self.stream_source = current, None
        elif current == default_stream(self.device):
            self._stream, self.stream_source = new_stream(self.device), "own"
        else:  # the GPU dispatcher made the actor's own stream current around setup
            self._stream, self.stream_source = current, "dispatcher"

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info["inference"] = {
            "model": self.model_name, "device": str(self.device), "dtype": self.dtype_name,
            "batch": self.batch, "output": self.output_kind, "stream": self.stream_source,
            "frames_in": self.frames_in, "batches_run": self.batches_run,
            "results_out": self.results_out,
        }
        return info

    # -- the work ----------------------------------------------------------------------
    def default_preprocess(self, frame: Any) -> torch.Tensor:
        """(H, W[, C]) uint8 frame -> (1, C, H, W) ``dtype`` in [0, 1] on ``device``.
        PortKindError for an input that is neither a VideoFrame nor a tensor."""
        data = frame.data if hasattr(frame, "data") else frame
        if not isinstance(data, torch.Tensor):
            raise PortKindError(f"InferenceActor '{self.actor_id}': default preprocess needs a "
                                f"VideoFrame or tensor, got {type(frame).__name__}")
        if data.dim() == 2:
            data = data.unsqueeze(-1)
        # non_blocking only towards CUDA: a non-blocking copy *to* the host returns early.
        cuda = self.device.type == "cuda"
        x = data.to(self.device, non_blocking=cuda).permute(2, 0, 1).unsqueeze(0)
        return x.to(self.dtype) / 255.0  # out of place: x may alias the frame's tensor

    def _prepare(self, frame: Any) -> Any:
        x = (self._preprocess or self.default_preprocess)(frame)
        if isinstance(x, torch.Tensor) and x.device != self.device:
            x = x.to(self.device, non_blocking=self.device.type == "cuda")
        return x

    def _to_video(self, payload: Any, frame: Any) -> VideoFrame:
        ts, number, clock_id = _stamp(frame)
        if isinstance(payload, VideoFrame):
            return payload.replace(timestamp_ns=ts, frame_number=number, clock_id=clock_id)
        if not isinstance(payload, torch.Tensor):
            raise PortKindError(f"InferenceActor '{self.actor_id}': a video postprocess must "
                                f"return a VideoFrame or a tensor, got {type(payload).__name__}")
        if payload.is_floating_point() and payload.dim() == 3 and payload.shape[0] in (1, 3, 4) \
                and payload.shape[2] not in (1, 3, 4):
            payload = payload.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        if payload.is_floating_point():
            payload = (payload.clamp(0, 1) * 255).round().to(torch.uint8)
        if payload.dim() == 3 and payload.shape[2] == 1:
            payload = payload[..., 0]
        channels = 1 if payload.dim() == 2 else int(payload.shape[2])
        fmt = _FORMAT_FOR_CHANNELS.get(channels)
        if fmt is None:
            raise FrameValidationError(f"InferenceActor '{self.actor_id}': video output needs "
                                       f"1, 3 or 4 channels, got shape {tuple(payload.shape)}")
        payload = payload.contiguous()
        if payload.is_inference():  # an inference tensor has no version counter, which
            payload = payload.clone()  # consumers' caches read: clone it out of inference mode
        return VideoFrame(payload, timestamp_ns=ts, frame_number=number,
                          format=fmt, clock_id=clock_id)

    def _run(self, frames: Sequence[Any]) -> None:
        xs = [self._prepare(f) for f in frames]
        if len(xs) == 1:
            x = xs[0]
        elif all(isinstance(v, torch.Tensor) for v in xs):
            x = torch.cat(xs, dim=0)
        else:
            raise PortKindError(f"InferenceActor '{self.actor_id}': batch={self.batch} needs "
                                "preprocess to return tensors (concatenated on dim 0)")
        with torch.inference_mode():
            out = self.model(x)
            results = [self._postprocess(_index(out, i), f) if self._postprocess is not None
                       else _index(out, i) for i, f in enumerate(frames)]
        self.batches_run += 1
        port = self.outputs[self.output_kind]
        items: list[Any] = []
        for frame, payload in zip(frames, results):
            if self.output_kind == "video":
                items.append(self._to_video(payload, frame))
            else:
                ts, number, clock_id = _stamp(frame)
                items.append(DataMessage(payload, timestamp_ns=ts, topic=self.topic,
                                         frame_number=number, clock_id=clock_id,
                                         metadata={"model": self.model_name}))
        if self.device.type == "cuda":
            # One event after all of it; every result carries it, so a consumer on
            # another stream waits with streamlib.gpu.device.wait_ready(item).
            event = record_event(self._stream)
            items = [with_ready_event(item, event) for item in items]
        for item in items:
            port.write(item)
            self.results_out += 1

    def process(self, tick: TimedTick) -> None:
        port = self.inputs[self.input_name]
        if self.batch == 1:
            frame = port.read_new()
            new = [] if frame is None else [frame]
        else:
            new = port.read_all_new()
        self.frames_in += len(new)
        self._pending.extend(new)
        while len(self._pending) >= self.batch:
            frames = [self._pending.popleft() for _ in range(self.batch)]
            with stream_context(self._stream):
                for f in frames:  # order our stream after each producer's work
                    wait_ready(f, self._stream)
                self._run(frames)


# -- a demo model ----------------------------------------------------------------------------
class BrightBoxDetector(torch.nn.Module):
    """Finds the bounding box of bright pixels; a fixed-weight "detector" (no download).

    A 1x1 convolution with fixed weights computes luma minus ``threshold``;
    pixels above zero are "bright", and the first/last bright row and column
    of each image give one box per image. Input (N, 3, H, W) float in [0, 1]
    (what ``InferenceActor``'s default preprocess makes); output
    ``{"boxes": (N, 1, 4) float32 x0, y0, x1, y1 (x1, y1 exclusive),
    "scores": (N, 1) float32}``, the score being the bright fraction of the box
    (0 when nothing is bright). Exact on ``TestPatternActor(pattern="moving_box")``.
    Everything stays on the input's device (no host synchronisation).
    """

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.luma = torch.nn.Conv2d(3, 1, kernel_size=1)
        with torch.no_grad():
            self.luma.weight.copy_(torch.tensor([0.2126, 0.7152, 0.0722]).view(1, 3, 1, 1))
            bias = self.luma.bias
            assert bias is not None
            bias.fill_(-float(threshold))
        self.luma.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        bright = self.luma(x[:, :3]) > 0  # (N, 1, H, W)
        height, width = int(x.shape[2]), int(x.shape[3])
        rows = bright.any(dim=3).squeeze(1).to(torch.int32)  # (N, H)
        cols = bright.any(dim=2).squeeze(1).to(torch.int32)  # (N, W)
        found = rows.amax(dim=1) > 0
        y0 = rows.argmax(dim=1)  # the first maximum: the first bright row
        y1 = height - rows.flip(1).argmax(dim=1)
        x0 = cols.argmax(dim=1)
        x1 = width - cols.flip(1).argmax(dim=1)
        boxes = torch.stack([x0, y0, x1, y1], dim=1).to(torch.float32)
        area = ((x1 - x0) * (y1 - y0)).clamp(min=1).to(torch.float32)
        count = bright.flatten(1).sum(dim=1).to(torch.float32)
        scores = torch.where(found, count / area, torch.zeros_like(area))
        boxes = torch.where(found.unsqueeze(1), boxes, torch.zeros_like(boxes))
        return {"boxes": boxes.unsqueeze(1), "scores": scores.unsqueeze(1)}


trust.register_function("bright_box", BrightBoxDetector)  # model: bright_box
