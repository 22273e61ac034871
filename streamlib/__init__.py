"""streamlib: composable realtime stream primitives.

Actors connected like Unix pipes (``a >> b >> c``), driven by clock ticks,
exchanging immutable frames through fixed-slot, latest-read ring buffers.
Every public name is importable from here.
"""

from .actor import Actor, ActorCounters, ActorStatus
from .actors import (
    PATTERNS, AudioGeneratorActor, AudioNetworkReceiveActor, AudioNetworkSendActor, AudioOutputActor, CompositorActor, DisplayActor, DrawingActor, DrawingContext,
    FileReaderActor, FileWriterActor, InferenceActor, NetworkReceiveActor, NetworkSendActor,
    ShaderActor, StatsReport, StatsSink, TestPatternActor,
    TransformActor, invert, render_pattern,
)
from .buffers import RingBuffer, RingBufferStats
from .clocks import (
    Clock, GenlockClock, ManualPulseSource, PTPClock, PulseSource, SoftwareClock,
    SystemTAITimeSource, TimedTick, TimeSource, VirtualClock,
)
from .dispatchers import (
    AsyncioDispatcher, DedicatedThreadDispatcher, Dispatcher, GPUDispatcher, ProcessPoolDispatcher,
    ThreadPoolDispatcher,
)
from .device import cuda_available, resolve_device
from .gpu_buffer import GPURingBuffer, GPURingStats, WouldBlock
from .staging import StagingBridge
from .errors import (
    ActorStateError, ClockClosedError, DispatcherShutdownError, EndOfStream,
    FrameValidationError, PortError, PortKindError, PortRangeExhaustedError, RegistryError,
    ShutdownTimeoutError, StreamlibError, WorkerError,
)
from .frames import AudioFrame, DataMessage, EventMessage, PixelFormat, VideoFrame, frame_kind
from .graph import Runtime, current_runtime, default_runtime, run
from .metrics import ActorMetrics, LinkMetrics, MetricsSnapshot
from .prometheus import MetricsServer, serve_metrics
from .control import ControlServer, serve_control
from .trust import register_function
from .telemetry import Telemetry, TelemetrySample, gpu_status
from .net.ptp import PTPSlave, PTPStats
from .net.sdp import SDPStream, parse_sdp, write_sdp
from .ports import PortKind, StreamInput, StreamOutput
from .registry import (
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
