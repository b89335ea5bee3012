"""``occlusion``: captum's Occlusion over the patch grid. A window of 2 x 2 cells slides one cell at a time, replaced
by the blurred image; each pixel gets the mean drop of the target's log-probability over the windows covering it.
Black-box: the perturbed images are scored in batches."""

from __future__ import annotations

import math

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod, baseline_pixels, forward, mean_to_grid


@SALIENCY_METHODS.register("occlusion")
class Occlusion(SaliencyMethod):
    name = "occlusion"
    kind = "black"
    summary = "occlusion by 2x2-cell windows, stride one cell (captum Occlusion)"

    def compute(self, seam, prepared, config, seed):
        import torch
        from captum.attr import Occlusion as Captum

        ch, cw = (math.ceil(c) for c in prepared.space.cell)
        pixels = prepared.pixels[None]
        baseline = baseline_pixels(prepared, "blur", config)[None]
        with torch.no_grad():
            attribution = Captum(forward(seam, prepared)).attribute(
                pixels, sliding_window_shapes=(3, 2 * ch, 2 * cw), strides=(3, ch, cw), baselines=baseline,
                perturbations_per_eval=seam.batch_size)
        return mean_to_grid(prepared, attribution)
