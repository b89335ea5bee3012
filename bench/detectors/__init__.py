"""Object detectors used to ground and check model answers.

Light to import: the protocol lives in :mod:`bench.detectors.base`; the ONNX detector's
configuration and presets in :mod:`bench.detectors.onnx_config`; its runtime
(:mod:`bench.detectors.onnx`) imports onnxruntime only when one is built.
``ConfigError`` here is :class:`bench.errors.ConfigError` (the one configuration error type).
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
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

_CONFIG_NAMES = {"OnnxDetectorConfig", "list_presets", "load_preset"}


def __getattr__(name: str) -> Any:
    if name in _CONFIG_NAMES:
        from . import onnx_config

        return getattr(onnx_config, name)
    if name == "OnnxDetector":
        from .onnx import OnnxDetector

        return OnnxDetector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
