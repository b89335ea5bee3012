"""The layouts of `bench.models._packing` on hand-written suffixes, against hand computations and brute-force
definitions: packed rows (owners, positions, kept logits), the tree mask, padded batches, decode-step
growth, the scored positions and log-probs, continuation re-laying, and cache views that copy nothing."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import DynamicCache

from bench.models._packing import (PREFIX_OWNER, PackedRow, append_continuations, common_prefix, expand_cache,
                                  grow_mask, needed, pack_after_prefix, pad_after_prefix, row_scores, tree_mask)


def brute_mask(owner: list[int], columns: list[int]) -> list[list[bool]]:
    """The tree mask by definition: a query sees every prefix column, and the columns of its own suffix that
    do not come after it."""
    return [[owner[k] == PREFIX_OWNER or (owner[k] == owner[c] and k <= c) for k in range(len(owner))] for c in columns]


# -- packed row ---------------------------------------------------------------------------------------
def test_packed_layout_of_hand_written_suffixes():
    # prefix of 3 tokens, suffixes of 2, 3 and 1 tokens; keep suffix 0's last, suffix 1's first and last,
    # suffix 2's only token
    layout = pack_after_prefix(3, [2, 3, 1], [[1], [0, 2], [0]])
    assert layout.owner.tolist() == [-1, -1, -1, 0, 0, 1, 1, 1, 2]
    assert layout.query_columns.tolist() == [3, 4, 5, 6, 7, 8]
    assert layout.position_ids.tolist() == [3, 4, 3, 4, 5, 3]       # each as if its suffix ran alone
    assert layout.keep == [1, 2, 4, 5]                              # suffix starts 0, 2, 5 among the run tokens
    assert layout.counts == (1, 2, 1)
    assert layout.next_position.tolist() == [5, 6, 4]


def test_split_regroups_and_pads_by_repeating_the_last_kept_row():
    layout = pack_after_prefix(3, [2, 3, 1], [[1], [0, 2], [0]])
    kept = torch.arange(4 * 5, dtype=torch.float32).reshape(4, 5)   # 4 kept tokens, vocab 5
    out = layout.split(kept)
    assert out.shape == (3, 2, 5)
    expected = torch.stack([kept[[0, 0]], kept[[1, 2]], kept[[3, 3]]])
    assert torch.equal(out, expected)


def test_decode_step_appends_one_column_per_suffix():
    layout = pack_after_prefix(2, [2, 1], [[1], [0]])
    step = layout.step()
    assert step.owner.tolist() == [-1, -1, 0, 0, 1, 0, 1]
    assert step.query_columns.tolist() == [5, 6]
    assert step.position_ids.tolist() == [4, 3]
    assert step.keep == [0, 1] and step.counts == (1, 1)
    assert step.next_position.tolist() == [5, 4]
    again = step.step()
    assert again.owner.tolist() == [-1, -1, 0, 0, 1, 0, 1, 0, 1]
    assert again.query_columns.tolist() == [7, 8]
    assert again.position_ids.tolist() == [5, 4]
    assert layout.owner.tolist() == [-1, -1, 0, 0, 1]              # the earlier layout is left as it was


# -- tree mask ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("steps", [0, 1, 3])
def test_tree_mask_equals_the_brute_force_definition(steps):
    layout: PackedRow = pack_after_prefix(4, [3, 1, 2, 4], [[2], [0], [1], [3]])
    for _ in range(steps):
        layout = layout.step()
    mask = tree_mask(layout.owner, layout.query_columns)
    assert mask.dtype == torch.bool
    assert mask.shape == (1, 1, len(layout.query_columns), len(layout.owner))
    assert mask[0, 0].tolist() == brute_mask(layout.owner.tolist(), layout.query_columns.tolist())


def test_tree_mask_hand_example():
    # prefix of 1 token, suffixes of 2 and 1 tokens
    layout = pack_after_prefix(1, [2, 1], [[1], [0]])
    assert tree_mask(layout.owner, layout.query_columns)[0, 0].tolist() == [
        [True, True, False, False],
        [True, True, True, False],
        [True, False, False, True],
    ]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_additive_mask_is_zero_where_attended_and_the_dtype_min_elsewhere(dtype):
    layout = pack_after_prefix(2, [2, 3], [[1], [2]])
    allowed = tree_mask(layout.owner, layout.query_columns)
    additive = tree_mask(layout.owner, layout.query_columns, dtype=dtype)
    assert additive.dtype == dtype and additive.shape == allowed.shape
    assert torch.all(additive[allowed] == 0)
    assert torch.all(additive[~allowed] == torch.finfo(dtype).min)
    assert (~allowed).any()


# -- padded batch ------------------------------------------------------------------------------------
def test_padded_batch_after_a_prefix():
    batch = pad_after_prefix(2, [[7, 8, 9], [5]], pad_id=0)
    assert batch.input_ids.tolist() == [[7, 8, 9], [5, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch.position_ids.tolist() == [[2, 3, 4], [2, 3, 4]]
    assert batch.next_position.tolist() == [5, 3]
    assert batch.input_ids.dtype == torch.long and batch.attention_mask.dtype == torch.long


def test_grow_mask_adds_one_attended_column_keeping_dtype():
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]], dtype=torch.long)
    grown = grow_mask(mask)
    assert grown.tolist() == [[1, 1, 0, 1], [1, 1, 1, 1]]
    assert grown.dtype == mask.dtype and grown.device == mask.device


# -- scoring -----------------------------------------------------------------------------------------
def test_needed_positions():
    assert needed(6, ()) == [6]
    assert needed(6, (11,)) == [6]
    assert needed(6, (11, 12, 13)) == [6, 7, 8]


def test_row_scores_against_a_direct_log_softmax():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(3, 7, generator=gen)
    continuation = (4, 0, 6)
    got = row_scores(logits, continuation)
    probs = logits.double().exp() / logits.double().exp().sum(-1, keepdim=True)
    expected_first = probs[0].log()
    expected_total = sum(math.log(probs[j, t]) for j, t in enumerate(continuation))
    assert torch.allclose(got["first"].double(), expected_first, atol=1e-6)
    assert got["continuation"] == pytest.approx(expected_total, abs=1e-5)
    short = row_scores(logits, (2,))
    assert short["continuation"] == pytest.approx(math.log(probs[0, 2]), abs=1e-6)
    assert math.isnan(row_scores(logits, ())["continuation"])


def test_common_prefix():
    assert common_prefix([[1, 2, 3], [1, 2, 4], [1, 2, 3, 5]]) == 2
    assert common_prefix([[1, 2], [1, 2, 3]]) == 2
    assert common_prefix([[9], [1]]) == 0
    assert common_prefix([[1, 2, 3]]) == 3


def test_append_continuations_relays_right_padded_rows():
    enc = {
        "input_ids": torch.tensor([[10, 11, 12], [20, 99, 99]]),
        "attention_mask": torch.tensor([[1, 1, 1], [1, 0, 0]]),
        "token_type_ids": torch.tensor([[0, 0, 0], [0, 0, 0]]),
        "pixel_values": torch.ones(2, 3),
    }
    keys = ("input_ids", "attention_mask", "token_type_ids", "absent")
    out = append_continuations(enc, [3, 1], [(30,), (40, 41)], keys=keys, fill={"input_ids": -5, "attention_mask": 0},
                               append={"attention_mask": 1, "token_type_ids": 2})
    assert out["input_ids"].tolist() == [[10, 11, 12, 30], [20, 40, 41, -5]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert out["token_type_ids"].tolist() == [[0, 0, 0, 2], [0, 2, 2, 0]]
    assert out["pixel_values"] is enc["pixel_values"] and "absent" not in out
    assert enc["input_ids"].tolist() == [[10, 11, 12], [20, 99, 99]]      # the input is left as it was
    none = append_continuations(enc, [3, 1], [(), (7,)], keys=("input_ids",), fill={"input_ids": 0}, append={})
    assert none["input_ids"].tolist() == [[10, 11, 12], [20, 7, 0]]


# -- cache views -------------------------------------------------------------------------------------
def hand_cache(layers: int = 2) -> DynamicCache:
    cache = DynamicCache()
    gen = torch.Generator().manual_seed(0)
    for i in range(layers):
        cache.update(torch.randn(1, 2, 5, 4, generator=gen), torch.randn(1, 2, 5, 4, generator=gen), i)
    return cache


def test_expand_cache_returns_views_of_the_prefix():
    cache = hand_cache()
    originals = [(layer.keys, layer.values) for layer in cache.layers]
    view = expand_cache(cache, 3)
    assert view is not cache and len(view.layers) == len(cache.layers)
    for layer, original, (keys, values) in zip(view.layers, cache.layers, originals):
        assert layer is not original
        assert layer.keys.shape == (3, 2, 5, 4) and layer.values.shape == (3, 2, 5, 4)
        assert layer.keys.data_ptr() == keys.data_ptr() and layer.values.data_ptr() == values.data_ptr()
        assert layer.keys.untyped_storage().data_ptr() == keys.untyped_storage().data_ptr()
        assert layer.keys.stride(0) == 0                     # every row reads the same memory
        assert torch.equal(layer.keys[2], keys[0]) and torch.equal(layer.values[1], values[0])
        assert original.keys is keys and original.keys.shape == (1, 2, 5, 4)   # the shared cache is untouched


def test_appending_to_a_view_leaves_the_prefix_cache_alone():
    cache = hand_cache(1)
    before = cache.layers[0].keys.clone()
    view = expand_cache(cache, 2)
    view.update(torch.zeros(2, 2, 1, 4), torch.zeros(2, 2, 1, 4), 0)
    assert view.layers[0].keys.shape == (2, 2, 6, 4)
    assert cache.layers[0].keys.shape == (1, 2, 5, 4) and torch.equal(cache.layers[0].keys, before)


def test_expand_cache_deep_copies_unknown_layouts():
    class Opaque:
        def __init__(self):
            self.data = torch.ones(1, 3)

        def batch_repeat_interleave(self, n: int) -> None:
            self.data = self.data.repeat_interleave(n, 0)

    cache = Opaque()
    clone = expand_cache(cache, 4)
    assert clone is not cache and clone.data.shape == (4, 3) and cache.data.shape == (1, 3)
    assert clone.data.data_ptr() != cache.data.data_ptr()
