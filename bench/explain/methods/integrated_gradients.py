"""``integrated_gradients``: captum's IntegratedGradients from a black or blurred baseline, ``ig_steps`` points on
the path, batched by the adapter's batch size."""

from __future__ import annotations

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod, abs_to_grid, baseline_pixels, forward


@SALIENCY_METHODS.register("integrated_gradients")
class IntegratedGradients(SaliencyMethod):
    name = "integrated_gradients"
    kind = "white"
    summary = "integrated gradients (captum), black or blur baseline"

    def compute(self, seam, prepared, config, seed):
        from captum.attr import IntegratedGradients as Captum

        pixels = prepared.pixels[None].clone().requires_grad_(True)
        baseline = baseline_pixels(prepared, config.ig_baseline, config)[None]
        attribution = Captum(forward(seam, prepared)).attribute(pixels, baselines=baseline, n_steps=config.ig_steps,
                                                                internal_batch_size=seam.batch_size)
        return abs_to_grid(prepared, attribution)
