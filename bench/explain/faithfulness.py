"""Insertion and deletion curves of a map (Petsiuk et al. 2018, RISE; method.md section 4).

Pixels of the model-input image in order of descending saliency (the map painted from its grid cells; ties, such
as the pixels of one cell, broken by a seeded permutation). Insertion starts from the Gaussian blur (kernel 11,
sigma 5) and reveals the original pixels; deletion replaces them with the baseline (the blur by default, or
black, or the mean colour). ``steps`` steps each (default 64), so steps + 1 points. The score at each point is the
probability of the target under the same prompt and prefix. Every perturbed image of a target is scored in
batches, insertion and deletion together.

Reported: the raw AUC (trapezoid over the normalised axis) and the normalised AUC, each step's score as
(p - p_baseline) / (p_original - p_baseline): None (and counted) when |p_original - p_baseline| < 1e-6.
The token-space variant mixes the clean and the blurred image's FEATURES (after the projector) token by token in
the order of the map, with no vision tower in the loop: a separate metric.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..metrics.curves import auc, deletion_images, insertion_images, normalised_curve, pixel_order, step_masks
from .methods.base import baseline_pixels
from .request import ExplainConfig
from .seam import Prepared


def _aucs(curve: np.ndarray, p_original: float, p_baseline: float) -> tuple[float, float | None]:
    normalised = normalised_curve(curve, p_original, p_baseline)
    return auc(curve), (None if normalised is None else auc(normalised))


def pixel_curves(seam, prepared: Prepared, saliency: np.ndarray, config: ExplainConfig, seed: int) -> dict[str, Any]:
    import torch

    space = prepared.space
    order = pixel_order(space.grid_to_input(saliency), seed)
    rank, ks = step_masks(order, space.size, config.steps)
    original = prepared.pixels.permute(1, 2, 0)
    blurred = baseline_pixels(prepared, "blur", config).permute(1, 2, 0)
    deleted = blurred if config.deletion_baseline == "blur" else baseline_pixels(prepared, config.deletion_baseline, config).permute(1, 2, 0)
    rank_t, ks_t = torch.from_numpy(rank), torch.from_numpy(ks)
    n = len(ks)

    def images(idx: list[int]) -> Any:
        """The batch of variants ``idx``: insertion points 0..n-1, then deletion points n..2n-1."""
        ins = [i for i in idx if i < n]
        dele = [i - n for i in idx if i >= n]
        parts = []
        if ins:
            parts.append(insertion_images(original, blurred, rank_t, ks_t[ins]))
        if dele:
            parts.append(deletion_images(original, deleted, rank_t, ks_t[dele]))
        return torch.cat(parts).permute(0, 3, 1, 2).contiguous()

    probs = np.asarray(seam.in_batches(2 * n, lambda idx: seam.score(prepared, pixels=images(idx)).tolist()), dtype=float)
    insertion, deletion = probs[:n], probs[n:]
    p_original, p_blur, p_deleted = float(deletion[0]), float(insertion[0]), float(deletion[-1])
    ins_auc, ins_norm = _aucs(insertion, p_original, p_blur)
    del_auc, del_norm = _aucs(deletion, p_original, p_deleted)
    return {"curves": {"insertion": insertion.tolist(), "deletion": deletion.tolist()},
            "scores": {"p_original": p_original, "p_blur": p_blur, "p_deleted": p_deleted, "insertion_auc": ins_auc,
                       "deletion_auc": del_auc, "insertion_auc_norm": ins_norm, "deletion_auc_norm": del_norm}}


def token_curves(seam, prepared: Prepared, saliency: np.ndarray, config: ExplainConfig, seed: int) -> dict[str, Any]:
    """The same curves in image-feature space: tokens (grid cells) revealed or deleted in the map's order."""
    import torch

    with torch.no_grad():
        clean = seam.features(prepared, prepared.pixels[None])[0]
        blurred = seam.features(prepared, baseline_pixels(prepared, "blur", config)[None])[0]
    tokens = clean.shape[0]
    order = pixel_order(np.asarray(saliency, dtype=float).reshape(1, -1), seed)
    steps = min(config.steps, tokens)
    rank, ks = step_masks(order, (1, tokens), steps)
    revealed = torch.from_numpy(rank.reshape(-1))[None, :] < torch.from_numpy(ks)[:, None]        # [steps+1, T]
    mask = revealed[..., None].to(clean.dtype).to(clean.device)
    insertion = blurred[None] + mask * (clean - blurred)[None]
    deletion = clean[None] + mask * (blurred - clean)[None]
    probs = seam.score(prepared, features=torch.cat([insertion, deletion]))
    n = steps + 1
    ins, dele = probs[:n], probs[n:]
    ins_auc, ins_norm = _aucs(ins, float(dele[0]), float(ins[0]))
    del_auc, del_norm = _aucs(dele, float(dele[0]), float(dele[-1]))
    return {"curves": {"token_insertion": ins.tolist(), "token_deletion": dele.tolist()},
            "scores": {"token_insertion_auc": ins_auc, "token_deletion_auc": del_auc,
                       "token_insertion_auc_norm": ins_norm, "token_deletion_auc_norm": del_norm}}
