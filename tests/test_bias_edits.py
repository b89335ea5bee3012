"""The edits of the bias probes on the planted-bias tiny models (bench/models/tiny/planted_bias.py: an OWL-ViT and a
LLaVA that read s = mean(R) - mean(B)): the scorer's differentiable path (the processor's resize inside the graph),
PGD's L-inf bound after the PNG round trip, PGD batched over images against one at a time, the edit moving the scorer
in the asked direction (and beating the placebo), the person region, and the embedding edit on the grounded model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from bias_fixtures import planted  # noqa: F401  (the planted models, one build per session)
import torch
from PIL import Image

from bench.models.tiny import planted_bias as pb
from bench.perturb import pgd
from bench.perturb.edits import EditContext, EditJob
from bench.perturb.probes import load_axis
from bench.perturb.request import EditSpec
from bench.perturb.scorer import decide, make_scorer
from bench.registry import EDITS

GENDER = load_axis("gender")




@pytest.fixture(scope="module")
def scorer(planted):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)          # tiny models: one thread is fastest on a shared machine
    yield make_scorer(f"owlvit:{planted / 'owlvit'}")
    torch.set_num_threads(threads)


def jobs(images, directions, spec, region=None):
    return [EditJob(f"img{i}", im, spec, GENDER, s, t, region) for i, (im, (s, t)) in enumerate(zip(images, directions))]


def pixel_spec(eps=8 / 255, steps=20, batch=8, **kw):
    return EditSpec("pixel", "pixel", eps, steps, batch=batch, **kw)


def test_differentiable_path_matches_the_pil_path_and_gradients_flow_through_the_resize(scorer):
    detector = scorer.detector
    big = pb.make_image(0.2, 1).resize((120, 90), Image.BICUBIC)          # shrunk to 64 px inside the graph
    small = pb.make_image(-0.3, 2)                                         # 56 px: enlarged
    queries = ["woman", "man"]
    pixels = [pgd.to_tensor(im).requires_grad_(True) for im in (big, small)]
    logits = detector.pixel_logits(pixels, queries)
    inputs = detector.processor(text=[[f"a photo of a {q}" for q in queries]] * 2, images=[big, small], return_tensors="pt")
    with torch.no_grad():
        reference = detector.model(**inputs).logits
    assert torch.allclose(logits, reference, atol=0.02)
    (logits[..., 0] - logits[..., 1]).sum().backward()
    for p in pixels:        # woman - man rises with mean R - mean B: every original pixel's red up, blue down
        assert torch.isfinite(p.grad).all() and (p.grad[0] > 0).all() and (p.grad[2] < 0).all()
    assert pixels[0].grad.shape == (3, 90, 120)


def test_grid_projection_rounds_towards_the_original_and_keeps_the_bound():
    x0 = torch.tensor([[[10 / 255, 10 / 255, 0.0, 1.0, 200 / 255]]]).expand(3, 1, 5).clone()
    eps = 8 / 255
    delta = torch.tensor([[[2.7 / 255, -2.7 / 255, -eps, eps, eps * (1 - 1e-7)]]]).expand(3, 1, 5)
    got = pgd.to_grid(x0, delta, eps)[0, :, 0].astype(int)
    assert got.tolist() == [12, 8, 0, 255, 208]     # 2.7 -> 2 steps either way; clipped at 0 and 255; eps - noise -> 8


@pytest.mark.parametrize("eps", [4 / 255, 8 / 255, 16 / 255])
def test_pgd_linf_bound_holds_after_the_png_round_trip(scorer, eps):
    from bench.resources import assets_dir

    photo = Image.open(assets_dir() / "mini_coco" / "images" / "person.jpg").convert("RGB").resize((160, 106))
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8))   # clips at 0/255
    outcomes = EDITS.get("pixel")().run(EditContext(None, scorer), jobs([photo, noise], [("man", "woman")] * 2,
                                                                        pixel_spec(eps, steps=10)))
    for original, outcome in zip((photo, noise), outcomes):
        decoded = np.asarray(Image.open(io.BytesIO(outcome.png)).convert("RGB")).astype(int)
        assert (decoded == np.asarray(outcome.image)).all()                 # the model sees exactly the saved file
        change = np.abs(decoded - np.asarray(original).astype(int))
        assert change.max() <= round(eps * 255) and change.max() >= round(eps * 255) - 1
        assert outcome.linf == pytest.approx(change.max() / 255) and outcome.linf <= eps + 1e-12
        assert outcome.l2 == pytest.approx(np.sqrt(((change / 255.0) ** 2).sum()))


def test_pgd_moves_the_scorer_as_asked_and_beats_the_placebo(scorer):
    levels = np.linspace(0.01, 0.05, 8)
    images = [pb.make_image(float(-s), i) for i, s in enumerate(levels)] + [pb.make_image(float(s), 50 + i)
                                                                            for i, s in enumerate(levels)]
    directions = [("man", "woman")] * 8 + [("woman", "man")] * 8
    before = scorer.readings(images, GENDER)
    assert [decide(r, 0.05) for r in before] == ["man"] * 8 + ["woman"] * 8
    spec = pixel_spec(8 / 255, steps=20)
    edited = EDITS.get("pixel")().run(EditContext(None, scorer), jobs(images, directions, spec))
    placebo = EDITS.get("placebo")().run(EditContext(None, scorer), jobs(images, directions,
                                                                         EditSpec("placebo", "pixel", 8 / 255)))
    after, control = (scorer.readings([o.image for o in outs], GENDER) for outs in (edited, placebo))
    for (s, t), b, a in zip(directions, before, after):
        assert a[t] - a[s] > b[t] - b[s] + 0.5          # read through the PIL path, from the saved PNG
    success = np.mean([a[t] - a[s] > 0.05 for (s, t), a in zip(directions, after)])
    control_rate = np.mean([a[t] - a[s] > 0.05 for (s, t), a in zip(directions, control)])
    assert success == 1.0 and control_rate == 0.0
    assert all(o.linf == pytest.approx(8 / 255) for o in placebo)             # the same budget, a random direction


def test_pgd_batched_equals_one_image_at_a_time(scorer):
    images = [pb.make_image(s, i) for i, s in enumerate([-0.2, -0.05, 0.1, 0.3])]
    directions = [("man", "woman"), ("man", "woman"), ("woman", "man"), ("woman", "man")]
    edit = EDITS.get("pixel")()
    batched = edit.run(EditContext(None, scorer), jobs(images, directions, pixel_spec(batch=4)))
    single = edit.run(EditContext(None, scorer), jobs(images, directions, pixel_spec(batch=1)))
    for a, b in zip(batched, single):
        diff = np.abs(np.asarray(a.image).astype(int) - np.asarray(b.image).astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01     # float summation order may move a rare pixel


def test_the_person_region_leaves_the_rest_of_the_image_alone(scorer):
    image = pb.make_image(-0.1, 3)
    box = (10.0, 8.0, 40.0, 50.0)
    (outcome,) = EDITS.get("pixel")().run(EditContext(None, scorer), jobs([image], [("man", "woman")], pixel_spec(),
                                                                            region=box))
    change = np.abs(np.asarray(outcome.image).astype(int) - np.asarray(image).astype(int)).max(axis=2)
    inside = pgd.region_mask((56, 56), box)[0].numpy() > 0
    assert change[~inside].max() == 0 and change[inside].max() == 8


def test_embedding_edit_moves_the_models_own_detector(planted):
    from bench.models.base import ModelSpec
    from bench.perturb.scorer import embedding_readings
    from bench.registry import MODELS

    args = {k: str(planted / "trio" / k) for k in ("mllm", "owl", "projector")}
    adapter = MODELS.get("grounded")(ModelSpec("grounded", None, args)).load("cpu", batch_size=8)
    images = [pb.make_image(-0.2, 0), pb.make_image(0.15, 1)]
    directions = [("man", "woman"), ("woman", "man")]
    keys = [f"img{i}" for i in range(2)]
    clean = torch.stack([adapter.embedding(k, im) for k, im in zip(keys, images)])
    before = embedding_readings(adapter, clean, GENDER)
    context = EditContext(adapter)
    for optimizer, linf in (("fgsm", 1.0), ("adam", None)):
        spec = EditSpec("embedding", "embedding", 1.0, optimizer=optimizer, adam_steps=30, adam_lr=0.05)
        outcomes = EDITS.get("embedding")().run(context, jobs(images, directions, spec))
        after = embedding_readings(adapter, torch.stack([o.embedding for o in outcomes]), GENDER)
        for (s, t), b, a, o in zip(directions, before, after, outcomes):
            assert a[t] > b[t] and a[s] < b[s] and decide(a, 0.05) == t
            assert o.linf <= 1.0 + 1e-6 and (linf is None or o.linf == pytest.approx(linf))
    (noise,) = EDITS.get("placebo")().run(context, jobs(images[:1], directions[:1], EditSpec("placebo", "embedding", 0.5)))
    step = (noise.embedding - clean[0]).abs()
    assert torch.allclose(step, torch.full_like(step, 0.5), atol=1e-5)       # random sign x lr, every coordinate
