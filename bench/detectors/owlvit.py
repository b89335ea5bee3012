"""OWL-ViT (``OwlViTForObjectDetection``) as an open-vocabulary detector, through transformers.

Queries are phrased "a photo of a {name}" (the paper's template). ``max_scores`` gives, per image and
query, the highest box confidence (sigmoid of the class logit) over ALL predicted boxes, unfiltered:
the figure the grounded-hallucination analysis needs.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .base import Detections, QueryError

TEMPLATE = "a photo of a {}"


class OwlVitDetector:
    vocabulary = None   # open vocabulary: queries decide what is looked for

    def __init__(self, source: str, *, device: str = "cpu", threshold: float = 0.1, template: str = TEMPLATE,
                 revision: str | None = None):
        import torch
        from transformers import OwlViTForObjectDetection, OwlViTProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        try:
            self.processor = OwlViTProcessor.from_pretrained(source, revision=revision, backend="pil")
            self.model = OwlViTForObjectDetection.from_pretrained(source, revision=revision).to(device).eval()
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load OWL-ViT detector {source!r}: {str(exc).strip().splitlines()[0]}") from None
        if self.model.config.model_type != "owlvit":
            raise ConfigError(f"{source!r} is not an OWL-ViT model (model_type {self.model.config.model_type!r})")
        self.torch = torch
        self.device = device
        self.threshold = threshold
        self.template = template
        self.name = f"owlvit:{source}"

    def _run(self, images: Sequence[Any], queries: Sequence[str]):
        if not queries:
            raise QueryError(f"{self.name}: empty query list")
        texts = [[self.template.format(q) for q in queries] for _ in images]
        inputs = self.processor(text=texts, images=list(images), return_tensors="pt").to(self.device)
        with self.torch.inference_mode():
            return self.model(**inputs)

    def max_scores(self, images: Sequence[Any], queries: Sequence[str]) -> np.ndarray:
        """[n_images, n_queries]: each query's highest confidence over every predicted box."""
        outputs = self._run(images, queries)
        return self.torch.sigmoid(outputs.logits).amax(dim=1).float().cpu().numpy()

    def detect(self, images: Sequence[Any], queries: Sequence[str] | None = None, *,
               score_threshold: float | None = None) -> list[Detections]:
        if queries is None:
            raise QueryError(f"{self.name}: an open-vocabulary detector needs queries (class names)")
        queries = list(queries)
        outputs = self._run(images, queries)
        threshold = self.threshold if score_threshold is None else score_threshold
        sizes = self.torch.tensor([[im.height, im.width] for im in images])
        results = self.processor.post_process_grounded_object_detection(
            outputs, threshold=threshold, target_sizes=sizes, text_labels=[queries] * len(images))
        out = []
        for result, image in zip(results, images):
            boxes = result["boxes"].float().cpu().numpy().reshape(-1, 4)
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, image.width)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, image.height)
            labels = tuple(queries[int(i)] for i in result["labels"].tolist())
            out.append(Detections(boxes, result["scores"].float().cpu().numpy(), labels))
        return out

    # -- a differentiable call on pixel tensors (the bias probes' PGD, bench/perturb/pgd.py) ------------------------
    # The processor's own steps, in torch and inside the autograd graph: resize to its square input (bicubic,
    # antialiased: the PIL backend's BICUBIC, which low-pass filters when it shrinks), its centre crop when it has
    # one, and its mean/std normalisation. The PIL path rounds to 8 bits after resizing and computes in fixed point,
    # so the two agree to about 0.3/255 per pixel on average (a few 1/255 at the sharpest edges); an edit's success
    # is measured again through the PIL path (`max_logits`, `max_scores`).

    def input_size(self) -> tuple[int, int]:
        """(height, width) of the processor's output: its resize (height/width) or its centre crop."""
        proc = self.processor.image_processor
        size = proc.size if isinstance(proc.size, dict) else vars(proc.size)
        if not size.get("height") or not size.get("width"):
            raise ConfigError(f"{self.name}: its processor resizes to {size}; the differentiable path needs a fixed "
                              "height and width (as OWL-ViT's processors have)")
        if getattr(proc, "do_center_crop", False) and proc.crop_size:
            crop = proc.crop_size if isinstance(proc.crop_size, dict) else vars(proc.crop_size)
            return int(min(crop["height"], size["height"])), int(min(crop["width"], size["width"]))
        return int(size["height"]), int(size["width"])

    def pixel_inputs(self, pixels):
        """The model input [3, h, w] of one image's pixels [3, H, W] in [0, 1] (any size), differentiable."""
        torch = self.torch
        proc = self.processor.image_processor
        size = proc.size if isinstance(proc.size, dict) else vars(proc.size)
        mode = {2: "bilinear", 3: "bicubic"}.get(int(getattr(proc, "resample", 3)), "bicubic")
        x = torch.nn.functional.interpolate(pixels[None].float(), size=(int(size["height"]), int(size["width"])),
                                            mode=mode, align_corners=False, antialias=True)[0].clamp(0.0, 1.0)
        h, w = self.input_size()
        top, left = (x.shape[1] - h) // 2, (x.shape[2] - w) // 2
        x = x[:, top:top + h, left:left + w]
        mean = torch.tensor(proc.image_mean, dtype=x.dtype, device=x.device)[:, None, None]
        std = torch.tensor(proc.image_std, dtype=x.dtype, device=x.device)[:, None, None]
        return (x - mean) / std

    def query_embeddings(self, queries: Sequence[str]):
        """Normalised text embeddings [Q, D] of the queries (the template applied), as the detector computes them;
        cached per query, without gradients."""
        if not queries:
            raise QueryError(f"{self.name}: empty query list")
        cache = self.__dict__.setdefault("_query_cache", {})
        missing = [q for q in dict.fromkeys(queries) if q not in cache]
        if missing:
            tokens = self.processor(text=[self.template.format(q) for q in missing], return_tensors="pt").to(self.device)
            with self.torch.inference_mode():
                text = self.model.owlvit.get_text_features(input_ids=tokens["input_ids"],
                                                           attention_mask=tokens["attention_mask"]).pooler_output
            text = text / self.torch.linalg.norm(text, ord=2, dim=-1, keepdim=True)
            cache.update(zip(missing, text.clone()))
        return self.torch.stack([cache[q] for q in queries])

    def pixel_logits(self, pixels: Sequence[Any], queries: Sequence[str]):
        """Class logits [B, boxes, Q] of "a photo of a {query}" for pixel tensors [3, H, W] in [0, 1] (each its own
        size), differentiable with respect to the pixels; the model's weights take no gradient."""
        self.model.requires_grad_(False)
        values = self.torch.stack([self.pixel_inputs(p.to(self.device)) for p in pixels])
        feature_map, _ = self.model.image_embedder(pixel_values=values.to(self.model.dtype))
        b, h, w, d = feature_map.shape
        feats = feature_map.reshape(b, h * w, d)
        query = self.query_embeddings(queries).to(feats.dtype)
        mask = self.torch.ones((b, len(queries)), dtype=self.torch.bool, device=feats.device)
        logits, _ = self.model.class_predictor(feats, query[None].expand(b, -1, -1), mask)
        return logits

    def max_logits(self, images: Sequence[Any], queries: Sequence[str]) -> np.ndarray:
        """[n_images, n_queries]: each query's highest class logit over every box (float64), for readings that must
        stay ordered where the sigmoid of ``max_scores`` saturates at 1 in float32."""
        outputs = self._run(images, queries)
        return outputs.logits.amax(dim=1).double().cpu().numpy()
