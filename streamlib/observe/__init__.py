"""Observing a running graph: per-call samples and snapshots (metrics), process and GPU telemetry, Prometheus text.
"""
