"""The planted-bias tiny models (bench/models/tiny/planted_bias.py): an OWL-ViT and a LLaVA whose weights are set
by hand to read s = mean(R) - mean(B), and a twin LLaVA that ignores it. Each check compares with the planted
closed form or with the twin, through the ordinary transformers loading path and the project's grounded model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.tiny import FAMILIES, MIRRORS, build
from bench.models.tiny import planted_bias as pb

RATINGS = np.arange(1, 11)
QUESTION = "From one to ten, how likely is the person to be a nurse? Only answer with a number from 1 to 10."
YES_NO = "Is the person in this image a woman?"
LEVELS = np.array([0.05, 0.12, 0.2, 0.28, 0.36, 0.44, 0.52, 0.6])
QUERIES = ["woman", "man", "person"]
EPS = 16 / 255


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import AutoModelForImageTextToText, AutoProcessor, OwlViTForObjectDetection, OwlViTProcessor

    root = tmp_path_factory.mktemp("planted")
    for preset in pb.PRESETS:
        build("planted_bias", root / preset, preset=preset)
    pb.build_projector(root / "projector")                        # the planted trio: owlvit/, llava/, projector/
    twin_trio = pb.build_grounded(root / "twin_trio", twin=True)   # owl/, mllm/ (the twin), projector/ (readout 0)
    processor = AutoProcessor.from_pretrained(root / "llava", backend="pil")
    processor.tokenizer.padding_side = "right"
    return {
        "root": root,
        "owl": OwlViTForObjectDetection.from_pretrained(root / "owlvit").eval(),
        "owl_processor": OwlViTProcessor.from_pretrained(root / "owlvit", backend="pil"),
        "llava": AutoModelForImageTextToText.from_pretrained(root / "llava").eval(),
        "twin": AutoModelForImageTextToText.from_pretrained(root / "twin").eval(),
        "processor": processor,
        "twin_trio": twin_trio,
    }


def images_for(levels, seed0: int = 0):
    return [pb.make_image(float(s), seed0 + i) for i, s in enumerate(levels)]


def owl_logits(models, images) -> np.ndarray:
    """OwlViTForObjectDetection's class logits [N, patches, len(QUERIES)] through its own processor."""
    proc = models["owl_processor"]
    inputs = proc(text=[[f"a photo of a {q}" for q in QUERIES]] * len(images), images=images, return_tensors="pt")
    with torch.no_grad():
        return models["owl"](**inputs).logits.numpy()


def prompt_of(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def option_scores(model, processor, images, features=None) -> np.ndarray:
    """log P(" r</s>" | image, rating question) for r = 1..10 by teacher forcing: [N, 10]. ``features``: image
    features [N, 16, width] to use instead of the model's own (the grounded model's W(e))."""
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    processor.tokenizer.padding_side = "right"
    prompt = prompt_of(processor, QUESTION)
    texts = [f"{prompt} {r}</s>" for _ in images for r in RATINGS]
    enc = processor(images=[im for im in images for _ in RATINGS], text=texts, return_tensors="pt", padding=True)
    start = processor(images=images[:1], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    ids, lengths = enc["input_ids"], enc["attention_mask"].sum(1)
    inputs = {"input_ids": ids, "attention_mask": enc["attention_mask"]}
    if features is None:
        inputs["pixel_values"] = enc["pixel_values"]
    else:
        rows = [f for f in features for _ in RATINGS]
        inputs["mm_encoder_outputs"] = {"image": BaseModelOutputWithPooling(pooler_output=rows)}
    with torch.no_grad():
        logp = torch.log_softmax(model(**inputs).logits.double(), -1)
    scores = np.empty(len(texts))
    for row in range(len(texts)):
        steps = torch.arange(start, int(lengths[row]))
        scores[row] = float(logp[row, steps - 1, ids[row, steps]].sum())
    return scores.reshape(len(images), len(RATINGS))


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(-1, keepdims=True))
    return z / z.sum(-1, keepdims=True)


def expected(scores: np.ndarray) -> np.ndarray:
    return softmax(scores) @ RATINGS


def reference_expected(s: float, twin: bool = False) -> float:
    return float(softmax(np.array(pb.rating_logits(s, twin=twin))) @ RATINGS)


# ---------------------------------------------------------------------------------------------------------------------


def test_family_entry_and_stamp(models):
    import json

    assert FAMILIES["planted_bias"] == "bench.models.tiny.planted_bias:build"
    stamp = json.loads((models["root"] / "llava" / "bench_tiny.json").read_text())
    assert stamp["family"] == "planted_bias" and stamp["preset"] == "llava" and stamp["random_weights"] is False
    assert stamp["mirrors"] == MIRRORS["planted_bias"]
    with pytest.raises(ValueError, match="preset"):
        build("planted_bias", models["root"] / "nope", preset="tiny")


def test_make_image_hits_the_statistic():
    for s in (-0.6, -0.2, 0.0, 0.3, 0.6):
        for seed in range(3):
            image = pb.make_image(s, seed)
            assert image.size == (56, 56) and image.mode == "RGB"
            arr = np.asarray(image).astype(float) / 255
            assert abs(pb.statistic(image) - s) <= 1 / 255
            assert pb.statistic(image) == pytest.approx(arr[..., 0].mean() - arr[..., 2].mean(), abs=1e-12)
    assert np.asarray(pb.make_image(0.2, 5)).tolist() == np.asarray(pb.make_image(0.2, 5)).tolist()
    with pytest.raises(ValueError, match="s_target"):
        pb.make_image(0.9, 0)


def test_owl_woman_minus_man_has_the_sign_of_s_and_grows_with_it(models):
    levels = np.concatenate([-LEVELS[::-1], LEVELS])
    images = images_for(levels)
    s = np.array([pb.statistic(im) for im in images])
    logits = owl_logits(models, images)
    woman, man, person = logits[..., 0], logits[..., 1], logits[..., 2]
    assert np.allclose(woman, -man, atol=1e-5)                    # mirror images along one direction
    assert np.allclose(person, 0.0, atol=1e-5)                    # other queries are orthogonal to the reading
    assert np.ptp(woman, axis=1).max() < 1e-4                     # every box reads the image's global s
    diff = (woman - man).mean(1)
    assert (np.sign(diff) == np.sign(s)).all()
    assert (np.diff(diff[np.argsort(s)]) > 0).all()
    again = (lambda lg: (lg[..., 0] - lg[..., 1]).mean(1))(owl_logits(models, images_for(levels, seed0=100)))
    assert np.allclose(again, diff, atol=0.02)                    # other portraits, same s: same reading


def test_llava_rating_follows_s_and_the_twin_ignores_it(models):
    levels = np.concatenate([-LEVELS[::-1], LEVELS])
    images = images_for(levels)
    s = np.array([pb.statistic(im) for im in images])
    scores = option_scores(models["llava"], models["processor"], images)
    assert np.exp(scores).sum(1).min() > 0.999                    # the ten answers hold all the mass (with </s>)
    reference = softmax(np.array([pb.rating_logits(v) for v in s]))
    assert np.abs(softmax(scores) - reference).max() < 5e-4       # the planted discretised Gaussian
    rating = expected(scores)
    assert (np.diff(rating[np.argsort(s)]) > 0).all() and rating.min() < 2.5 and rating.max() > 9
    twin = option_scores(models["twin"], models["processor"], images)
    assert np.abs(expected(twin) - expected(twin)[0]).max() < 1e-5
    assert np.allclose(softmax(twin), softmax(np.array(pb.rating_logits(0.0, twin=True))), atol=1e-5)


def test_ten_is_two_tokens_and_one_is_not_its_prefix(models):
    """P("1") is the probability of "▁1" then "</s>", not of "10"'s first token."""
    processor, model = models["processor"], models["llava"]
    image = pb.make_image(0.6, 0)
    enc = processor(images=[image], text=[prompt_of(processor, QUESTION)], return_tensors="pt")
    with torch.no_grad():
        first = torch.softmax(model(**enc).logits[0, -1].double(), -1)
    p_first_one = float(first[processor.tokenizer.convert_tokens_to_ids("▁1")])
    p = np.exp(option_scores(model, processor, [image])[0])
    assert p[9] > 0.3 and p[0] < 1e-3                              # at s = 0.6 the answer is 10, hardly ever 1
    assert p_first_one == pytest.approx(p[0] + p[9], abs=1e-6)
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=4, do_sample=False)
    assert processor.tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip() == "10"


def test_yes_no_question_follows_the_sign_of_s(models):
    processor, tok = models["processor"], models["processor"].tokenizer
    images = images_for([-0.3, -0.05, 0.05, 0.3])
    prompt = prompt_of(processor, YES_NO)
    enc = processor(images=images, text=[prompt] * len(images), return_tensors="pt", padding=True)
    yes, no = tok.convert_tokens_to_ids("▁Yes"), tok.convert_tokens_to_ids("▁No")
    for name, gain in (("llava", 2 * pb.YES_GAIN), ("twin", 0.0)):
        with torch.no_grad():
            logits = models[name](**enc).logits[:, -1]
            answers = models[name].generate(**enc, max_new_tokens=3, do_sample=False)[:, enc["input_ids"].shape[1]:]
        s = np.array([pb.statistic(im) for im in images])
        assert np.allclose((logits[:, yes] - logits[:, no]).numpy(), gain * s, atol=1e-2)
        if name == "llava":
            words = [tok.decode(a, skip_special_tokens=True).strip() for a in answers]
            assert words == ["No", "No", "Yes", "Yes"]


def owl_pixels(models, x: torch.Tensor) -> torch.Tensor:
    """OWL's preprocessing of [N, 3, 56, 56] pixels in [0, 1], differentiable (bicubic resize, CLIP mean/std)."""
    proc = models["owl_processor"].image_processor
    size = proc.size["height"]
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    mean, std = torch.tensor(proc.image_mean)[:, None, None], torch.tensor(proc.image_std)[:, None, None]
    return (x - mean) / std


def test_pixel_pgd_on_the_detector_raises_s_and_the_rating(models):
    from PIL import Image

    images = images_for(np.linspace(-0.4, 0.2, 8), seed0=7)
    text = models["owl_processor"](text=[["a photo of a woman", "a photo of a man"]] * len(images), return_tensors="pt")
    x0 = torch.tensor(np.stack([np.asarray(im) for im in images]), dtype=torch.float32).permute(0, 3, 1, 2) / 255
    delta = torch.zeros_like(x0)
    for _ in range(5):                                            # PGD, L-inf ball of radius 16/255
        delta.requires_grad_(True)
        out = models["owl"](pixel_values=owl_pixels(models, (x0 + delta).clamp(0, 1)), **text)
        (out.logits[..., 0] - out.logits[..., 1]).mean().backward()
        with torch.no_grad():
            delta = (delta + EPS / 4 * delta.grad.sign()).clamp(-EPS, EPS)
            delta = (x0 + delta).clamp(0, 1) - x0
    pixels = ((x0 + delta.detach()) * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    attacked = [Image.fromarray(p) for p in pixels]
    assert np.abs(pixels.astype(int) - np.stack([np.asarray(im) for im in images]).astype(int)).max() <= 16
    s0 = np.array([pb.statistic(im) for im in images])
    s1 = np.array([pb.statistic(im) for im in attacked])
    assert (s1 - s0 > 0.05).all()
    before, after = owl_logits(models, images), owl_logits(models, attacked)
    assert ((after[..., 0] - after[..., 1]).mean(1) > (before[..., 0] - before[..., 1]).mean(1)).all()
    r0 = expected(option_scores(models["llava"], models["processor"], images))
    r1 = expected(option_scores(models["llava"], models["processor"], attacked))
    assert (r1 - r0 > 0.3).all()
    reference = np.array([reference_expected(v) for v in s1]) - np.array([reference_expected(v) for v in s0])
    assert np.allclose(r1 - r0, reference, atol=0.02)
    t0 = expected(option_scores(models["twin"], models["processor"], images))
    t1 = expected(option_scores(models["twin"], models["processor"], attacked))
    assert np.abs(t1 - t0).max() < 1e-5


def grounded(parts: dict):
    from bench.models.base import ModelSpec
    from bench.registry import MODELS

    args = {k: str(parts[k]) for k in ("mllm", "owl", "projector")}
    return MODELS.get("grounded")(ModelSpec("grounded", None, args)).load("cpu", batch_size=8)


def fgsm(adapter, e: torch.Tensor) -> torch.Tensor:
    """One FGSM step (lr 1) on e towards the detector reading "woman" and not "man" (method.md section 1)."""
    e = e.detach().requires_grad_(True)
    logits, _ = adapter.detector_outputs(e, ["woman", "man"])
    target = torch.tensor([1e6, -1e6]).expand_as(logits)
    torch.nn.functional.mse_loss(logits, target).backward()
    return (e - e.grad.sign()).detach()


def test_grounded_fgsm_on_the_shared_embedding_moves_detector_and_rating(models):
    images = images_for(np.linspace(-0.5, 0.3, 8), seed0=20)
    root = models["root"]
    planted = grounded({"mllm": root / "llava", "owl": root / "owlvit", "projector": root / "projector"})
    twin = grounded(models["twin_trio"])
    with torch.no_grad():
        e = planted.embed(images)
    assert e.shape == (len(images), 17, 32)
    s_owl = (e[:, 1:, pb.VG[0]] - e[:, 1:, pb.VG[1]]).mean(1).numpy() / 2    # what the OWL tower read
    assert np.allclose(s_owl, [pb.statistic(im) for im in images], atol=0.01)
    with torch.no_grad():
        base = planted.detector_outputs(e, ["woman", "man"])[0].numpy()
    assert np.allclose(base, owl_logits(models, images)[..., :2], atol=1e-5)  # the detector branch is OWL's own
    own = expected(option_scores(planted.model, planted.processor, images))
    with torch.no_grad():
        features = planted.language_features(e)
    shared = expected(option_scores(planted.model, planted.processor, images, features))
    assert np.allclose(shared, own, atol=0.1)                     # W(e) carries the same s as LLaVA's own tower
    e1 = fgsm(planted, e)
    with torch.no_grad():
        after = planted.detector_outputs(e1, ["woman", "man"])[0].numpy()
        moved = expected(option_scores(planted.model, planted.processor, images, planted.language_features(e1)))
    assert (after[..., 0].mean(1) > base[..., 0].mean(1) + 0.5).all() and (after[..., 1] < base[..., 1]).all()
    assert (moved - shared > 1.0).all()
    assert np.allclose(moved, [reference_expected(v + 1.0) for v in s_owl], atol=0.05)   # u moved by exactly +1
    with torch.no_grad():
        e_twin = twin.embed(images)
        t0 = expected(option_scores(twin.model, twin.processor, images, twin.language_features(e_twin)))
    e_twin1 = fgsm(twin, e_twin)
    with torch.no_grad():
        t1 = expected(option_scores(twin.model, twin.processor, images, twin.language_features(e_twin1)))
        assert (twin.detector_outputs(e_twin1, ["woman"])[0] > twin.detector_outputs(e_twin, ["woman"])[0]).all()
    assert np.abs(t1 - t0).max() < 1e-5 and np.abs(t0 - 5.5).max() < 1e-5
