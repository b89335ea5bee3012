"""On CUDA out-of-memory the adapter halves its batch and retries, for that call only; results are unchanged.
The prefix pass is retried too, after the cached prefixes are dropped."""

from __future__ import annotations

import functools

import pytest
import torch
from PIL import Image

from bench.models.base import GenerateRequest, ImageInput, ModelSpec, ScoreRequest
from bench.registry import MODELS
from bench.resources import assets_dir


@pytest.mark.parametrize("prefix_cache", ["auto", "off"])
def test_out_of_memory_halves_the_batch_and_retries(prefix_cache):
    factory = MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, {"prefix_cache": prefix_cache}))
    adapter = factory.load("cpu", batch_size=8)
    image = ImageInput("dog", Image.open(assets_dir() / "mini_coco" / "images" / "dog.jpg").convert("RGB"))
    words = (("yes", ("yes",)), ("no", ("no",)))
    scores = [ScoreRequest(image, f"Is there a {o} in the image?", first_token_words=words)
              for o in ("dog", "cat", "car", "bus", "kite", "bench")]
    gens = [GenerateRequest(image, r.prompt, 4) for r in scores]
    expected_scores, expected_gens = adapter.score(scores), adapter.generate(gens)

    original = adapter.model.forward
    seen = []

    def sequences(kwargs) -> int:
        """Questions in one forward: the batch, or the sequences packed into one row (positions restart)."""
        ids, place = kwargs["input_ids"], kwargs.get("position_ids")
        if ids.shape[0] > 1 or place is None:
            return ids.shape[0]
        return 1 + int((place[0, 1:] <= place[0, :-1]).sum())

    @functools.wraps(original)   # generate() inspects forward's signature
    def forward_with_small_memory(*args, **kwargs):
        n = sequences(kwargs)
        seen.append(n)
        if n > 2:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    adapter.model.forward = forward_with_small_memory
    got_scores = adapter.score(scores)
    assert max(seen) > 2 and adapter.oom_retries >= 2        # it tried bigger batches first, then halved twice
    assert adapter.batch_size == 8                           # the halving applied to that call only
    seen.clear()
    got_gens = adapter.generate(gens)
    assert max(seen) > 2                                     # the next call starts at full size again
    for a, b in zip(got_scores, expected_scores):
        assert abs(a.first_token_words["yes"] - b.first_token_words["yes"]) < 1e-4
    assert [g.text for g in got_gens] == [g.text for g in expected_gens]

    adapter.batch_size = 1

    def always_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    adapter.model.forward = always_out_of_memory
    with pytest.raises(torch.OutOfMemoryError):
        adapter.score(scores[:1])


def test_prefix_pass_out_of_memory_drops_cached_prefixes_and_retries():
    factory = MODELS.get("tiny-llava")(ModelSpec("tiny-llava", None, {}))
    adapter = factory.load("cpu", batch_size=8)
    words = (("yes", ("yes",)), ("no", ("no",)))
    images = [ImageInput(name, Image.open(assets_dir() / "mini_coco" / "images" / f"{name}.jpg").convert("RGB"))
              for name in ("dog", "kite")]
    requests = [ScoreRequest(im, f"Is there a {o} in the image?", first_token_words=words) for im in images for o in ("dog", "cat")]
    expected = adapter.score(requests)
    assert len(adapter._prefixes) == 2
    original = adapter.model.forward
    failures = []

    @functools.wraps(original)
    def prefix_fails_once(*args, **kwargs):
        if kwargs.get("use_cache") and kwargs.get("cache") is None and not failures:   # the first prefix pass
            failures.append(1)
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original(*args, **kwargs)

    adapter.model.forward = prefix_fails_once
    adapter._prefixes.clear()
    got = adapter.score(requests)
    assert failures == [1] and adapter.oom_retries == 1
    for a, b in zip(got, expected):
        assert abs(a.first_token_words["yes"] - b.first_token_words["yes"]) < 1e-5

    # an out-of-memory error on a new image's prefix drops the prefixes cached for the other images
    assert set(adapter._prefixes) == {"dog", "kite"}
    failures.clear()
    third = ImageInput("horses", Image.open(assets_dir() / "mini_coco" / "images" / "horses.jpg").convert("RGB"))
    adapter.score([ScoreRequest(third, "Is there a horse in the image?", first_token_words=words)])
    assert failures == [1] and set(adapter._prefixes) == {"horses"}
