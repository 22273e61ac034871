"""Built-in actors."""

from .audio import BACKENDS, WAVEFORMS, AudioGeneratorActor, AudioOutputActor
from .compositor import CompositorActor, LayerSpec, composite_reference
from .display import DisplayActor, letterbox_rect
from .drawing import DrawingActor, DrawingContext, parse_color
from .file_reader import FileReaderActor
from .file_writer import FileWriterActor
from .inference import BrightBoxDetector, InferenceActor, to_cpu
from .overlay import OverlayBoxesActor, draw_boxes
from .network import VIDEO_PORTS, NetworkReceiveActor, NetworkSendActor
from .network_audio import AUDIO_PORTS, AudioNetworkReceiveActor, AudioNetworkSendActor
from .patterns import COLOR_RANGES, PATTERNS, TestPatternActor, render_pattern, smpte_regions
from .shader import ShaderActor
from .stats import StatsReport, StatsSink
from .transform import TRANSFORMS, TransformActor, invert

__all__ = [
    "BACKENDS", "COLOR_RANGES", "CompositorActor", "LayerSpec", "composite_reference",
    "smpte_regions", "PATTERNS", "BrightBoxDetector", "InferenceActor", "OverlayBoxesActor",
    "draw_boxes", "to_cpu", "AUDIO_PORTS", "AudioNetworkReceiveActor", "AudioNetworkSendActor",
    "VIDEO_PORTS", "NetworkReceiveActor", "NetworkSendActor", "TRANSFORMS", "WAVEFORMS", "AudioGeneratorActor",
    "AudioOutputActor", "DisplayActor", "DrawingActor", "DrawingContext", "FileReaderActor",
    "FileWriterActor", "ShaderActor", "StatsReport", "StatsSink", "TestPatternActor",
    "TransformActor", "invert", "letterbox_rect", "parse_color", "render_pattern",
]
