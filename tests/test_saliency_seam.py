"""The explanation seam on tiny models: the pixel space and its mapping, gradients (finite differences, no weight
gradients), caches keyed by variant, batch-size invariance, and GA against a direct step-by-step computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from bench.explain import engine
from bench.explain.request import ExplainConfig, ExplainRequest, TargetSpec
from bench.models.base import ImageInput, ModelSpec, ScoreRequest
from bench.registry import MODELS
from bench.resources import assets_dir

SPEC = TargetSpec("Please describe this image in detail.", "given", "A brown", "dog")


def image(name: str = "dog") -> ImageInput:
    return ImageInput(name, Image.open(assets_dir() / "mini_coco" / "images" / f"{name}.jpg").convert("RGB"))


@pytest.fixture(scope="module")
def llava():
    return MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, {})).load("cpu", 8)


@pytest.fixture(scope="module")
def grounded():
    factory = MODELS.get("tiny-grounded")(ModelSpec("tiny-grounded", None, {}))
    factory.prepare()
    return factory.load("cpu", 8)


def test_pixel_space_is_the_processors_own_resize_and_crop(llava):
    seam = engine.seam_of(llava)
    photo = image("chelsea").image                     # 451 x 300, not square: the centre crop cuts its long side
    space = seam.pixel_space(photo)
    pixels = seam.input_pixels(photo)
    h0, w0 = photo.height, photo.width
    (hr, wr), (top, left) = (round(h0 * space.scale[0]), round(w0 * space.scale[1])), space.offset
    manual = np.asarray(photo.resize((wr, hr), Image.BICUBIC), dtype=np.float32) / 255.0
    manual = manual[top:top + space.size[0], left:left + space.size[1]]
    assert np.abs(pixels.permute(1, 2, 0).numpy() - manual).max() < 1e-6
    normalised = seam.normalise(pixels, space)
    processed = llava.processor.image_processor(images=[photo], return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(normalised, processed, atol=1e-5)
    valid = space.valid_original()
    assert valid.any() and not valid.all()             # the cropped-away sides of the long edge get no saliency
    assert valid[:, w0 // 2].all() if w0 > h0 else valid[h0 // 2].all()
    grid = np.arange(np.prod(space.grid), dtype=float).reshape(space.grid)
    painted = space.grid_to_original(grid)
    assert np.isnan(painted[~valid]).all() and np.isfinite(painted[valid]).all()
    boxes = space.cell_boxes()
    x1, y1, x2, y2 = boxes[0]
    cy, cx = int((y1 + y2) / 2), int((x1 + x2) / 2)
    assert painted[cy, cx] == 0.0                      # the first cell's box holds the first cell's value
    x1, y1, x2, y2 = boxes[-1]
    assert painted[int((y1 + y2) / 2), int((x1 + x2) / 2)] == grid.size - 1


def test_pixel_gradient_matches_finite_differences_in_float64_and_no_weight_gets_a_grad(llava):
    llava.model.to(torch.float64)
    try:
        seam = engine.seam_of(llava)
        prepared = seam.prepare(image(), SPEC)
        x = prepared.pixels.to(torch.float64)[None].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(seam.logprob(prepared, pixels=x).sum(), x)
        # transformers' RMSNorm computes in float32 even in a float64 model, so f carries float32 rounding
        # (~1e-7): step h = 1e-3 along directions with a large derivative keeps that noise below 1e-3 relative
        noise = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        unit = grad / grad.norm()
        for direction in (unit, (unit + noise / noise.norm()) / (unit + noise / noise.norm()).norm()):
            h = 1e-3
            with torch.no_grad():
                plus = seam.logprob(prepared, pixels=x + h * direction)
                minus = seam.logprob(prepared, pixels=x - h * direction)
            numeric = float((plus - minus) / (2 * h))
            analytic = float((grad * direction).sum())
            assert abs(numeric - analytic) / abs(analytic) < 1e-3
        assert all(p.grad is None for p in llava.model.parameters())
    finally:
        llava.model.to(torch.float32)


def test_a_perturbed_image_is_scored_as_without_any_cache(llava):
    seam = engine.seam_of(llava)
    prepared = seam.prepare(image(), SPEC)
    perturbed = (prepared.pixels + 0.3 * torch.rand(prepared.pixels.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    got = seam.score(prepared, pixels=perturbed[None])
    with torch.no_grad():                               # the model's own forward from pixel_values, nothing cached
        logits = llava.model(input_ids=prepared.input_ids, pixel_values=seam.normalise(perturbed, prepared.space)[None]).logits
        logp = torch.log_softmax(logits[0, list(prepared.target_positions)].float(), -1)
        direct = float(torch.exp(logp[torch.arange(len(prepared.target_ids)), list(prepared.target_ids)].sum()))
    assert got[0] == pytest.approx(direct, rel=1e-4, abs=1e-7)

    # the ordinary score path keys its prefix cache by image AND variant: a variant is never served the clean one
    clean = image()
    variant = ImageInput(clean.key, Image.fromarray((perturbed.permute(1, 2, 0).numpy() * 255).astype(np.uint8)), "perturbed:1")
    llava.score([ScoreRequest(clean, "Is there a dog?", continuations=(" yes",))])
    cached = llava.score([ScoreRequest(variant, "Is there a dog?", continuations=(" yes",))])[0]
    fresh = MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, {"prefix_cache": "off"})).load("cpu", 8)
    alone = fresh.score([ScoreRequest(variant, "Is there a dog?", continuations=(" yes",))])[0]
    assert cached.continuations[" yes"] == pytest.approx(alone.continuations[" yes"], abs=1e-4)


def test_curves_do_not_depend_on_the_batch_size(llava):
    config = ExplainConfig(steps=8)
    request = ExplainRequest(image(), SPEC, "occlusion", config, 3)
    llava.batch_size = 1
    try:
        (one,) = engine.explain(llava, [request])
    finally:
        llava.batch_size = 8
    (eight,) = engine.explain(llava, [request])
    for name in ("insertion", "deletion", "token_insertion", "token_deletion"):
        np.testing.assert_allclose(one.curves[name], eight.curves[name], rtol=0, atol=1e-5)
    np.testing.assert_allclose(one.saliency, eight.saliency, rtol=0, atol=1e-5)


def test_gradient_alignment_equals_a_direct_step_by_step_computation(grounded):
    seam = engine.seam_of(grounded)
    prepared = seam.prepare(image(), SPEC)
    got = seam.gradient_alignment(prepared)

    e = seam.embedding(prepared, prepared.pixels[None]).detach().requires_grad_(True)
    logits = seam._logits(prepared.input_ids, grounded.language_features(e), list(prepared.target_positions))
    target = sum(logits[0, j, t] for j, t in enumerate(prepared.target_ids))
    (g_llm,) = torch.autograd.grad(target, e)
    cls, boxes = grounded.detector_outputs(e, [prepared.target_text.strip()])
    sims = np.zeros((cls.shape[1], 5))
    for i in range(cls.shape[1]):                       # one output at a time, unbatched
        for k, value in enumerate([cls[0, i, 0], *boxes[0, i]]):
            (g,) = torch.autograd.grad(value, e, retain_graph=True)
            sims[i, k] = float(torch.nn.functional.cosine_similarity(g.reshape(1, -1), g_llm.reshape(1, -1)))
    low, high = sims.min(0), sims.max(0)
    flat = high - low < 1e-12                          # a column with no spread (tiny OWL's saturated box head)
    expected = np.where(flat, 0.0, (sims - low) / np.where(flat, 1.0, high - low))
    np.testing.assert_allclose(got["class"], expected[:, 0], atol=1e-5)
    np.testing.assert_allclose(got["coords"], expected[:, 1:], atol=1e-5)
    # the map: each pixel takes the best class similarity of the boxes over it, pixel by pixel
    painted = seam.paint(prepared, got["class"], got["boxes"])
    h, w = prepared.space.size
    direct = np.zeros((h, w))
    for r in range(0, h, 7):
        for c in range(0, w, 7):
            y, x = (r + 0.5) / h, (c + 0.5) / w
            over = [v for v, (cx, cy, bw, bh) in zip(got["class"], got["boxes"])
                    if cx - bw / 2 <= x <= cx + bw / 2 and cy - bh / 2 <= y <= cy + bh / 2]
            direct[r, c] = max(over, default=0.0)
    np.testing.assert_allclose(painted[::7, ::7], direct[::7, ::7], atol=1e-12)


def test_every_method_runs_on_the_grounded_model_and_ga_is_refused_elsewhere(grounded, llava):
    config = ExplainConfig(steps=4, ig_steps=4)
    for method in ("ga", "gradient", "integrated_gradients", "occlusion", "feature_ablation", "attention", "random"):
        (result,) = engine.explain(grounded, [ExplainRequest(image(), SPEC, method, config, 0)])
        assert result.status == "ok" and np.isfinite(result.saliency).all() and len(result.curves["insertion"]) == 5
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="not available for this model"):
        engine.explain(llava, [ExplainRequest(image(), SPEC, "ga", config, 0)])


def test_own_caption_targets_come_from_the_generated_token_ids(llava):
    seam = engine.seam_of(llava)
    spec = TargetSpec("Please describe this image in detail.", "own_caption", index=50, max_new_tokens=8)
    from bench.explain.targets import TargetAbsent

    with pytest.raises(TargetAbsent, match="object word"):
        seam.prepare(image(), spec)


def test_generation_carries_token_ids_and_their_log_probabilities(llava):
    from bench.models.base import GenerateRequest

    (gen,) = llava.generate([GenerateRequest(image(), "Please describe this image in detail.", 6)])
    assert len(gen.token_ids) == len(gen.token_logprobs) == gen.n_tokens > 0
    assert llava.tokenizer.decode(list(gen.token_ids), skip_special_tokens=True) == gen.text
    (teacher,) = llava.score([ScoreRequest(image(), "Please describe this image in detail.", continuation_ids=(gen.token_ids,))])
    assert teacher.continuation_ids[0] == pytest.approx(sum(gen.token_logprobs), abs=1e-4)
    generic = MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, {"prefix_cache": "off"})).load("cpu", 8)
    (same,) = generic.generate([GenerateRequest(image(), "Please describe this image in detail.", 6)])
    assert same.token_ids == gen.token_ids
    np.testing.assert_allclose(same.token_logprobs, gen.token_logprobs, atol=1e-4)
