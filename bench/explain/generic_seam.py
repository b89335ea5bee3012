"""The black-box seam over any model adapter that scores continuations: perturbations of the ORIGINAL image.

For processors that tile, pad or resize in their own way (LLaVA-NeXT's any-resolution tiles, Idefics3's splits,
Qwen2-VL's dynamic resolution, PaliGemma), the perturbation space is the original image itself and the grid is a
``grid`` x ``grid`` lattice of cells over it (`ExplainConfig.grid`). Every tile the processor makes is a crop or a
resize of the original, so a perturbed cell reaches every tile that sees those pixels, and the map is already in
original pixels: no tile has to be mapped back or combined. Each variant is an 8-bit image (rounded) that goes
through the model's own processor and score path, under its own cache key, so no cache of the clean image serves it.
Only black-box methods (occlusion, feature ablation, random) run here.
"""

from __future__ import annotations

import hashlib
from typing import Callable

import numpy as np

from ..errors import ConfigError
from ..models.base import GenerateRequest, ImageInput, ScoreRequest
from .request import ExplainConfig, TargetSpec
from .seam import Prepared
from .space import PixelSpace
from .targets import TargetAbsent, resolve_target


class GenericSeam:
    kinds = {"black"}

    def __init__(self, adapter):
        self.adapter = adapter

    @property
    def batch_size(self) -> int:
        return self.adapter.batch_size

    def prepare(self, image: ImageInput, target: TargetSpec, config: ExplainConfig | None = None) -> Prepared:
        import torch

        adapter = self.adapter
        text = adapter.format_prompt(target.prompt)
        prompt_ids = adapter.tokenizer(text, add_special_tokens=False)["input_ids"]

        def next_token(ids: list[int]) -> int:
            if len(ids) != len(prompt_ids):
                raise ConfigError("the black-box path explains the model's own next token only right after the prompt "
                                  "(no prefix); give the target word instead")
            (result,) = adapter.generate([GenerateRequest(image, target.prompt, 1)])
            if not result.token_ids:
                raise TargetAbsent("the model's answer is empty (it ended at its first token)")
            return result.token_ids[0]

        resolved = resolve_target(adapter, image, target, text, prompt_ids, next_token)
        w0, h0 = image.image.size
        grid = (config or ExplainConfig()).grid
        space = PixelSpace((h0, w0), (h0, w0), (1.0, 1.0), (0, 0), (grid, grid))
        pixels = torch.from_numpy(np.asarray(image.image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return Prepared(image.key, space, pixels, None, resolved.target_ids, (), (0, 0), resolved.text, resolved.caption,
                        extra={"prompt": target.prompt, "prefix_ids": resolved.prefix_ids, "category": resolved.category})

    def _requests(self, prepared: Prepared, pixels) -> list[ScoreRequest]:
        from PIL import Image

        prefix = tuple(prepared.extra["prefix_ids"])
        full = prefix + tuple(prepared.target_ids)
        out = []
        for variant in pixels:
            array = (variant.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0).round().astype(np.uint8)
            tag = hashlib.sha256(array.tobytes()).hexdigest()[:16]
            image = ImageInput(prepared.key, Image.fromarray(array), variant=f"perturbed:{tag}")
            out.append(ScoreRequest(image, prepared.extra["prompt"], continuation_ids=(full, prefix) if prefix else (full,)))
        return out

    def logprob(self, prepared: Prepared, pixels=None, features=None):
        import torch

        results = self.adapter.score(self._requests(prepared, pixels))
        values = [r.continuation_ids[0] - (r.continuation_ids[1] if len(r.continuation_ids) > 1 else 0.0) for r in results]
        return torch.tensor(values, dtype=torch.float64)

    def score(self, prepared: Prepared, pixels=None, features=None) -> np.ndarray:
        return np.exp(self.logprob(prepared, pixels=pixels).numpy())

    def features(self, prepared, pixels):
        raise NotImplementedError("the black-box seam has no image features")

    def in_batches(self, n: int, run: Callable[[list[int]], list]) -> list:
        out: list = []
        for start in range(0, n, self.batch_size):
            out.extend(run(list(range(start, min(n, start + self.batch_size)))))
        return out
