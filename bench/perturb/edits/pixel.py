"""``pixel``: PGD in [0, 1] pixel space under an L-inf budget, moving the open-vocabulary scorer from the source
attribute to the target attribute (`bench.perturb.pgd`). Works for any MLLM: the model is asked about the saved,
edited image."""

from __future__ import annotations

from ...registry import EDITS
from . import Edit, EditContext, EditJob, EditOutcome


@EDITS.register("pixel")
class PixelEdit(Edit):
    name = "pixel"
    spaces = ("pixel",)

    def run(self, context: EditContext, jobs: list[EditJob]) -> list[EditOutcome]:
        from ..pgd import pgd_edit

        return pgd_edit(context.scorer, jobs)
