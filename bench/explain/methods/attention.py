"""``attention`` and ``attention_rollout``: the language model's attention from the target's position to the image
tokens; the last layer's mean over heads, or the rollout over all layers. They explain the image only when the
model's attention carries what it uses (a planted model with uniform attention shows a flat map)."""

from __future__ import annotations

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod


def _grid(prepared, values):
    rows, cols = prepared.space.grid
    return values.reshape(rows, cols).astype(float)


@SALIENCY_METHODS.register("attention")
class LastLayerAttention(SaliencyMethod):
    name = "attention"
    kind = "white"
    summary = "last-layer attention from the target to the image tokens, mean over heads"

    def compute(self, seam, prepared, config, seed):
        return _grid(prepared, seam.attention(prepared)["last"])


@SALIENCY_METHODS.register("attention_rollout")
class AttentionRollout(SaliencyMethod):
    name = "attention_rollout"
    kind = "white"
    summary = "attention rollout over all layers (Abnar & Zuidema 2020)"

    def compute(self, seam, prepared, config, seed):
        return _grid(prepared, seam.attention(prepared)["rollout"])
