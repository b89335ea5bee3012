"""The explanation seam of LLaVA-style ``hf`` models (and, by subclassing, of the grounded model).

Pixel space: the CLIP processor's resize (shortest edge) and centre crop, values in [0, 1] before its
normalisation; the patch grid is the vision tower's (one cell per image token). Image features are the projector's
output, put in place of the image tokens through ``mm_encoder_outputs``, so the same forward serves pixels,
features and (grounded) the shared embedding. Every forward keeps only the logits at the target's positions.
Variants never go through the adapter's prefix cache: they are scored from their own pixels or features.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from ..errors import ConfigError
from ..explain.request import TargetSpec
from ..explain.seam import Prepared
from ..explain.space import PixelSpace, resize_crop_space
from ..explain.targets import resolve_target
from .base import ImageInput


class HFSeam:
    """White-box seam over an `HFAdapter` whose model is LLaVA-1.5-style (one image, a patch grid of tokens)."""

    kinds = {"black", "white"}

    def __init__(self, adapter):
        self.adapter = adapter
        self.model = adapter.model
        self.model.requires_grad_(False)          # a backward never allocates weight gradients
        config = self.model.config
        self.feature_layer = getattr(config, "vision_feature_layer", -2)
        self.select = getattr(config, "vision_feature_select_strategy", "default")

    # -- geometry ------------------------------------------------------------------------------------------------
    def pixel_space(self, image) -> PixelSpace:
        from transformers.image_transforms import get_resize_output_image_size

        proc = self.adapter.processor.image_processor
        w0, h0 = image.size
        size = proc.size.get("shortest_edge") if isinstance(proc.size, dict) else getattr(proc.size, "shortest_edge", None)
        if size:
            resized = get_resize_output_image_size(np.zeros((3, h0, w0)), size, default_to_square=False,
                                                   input_data_format="channels_first")
        else:
            resized = (proc.size["height"], proc.size["width"])
        crop = (proc.crop_size["height"], proc.crop_size["width"]) if getattr(proc, "do_center_crop", False) else None
        h, w = crop or resized
        patch = self.model.config.vision_config.patch_size
        return resize_crop_space((h0, w0), tuple(resized), crop, (h // patch, w // patch), proc.image_mean, proc.image_std)

    def input_pixels(self, image) -> torch.Tensor:
        """The model-input pixels [3, H, W] in [0, 1]: the processor's own resize and crop, without normalising."""
        proc = self.adapter.processor.image_processor
        out = proc(images=[image], do_normalize=False, return_tensors="pt")["pixel_values"][0]
        return out.to(torch.float64 if self.model.dtype == torch.float64 else torch.float32)

    def normalise(self, pixels: torch.Tensor, space: PixelSpace) -> torch.Tensor:
        mean = torch.tensor(space.mean, dtype=pixels.dtype, device=pixels.device)[:, None, None]
        std = torch.tensor(space.std, dtype=pixels.dtype, device=pixels.device)[:, None, None]
        return (pixels - mean) / std

    # -- preparing a target ----------------------------------------------------------------------------------------
    def prepare(self, image: ImageInput, target: TargetSpec, config=None) -> Prepared:
        """``config`` is unused here: the grid is the vision tower's patch grid."""
        adapter = self.adapter
        text = adapter.format_prompt(target.prompt)
        enc = adapter._encode([image.image], [text], "right")
        prompt_ids = enc["input_ids"][0, : int(enc["attention_mask"][0].sum())].tolist()
        space = self.pixel_space(image.image)
        pixels = self.input_pixels(image.image)
        resolved = resolve_target(adapter, image, target, text, prompt_ids,
                                  lambda ids: self._next_token(ids, pixels, space))
        ids = torch.tensor([prompt_ids + list(resolved.prefix_ids) + list(resolved.target_ids[:-1])])
        first = len(prompt_ids) + len(resolved.prefix_ids) - 1
        positions = tuple(first + j for j in range(len(resolved.target_ids)))
        image_positions = (ids[0] == adapter.image_token_id).nonzero().flatten().tolist()
        if not image_positions:
            raise ConfigError(f"{adapter.source}: the prompt holds no image token; it cannot be explained")
        return Prepared(image.key, space, pixels, ids, tuple(resolved.target_ids), positions,
                        (image_positions[0], image_positions[-1] + 1), resolved.text, resolved.caption,
                        extra={"category": resolved.category})

    @torch.no_grad()
    def _next_token(self, ids: list[int], pixels, space) -> int:
        logits = self._logits(torch.tensor([ids]), self._features(pixels[None], space), [len(ids) - 1])
        return int(logits[0, 0].argmax())

    # -- forward passes --------------------------------------------------------------------------------------------
    def _features(self, pixels: torch.Tensor, space: PixelSpace) -> torch.Tensor:
        values = self.normalise(pixels, space).to(self.adapter.device, self.model.dtype)
        out = self.model.model.get_image_features(pixel_values=values, vision_feature_layer=self.feature_layer,
                                                  vision_feature_select_strategy=self.select)
        return torch.stack(list(out.pooler_output))

    def features(self, prepared: Prepared, pixels: torch.Tensor) -> torch.Tensor:
        """Image features [B, T, D] of pixel tensors [B, 3, H, W] (differentiable)."""
        return self._features(pixels, prepared.space)

    def _logits(self, ids: torch.Tensor, features: torch.Tensor, positions: list[int]) -> torch.Tensor:
        """Logits [B, k, vocab] at ``positions`` for one prompt (ids [1, L]) and B sets of image features."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        b = features.shape[0]
        ids = ids.to(self.adapter.device).expand(b, -1)
        # no attention mask: nothing is padded, and without one the attention kernels take their causal fast path
        inputs = {"input_ids": ids, "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=list(features))}}
        keep = torch.tensor(positions, device=self.adapter.device)
        if self.adapter.keeps_logits:
            return self.model(**inputs, logits_to_keep=keep).logits
        return self.model(**inputs).logits[:, keep]

    def logprob(self, prepared: Prepared, pixels: torch.Tensor | None = None, features: torch.Tensor | None = None) -> torch.Tensor:
        """Log-probability of the target (summed over its tokens) [B], from pixels [B, 3, H, W] or features."""
        if features is None:
            features = self.features(prepared, pixels)
        logits = self._logits(prepared.input_ids, features, list(prepared.target_positions))
        logp = torch.log_softmax(logits.to(torch.float64 if logits.dtype == torch.float64 else torch.float32), -1)
        targets = torch.tensor(prepared.target_ids, device=logp.device)
        return logp[:, torch.arange(len(targets)), targets].sum(-1)

    def score(self, prepared: Prepared, pixels: torch.Tensor | None = None, features: torch.Tensor | None = None) -> np.ndarray:
        """Target probabilities [N] of many variants (pixels [N, 3, H, W] or features [N, T, D]), batched, no grad."""
        n = (pixels if pixels is not None else features).shape[0]

        def run(idx: list[int]) -> list[float]:
            with torch.no_grad():
                part = {"pixels": pixels[idx]} if pixels is not None else {"features": features[idx]}
                return torch.exp(self.logprob(prepared, **part)).cpu().tolist()

        return np.asarray(self.in_batches(n, run), dtype=float)

    def in_batches(self, n: int, run: Callable[[list[int]], list]) -> list:
        return self.adapter._in_batches(list(range(n)), run)

    @property
    def batch_size(self) -> int:
        return self.adapter.batch_size

    # -- the model-parameter randomisation test -----------------------------------------------------------------
    def cascade(self) -> list[tuple[str, list]]:
        m = self.model
        tower = m.model.vision_tower
        encoder = getattr(tower, "vision_model", tower).encoder
        return cascade_blocks(m.lm_head, list(m.model.language_model.layers), m.model.multi_modal_projector,
                              list(encoder.layers))

    def randomised(self, modules: list, seed: int) -> "Randomised":
        return Randomised(modules, seed)

    # -- attention ---------------------------------------------------------------------------------------------
    def attention(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """From the first target position to the image tokens: the last layer's attention (mean over heads) and the
        rollout over all layers (Abnar & Zuidema 2020: identity added for residuals, rows renormalised)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        model = self.model
        previous = getattr(model.config, "_attn_implementation", None)
        if previous != "eager":
            model.set_attn_implementation("eager")
        try:
            with torch.no_grad():
                features = self.features(prepared, prepared.pixels[None])
                ids = prepared.input_ids.to(self.adapter.device)
                out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_attentions=True,
                            mm_encoder_outputs={"image": BaseModelOutputWithPooling(pooler_output=list(features))},
                            logits_to_keep=1)
        finally:
            if previous != "eager":
                model.set_attn_implementation(previous)
        layers = [a[0].float().mean(0) for a in out.attentions]          # each [L, L]
        start, end = prepared.image_span
        at = prepared.target_positions[0]
        last = layers[-1][at, start:end].cpu().numpy()
        rollout = torch.eye(layers[0].shape[0], device=layers[0].device)
        for a in layers:
            a = 0.5 * a + 0.5 * torch.eye(a.shape[0], device=a.device)
            rollout = (a / a.sum(-1, keepdim=True)) @ rollout
        return {"last": last, "rollout": rollout[at, start:end].cpu().numpy()}


def model_explain_seam(adapter) -> Any:
    """The seam for an `HFAdapter`: white-box for LLaVA-1.5-style models, else the black-box seam over any
    processor (perturbations of the original image, through the ordinary score path)."""
    if adapter.model_type == "llava":
        return HFSeam(adapter)
    from ..explain.generic_seam import GenericSeam

    return GenericSeam(adapter)




def cascade_blocks(output_head, language_layers, projector, vision_layers) -> list[tuple[str, list]]:
    """The cascading randomisation of Adebayo et al. (2018), from the output towards the input: the output head, then
    the language model's layers from the top in quarters, the projector, then the vision layers from the top in
    halves. Each step randomises everything of the steps before it too; returns (name, modules) per step."""
    steps: list[tuple[str, list]] = [("output head", [output_head])]
    n = len(language_layers)
    for quarter in (1, 2, 3, 4):
        k = max(1, round(n * quarter / 4))
        if k != len(steps[-1][1]) - 1 or quarter == 1:
            steps.append((f"language top {k}/{n}", [output_head, *language_layers[n - k:]]))
    steps = [s for i, s in enumerate(steps) if i == 0 or len(s[1]) != len(steps[i - 1][1])]
    base = steps[-1][1]
    steps.append(("projector", [*base, projector]))
    m = len(vision_layers)
    for half in (1, 2):
        k = max(1, round(m * half / 2))
        modules = [*base, projector, *vision_layers[m - k:]]
        if len(modules) != len(steps[-1][1]):
            steps.append((f"vision top {k}/{m}", modules))
    return steps


class Randomised:
    """Within the block, the parameters of ``modules`` hold seeded random values with each tensor's own mean and std
    (1-D tensors such as norms included); on exit every tensor gets its original values back."""

    def __init__(self, modules: list, seed: int):
        self.params = list(dict.fromkeys(p for m in modules for p in m.parameters()))
        self.seed = seed
        self.saved: list = []

    def __enter__(self):
        generator = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            for p in self.params:
                self.saved.append(p.detach().to("cpu", copy=True))
                std = p.float().std() if p.numel() > 1 else p.float().abs()
                noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
                p.copy_((noise * std + p.float().mean()).to(p.dtype))
        return self

    def __exit__(self, *exc):
        with torch.no_grad():
            for p, value in zip(self.params, self.saved):
                p.copy_(value.to(p.device))
        self.saved = []
        return False
