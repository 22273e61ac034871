"""Built-in actors. Importing any of them brings the runtime, so they attach to the
default runtime when built outside ``with Runtime()``."""

import streamlib.runtime.runtime  # noqa: F401 - installs the default runtime

from streamlib.actors.audio import BACKENDS, WAVEFORMS, AudioGeneratorActor, AudioOutputActor
from streamlib.actors.compositor import CompositorActor, LayerSpec
from streamlib.actors.display import DisplayActor, letterbox_rect
from streamlib.actors.drawing import DrawingActor, DrawingContext, parse_color
from streamlib.actors.file_reader import FileReaderActor
from streamlib.actors.file_writer import FileWriterActor
from streamlib.actors.inference import BrightBoxDetector, InferenceActor, to_cpu
from streamlib.actors.overlay import OverlayBoxesActor, draw_boxes
from streamlib.actors.network import VIDEO_PORTS, NetworkReceiveActor, NetworkSendActor
from streamlib.actors.network_audio import AUDIO_PORTS, AudioNetworkReceiveActor, AudioNetworkSendActor
from streamlib.actors.patterns import PATTERNS, TestPatternActor, render_pattern
from streamlib.actors.shader import ShaderActor
from streamlib.actors.stats import StatsReport, StatsSink
from streamlib.actors.transform import TRANSFORMS, TransformActor, invert

__all__ = [
    "BACKENDS", "CompositorActor", "LayerSpec", "PATTERNS", "BrightBoxDetector", "InferenceActor", "OverlayBoxesActor",
    "draw_boxes", "to_cpu", "AUDIO_PORTS", "AudioNetworkReceiveActor", "AudioNetworkSendActor",
    "VIDEO_PORTS", "NetworkReceiveActor", "NetworkSendActor", "TRANSFORMS", "WAVEFORMS", "AudioGeneratorActor",
    "AudioOutputActor", "DisplayActor", "DrawingActor", "DrawingContext", "FileReaderActor",
    "FileWriterActor", "ShaderActor", "StatsReport", "StatsSink", "TestPatternActor",
    "TransformActor", "invert", "letterbox_rect", "parse_color", "render_pattern",
]
