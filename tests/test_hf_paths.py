"""The three ways the hf adapter runs the questions about one image agree with the plain path: packed into
one sequence with a boolean (sdpa) or additive (eager) tree mask, or batched on views of the prefix cache."""

from __future__ import annotations

import pytest
from PIL import Image

from bench.models.base import GenerateRequest, ImageInput, ModelSpec, ScoreRequest
from bench.registry import MODELS
from bench.resources import assets_dir


def load(**args):
    return MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, args)).load("cpu", batch_size=4)


def run(adapter):
    words = (("yes", ("yes",)), ("no", ("no",)))
    out = []
    for name in ("dog.jpg", "kite.jpg"):
        image = ImageInput(name, Image.open(assets_dir() / "mini_coco" / "images" / name).convert("RGB"))
        questions = [f"Is there {q} in the image?" for q in ("a dog", "an umbrella", "a traffic light", "a kite", "a person")]
        scores = adapter.score([ScoreRequest(image, q, continuations=(" yes, there is",), first_token_words=words) for q in questions])
        texts = [g.text for g in adapter.generate([GenerateRequest(image, q, 5) for q in questions])]
        out.append(([(s.first_token_words["yes"], s.continuations[" yes, there is"]) for s in scores], texts))
    return out


@pytest.mark.parametrize("attn, mask_kind", [("sdpa", "bool"), ("eager", "float"), ("sdpa", None)])
def test_prefix_paths_equal_the_plain_path(attn, mask_kind):
    reference = run(load(prefix_cache="off", attn_implementation=attn))
    adapter = load(attn_implementation=attn)
    assert adapter.mask_kind == {"sdpa": "bool", "eager": "float"}[attn]
    adapter.mask_kind = mask_kind                   # None: the batched fallback (kernels without custom masks)
    got = run(adapter)
    for (scores, texts), (ref_scores, ref_texts) in zip(got, reference):
        assert texts == ref_texts
        for (a, b), (c, d) in zip(scores, ref_scores):
            assert abs(a - c) < 1e-4 and abs(b - d) < 1e-4
