"""Insertion and deletion curves (Petsiuk et al. 2018, RISE) over arrays: no model code here.

The caller scores the perturbed images; this module orders pixels, builds the perturbed images in
batches and integrates the curves.

Flow for one map: ``order = pixel_order(saliency, seed, valid)``; ``rank, ks = step_masks(order,
saliency.shape, steps)``; then for a slice ``ks[i:j]`` of the steps, ``insertion_images(original,
gaussian_blur(original), rank, ks[i:j])`` or ``deletion_images(original, baseline, rank, ks[i:j])``
gives a batch to score; ``auc(normalised_curve(scores, p_original, p_baseline))`` is the figure.

Conventions: images are [H, W, C] float in [0, 1]; pixel indices are flat raster indices
(``row * W + col``); pixels outside ``valid`` (regions the processor crops away, which get no
saliency) are never ordered, revealed or deleted: they keep the base image's values at every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage


def _valid_mask(shape: tuple[int, int], valid: np.ndarray | None) -> np.ndarray:
    if valid is None:
        return np.ones(shape, dtype=bool)
    valid = np.asarray(valid, dtype=bool)
    if valid.shape != shape:
        raise ValueError(f"valid mask shape {valid.shape} != map shape {shape}")
    return valid


def pixel_order(saliency: np.ndarray, seed: int, valid: np.ndarray | None = None) -> np.ndarray:
    """Flat indices of the valid pixels in DESCENDING saliency; ties in a seeded random order.

    Pixels with different saliency are always in the same order (a stable sort of a seeded random
    permutation), so the seed only moves pixels of equal saliency relative to one another: the
    same seed gives the same order, another seed may order ties differently. Invalid pixels
    (``valid`` False) are left out, so the result has ``valid.sum()`` entries. Non-finite saliency
    on a valid pixel is an error (mark such pixels invalid instead).
    """
    saliency = np.asarray(saliency, dtype=float)
    if saliency.ndim != 2:
        raise ValueError(f"saliency must be [H, W], got shape {saliency.shape}")
    candidates = np.flatnonzero(_valid_mask(saliency.shape, valid))
    values = saliency.reshape(-1)[candidates]
    if not np.isfinite(values).all():
        raise ValueError("saliency has non-finite values on valid pixels")
    shuffled = candidates[np.random.default_rng(seed).permutation(candidates.size)]
    return shuffled[np.argsort(-saliency.reshape(-1)[shuffled], kind="stable")]


def step_masks(order: np.ndarray, shape: tuple[int, int], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Reveal schedule of ``steps + 1`` points: (rank [H, W] int64, ks [steps + 1] int64).

    ``rank[pixel]`` is the pixel's position in ``order`` (0 = first revealed); pixels absent from
    ``order`` (invalid) get rank N = len(order), so they are never revealed. At step j,
    ``k_j = round(j * N / steps)`` pixels are revealed (half rounds up, exact integer arithmetic):
    k_0 = 0, k_steps = N, and mask_j = ``rank < ks[j]``. With N = 224 * 224 and steps = 224 this is
    RISE's 224 pixels per step (for any N the last point reveals every valid pixel).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    order = np.asarray(order, dtype=np.int64)
    n = order.size
    rank = np.full(int(np.prod(shape)), n, dtype=np.int64)
    rank[order] = np.arange(n)
    j = np.arange(steps + 1, dtype=np.int64)
    ks = (2 * j * n + steps) // (2 * steps)
    return rank.reshape(shape), ks


def _revealed(rank: Any, ks: Any) -> Any:
    """[n_steps, H, W, 1] boolean: pixel revealed at each step (numpy or torch, whichever is given)."""
    return rank[None, :, :, None] < ks[:, None, None, None]


def insertion_images(original: Any, blurred: Any, reveal_rank: Any, ks: Any) -> Any:
    """[len(ks), H, W, C]: the blurred image with the first ``ks[j]`` pixels of the order restored.

    Works on numpy arrays or torch tensors alike (pass all four in the same kind; ``ks`` as an
    array/tensor, e.g. a slice of ``step_masks``' output, to build one batch).
    """
    return blurred[None] + _revealed(reveal_rank, ks) * (original - blurred)[None]


def deletion_images(original: Any, baseline: Any, reveal_rank: Any, ks: Any) -> Any:
    """[len(ks), H, W, C]: the original with the first ``ks[j]`` pixels replaced by ``baseline``.

    ``baseline`` is an image [H, W, C] or a colour [C] (e.g. the dataset mean, which is zero in the
    normalised space of RISE). Numpy or torch, as ``insertion_images``.
    """
    return original[None] + _revealed(reveal_rank, ks) * (baseline - original)[None]


def gaussian_blur(image: np.ndarray, kernel: int = 11, sigma: float = 5.0) -> np.ndarray:
    """The insertion start image: a separable Gaussian blur of each channel of [H, W, C].

    The 1-D kernel is ``exp(-x^2 / (2 sigma^2))`` at the integers x in [-kernel//2, kernel//2],
    normalised to sum 1, applied along rows then columns. Borders use half-sample symmetric
    padding (scipy's ``mode="reflect"``: ``d c b a | a b c d``, the edge pixel repeated), so the
    blur keeps the image's mean brightness at the borders. It equals
    ``scipy.ndimage.gaussian_filter(image, (sigma, sigma, 0), truncate=(kernel // 2) / sigma)``.
    Note RISE's own code differs slightly: its 11x11 kernel is ``gaussian_filter`` of a delta
    (default truncation 4, so the tails fold back into the window) and it pads with zeros, which
    darkens the borders; we keep the plain truncated Gaussian and reflect padding.
    """
    if kernel < 1 or kernel % 2 == 0:
        raise ValueError(f"kernel must be odd and positive, got {kernel}")
    image = np.asarray(image, dtype=float)
    radius = kernel // 2
    x = np.arange(-radius, radius + 1, dtype=float)
    taps = np.exp(-0.5 * (x / sigma) ** 2)
    taps /= taps.sum()
    out = ndimage.correlate1d(image, taps, axis=0, mode="reflect")
    return ndimage.correlate1d(out, taps, axis=1, mode="reflect")


def auc(scores: np.ndarray) -> float:
    """Trapezoid area under a curve of n >= 2 equally spaced points on x in [0, 1]:
    ``(sum - first / 2 - last / 2) / (n - 1)``. NaN scores give NaN."""
    scores = np.asarray(scores, dtype=float).reshape(-1)
    if scores.size < 2:
        raise ValueError(f"a curve needs at least 2 points, got {scores.size}")
    return float((scores.sum() - scores[0] / 2 - scores[-1] / 2) / (scores.size - 1))


def normalised_curve(scores: np.ndarray, p_original: float, p_baseline: float,
                     eps: float = 1e-6) -> np.ndarray | None:
    """Each step's ``(p - p_baseline) / (p_original - p_baseline)``, or None when
    ``|p_original - p_baseline| < eps`` (the image carries no signal to explain: the caller counts
    these curves and leaves them out). ``p_baseline`` is the score of the fully blurred image
    (insertion) or of the fully deleted one (deletion); values outside [0, 1] are kept, not clipped.
    """
    gap = float(p_original) - float(p_baseline)
    if not abs(gap) >= eps:  # also None for a NaN gap
        return None
    return (np.asarray(scores, dtype=float) - float(p_baseline)) / gap
