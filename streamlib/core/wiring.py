"""``connect(source, dest, output_name, input_name)``: the seed plan's module-level link call.

The same link as ``source.outputs[output_name] >> dest.inputs[input_name]``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamlib.core.actor import Actor
    from streamlib.core.ports import StreamInput

__all__ = ["connect"]


def connect(source: Actor, dest: Actor, output_name: str = "video",
            input_name: str = "video") -> StreamInput:
    """Link ``source``'s output ``output_name`` to ``dest``'s input ``input_name``; return
    the input. Raises PortError naming the actor and its ports when either port is
    missing or the input already has an upstream, PortKindError when the kinds differ."""
    return source.outputs[output_name].connect(dest.inputs[input_name])
