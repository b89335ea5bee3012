"""The attribute scorer: what an open-vocabulary detector reads about an image's attribute.

An attribute's reading is the detector's highest confidence (sigmoid of the class logit, computed in float64 from
the highest logit, so readings near 1 stay ordered) over all boxes and over the attribute's queries, each phrased
"a photo of a {query}". The source attribute of an image without a label is the
top reading when it leads the next one by more than the margin; an edit has flipped the image when the target's
reading leads the source's by more than the margin.

Two readers:
- `PixelScorer`: an OWL-ViT detector of the detector registry (``owlvit:<hub id or folder>``), read through its
  processor's PIL path, with the differentiable call on pixel tensors that PGD uses. Two offline tiny ones are built
  on demand: ``tiny-owlvit`` (random weights) and ``planted-owlvit`` (the planted-bias OWL-ViT of
  `bench.models.tiny.planted_bias`, whose "woman" logit rises and "man" logit falls with the image's mean red minus
  mean blue: a toy reader that an edit can move, for demos and tests);
- `embedding_readings`: the grounded model's own detector on (perhaps edited) shared embeddings.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .probes import Axis

TINY_SCORERS = {"tiny-owlvit": ("owlvit", "tiny"), "planted-owlvit": ("planted_bias", "owlvit")}


def _unknown(name: str) -> ConfigError:
    return ConfigError(f"scorer {name!r}: the bias probes' scorer is an open-vocabulary detector: "
                       f"owlvit:<hub id or folder>, {' or '.join(TINY_SCORERS)}")


def check_scorer_name(name: str, where: str = "") -> None:
    """A one-line error for a scorer name that is no OWL-ViT (checked before any work)."""
    if name not in TINY_SCORERS and not (name.startswith("owlvit:") and len(name) > len("owlvit:")):
        raise ConfigError(f"{where + ': ' if where else ''}params field 'scorer': {_unknown(name)}")


def scorer_identity(name: str) -> dict[str, Any]:
    """Load-free identity of a scorer name (for the task fingerprint)."""
    if name in TINY_SCORERS:
        from ..models.tiny_adapter import builder_hash

        family, preset = TINY_SCORERS[name]
        return {"name": name, "family": family, "preset": preset, "seed": 0, "builder": builder_hash(family)}
    if not name.startswith("owlvit:"):
        raise _unknown(name)
    from ..detectors.factory import detector_identity

    return detector_identity(name)


def make_scorer(name: str, device: str = "cpu") -> "PixelScorer":
    if name in TINY_SCORERS:
        from ..models.tiny_adapter import build_cached, default_cache_dir

        family, preset = TINY_SCORERS[name]
        name = f"owlvit:{build_cached(family, preset, 0, default_cache_dir())}"
    if not name.startswith("owlvit:"):
        raise _unknown(name)
    from ..detectors.factory import make_detector

    return PixelScorer(make_detector(name, device=device))


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """The sigmoid in float64: confidences of logits up to about 36 stay distinct (float32 ties them from about 17)."""
    x = np.asarray(logits, dtype=np.float64)
    return np.where(x >= 0, 1.0 / (1.0 + np.exp(-np.abs(x))), np.exp(-np.abs(x)) / (1.0 + np.exp(-np.abs(x))))


def attribute_readings(logits: np.ndarray, queries: Sequence[str], axis: Axis) -> list[dict[str, float]]:
    """[images, queries] highest class logits -> per image {attribute: the confidence of its best query}."""
    index = {q: i for i, q in enumerate(queries)}
    scores = sigmoid(logits)
    return [{a.name: float(max(row[index[q]] for q in a.queries)) for a in axis.attributes} for row in scores]


def decide(reading: dict[str, float], margin: float) -> str | None:
    """The top attribute when it leads the next by more than ``margin``; None otherwise (too close to tell)."""
    ranked = sorted(reading.items(), key=lambda kv: kv[1], reverse=True)
    if len(ranked) < 2 or not ranked[0][1] - ranked[1][1] > margin:
        return None
    return ranked[0][0]


class PixelScorer:
    """An OWL-ViT detector read two ways: through its processor (PIL), and differentiably on pixel tensors."""

    def __init__(self, detector):
        if not hasattr(detector, "pixel_logits"):
            raise ConfigError(f"{getattr(detector, 'name', detector)!r} has no differentiable call on pixels")
        self.detector = detector
        self.name = detector.name
        self.device = detector.device

    def readings(self, images: Sequence[Any], axis: Axis) -> list[dict[str, float]]:
        queries = list(axis.queries)
        return attribute_readings(np.asarray(self.detector.max_logits(list(images), queries)), queries, axis)

    def logits(self, pixels: Sequence[Any], queries: Sequence[str]):
        return self.detector.pixel_logits(pixels, queries)

    def person_box(self, image, threshold: float) -> tuple[float, float, float, float] | None:
        """The largest box the detector finds for "person" at ``threshold`` (original pixels), or None."""
        found = self.detector.detect([image], ["person"], score_threshold=threshold)[0]
        if not len(found):
            return None
        areas = (found.boxes[:, 2] - found.boxes[:, 0]) * (found.boxes[:, 3] - found.boxes[:, 1])
        return tuple(float(v) for v in found.boxes[int(np.argmax(areas))])


def embedding_logits(adapter, e, queries: Sequence[str]):
    """The grounded model's class logits [B, patches, Q] for embeddings e [B, 1 + patches, width]."""
    logits, _ = adapter.detector_outputs(e, list(queries))
    return logits


def embedding_readings(adapter, e, axis: Axis) -> list[dict[str, float]]:
    """Attribute readings of the grounded model's own detector on embeddings [B, 1 + patches, width]."""
    import torch

    queries = list(axis.queries)
    with torch.no_grad():
        logits = embedding_logits(adapter, e, queries).double().amax(dim=1).cpu().numpy()
    return attribute_readings(logits, queries, axis)


def loss_weights(axis: Axis, queries: Sequence[str], pairs: Sequence[tuple[str, str]]):
    """[B, Q] weights: +1 for the target attribute's queries, -1 for the source's, 0 for the rest, per
    (source, target) pair."""
    import torch

    out = torch.zeros(len(pairs), len(queries))
    index = {q: i for i, q in enumerate(queries)}
    for b, (source, target) in enumerate(pairs):
        for q in axis.attribute(source).queries:
            out[b, index[q]] = -1.0
        for q in axis.attribute(target).queries:
            out[b, index[q]] = 1.0
    return out


TARGET_LOGIT = 1e6   # the paper's loss: MSE of the class logits towards +1e6 (target) and -1e6 (source)


def attribute_loss(logits, weights):
    """Per image: the MSE of the class logits [B, boxes, Q] towards +1e6 where ``weights`` is +1 and -1e6 where it
    is -1, over every box and those queries (method.md section 1). Returns [B]; each image's term depends only on
    its own logits, so a batch's summed loss gives every image its own gradient."""
    weights = weights.to(logits.device, logits.dtype)
    selected = (weights != 0).to(logits.dtype)[:, None, :]
    err = (logits - TARGET_LOGIT * weights[:, None, :]) ** 2 * selected
    count = selected.sum(dim=(1, 2)) * logits.shape[1]
    return err.sum(dim=(1, 2)) / count.clamp(min=1.0)
