"""The planted-saliency tiny LLaVA (bench/models/tiny/planted_saliency.py): P("dog") reads only the high-frequency
texture inside BOX. Checked through the ordinary transformers loading path against the hand-computed reading
(`planted_saliency.energy`), outside-the-box invariance (logits and pixel gradients), the blur protocol of
insertion/deletion, the twin that ignores the image, and the bench's own ``hf:`` path and explanation seam."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from bench.metrics.curves import gaussian_blur
from bench.models.tiny import FAMILIES, MIRRORS, build
from bench.models.tiny import planted_saliency as ps

SEEDS = (0, 1, 2, 3)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = tmp_path_factory.mktemp("planted_saliency")
    for preset in ps.PRESETS:
        build("planted_saliency", root / preset, preset=preset)
    processor = AutoProcessor.from_pretrained(root / "box", backend="pil")
    return {
        "root": root,
        "processor": processor,
        "box": AutoModelForImageTextToText.from_pretrained(root / "box").eval(),
        "twin": AutoModelForImageTextToText.from_pretrained(root / "twin").eval(),
        "target": processor.tokenizer.convert_tokens_to_ids("▁dog"),
    }


def as_array(image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255.0


def to_image(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(np.round(np.clip(pixels, 0.0, 1.0) * 255).astype(np.uint8), "RGB")


def inside_mask() -> np.ndarray:
    x1, y1, x2, y2 = ps.BOX
    mask = np.zeros((ps.SIZE, ps.SIZE), dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def normalise(pixels: np.ndarray, processor) -> torch.Tensor:
    """[N, H, W, 3] in [0, 1] -> the processor's pixel_values [N, 3, H, W] (rescaled values, CLIP mean/std)."""
    proc = processor.image_processor
    mean, std = np.asarray(proc.image_mean), np.asarray(proc.image_std)
    return torch.tensor(((pixels - mean) / std).transpose(0, 3, 1, 2), dtype=torch.float32)


def encode(processor, images):
    enc = processor(images=list(images), text=[ps.prompt(processor)] * len(images), return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc["pixel_values"]


def logits_of(model, processor, images=None, pixel_values=None) -> torch.Tensor:
    """Next-token logits [N, vocab] after "... ASSISTANT: The image shows a" (images, or pixel_values [N, 3, H, W])."""
    n = len(images) if images is not None else pixel_values.shape[0]
    ids, mask, values = encode(processor, images if images is not None else [ps.make_image()] * n)
    if pixel_values is not None:
        values = pixel_values
    return model(input_ids=ids, attention_mask=mask, pixel_values=values).logits[:, -1]


def p_target(planted, images=None, pixel_values=None, model="box") -> np.ndarray:
    with torch.no_grad():
        logits = logits_of(planted[model], planted["processor"], images, pixel_values)
    return torch.softmax(logits.double(), -1)[:, planted["target"]].numpy()


def reference_logit(pixels: np.ndarray, vocab: int) -> float:
    """The planted logit by hand: log(V - 1) + GAIN * (U - THRESH), U = the mean box energy."""
    u = ps.energy(pixels).reshape(-1)[ps.box_patches()].mean()
    return math.log(vocab - 1) + ps.GAIN * (u - ps.THRESH)


def test_registered_and_stamped(planted):
    assert FAMILIES["planted_saliency"] == "bench.models.tiny.planted_saliency:build"
    assert MIRRORS["planted_saliency"] == ps.MIRRORS
    tok = planted["processor"].tokenizer
    assert tok("ASSISTANT: The image shows a dog", add_special_tokens=False)["input_ids"][-1] == planted["target"]
    for preset in ps.PRESETS:
        stamp = json.loads((planted["root"] / preset / "bench_tiny.json").read_text())
        assert stamp["family"] == "planted_saliency" and stamp["preset"] == preset and stamp["random_weights"] is False
        notes = stamp["notes"]
        assert tuple(notes["box"]) == ps.BOX == (14, 14, 42, 42)
        assert notes["target_word"] == ps.TARGET_WORD == "dog" and notes["target_token_id"] == planted["target"]
        assert notes["box_patches"] == [5, 6, 9, 10]
    config = planted["box"].config
    assert config.projector_hidden_act == "relu" and config.vision_feature_layer == -2


def test_processor_is_the_identity_at_56_px(planted):
    image = ps.make_image(seed=0)
    values = planted["processor"].image_processor(images=[image], return_tensors="pt")["pixel_values"]
    assert values.shape == (1, 3, 56, 56)
    assert torch.allclose(values, normalise(as_array(image)[None], planted["processor"]), atol=1e-6)


def test_logit_matches_the_hand_computed_box_energy(planted):
    images = [ps.make_image(inside, outside, seed)
              for seed in SEEDS for inside in (True, False) for outside in (True, False)]
    with torch.no_grad():
        logits = logits_of(planted["box"], planted["processor"], images)
    vocab = logits.shape[-1]
    want = np.array([reference_logit(as_array(im), vocab) for im in images])
    # up to RoPE: head 0's scores on the 16 image tokens differ by ~1e-3 (25 cos(distance * 3e-4)), so U is their
    # mean within ~1e-3 relative; the norms' factors are > 0.99999
    assert np.allclose(logits[:, planted["target"]].numpy(), want, rtol=1e-3, atol=1e-4)
    others = np.delete(logits.numpy(), planted["target"], axis=1)
    assert np.all(others == 0.0)                                 # every other token's logit is exactly 0


def test_outside_pixels_have_no_effect_inside_pixels_do(planted):
    rng = np.random.default_rng(7)
    inside = inside_mask()[..., None]
    base = as_array(ps.make_image(seed=0))
    noise = rng.uniform(0.0, 1.0, size=base.shape)
    other = as_array(ps.make_image(seed=9))
    variants = [base, np.where(inside, base, noise), np.where(inside, base, other), np.where(inside, base, 0.0),
                np.where(inside, noise, base), np.where(inside, gaussian_blur(base), base)]
    with torch.no_grad():
        logits = logits_of(planted["box"], planted["processor"], [to_image(v) for v in variants])
    target = logits[:, planted["target"]]
    assert torch.all((target[1:4] - target[0]).abs() <= 1e-5)    # outside changed: unchanged
    assert torch.equal(logits[1:4], logits[0].expand(3, -1))     # (bitwise, every token)
    assert (target[4] - target[0]).abs() > 1.0 and (target[5] - target[0]).abs() > 1.0


def test_texture_is_high_blur_and_blank_are_low(planted):
    textured = [as_array(ps.make_image(seed=s)) for s in SEEDS]
    blurred = [gaussian_blur(x, 11, 5.0) for x in textured]
    outside_only = [as_array(ps.make_image(False, True, seed=s)) for s in SEEDS]
    blank = [np.full((56, 56, 3), g) for g in (0.0, 0.5, 1.0)]
    # through the processor on uint8 images and through float pixel_values (no rounding of the blur)
    high = p_target(planted, [to_image(x) for x in textured])
    low = p_target(planted, [to_image(x) for x in blurred + outside_only + blank])
    low_float = p_target(planted, pixel_values=normalise(np.stack(blurred + blank), planted["processor"]))
    assert np.all(high > 0.9), high
    assert np.all(low < 0.1) and np.all(low_float < 0.1), (low, low_float)


def test_insertion_from_the_blur_rises_monotonically(planted):
    """Revealing the box's pixels a fraction t of the way from the blur (the insertion protocol, restricted to the
    box) raises P(dog) monotonically from the blurred level to the original one; outside pixels do nothing."""
    original = as_array(ps.make_image(seed=1))
    blurred = gaussian_blur(original)
    inside = inside_mask()[..., None]
    ts = np.linspace(0.0, 1.0, 11)
    box_steps = [np.where(inside, blurred + t * (original - blurred), blurred) for t in ts]
    out_steps = [np.where(inside, blurred, blurred + t * (original - blurred)) for t in ts]
    p = p_target(planted, pixel_values=normalise(np.stack(box_steps + out_steps), planted["processor"]))
    box_curve, out_curve = p[:11], p[11:]
    assert np.all(np.diff(box_curve) > 0) and box_curve[0] < 0.1 and box_curve[-1] > 0.9
    box = ps.box_patches()
    by_hand = [ps.probability(ps.energy(x).reshape(-1)[box].mean()) for x in box_steps]
    assert np.allclose(box_curve, by_hand, atol=2e-3)
    assert np.allclose(out_curve, out_curve[0], atol=1e-12)


def test_pixel_gradient_is_zero_outside_and_matches_the_hand_gradient_inside(planted):
    processor = planted["processor"]
    image = ps.make_image(seed=2)
    values = processor.image_processor(images=[image], return_tensors="pt")["pixel_values"].clone().requires_grad_(True)
    logits_of(planted["box"], processor, [image], values)[0, planted["target"]].backward()
    grad = values.grad[0].permute(1, 2, 0).numpy()                      # [H, W, 3], d logit / d pixel_values
    inside = inside_mask()
    assert np.all(grad[~inside] == 0.0)
    assert np.all(grad[inside] != 0.0)
    # by hand: U = mean over 4 box patches of sum_f |r_f|, r_f = sum f(i, j) (std_c v + mean_c) / 588
    pats = ps.patterns()
    pixels = as_array(image)
    std = np.asarray(processor.image_processor.image_std)
    want = np.zeros_like(grad)
    x1, y1, x2, y2 = ps.BOX
    for y in range(y1, y2, ps.PATCH):
        for x in range(x1, x2, ps.PATCH):
            tile = pixels[y:y + ps.PATCH, x:x + ps.PATCH]
            r = np.einsum("fij,ijc->f", pats, tile) / (3 * ps.PATCH**2)
            signs = np.tensordot(np.sign(r), pats, axes=1)                 # [PATCH, PATCH]
            want[y:y + ps.PATCH, x:x + ps.PATCH] = ps.GAIN / 4 * signs[..., None] * std / (3 * ps.PATCH**2)
    assert np.allclose(grad, want, rtol=1e-3, atol=1e-7)


def test_twin_ignores_the_image(planted):
    images = [ps.make_image(seed=0), ps.make_image(False, False, seed=1), to_image(np.full((56, 56, 3), 0.5)),
              to_image(np.random.default_rng(3).uniform(size=(56, 56, 3)))]
    with torch.no_grad():
        logits = logits_of(planted["twin"], planted["processor"], images)
    assert torch.equal(logits, logits[0].expand(len(images), -1))
    p = torch.softmax(logits[0].double(), -1)[planted["target"]].item()
    assert abs(p - 1.0 / (1.0 + math.exp(ps.GAIN * ps.THRESH))) < 1e-6   # sigmoid(-GAIN * THRESH)
    values = normalise(as_array(images[0])[None], planted["processor"]).requires_grad_(True)
    logits_of(planted["twin"], planted["processor"], images[:1], values)[0, planted["target"]].backward()
    assert values.grad is None or torch.all(values.grad == 0)


def test_build_is_deterministic(planted, tmp_path):
    from safetensors.torch import load_file

    build("planted_saliency", tmp_path / "again", preset="box", seed=0)
    first = load_file(planted["root"] / "box" / "model.safetensors")
    second = load_file(tmp_path / "again" / "model.safetensors")
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_bench_hf_path_and_explanation_seam(planted):
    """Loaded as ``hf:<folder>`` by the bench, its white-box seam scores the target as the model does."""
    from bench.explain.request import TargetSpec
    from bench.models.base import ImageInput, ModelSpec
    from bench.registry import MODELS

    adapter = MODELS.get("hf")(ModelSpec("hf", str(planted["root"] / "box"), {})).load("cpu", 4)
    seam = adapter.explain_seam()
    image = ps.make_image(seed=3)
    prepared = seam.prepare(ImageInput("planted", image), TargetSpec(ps.QUESTION, "given", ps.ANSWER_PREFIX, "dog"))
    assert prepared.target_ids == (planted["target"],)
    pixels = seam.input_pixels(image)
    blurred = torch.tensor(gaussian_blur(pixels.permute(1, 2, 0).numpy()), dtype=pixels.dtype).permute(2, 0, 1)
    got = seam.score(prepared, pixels=torch.stack([pixels, blurred]))
    want = p_target(planted, [image, to_image(blurred.permute(1, 2, 0).numpy())])
    assert got[0] > 0.9 and got[1] < 0.1
    assert np.allclose(got, want, atol=1e-3)
