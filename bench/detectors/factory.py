"""Detectors by name, for tasks that use one as a ground-truth source or as an external grounding.

A detector is named ``<kind>:<target>``:
  onnx:<preset or config.yaml>  with ``model`` = the .onnx file (e.g. onnx:centernet_mbv3_coco80)
  owlvit:<hub id or folder>     e.g. owlvit:google/owlvit-base-patch32 (open vocabulary)
The identity (a hash of the model file or folder) goes into the task fingerprint, so results from
another detector never resume or share a leaderboard column with these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import DETECTORS
from ..spec import sha256_file


class OnnxKind:
    """onnx:<preset or config.yaml>, with the model file given separately."""

    @staticmethod
    def create(target: str, model: str | None, threshold: float | None, device: str):
        from .onnx import OnnxDetector

        if not model:
            raise ConfigError(f"detector onnx:{target} needs its model file (detector_model=/path/to/model.onnx)")
        overrides: dict[str, Any] = {"device": device}
        if threshold is not None:
            overrides["score_threshold"] = threshold
        if target.endswith((".yaml", ".yml")):
            return OnnxDetector.from_yaml(target, model=model, **overrides)
        return OnnxDetector.from_preset(target, model=model, **overrides)

    @staticmethod
    def identity(target: str, model: str | None) -> dict[str, Any]:
        if not model or not Path(model).exists():
            raise ConfigError(f"detector model not found: {model}")
        return {"sha256": sha256_file(Path(model))}


class OwlVitKind:
    """owlvit:<hub id or local folder>."""

    @staticmethod
    def create(target: str, model: str | None, threshold: float | None, device: str):
        from .owlvit import OwlVitDetector

        return OwlVitDetector(model or target, device=device, threshold=0.1 if threshold is None else threshold)

    @staticmethod
    def identity(target: str, model: str | None) -> dict[str, Any]:
        folder = Path(model or target).expanduser()
        if folder.is_dir():
            from ..models.hf import folder_identity

            return {"sha256": folder_identity(folder)["sha256"]}
        from ..models.hf import hub_identity

        return hub_identity(model or target, None)


DETECTORS.register("onnx", OnnxKind)
DETECTORS.register("owlvit", OwlVitKind)


def split_name(name: str) -> tuple[str, str]:
    kind, sep, target = name.partition(":")
    if not sep or not target:
        raise ConfigError(f"detector {name!r}: use <kind>:<target>, e.g. onnx:centernet_mbv3_coco80 or "
                          "owlvit:google/owlvit-base-patch32")
    return kind, target


def make_detector(name: str, model: str | None = None, threshold: float | None = None, device: str = "cpu"):
    kind, target = split_name(name)
    return DETECTORS.get(kind).create(target, model, threshold, device)


def detector_identity(name: str, model: str | None = None) -> dict[str, Any]:
    """Load-free identity: the sha256 of an ONNX file, or an OWL-ViT folder's config/weights hash."""
    kind, target = split_name(name)
    return {"name": name, **DETECTORS.get(kind).identity(target, model)}


def max_scores(detector, images, queries):
    """[n_images, n_queries]: each query's highest confidence on each image, from any detector."""
    import numpy as np

    if hasattr(detector, "max_scores"):
        return np.asarray(detector.max_scores(images, queries))
    found = detector.detect(images, queries, score_threshold=0.0)
    return np.array([[d.max_score(q) for q in queries] for d in found], dtype=np.float32)


class DetectionCache:
    """Per-image detector results kept in a run folder (JSON), valid only for the same detector settings;
    so a resumed run never runs the detector on an image twice."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        import json

        self.path = Path(path)
        stored = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.settings = settings
        self.images: dict[str, Any] = stored.get("images", {}) if stored.get("settings") == settings else {}

    def save(self) -> None:
        from ..io import atomic_write_json

        atomic_write_json(self.path, {"settings": self.settings, "images": self.images})
