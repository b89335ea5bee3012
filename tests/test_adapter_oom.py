"""On CUDA out-of-memory the adapter halves its batch and retries; results are unchanged."""

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
    got_scores, got_gens = adapter.score(scores), adapter.generate(gens)
    assert adapter.batch_size == 2 and max(seen) > 2          # it tried bigger batches first
    for a, b in zip(got_scores, expected_scores):
        assert abs(a.first_token_words["yes"] - b.first_token_words["yes"]) < 1e-4
    assert [g.text for g in got_gens] == [g.text for g in expected_gens]

    adapter.batch_size = 1

    def always_out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    adapter.model.forward = always_out_of_memory
    with pytest.raises(torch.OutOfMemoryError):
        adapter.score(scores[:1])
