"""``pairs``: counterfactual pairs the user brings, no edit: the "after" image is the scenario's image of the target
attribute (folders ``<scenario>/<attribute>.<ext>``, or a CSV manifest: `bench.perturb.imagesets`). Its size (L2,
L-inf) is the pixel difference between the two images when they have the same size."""

from __future__ import annotations

from ...registry import EDITS
from . import Edit, EditContext, EditJob, EditOutcome


@EDITS.register("pairs")
class PairsEdit(Edit):
    name = "pairs"
    spaces = ("pairs",)

    def uses_scorer(self, space: str) -> bool:
        return False   # a scorer, when given, only measures both images

    def run(self, context: EditContext, jobs: list[EditJob]) -> list[EditOutcome]:
        import numpy as np

        out = []
        for job in jobs:
            a = np.asarray(job.image, dtype=np.float64) / 255.0
            b = np.asarray(job.counterpart, dtype=np.float64) / 255.0
            same = a.shape == b.shape
            diff = b - a if same else None
            out.append(EditOutcome(image=job.counterpart,
                                   l2=float(np.sqrt((diff ** 2).sum())) if same else None,
                                   linf=float(np.abs(diff).max()) if same else None))
        return out
