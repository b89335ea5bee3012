"""The grounded MLLM on tiny random-weight models: parity of both branches with the models they come from,
one vision-tower run per image, gradients through the shared embedding, and clear errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from bench.errors import ConfigError
from bench.models.base import DetectRequest, GenerateRequest, ImageInput, ModelSpec, ScoreRequest
from bench.registry import MODELS
from bench.resources import assets_dir
from grounded_fixtures import llava_on_owl_tower, owl_with_image_size, projector, projector_from_llava, tiny_parts

PHOTOS = ["dog.jpg", "giraffe.jpg", "chelsea.jpg", "kite.jpg"]
QUERIES = ["dog", "cat", "giraffe", "person", "traffic light"]


def photo(name: str) -> ImageInput:
    return ImageInput(name, Image.open(assets_dir() / "mini_coco" / "images" / name).convert("RGB"))


def grounded(mllm, owl, proj, **args):
    spec = ModelSpec("grounded", None, {"mllm": str(mllm), "owl": str(owl), "projector": str(proj), **args})
    return MODELS.get("grounded")(spec).load("cpu", batch_size=8)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    llava, owl = tiny_parts(cache)
    return {"cache": cache, "llava": llava, "owl": owl}


@pytest.fixture(scope="module")
def tiny(parts, tmp_path_factory):
    proj = projector(tmp_path_factory.mktemp("proj"), 32, 64)
    return grounded(parts["llava"], parts["owl"], proj)


def test_detection_branch_equals_owlvit_for_object_detection(parts, tiny):
    from transformers import OwlViTForObjectDetection, OwlViTProcessor

    owl = OwlViTForObjectDetection.from_pretrained(parts["owl"]).eval()
    processor = OwlViTProcessor.from_pretrained(parts["owl"], backend="pil")
    for name in PHOTOS:
        image = photo(name)
        with torch.no_grad():
            reference = owl(**processor(text=[[f"a photo of a {q}" for q in QUERIES]], images=image.image, return_tensors="pt"))
            logits, boxes = tiny.detector_outputs(tiny.embed([image.image]), QUERIES)
        assert torch.allclose(logits, reference.logits, atol=1e-5, rtol=0), (logits - reference.logits).abs().max()
        assert torch.allclose(boxes, reference.pred_boxes, atol=1e-5, rtol=0)


def test_language_branch_reproduces_the_plain_mllm(parts, tmp_path):
    """A LLaVA whose vision tower is OWL's own, read at the same layer, with W = its own projector."""
    plain_folder = llava_on_owl_tower(parts["owl"], tmp_path / "llava_owl")
    proj = projector_from_llava(plain_folder, tmp_path / "proj")
    both = grounded(plain_folder, parts["owl"], proj)
    plain = MODELS.get("hf")(ModelSpec("hf", str(plain_folder), {"prefix_cache": "off"})).load("cpu", batch_size=8)
    prompts = ["Is there a dog in the image?", "What is in the picture?"]
    for name in PHOTOS:
        image = photo(name)
        requests = [ScoreRequest(image, p, continuations=(" a dog",), first_token_words=(("yes", ("yes",)),)) for p in prompts]
        mine, theirs = both.score(requests), plain.score(requests)
        for a, b in zip(mine, theirs):
            assert abs(a.first_token_words["yes"] - b.first_token_words["yes"]) < 1e-5
            assert abs(a.continuations[" a dog"] - b.continuations[" a dog"]) < 1e-5
        with torch.no_grad():
            full = both.answer_logits([image.image], prompts[:1], both.embed([image.image]))
            enc = plain.processor(images=[image.image], text=[plain.format_prompt(prompts[0])], return_tensors="pt")
            reference = plain.model(**enc).logits[0, -1]
        assert torch.allclose(full[0], reference, atol=1e-5, rtol=0)
        generated = both.generate([GenerateRequest(image, p, 6) for p in prompts])
        assert [g.text for g in generated] == [g.text for g in plain.generate([GenerateRequest(image, p, 6) for p in prompts])]


def test_the_vision_tower_runs_once_per_image(parts, tmp_path):
    adapter = grounded(parts["llava"], parts["owl"], projector(tmp_path / "p", 32, 64))
    runs = []
    adapter.owl.owlvit.vision_model.embeddings.register_forward_hook(lambda *a: runs.append(1))
    questions = [f"Is there a {q} in the image?" for q in QUERIES + ["zebra"]]
    images = [photo(n) for n in PHOTOS[:3]]
    words = (("yes", ("yes",)), ("no", ("no",)))
    adapter.score([ScoreRequest(im, q, first_token_words=words) for im in images for q in questions])
    adapter.generate([GenerateRequest(im, q, 3) for im in images for q in questions])
    adapter.detect_scores([DetectRequest(im, (q,)) for im in images for q in QUERIES])
    adapter.detect(images, QUERIES, threshold=0.0)
    assert len(runs) == 3 == adapter.vision_calls              # 3 images; 18 scores, 18 generations, 15 + 3 detections
    assert adapter.prefix_passes == 3


def test_gradients_reach_the_shared_embedding(tiny):
    image = photo("dog.jpg")
    e = tiny.embed([image.image]).detach().requires_grad_(True)
    yes = tiny.tokenizer.convert_tokens_to_ids("▁Yes")
    tiny.answer_logits([image.image], ["Is there a dog in the image?"], e)[0, yes].backward()
    assert e.grad is not None and torch.isfinite(e.grad).all() and e.grad.abs().sum() > 0
    e2 = tiny.embed([image.image]).detach().requires_grad_(True)
    logits, boxes = tiny.detector_outputs(e2, ["dog"])
    logits[0, :, 0].max().backward()
    assert torch.isfinite(e2.grad).all() and e2.grad.abs().sum() > 0
    e3 = tiny.embed([image.image]).detach().requires_grad_(True)
    tiny.detector_outputs(e3, ["dog"])[1].sum().backward()            # box coordinates too
    assert torch.isfinite(e3.grad).all() and e3.grad.abs().sum() > 0


def test_detections_are_in_image_pixels(tiny):
    image = photo("dog.jpg")
    found = tiny.detect([image], ["dog", "bicycle"], threshold=0.0)[0]
    assert len(found) == tiny.patches
    assert (found.boxes[:, 0] >= 0).all() and (found.boxes[:, 2] <= image.image.width).all()
    assert (found.boxes[:, 3] <= image.image.height).all()
    scores = tiny.detect_scores([DetectRequest(image, ("dog", "bicycle"))])[0].max_scores
    assert scores["dog"] == pytest.approx(float(found.scores[np.array(found.labels) == "dog"].max()) if "dog" in found.labels else scores["dog"])
    assert all(0.0 <= v <= 1.0 for v in scores.values())


def test_projector_with_wrong_dimensions_is_refused(parts, tmp_path):
    with pytest.raises(ConfigError, match="maps 48 -> 64, but OWL-ViT's tokens have width 32"):
        grounded(parts["llava"], parts["owl"], projector(tmp_path / "p", 48, 64))
    with pytest.raises(ConfigError, match="needs projector.json"):
        grounded(parts["llava"], parts["owl"], tmp_path / "nowhere")


def test_token_counts_that_differ_are_refused(parts, tmp_path):
    owl80 = owl_with_image_size(parts["owl"], tmp_path / "owl80", 80)     # 5 x 5 = 25 patches; the LLaVA has 16 tokens
    with pytest.raises(ConfigError, match="OWL-ViT gives 25 patch tokens .* but the MLLM expects 16 image tokens"):
        grounded(parts["llava"], owl80, projector(tmp_path / "p", 32, 64))


def test_a_detector_that_is_not_owl_is_refused(parts, tmp_path):
    with pytest.raises(ConfigError, match="OWL-ViT"):
        grounded(parts["llava"], parts["llava"], projector(tmp_path / "p", 32, 64))


def test_empty_query_list_is_refused(tiny):
    from bench.detectors.base import QueryError

    with pytest.raises(QueryError, match="empty query list"):
        tiny.detect_scores([DetectRequest(photo("dog.jpg"), ())])


def test_plain_models_have_no_detector_of_their_own(tmp_path):
    adapter = MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, {})).load("cpu", 4)
    with pytest.raises(ConfigError, match="no detector reading its own vision embedding"):
        adapter.detect_scores([DetectRequest(photo("dog.jpg"), ("dog",))])
    assert math.isfinite(adapter.score([ScoreRequest(photo("dog.jpg"), "Is there a dog?", first_token_words=(("yes", ("yes",)),))])[0].first_token_words["yes"])
