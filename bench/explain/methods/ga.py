"""``ga``: gradient alignment (Giulivi & Boracchi 2024) on a grounded model; see `bench/models/_grounded_explain.py`
for its exact steps. The map: the maximum class similarity over the detector's boxes painted over their areas
(576 boxes at the reference shapes, not filtered by score), averaged per patch-grid cell."""

from __future__ import annotations

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod


@SALIENCY_METHODS.register("ga")
class GradientAlignment(SaliencyMethod):
    name = "ga"
    kind = "ga"
    summary = "gradient alignment of the language model and the detector on the shared embedding (grounded models)"

    def compute(self, seam, prepared, config, seed):
        ga = seam.gradient_alignment(prepared)
        painted = seam.paint(prepared, ga["class"], ga["boxes"])
        return prepared.space.input_to_grid(painted, "mean")
