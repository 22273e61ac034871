"""``TransformActor``: apply a function to each new frame's tensor (a CPU map)."""

from __future__ import annotations

from typing import Callable

import torch

from streamlib.core import trust
from streamlib.core.actor import Actor
from streamlib.clocks import TimedTick
from streamlib.core.frames import VideoFrame
from streamlib.core.ports import StreamInput, StreamOutput
from streamlib.errors import ConfigError, ConfigTypeError


def invert(data: torch.Tensor) -> torch.Tensor:
    """255 - x for uint8 images."""
    return torch.bitwise_not(data)


def mirror(data: torch.Tensor) -> torch.Tensor:
    """Flip left-right."""
    return data.flip(1)


def identity(data: torch.Tensor) -> torch.Tensor:
    return data


# Named transforms, so graph files can say `fn: invert`.
TRANSFORMS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "invert": invert, "mirror": mirror, "identity": identity,
}
for _name, _fn in TRANSFORMS.items():
    trust.register_function(_name, _fn)


class TransformActor(Actor):
    """``video -> fn(tensor) -> video``; ticked by its upstream (no clock).

    ``fn`` must return a tensor of the same format; the output frame keeps the
    input's timestamp and frame number so latency stays measurable downstream.
    """

    def __init__(self, fn: str | Callable[[torch.Tensor], torch.Tensor] = "invert",
                 *, actor_id: str | None = None, **kwargs: object) -> None:
        """Args:
            fn: a callable ``tensor -> tensor``, the name of a registered
                function (built-in: ``invert``, ``mirror``, ``identity``; see
                ``streamlib.register_function``) or ``"module:function"`` (from
                pipeline files and the control plane only when the module is allowed).

        Raises:
            ConfigError: an unknown name (the message lists the registered ones).
            ConfigTypeError: ``fn`` is neither callable nor a str.
            AccessDeniedError: the policy does not allow the module.
        """
        if isinstance(fn, str):
            found = trust.registered_function(fn)
            if found is None and ":" in fn:  # 'module:function', as the policy allows
                found = trust.resolve_object(fn, "TransformActor: field 'fn'", kind="function")
            if found is None:
                raise ConfigError(f"TransformActor: field 'fn': unknown transform {fn!r} "
                                  f"(registered: {', '.join(trust.registered_names())}; "
                                  "streamlib.register_function(name, fn) adds one)")
            fn = found
        if not callable(fn):
            raise ConfigTypeError("TransformActor: field 'fn' must be callable or a name, got "
                                  f"{fn!r}")
        super().__init__(actor_id=actor_id, **kwargs)  # type: ignore[arg-type]
        self.fn = fn
        self.inputs["video"] = StreamInput("video")
        self.outputs["video"] = StreamOutput("video")

    def process(self, tick: TimedTick) -> None:
        frame: VideoFrame | None = self.inputs["video"].read_new()
        if frame is None:
            return
        self.outputs["video"].write(frame.replace(data=self.fn(frame.data)))
