"""``gradient``: input x gradient of the target's log-probability with respect to the model-input pixels
(captum's InputXGradient on the project's forward)."""

from __future__ import annotations

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod, abs_to_grid, forward


@SALIENCY_METHODS.register("gradient")
class InputXGradient(SaliencyMethod):
    name = "gradient"
    kind = "white"
    summary = "input x gradient (captum InputXGradient)"

    def compute(self, seam, prepared, config, seed):
        from captum.attr import InputXGradient as Captum

        pixels = prepared.pixels[None].clone().requires_grad_(True)
        return abs_to_grid(prepared, Captum(forward(seam, prepared)).attribute(pixels))
