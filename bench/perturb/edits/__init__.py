"""Edits of what a model perceives, one registered module each (`bench.registry.EDITS`):

- ``embedding``: the paper's edit of the grounded model's shared embedding e (FGSM, or Adam within the budget);
- ``pixel``: PGD on the image's pixels (any MLLM), moving an open-vocabulary scorer (OWL-ViT);
- ``placebo``: random sign noise of the same budget in the main edit's space (the control);
- ``pairs``: the user's counterfactual image of the target attribute, no edit.

An edit module stays light (no torch at import): ``run`` imports its engine. The engine (`bench.perturb.engine`)
batches every job of one edit spec into one ``run`` call; an edit returns one `EditOutcome` per job, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from ..probes import Axis
from ..request import EditSpec


@dataclass
class EditJob:
    """One image to edit from ``source`` towards ``target``."""

    key: str                                               # the clean image's cache key
    image: Any                                             # PIL, RGB
    spec: EditSpec
    axis: Axis
    source: str
    target: str
    region: tuple[float, float, float, float] | None = None   # pixel edits: the box it may change (None: all)
    counterpart: Any = None                                # pairs: the target attribute's image (PIL)


def batches(jobs: list[EditJob]) -> list[list[EditJob]]:
    """The jobs in groups of their spec's ``batch`` (all jobs of one ``run`` call share one spec), in order."""
    size = max(1, jobs[0].spec.batch) if jobs else 1
    return [jobs[start:start + size] for start in range(0, len(jobs), size)]


@dataclass
class EditOutcome:
    image: Any = None          # the edited image as the model sees it: PIL after the PNG round trip (pixel), the
    png: bytes | None = None   # counterpart (pairs); the PNG bytes of a pixel edit
    embedding: Any = None      # embedding edits: the edited e [1 + patches, width]
    l2: float | None = None    # the edit's size: pixel values in [0, 1] over every channel, or e's units
    linf: float | None = None
    seconds: float = 0.0       # this job's share of its batch's time


@dataclass
class EditContext:
    """What an edit may use: the model adapter, and the pixel scorer (a `bench.perturb.scorer.PixelScorer`, or
    None when the edit reads the grounded model's own detector)."""

    adapter: Any
    scorer: Any = None


class Edit:
    """Base of the registered edits."""

    name: ClassVar[str]
    spaces: ClassVar[tuple[str, ...]]     # the spaces it can work in
    control: ClassVar[bool] = False       # a control runs beside a main edit, in that edit's space

    def needs(self, space: str) -> set[str]:
        """Model capabilities the edit needs in ``space`` (checked before any work)."""
        return {"embedding"} if space == "embedding" else set()

    def uses_scorer(self, space: str) -> bool:
        """Whether it needs the external pixel scorer (the embedding space reads the model's own detector)."""
        return space == "pixel"

    def run(self, context: EditContext, jobs: list[EditJob]) -> list[EditOutcome]:
        raise NotImplementedError
