"""``feature_ablation``: captum's FeatureAblation with one feature per patch-grid cell, each replaced by the
blurred image in turn. Black-box: the ablated images are scored in batches."""

from __future__ import annotations

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod, baseline_pixels, cell_mask, forward, mean_to_grid


@SALIENCY_METHODS.register("feature_ablation")
class FeatureAblation(SaliencyMethod):
    name = "feature_ablation"
    kind = "black"
    summary = "ablation of each grid cell towards the blur (captum FeatureAblation)"

    def compute(self, seam, prepared, config, seed):
        import torch
        from captum.attr import FeatureAblation as Captum

        pixels = prepared.pixels[None]
        baseline = baseline_pixels(prepared, "blur", config)[None]
        with torch.no_grad():
            attribution = Captum(forward(seam, prepared)).attribute(
                pixels, baselines=baseline, feature_mask=cell_mask(prepared), perturbations_per_eval=seam.batch_size)
        return mean_to_grid(prepared, attribution)
