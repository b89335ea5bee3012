"""The grounded MLLM of Giulivi & Boracchi (2024): an MLLM's language model and OWL-ViT's detector read
ONE vision embedding.

e = the OWL-ViT vision tower's penultimate hidden state (577 tokens with CLS; the image resized to the
OWL input size, no centre crop). Language branch: drop CLS, apply the projector W, put the result in
place of the MLLM's own image features. Detection branch: OWL's last encoder layer on e, then exactly
the rest of ``OwlViTForObjectDetection``'s image path (post-layernorm, patch x CLS merge, its layer norm,
class head with "a photo of a {name}" queries, box head with its position bias), through the
library's own modules. One embedding per image serves the detector and every question about it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

import torch

from ..detectors.base import Detections, QueryError
from ..errors import ConfigError
from . import projector as projector_io
from ._hf_engine import HFAdapter, _Row
from .base import DetectRequest, DetectResult

TEMPLATE = "a photo of a {}"


def owl_embedding(owl, processor, images: Sequence[Any], device) -> torch.Tensor:
    """OWL-ViT's vision hidden_states[-2] for PIL images (resized to OWL's square input, no crop):
    [B, 1 + patches, width]. Runs the tower only up to its penultimate layer."""
    pixels = processor(images=list(images), return_tensors="pt")["pixel_values"].to(device, owl.dtype)
    vision = owl.owlvit.vision_model
    hidden = vision.pre_layernorm(vision.embeddings(pixels))
    for layer in vision.encoder.layers[:-1]:
        hidden = layer(hidden, None)
    return hidden


class GroundedAdapter(HFAdapter):
    def __init__(self, mllm: str, owl: str, projector: str, args: dict[str, str], *, device: str, batch_size: int,
                 identity: dict[str, Any]):
        from transformers import OwlViTForObjectDetection, OwlViTProcessor

        if args.get("prefix_cache") == "off":
            raise ConfigError("grounded: prefix_cache=off is not available (the shared embedding is the point)")
        super().__init__(mllm, args, device=device, batch_size=batch_size, identity=identity)
        if not self.profile.prefix_cache:
            raise ConfigError(f"grounded: {mllm!r} is a {self.model_type} model; the grounded model needs a LLaVA-style "
                              "MLLM whose image features can be replaced (llava, llava_next, idefics3)")
        try:
            self.owl_processor = OwlViTProcessor.from_pretrained(owl, backend="pil")
            self.owl = OwlViTForObjectDetection.from_pretrained(owl).to(self.device).eval()
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"grounded: cannot load {owl!r} as an OWL-ViT detector: {str(exc).strip().splitlines()[0]}") from None
        if getattr(self.owl.config, "model_type", None) != "owlvit":
            raise ConfigError(f"grounded: {owl!r} is not an OWL-ViT model (model_type {self.owl.config.model_type!r})")
        self.projector, self.projector_config = projector_io.load(projector, str(self.device))
        vision = self.owl.config.vision_config
        width = self.model.get_input_embeddings().weight.shape[1]
        if self.projector_config.in_dim != vision.hidden_size or self.projector_config.out_dim != width:
            raise ConfigError(f"grounded: projector {projector} maps {self.projector_config.in_dim} -> {self.projector_config.out_dim}, "
                              f"but OWL-ViT's tokens have width {vision.hidden_size} and the MLLM's image features width {width}")
        self.patches = (vision.image_size // vision.patch_size) ** 2
        tokens = self._mllm_image_tokens()
        if tokens != self.patches:
            raise ConfigError(f"grounded: OWL-ViT gives {self.patches} patch tokens ({vision.image_size} px / patch {vision.patch_size}) "
                              f"but the MLLM expects {tokens} image tokens; pick a pair (or an OWL resolution) whose counts match")
        self.projector.to(self.model.dtype)
        self.owl_source, self.projector_source = owl, projector
        self.vision_calls = 0                      # OWL vision tower runs (one per image, however many questions)
        self._embeddings: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._queries: dict[str, torch.Tensor] = {}

    def _mllm_image_tokens(self) -> int:
        from PIL import Image

        probe = Image.new("RGB", (64, 64), (128, 128, 128))
        enc = self._encode([probe], [self.format_prompt("?")], "right")
        return int((enc["input_ids"][0] == self.image_token_id).sum())

    def free_memory(self) -> None:
        self._embeddings.clear()
        super().free_memory()

    def explain_seam(self):
        """Every saliency method, gradient alignment (GA) included, through the shared embedding."""
        from ._grounded_explain import GroundedSeam

        return GroundedSeam(self)

    def _describe(self) -> dict[str, Any]:
        info = super()._describe()
        info["parameters"] += sum(p.numel() for p in self.owl.parameters()) + sum(p.numel() for p in self.projector.parameters())
        info.update(adapter="grounded", owl=self.owl_source, projector=self.projector_source,
                    projector_config={k: v for k, v in vars(self.projector_config).items() if k != "trained"},
                    shared_embedding="OWL-ViT vision hidden_states[-2] (CLS + patches)")
        return info

    # -- the shared embedding ---------------------------------------------------------------------
    def embed(self, images: Sequence[Any]) -> torch.Tensor:
        """e for a batch of PIL images: [B, 1 + patches, width]; differentiable (no cache)."""
        self.vision_calls += 1
        return owl_embedding(self.owl, self.owl_processor, images, self.device)

    def embedding(self, key: str, image: Any) -> torch.Tensor:
        """The cached e of one image ([1 + patches, width]), computed once per image."""
        cached = self._embeddings.get(key)
        if cached is not None:
            self._embeddings.move_to_end(key)
            return cached
        with torch.inference_mode():
            e = self.embed([image])[0]
        self._embeddings[key] = e
        while len(self._embeddings) > max(1, self.prefix_cache_size):
            self._embeddings.popitem(last=False)
        return e

    def put_embedding(self, cache_key: str, e: torch.Tensor) -> None:
        """Serve ``e`` ([1 + patches, width]) as the shared embedding of ``cache_key``: an edited embedding under
        its edited image's variant key (the bias probes' embedding edit), so generate, score and detect requests
        for that variant read it. Any prefix cached under the key is dropped. It is kept like every cached
        embedding (least recently used out first), so ask about the variant right after putting it."""
        self._embeddings[cache_key] = e.detach()
        self._embeddings.move_to_end(cache_key)
        self._prefixes.pop(cache_key, None)
        while len(self._embeddings) > max(1, self.prefix_cache_size):
            self._embeddings.popitem(last=False)

    def language_features(self, e: torch.Tensor) -> torch.Tensor:
        """W(e without CLS): the MLLM's image features, [..., patches, width]."""
        return self.projector(e[..., 1:, :].to(self.model.dtype))

    def _vision_inputs(self, key: str, image: Any, processed: dict[str, Any]) -> dict[str, Any]:
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        with torch.inference_mode():
            features = self.language_features(self.embedding(key, image))
        return {"mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=[features])}}

    def _score_rows_generic(self, rows: list[_Row]):
        raise ConfigError("grounded: the prompt does not hold the image before the question, so its features cannot be shared")

    def _generate_generic(self, rows: list[_Row], max_new: int):
        raise ConfigError("grounded: the prompt does not hold the image before the question, so its features cannot be shared")

    # -- the detection branch -------------------------------------------------------------------
    def query_embeddings(self, queries: Sequence[str]) -> torch.Tensor:
        """Normalised text embeddings of "a photo of a {query}" (as OwlViTModel computes them), cached."""
        if not queries:
            raise QueryError("grounded: empty query list")
        missing = [q for q in dict.fromkeys(queries) if q not in self._queries]
        if missing:
            tokens = self.owl_processor(text=[TEMPLATE.format(q) for q in missing], return_tensors="pt").to(self.device)
            with torch.inference_mode():
                text = self.owl.owlvit.get_text_features(input_ids=tokens["input_ids"],
                                                         attention_mask=tokens["attention_mask"]).pooler_output
            text = text / torch.linalg.norm(text, ord=2, dim=-1, keepdim=True)
            self._queries.update(zip(missing, text))
        return torch.stack([self._queries[q] for q in queries])

    def detector_outputs(self, e: torch.Tensor, queries: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits [B, patches, Q], boxes [B, patches, 4] as normalised cx, cy, w, h) from e; differentiable."""
        e = e if e.dim() == 3 else e[None]
        query = self.query_embeddings(queries).to(e.dtype)
        vision = self.owl.owlvit.vision_model
        hidden = vision.encoder.layers[-1](e, None)
        embeds = vision.post_layernorm(hidden)
        cls = torch.broadcast_to(embeds[:, :1, :], embeds[:, :-1].shape)
        feats = self.owl.layer_norm(embeds[:, 1:, :] * cls)
        b, n, d = feats.shape
        feature_map = feats.reshape(b, self.owl.num_patches_height, self.owl.num_patches_width, d)
        mask = torch.ones((b, len(queries)), dtype=torch.bool, device=feats.device)
        logits, _ = self.owl.class_predictor(feats, query[None].expand(b, -1, -1), mask)
        boxes = self.owl.box_predictor(feats, feature_map)
        return logits, boxes

    def detect_scores(self, requests: list[DetectRequest]) -> list[DetectResult]:
        """Each query's highest confidence over all predicted boxes (unfiltered), from the shared embedding."""
        out = []
        with torch.inference_mode():
            for req in requests:
                logits, _ = self.detector_outputs(self.embedding(req.image.cache_key, req.image.image), req.queries)
                scores = torch.sigmoid(logits[0].float()).amax(dim=0).cpu().tolist()
                out.append(DetectResult(dict(zip(req.queries, scores))))
        return out

    def detect(self, images: Sequence[Any], queries: Sequence[str], threshold: float = 0.1) -> list[Detections]:
        """Boxes in original image pixels (the OWL input is the image stretched to a square)."""
        out = []
        with torch.inference_mode():
            for image in images:
                logits, boxes = self.detector_outputs(self.embedding(image.cache_key, image.image), queries)
                scores, labels = torch.sigmoid(logits[0].float()).max(dim=-1)
                keep = scores >= threshold
                cx, cy, w, h = boxes[0].float().unbind(-1)
                xyxy = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
                size = torch.tensor([image.image.width, image.image.height] * 2, dtype=torch.float32, device=xyxy.device)
                xyxy = torch.minimum((xyxy * size).clamp(min=0), size)[keep].cpu().numpy()
                out.append(Detections(xyxy, scores[keep].cpu().numpy(), tuple(queries[i] for i in labels[keep].tolist())))
        return out

    # -- gradients: the analyses perturb and differentiate through e ---------------------------------
    def answer_logits(self, images: Sequence[Any], prompts: Sequence[str], embedding: torch.Tensor) -> torch.Tensor:
        """Logits of the first answer token [B, vocab] given an embedding e [B, 1 + patches, width] (perhaps
        perturbed, perhaps requiring grad); the prompts get the chat template."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        texts = [self.format_prompt(p) for p in prompts]
        enc = self._encode(list(images), texts, "right")
        lengths = enc["attention_mask"].sum(1)
        features = list(self.language_features(embedding))
        inputs = {"input_ids": enc["input_ids"].to(self.device), "attention_mask": enc["attention_mask"].to(self.device),
                  "mm_encoder_outputs": {"image": BaseModelOutputWithPooling(pooler_output=features)}}
        logits = self.model(**inputs).logits
        return logits[torch.arange(len(texts)), (lengths - 1).to(self.device)].float()

