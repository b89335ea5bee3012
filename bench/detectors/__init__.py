"""Object detectors used to ground and check model answers.

Light to import: the protocol lives in :mod:`bench.detectors.base`; the ONNX
detector (:mod:`bench.detectors.onnx`) imports onnxruntime only when one is built.
"""

from __future__ import annotations

from typing import Any

from .base import Detections, Detector, resolve_queries

__all__ = [
    "Detections",
    "Detector",
    "resolve_queries",
    "ConfigError",
    "OnnxDetector",
    "OnnxDetectorConfig",
    "list_presets",
    "load_preset",
]

_ONNX_NAMES = {"ConfigError", "OnnxDetector", "OnnxDetectorConfig", "list_presets", "load_preset"}


def __getattr__(name: str) -> Any:
    if name in _ONNX_NAMES:
        from . import onnx as _onnx

        return getattr(_onnx, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
