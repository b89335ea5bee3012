"""What a task asks the explainer, and what it gets back.

A target is one output token, or the tokens of one word (its score is the sum of their log-probabilities), at its
position, given the image, the prompt and the assistant text before it (the prefix). Where it comes from:
  - ``given``: the word is given, teacher-forced after ``prefix`` (a reference caption's object word, the class
    word after "The image shows a");
  - ``next_token``: the model's own greedy next token after ``prefix`` (the first token of a POPE answer);
  - ``own_caption``: the model describes the image first (greedy); the target is the ``index``-th object word of
    its own description, by token ids and position, never by re-tokenised text. When the description has fewer
    object words, the target is absent: the row says so and is counted, not failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..models.base import ImageInput, register_handler


@dataclass(frozen=True)
class TargetSpec:
    prompt: str
    source: Literal["given", "next_token", "own_caption"] = "given"
    prefix: str = ""                 # assistant text before the target (given / next_token)
    word: str | None = None          # the word to explain (given)
    index: int = 0                   # which object word of the model's own caption (own_caption)
    max_new_tokens: int = 64         # own_caption: length of the description

    @property
    def key(self) -> tuple:
        return (self.prompt, self.source, self.prefix, self.word, self.index, self.max_new_tokens)


@dataclass(frozen=True)
class ExplainConfig:
    steps: int = 64                                        # insertion/deletion steps
    deletion_baseline: Literal["blur", "black", "mean"] = "blur"
    blur_kernel: int = 11
    blur_sigma: float = 5.0
    ig_steps: int = 32                                     # integrated gradients: points on the path
    ig_baseline: Literal["black", "blur"] = "black"
    token_space: bool = True                               # also the curves in image-feature space
    seed: int = 0
    grid: int = 8                                          # black-box path over any processor: cells per side
    sanity: bool = False                                   # also the cascading model-parameter randomisation test


@dataclass(frozen=True)
class ExplainRequest:
    image: ImageInput
    target: TargetSpec
    method: str
    config: ExplainConfig = field(default_factory=ExplainConfig)
    sample_seed: int = 0          # seeds what is random for this sample (the random map, tie-breaking)


@dataclass
class ExplainResult:
    status: Literal["ok", "absent"]
    method: str
    target_text: str = ""
    target_ids: tuple[int, ...] = ()
    target_position: int = -1        # index of the first target token in the model's input ids
    reason: str | None = None        # why a target is absent
    grid: tuple[int, int] = (0, 0)
    saliency: Any = None             # [rows, cols] float map on the patch grid
    space: dict | None = None        # `PixelSpace.to_dict()`
    curves: dict[str, Any] = field(default_factory=dict)   # insertion/deletion (pixel and token space), each [steps+1]
    scores: dict[str, float] = field(default_factory=dict)  # p_original, p_blur, p_deleted, AUCs
    seconds: float = 0.0             # time spent on the map
    caption: str | None = None       # own_caption: the model's description
    category: str | None = None      # own_caption: the COCO category of the explained object word
    sanity: dict[str, Any] = field(default_factory=dict)   # steps, spearman, ssim: maps under randomised weights


def _explain(adapter, requests: list[ExplainRequest]) -> list[ExplainResult]:
    from .engine import explain   # torch, captum and scipy load only when something is explained

    return explain(adapter, requests)


register_handler(ExplainRequest, _explain)
