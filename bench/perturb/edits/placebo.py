"""``placebo``: the control. Random sign noise of the main edit's budget in its space: each pixel value moved by
+-eps (then clipped to [0, 1] and saved on the 8-bit grid, as the pixel edit is), or each coordinate of e moved by
+-eps (the embedding edit's random-sign counterpart, "random sign x lr"). Seeded by the run's seed and the image, so
it is the same noise on a resume."""

from __future__ import annotations

from ...registry import EDITS
from . import Edit, EditContext, EditJob, EditOutcome


@EDITS.register("placebo")
class PlaceboEdit(Edit):
    name = "placebo"
    spaces = ("pixel", "embedding")
    control = True

    def uses_scorer(self, space: str) -> bool:
        return space == "pixel"   # only to measure, after the noise, what the scorer reads

    def run(self, context: EditContext, jobs: list[EditJob]) -> list[EditOutcome]:
        from ..noise import placebo

        return placebo(context.adapter, jobs)
