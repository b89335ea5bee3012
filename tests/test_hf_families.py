"""The ``hf`` adapter on tiny models that mirror each supported architecture's config and processor,
loaded through the same path as a hub model: scoring, continuations and greedy generation work,
results do not depend on the batch size, and the shared-prefix path equals the generic one."""

from __future__ import annotations

import math

import pytest
from PIL import Image

from bench.models.base import GenerateRequest, ImageInput, ModelSpec, ScoreRequest
from bench.registry import MODELS
from bench.resources import assets_dir

FAMILIES = ["tiny-llava", "tiny-llava-next", "tiny-qwen2-vl", "tiny-qwen2.5-vl", "tiny-idefics3", "tiny-smolvlm", "tiny-paligemma"]
PREFIX_FAMILIES = {"tiny-llava", "tiny-llava-next", "tiny-idefics3", "tiny-smolvlm"}
YES_NO = (("yes", ("yes",)), ("no", ("no",)))


def images():
    folder = assets_dir() / "mini_coco" / "images"
    return [ImageInput(name, Image.open(folder / name).convert("RGB")) for name in ("dog.jpg", "giraffe.jpg")]


def requests(kind):
    questions = ["Is there a dog in the image?", "Is there a traffic light in the image?", "Is there an umbrella in the image?"]
    out = []
    for image in images():
        for q in questions:
            out.append(ScoreRequest(image, q, continuations=("Yes", "No, there is not."), first_token_words=YES_NO)
                       if kind == "score" else GenerateRequest(image, q, max_new_tokens=5))
    return out


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request):
    factory = MODELS.get(request.param)(ModelSpec(request.param, None, {}))
    factory.prepare()
    loaded = factory.load("cpu", batch_size=6)
    loaded.name = request.param
    return loaded


def test_describe_records_backend_and_template(adapter):
    info = adapter.describe()
    assert info["image_backend"] == "pil"
    assert info["identity"]["kind"] == "tiny" and info["prefix_cache"] == (adapter.name in PREFIX_FAMILIES)
    prompt = adapter.format_prompt("Is there a dog?")
    assert "Is there a dog?" in prompt
    if adapter.name != "tiny-paligemma":
        assert prompt != "Is there a dog?"          # a chat template was applied
        assert info["chat_template"]


def test_scores_are_finite_and_batch_size_independent(adapter):
    adapter.batch_size = 6
    big = adapter.score(requests("score"))
    adapter.batch_size = 1
    small = adapter.score(requests("score"))
    adapter.batch_size = 6
    for a, b in zip(big, small):
        for key in ("yes", "no"):
            assert math.isfinite(a.first_token_words[key]) and a.first_token_words[key] < 0
            assert abs(a.first_token_words[key] - b.first_token_words[key]) < 1e-4
        for cont in ("Yes", "No, there is not."):
            assert math.isfinite(a.continuations[cont])
            assert abs(a.continuations[cont] - b.continuations[cont]) < 1e-4
    # the longer continuation includes the first one's first token and more: less probable
    assert all(r.continuations["No, there is not."] < 0 for r in big)


def test_generation_is_batch_size_independent(adapter):
    adapter.batch_size = 6
    big = adapter.generate(requests("generate"))
    adapter.batch_size = 1
    small = adapter.generate(requests("generate"))
    adapter.batch_size = 6
    assert [r.text for r in big] == [r.text for r in small]
    assert all(0 <= r.n_tokens <= 5 for r in big)


def test_shared_prefix_equals_generic_path(adapter):
    if adapter.name not in PREFIX_FAMILIES:
        pytest.skip("this architecture runs the generic path only")
    adapter.use_prefix_cache = True
    adapter._prefixes.clear()
    passes = adapter.prefix_passes
    shared = adapter.score(requests("score"))
    assert adapter.prefix_passes == passes + 2              # one shared prefix per image, not per question
    adapter.score(requests("score")[:2])
    assert adapter.prefix_passes == passes + 2              # a later request about the same image reuses it
    shared_gen = adapter.generate(requests("generate"))
    adapter.use_prefix_cache = False
    generic = adapter.score(requests("score"))
    generic_gen = adapter.generate(requests("generate"))
    adapter.use_prefix_cache = True
    for a, b in zip(shared, generic):
        for key in ("yes", "no"):
            assert abs(a.first_token_words[key] - b.first_token_words[key]) < 1e-4
        for cont in a.continuations:
            assert abs(a.continuations[cont] - b.continuations[cont]) < 1e-4
    assert [r.text for r in shared_gen] == [r.text for r in generic_gen]


def test_yes_and_no_token_sets_are_the_tokenizers_variants(adapter):
    adapter.score(requests("score")[:1])
    yes = adapter.word_tokens["yes"]
    assert yes and all(s.strip().lower() == "yes" for s in yes)
    assert {s.strip() for s in yes} >= {"Yes", "yes"}
