"""streamlib: composable realtime stream primitives.

Actors connected like Unix pipes (``a >> b >> c``), driven by clock ticks,
exchanging immutable frames through fixed-slot, latest-read ring buffers.
Every public name is importable from here.
"""

from streamlib.core.actor import Actor, ActorCounters, ActorStatus
from streamlib.actors import (
    PATTERNS, AudioGeneratorActor, AudioNetworkReceiveActor, AudioNetworkSendActor, AudioOutputActor, CompositorActor, DisplayActor, DrawingActor, DrawingContext,
    FileReaderActor, FileWriterActor, InferenceActor, NetworkReceiveActor, NetworkSendActor,
    ShaderActor, StatsReport, StatsSink, TestPatternActor,
    TransformActor, invert, render_pattern,
)
from streamlib.core.buffers import RingBuffer, RingBufferStats
from streamlib.clocks import (
    Clock, GenlockClock, ManualPulseSource, PTPClock, PulseSource, SoftwareClock,
    SystemTAITimeSource, TimedTick, TimeSource, VirtualClock,
)
from streamlib.runtime.dispatchers import (
    AsyncioDispatcher, DedicatedThreadDispatcher, Dispatcher, GPUDispatcher, ProcessPoolDispatcher,
    ThreadPoolDispatcher,
)
from streamlib.gpu.device import cuda_available, resolve_device
from streamlib.gpu.buffer import GPURingBuffer, GPURingStats, WouldBlock
from streamlib.gpu.staging import StagingBridge
from streamlib.errors import (
    ActorStateError, ClockClosedError, DispatcherShutdownError, EndOfStream,
    FrameValidationError, PortError, PortKindError, PortRangeExhaustedError, RegistryError,
    ShutdownTimeoutError, StreamlibError, WorkerError,
)
from streamlib.core.frames import AudioFrame, DataMessage, EventMessage, PixelFormat, VideoFrame, frame_kind
from streamlib.runtime.runtime import Runtime, current_runtime, default_runtime, run
from streamlib.observe.metrics import ActorMetrics, LinkMetrics, MetricsSnapshot
from streamlib.observe.prometheus import MetricsServer, serve_metrics
from streamlib.control.server import ControlServer, serve_control
from streamlib.core.trust import register_function
from streamlib.observe.telemetry import Telemetry, TelemetrySample, gpu_status
from streamlib.net.ptp import PTPSlave, PTPStats
from streamlib.net.sdp import SDPStream, parse_sdp, write_sdp
from streamlib.core.ports import PortKind, StreamInput, StreamOutput
from streamlib.core.registry import (
    ActorRegistry, ActorURI, PortAllocator, default_port_allocator, default_registry,
    format_actor_uri, parse_actor_uri,
)

__version__ = "0.1.0"

__all__ = [
    "Actor", "ActorCounters", "AudioGeneratorActor", "AudioNetworkReceiveActor",
    "AudioNetworkSendActor", "AudioOutputActor", "CompositorActor",
    "DisplayActor",
    "DrawingActor", "DrawingContext", "FileReaderActor", "FileWriterActor", "InferenceActor",
    "NetworkReceiveActor", "NetworkSendActor",
    "ShaderActor", "ActorRegistry", "ActorStateError", "ActorStatus", "ActorURI",
    "AsyncioDispatcher", "AudioFrame", "DedicatedThreadDispatcher", "Clock", "ClockClosedError", "DataMessage",
    "Dispatcher", "DispatcherShutdownError", "EndOfStream", "EventMessage",
    "FrameValidationError", "GPUDispatcher", "GPURingBuffer", "GPURingStats", "StagingBridge",
    "WouldBlock", "cuda_available", "resolve_device", "GenlockClock", "ManualPulseSource", "PATTERNS",
    "PTPClock", "PixelFormat", "PortAllocator", "PortError", "PortKind", "PortKindError",
    "PortRangeExhaustedError", "ProcessPoolDispatcher", "PulseSource", "RegistryError",
    "RingBuffer", "RingBufferStats", "Runtime", "ShutdownTimeoutError", "SoftwareClock",
    "SDPStream", "parse_sdp", "write_sdp", "PTPSlave", "PTPStats", "ActorMetrics", "LinkMetrics", "MetricsSnapshot",
    "MetricsServer", "serve_metrics", "ControlServer", "serve_control", "register_function", "default_port_allocator", "Telemetry", "TelemetrySample", "gpu_status", "StatsReport", "StatsSink", "StreamInput", "StreamOutput", "StreamlibError",
    "SystemTAITimeSource", "TestPatternActor", "ThreadPoolDispatcher", "TimeSource",
    "TimedTick", "TransformActor", "VideoFrame", "VirtualClock", "WorkerError", "current_runtime",
    "default_registry", "default_runtime", "format_actor_uri", "frame_kind", "invert",
    "parse_actor_uri", "render_pattern", "run",
]
