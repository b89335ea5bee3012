"""Packed and padded layouts after a shared prefix (tree masks, positions, kept logits): pure functions over tensors.

Pure functions over tensors and lists (no model, no adapter state), so every batched pass can reuse them:
- packed: all suffixes in ONE row after the prefix ("tree attention"): `PackedRow` says which suffix owns
  each column, which columns run, the position each token would have alone and which logits to keep;
  `tree_mask` lets each token see the prefix and the earlier tokens of its own suffix only.
- batched: the suffixes as a right-padded batch on views of the prefix cache (`PaddedBatch`,
  `expand_cache`), for attention kernels that take no custom mask; `grow_mask` adds a decoded column.
- scoring: which positions a row needs (`needed`), its log-probs from them (`row_scores`), and the
  re-laying of a right-padded batch with continuations appended (`append_continuations`).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch

PREFIX_OWNER = -1   # owner of the shared prefix's columns: every token sees them


@dataclass(frozen=True)
class PackedRow:
    """Where the suffixes sit in one packed row after a prefix, and which of the run tokens' logits to keep.

    ``owner`` covers every column of the row so far (prefix, then each suffix's tokens; `PREFIX_OWNER` for the
    prefix), ``query_columns`` are the columns this pass runs, ``position_ids`` their positions (each token's
    position as if its suffix ran alone), ``keep`` the indices among the run tokens whose logits are needed,
    ``counts`` how many of ``keep`` belong to each suffix, in order, and ``next_position`` where each
    suffix's next token goes."""

    owner: torch.Tensor
    query_columns: torch.Tensor
    position_ids: torch.Tensor
    keep: list[int]
    counts: tuple[int, ...]
    next_position: torch.Tensor

    def split(self, logits: torch.Tensor) -> torch.Tensor:
        """[n, width, vocab] from the kept logits [len(keep), vocab]: each suffix's rows, padded to the widest by
        repeating its last one (the layout `HFAdapter._logits` gives a batch)."""
        width = max(self.counts)
        out, at = [], 0
        for n in self.counts:
            rows = logits[at:at + n]
            out.append(torch.cat([rows, rows[-1:].expand(width - n, -1)]) if n < width else rows)
            at += n
        return torch.stack(out)

    def step(self) -> PackedRow:
        """The layout of one greedy-decoding step: one new token per suffix, appended at the end of the row
        in suffix order, each at its suffix's next position; every one's logits are kept."""
        n = len(self.next_position)
        start = len(self.owner)
        return PackedRow(owner=torch.cat([self.owner, torch.arange(n)]), query_columns=start + torch.arange(n),
                         position_ids=self.next_position, keep=list(range(n)), counts=(1,) * n,
                         next_position=self.next_position + 1)


def pack_after_prefix(common: int, lengths: Sequence[int], positions: Sequence[Sequence[int]]) -> PackedRow:
    """The packed row of suffixes of ``lengths`` tokens after a prefix of ``common`` tokens, keeping the logits
    at each suffix's ``positions`` (suffix-relative indices, at least one per suffix)."""
    starts = [0]
    for n in lengths[:-1]:
        starts.append(starts[-1] + n)
    owner = torch.cat([torch.full((common,), PREFIX_OWNER)] + [torch.full((n,), i) for i, n in enumerate(lengths)])
    return PackedRow(owner=owner, query_columns=common + torch.arange(sum(lengths)),
                     position_ids=torch.cat([common + torch.arange(n) for n in lengths]),
                     keep=[starts[i] + p for i, ps in enumerate(positions) for p in ps],
                     counts=tuple(len(ps) for ps in positions),
                     next_position=torch.tensor([common + n for n in lengths]))


def tree_mask(owner: torch.Tensor, query_columns: torch.Tensor, *, dtype: torch.dtype | None = None,
              device: torch.device | str | None = None) -> torch.Tensor:
    """[1, 1, queries, keys] attention mask of a packed row: the query at column c sees the prefix and the
    columns of its own suffix up to c. Boolean (True: attend) when ``dtype`` is None, else additive in
    ``dtype``: 0 where attended, the dtype's most negative value where not (for eager attention)."""
    keys = torch.arange(len(owner))
    mine = owner[query_columns]
    own = (owner[None, :] == mine[:, None]) & (keys[None, :] <= query_columns[:, None])
    allowed = (owner[None, :] == PREFIX_OWNER) | own
    allowed = allowed[None, None].to(device)
    if dtype is None:
        return allowed
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(~allowed, torch.finfo(dtype).min)


@dataclass(frozen=True)
class PaddedBatch:
    """Suffixes after a prefix as a right-padded batch: ``input_ids`` [b, width], ``attention_mask``
    [b, common + width] over prefix and suffix, ``position_ids`` [b, width] (padding keeps counting, it is
    masked out), ``next_position`` [b] where each row's next token goes."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    next_position: torch.Tensor


def pad_after_prefix(common: int, suffixes: Sequence[Sequence[int]], pad_id: int) -> PaddedBatch:
    """The right-padded batch of ``suffixes`` after a prefix of ``common`` tokens, padded with ``pad_id``."""
    b = len(suffixes)
    width = max(len(s) for s in suffixes)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    mask = torch.zeros((b, common + width), dtype=torch.long)
    mask[:, :common] = 1
    for i, s in enumerate(suffixes):
        input_ids[i, :len(s)] = torch.tensor(s)
        mask[i, common:common + len(s)] = 1
    place = (common + torch.arange(width)).unsqueeze(0).expand(b, width)
    return PaddedBatch(input_ids, mask, place, torch.tensor([common + len(s) for s in suffixes]))


def grow_mask(mask: torch.Tensor) -> torch.Tensor:
    """A batch's attention mask with one more attended column per row (a decoded token), on its device."""
    return torch.cat([mask, torch.ones((mask.shape[0], 1), dtype=mask.dtype, device=mask.device)], 1)


def needed(first: int, continuation: Sequence[int]) -> list[int]:
    """Positions whose logits a row needs: the first answer token's, then one per continuation token."""
    return [first + j for j in range(max(1, len(continuation)))]


def row_scores(logits: torch.Tensor, continuation: Sequence[int]) -> dict[str, Any]:
    """First-answer-token log-probs and the continuation's summed log-prob (NaN without one) from a row's kept
    logits (``logits[j]`` predicts the answer's token j)."""
    first = torch.log_softmax(logits[0], -1).cpu()
    if not continuation:
        return {"first": first, "continuation": math.nan}
    steps = torch.log_softmax(logits[: len(continuation)], -1).cpu()
    total = float(steps[torch.arange(len(continuation)), torch.tensor(continuation)].sum())
    return {"first": first, "continuation": total}


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """How many leading tokens all of ``seqs`` share."""
    n = min(len(s) for s in seqs)
    for i in range(n):
        t = seqs[0][i]
        if any(s[i] != t for s in seqs[1:]):
            return i
    return n


def append_continuations(enc: Mapping[str, Any], lengths: Sequence[int], continuations: Sequence[Sequence[int]], *,
                         keys: Sequence[str], fill: Mapping[str, int], append: Mapping[str, int],
                         ids_key: str = "input_ids") -> dict[str, Any]:
    """``enc`` with its sequence tensors (those of ``keys`` it has) re-laid for each row's continuation appended
    after its ``lengths`` real tokens, still right-padded. Padding takes ``fill[key]``; appended columns take
    the continuation's ids under ``ids_key`` and ``append[key]`` under the other keys (both default 0).
    Other entries pass through."""
    total = max(n + len(c) for n, c in zip(lengths, continuations))
    out = dict(enc)
    for key in keys:
        if key not in enc:
            continue
        old = enc[key]
        new = torch.full((old.shape[0], total), fill.get(key, 0), dtype=old.dtype)
        for b, (n, cont) in enumerate(zip(lengths, continuations)):
            new[b, :n] = old[b, :n]
            if cont:
                new[b, n:n + len(cont)] = torch.tensor(cont) if key == ids_key else append.get(key, 0)
        out[key] = new
    return out


def expand_cache(cache, batch: int):
    """The prefix cache seen by ``batch`` rows, without copying it (views; the model's own update copies
    once when it appends). Falls back to a deep copy for cache layouts this does not know."""
    layers = getattr(cache, "layers", None)
    if layers is None or not all(hasattr(layer, "keys") and hasattr(layer, "values") for layer in layers):
        clone = copy.deepcopy(cache)
        clone.batch_repeat_interleave(batch)
        return clone
    clone = copy.copy(cache)
    clone.layers = []
    for layer in layers:
        view = copy.copy(layer)
        if getattr(layer, "is_initialized", False) and layer.keys is not None and layer.keys.numel():
            view.keys = layer.keys.expand(batch, *layer.keys.shape[1:])
            view.values = layer.values.expand(batch, *layer.values.shape[1:])
        clone.layers.append(view)
    return clone
