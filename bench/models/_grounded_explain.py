"""The explanation seam of the grounded model: pixels are OWL-ViT's input (the image stretched to its square, no
crop), the image features are W(e) of the shared embedding e, and gradient alignment (GA) compares the gradient of
the language model's target logit with the gradients of the detector's outputs, all with respect to the same e.

GA (method.md section 1), for one target:
1. g_llm = d(target logit at its position) / d(e), e the whole embedding (CLS + patches); for a word of several
   tokens, the sum of their logits;
2. for each of the detector's box tokens i: the gradient of its class logit for "a photo of a {target text}" and of
   its 4 box coordinates, with respect to the same e;
3. every gradient L2-normalised; its cosine similarity with g_llm (0 for a zero gradient, as torch computes it);
   the class column and each coordinate column min-max normalised over the boxes (a column with no spread: 0);
4. the pixel map: at each pixel, the maximum class similarity over the predicted boxes that contain it (boxes are not
   filtered by detection score), then averaged per patch-grid cell.
The detector's Jacobian is never held whole: its rows are computed in batches (``ga_batch`` at a time) as batched
vector-Jacobian products, and each is reduced to its cosine at once.
"""

from __future__ import annotations

import numpy as np
import torch

from ..explain.seam import Prepared
from ..explain.space import PixelSpace, resize_crop_space
from ._hf_explain import HFSeam


COSINE_EPS = 1e-8      # as torch.nn.functional.cosine_similarity
FLAT = 1e-12           # a column whose similarities spread less than this normalises to 0, not to noise


class GroundedSeam(HFSeam):
    kinds = {"black", "white", "ga"}
    ga_batch = 64

    def pixel_space(self, image) -> PixelSpace:
        proc = self.adapter.owl_processor.image_processor
        w0, h0 = image.size
        size = (proc.size["height"], proc.size["width"])
        crop = (proc.crop_size["height"], proc.crop_size["width"]) if getattr(proc, "do_center_crop", False) else None
        vision = self.adapter.owl.config.vision_config
        grid = (vision.image_size // vision.patch_size,) * 2
        return resize_crop_space((h0, w0), size, crop, grid, proc.image_mean, proc.image_std)

    def input_pixels(self, image) -> torch.Tensor:
        proc = self.adapter.owl_processor.image_processor
        out = proc(images=[image], do_normalize=False, return_tensors="pt")["pixel_values"][0]
        return out.to(torch.float64 if self.model.dtype == torch.float64 else torch.float32)

    def embedding(self, prepared_or_space, pixels: torch.Tensor) -> torch.Tensor:
        """The shared embedding e [B, 1 + patches, width] of pixel tensors [B, 3, H, W] (differentiable)."""
        space = prepared_or_space.space if isinstance(prepared_or_space, Prepared) else prepared_or_space
        owl = self.adapter.owl
        values = self.normalise(pixels, space).to(self.adapter.device, owl.dtype)
        vision = owl.owlvit.vision_model
        hidden = vision.pre_layernorm(vision.embeddings(values))
        for layer in vision.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        return hidden

    def _features(self, pixels: torch.Tensor, space: PixelSpace) -> torch.Tensor:
        return self.adapter.language_features(self.embedding(space, pixels))

    def logprob(self, prepared, pixels=None, features=None, embedding=None):
        if embedding is not None:
            features = self.adapter.language_features(embedding)
        return super().logprob(prepared, pixels=pixels, features=features)

    def cascade(self):
        """As for LLaVA, with the grounded model's own pieces: the projector W and OWL-ViT's vision tower (whose
        penultimate layer is the shared embedding)."""
        from ._hf_explain import cascade_blocks

        m = self.model
        return cascade_blocks(m.lm_head, list(m.model.language_model.layers), self.adapter.projector,
                              list(self.adapter.owl.owlvit.vision_model.encoder.layers[:-1]))

    def target_logit(self, prepared: Prepared, embedding: torch.Tensor) -> torch.Tensor:
        """The sum of the target tokens' logits at their positions [B] (GA's language-model output)."""
        logits = self._logits(prepared.input_ids, self.adapter.language_features(embedding), list(prepared.target_positions))
        targets = torch.tensor(prepared.target_ids, device=logits.device)
        return logits[:, torch.arange(len(targets)), targets].sum(-1)

    def gradient_alignment(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """GA's cosine similarities (class [boxes], coordinates [boxes, 4], both min-max normalised per column) and
        the boxes [boxes, 4] (normalised cx, cy, w, h) they belong to."""
        e = self.embedding(prepared, prepared.pixels[None]).detach().requires_grad_(True)
        (g_llm,) = torch.autograd.grad(self.target_logit(prepared, e).sum(), e)
        g_llm = g_llm.reshape(-1)
        logits, boxes = self.adapter.detector_outputs(e, [prepared.target_text.strip()])
        outputs = torch.cat([logits[0, :, :1], boxes[0]], dim=-1)            # [boxes, 5]: class, cx, cy, w, h
        flat = outputs.reshape(-1)
        cosines = torch.empty(flat.numel(), dtype=torch.float64)
        for start in range(0, flat.numel(), self.ga_batch):
            rows = torch.arange(start, min(start + self.ga_batch, flat.numel()))
            basis = torch.zeros(len(rows), flat.numel(), dtype=flat.dtype, device=flat.device)
            basis[torch.arange(len(rows)), rows] = 1.0
            (grads,) = torch.autograd.grad(flat, e, grad_outputs=basis, retain_graph=True, is_grads_batched=True)
            grads = grads.reshape(len(rows), -1)
            # torch's cosine similarity: a zero gradient (an output e cannot move) has similarity 0
            cosines[rows] = torch.nn.functional.cosine_similarity(grads, g_llm[None], dim=1, eps=COSINE_EPS).double().cpu()
        sims = cosines.reshape(outputs.shape).numpy()
        low, high = sims.min(0), sims.max(0)
        flat_column = high - low < FLAT
        normalised = np.where(flat_column, 0.0, (sims - low) / np.where(flat_column, 1.0, high - low))
        return {"class": normalised[:, 0], "coords": normalised[:, 1:], "raw": sims,
                "boxes": boxes[0].detach().double().cpu().numpy()}

    def paint(self, prepared: Prepared, values: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """[H, W] in input pixels: at each pixel the maximum value over the boxes (cx, cy, w, h in [0, 1]) that
        contain its centre; 0 where no box does."""
        h, w = prepared.space.size
        ys, xs = (np.arange(h) + 0.5) / h, (np.arange(w) + 0.5) / w
        out = np.zeros((h, w))
        for value, (cx, cy, bw, bh) in zip(values, boxes):
            rows = (ys >= cy - bh / 2) & (ys <= cy + bh / 2)
            cols = (xs >= cx - bw / 2) & (xs <= cx + bw / 2)
            region = rows[:, None] & cols[None, :]
            out[region] = np.maximum(out[region], value)
        return out
