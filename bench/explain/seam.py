"""The gradient-and-variant seam: what a model offers so that any saliency method can explain one of its tokens.

An adapter that can be explained returns a `Seam` from ``adapter.explain_seam()``. The seam:

- ``prepare(image, target, config)`` -> `Prepared`: the token ids (prompt, prefix and the target's own tokens, teacher
  forced), the target's ids and the positions whose logits predict them, the image-token span, the patch grid, the
  model-input pixels in [0, 1] (after resize and crop, before normalisation) and their `PixelSpace` (the exact map
  back to the original image's pixels);
- ``logprob(prepared, pixels=..., features=...)``: the target's log-probability (summed over its tokens) for a batch
  of pixel tensors [B, 3, H, W] or of image features [B, T, D], with gradients on. Weights are frozen, so a backward
  never allocates weight gradients;
- ``features(prepared, pixels)``: the image features the language model reads (after the projector), differentiable;
- ``score(prepared, pixels=... | features=...)``: batched, no-grad probabilities of the target for many variants of
  one prepared request; only the logits that are used are computed, and the text side is prepared once. Variants
  never touch the adapter's caches of clean images (a perturbed image is never served a clean image's cache);
- ``kinds``: the method kinds it supports: "black" (perturbations), "white" (gradients, attention), "ga"
  (gradient alignment on a grounded model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from .space import PixelSpace


@dataclass
class Prepared:
    key: str                          # the image's identity
    space: PixelSpace
    pixels: Any                       # torch [3, H, W] in [0, 1], the model-input pixels of the clean image
    input_ids: Any                    # torch [1, L]: prompt, prefix and all target tokens but the last
    target_ids: tuple[int, ...]
    target_positions: tuple[int, ...]  # position of the logits that predict each target token
    image_span: tuple[int, int]       # [start, end) of the image tokens in input_ids
    target_text: str
    caption: str | None = None        # own-caption targets: the model's description
    extra: dict[str, Any] = field(default_factory=dict)


class Seam(Protocol):
    kinds: set[str]

    def prepare(self, image, target, config=None) -> Prepared: ...

    def logprob(self, prepared: Prepared, pixels=None, features=None): ...

    def features(self, prepared: Prepared, pixels): ...

    def score(self, prepared: Prepared, pixels=None, features=None): ...

    def in_batches(self, n: int, run: Callable[[list[int]], list]) -> list: ...
