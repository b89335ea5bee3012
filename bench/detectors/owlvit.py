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
