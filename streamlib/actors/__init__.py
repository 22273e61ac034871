"""Built-in actors."""

from .patterns import PATTERNS, TestPatternActor, render_pattern
from .stats import StatsReport, StatsSink
from .transform import TransformActor, invert

__all__ = [
    "PATTERNS", "StatsReport", "StatsSink", "TestPatternActor", "TransformActor",
    "invert", "render_pattern",
]
