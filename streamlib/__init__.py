"""streamlib: composable realtime stream primitives.

Actors connected like Unix pipes (``a >> b >> c``), driven by clock ticks,
exchanging immutable frames through fixed-slot, latest-read ring buffers.

This face holds what a pipeline author uses; everything else is imported from
its package (``streamlib.core``, ``streamlib.clocks``, ``streamlib.runtime``,
``streamlib.gpu``, ``streamlib.net``, ``streamlib.observe``, ``streamlib.control``).
Names resolve on first access (PEP 562), so ``import streamlib.core`` loads
no higher layer and ``import streamlib`` loads no actor module until an actor
is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamlib.actors.audio import AudioGeneratorActor, AudioOutputActor
    from streamlib.actors.compositor import CompositorActor
    from streamlib.actors.display import DisplayActor
    from streamlib.actors.drawing import DrawingActor
    from streamlib.actors.file_reader import FileReaderActor
    from streamlib.actors.file_writer import FileWriterActor
    from streamlib.actors.inference import InferenceActor
    from streamlib.actors.network import NetworkReceiveActor, NetworkSendActor
    from streamlib.actors.network_audio import AudioNetworkReceiveActor, AudioNetworkSendActor
    from streamlib.actors.overlay import OverlayBoxesActor
    from streamlib.actors.patterns import TestPatternActor
    from streamlib.actors.shader import ShaderActor
    from streamlib.actors.stats import StatsSink
    from streamlib.actors.transform import TransformActor
    from streamlib.clocks.base import TimedTick
    from streamlib.clocks.software import SoftwareClock, VirtualClock
    from streamlib.core.actor import Actor
    from streamlib.core.buffers import RingBuffer
    from streamlib.core.frames import AudioFrame, DataMessage, VideoFrame
    from streamlib.core.ports import StreamInput, StreamOutput
    from streamlib.core.registry import (
        ActorRegistry, PortAllocator, get_actor, parse_actor_uri, register_actor,
    )
    from streamlib.core.trust import register_function
    from streamlib.core.wiring import connect
    from streamlib.errors import ConfigError, StreamlibError
    from streamlib.runtime.dispatchers import (
        AsyncioDispatcher, DedicatedThreadDispatcher, GPUDispatcher, ThreadPoolDispatcher,
    )
    from streamlib.runtime.procpool import ProcessPoolDispatcher
    from streamlib.runtime.runtime import Runtime, run

__version__ = "0.1.0"

# Public name -> the module that defines it (resolved by __getattr__ below).
_HOMES: dict[str, str] = {
    "Actor": "streamlib.core.actor",
    "ActorRegistry": "streamlib.core.registry",
    "AsyncioDispatcher": "streamlib.runtime.dispatchers",
    "AudioFrame": "streamlib.core.frames",
    "AudioGeneratorActor": "streamlib.actors.audio",
    "AudioNetworkReceiveActor": "streamlib.actors.network_audio",
    "AudioNetworkSendActor": "streamlib.actors.network_audio",
    "AudioOutputActor": "streamlib.actors.audio",
    "CompositorActor": "streamlib.actors.compositor",
    "ConfigError": "streamlib.errors",
    "DataMessage": "streamlib.core.frames",
    "DedicatedThreadDispatcher": "streamlib.runtime.dispatchers",
    "DisplayActor": "streamlib.actors.display",
    "DrawingActor": "streamlib.actors.drawing",
    "FileReaderActor": "streamlib.actors.file_reader",
    "FileWriterActor": "streamlib.actors.file_writer",
    "GPUDispatcher": "streamlib.runtime.dispatchers",
    "InferenceActor": "streamlib.actors.inference",
    "NetworkReceiveActor": "streamlib.actors.network",
    "NetworkSendActor": "streamlib.actors.network",
    "OverlayBoxesActor": "streamlib.actors.overlay",
    "PortAllocator": "streamlib.core.registry",
    "ProcessPoolDispatcher": "streamlib.runtime.procpool",
    "RingBuffer": "streamlib.core.buffers",
    "Runtime": "streamlib.runtime.runtime",
    "ShaderActor": "streamlib.actors.shader",
    "SoftwareClock": "streamlib.clocks.software",
    "StatsSink": "streamlib.actors.stats",
    "StreamInput": "streamlib.core.ports",
    "StreamOutput": "streamlib.core.ports",
    "StreamlibError": "streamlib.errors",
    "TestPatternActor": "streamlib.actors.patterns",
    "ThreadPoolDispatcher": "streamlib.runtime.dispatchers",
    "TimedTick": "streamlib.clocks.base",
    "TransformActor": "streamlib.actors.transform",
    "VideoFrame": "streamlib.core.frames",
    "VirtualClock": "streamlib.clocks.software",
    "connect": "streamlib.core.wiring",
    "get_actor": "streamlib.core.registry",
    "parse_actor_uri": "streamlib.core.registry",
    "register_actor": "streamlib.core.registry",
    "register_function": "streamlib.core.trust",
    "run": "streamlib.runtime.runtime",
}

__all__ = [
    "Actor", "ActorRegistry", "AsyncioDispatcher", "AudioFrame", "AudioGeneratorActor",
    "AudioNetworkReceiveActor", "AudioNetworkSendActor", "AudioOutputActor", "CompositorActor",
    "ConfigError", "DataMessage", "DedicatedThreadDispatcher", "DisplayActor", "DrawingActor",
    "FileReaderActor", "FileWriterActor", "GPUDispatcher", "InferenceActor",
    "NetworkReceiveActor", "NetworkSendActor", "OverlayBoxesActor", "PortAllocator",
    "ProcessPoolDispatcher", "RingBuffer", "Runtime", "ShaderActor", "SoftwareClock",
    "StatsSink", "StreamInput", "StreamOutput", "StreamlibError", "TestPatternActor",
    "ThreadPoolDispatcher", "TimedTick", "TransformActor", "VideoFrame", "VirtualClock",
    "connect", "get_actor", "parse_actor_uri", "register_actor", "register_function", "run",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'streamlib' has no attribute {name!r}")
    # The runtime layer comes with any name: actors built from the face attach to the
    # default runtime (installed when streamlib.runtime.runtime is imported).
    importlib.import_module("streamlib.runtime.runtime")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
