"""``random``: the seeded control. A uniform random map on the patch grid; every real method must beat it."""

from __future__ import annotations

import numpy as np

from ...registry import SALIENCY_METHODS
from .base import SaliencyMethod


@SALIENCY_METHODS.register("random")
class RandomMap(SaliencyMethod):
    name = "random"
    kind = "black"
    summary = "seeded uniform random map (the control)"

    def compute(self, seam, prepared, config, seed):
        return np.random.default_rng(seed).random(prepared.space.grid)
