"""Similarity and spread of saliency maps: for the model-randomisation sanity test (Adebayo et al.
2018) and for statistics of maps on hallucinated vs grounded words. Maps are [H, W] float arrays."""

from __future__ import annotations

import numpy as np
from scipy import ndimage, stats

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: the 11 x 11 window of Wang et al. 2004
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"maps must be two [H, W] arrays of one shape, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("maps have non-finite values")
    return a, b


def spearman_abs(a: np.ndarray, b: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Spearman rank correlation of |a| and |b| over the (valid) pixels, ties at mean rank
    (``scipy.stats.spearmanr``). Absolute values as Adebayo et al.: a sign flip is not a new map.
    NaN when either |map| is constant (a rank correlation is undefined without variation)."""
    a, b = _pair(a, b)
    keep = np.ones(a.shape, bool) if valid is None else np.asarray(valid, bool)
    x, y = np.abs(a[keep]), np.abs(b[keep])
    if x.size < 2 or x.min() == x.max() or y.min() == y.max():
        return float("nan")
    return float(stats.spearmanr(x, y)[0])


def _minmax(x: np.ndarray) -> np.ndarray:
    lo, hi = x.min(), x.max()
    return np.zeros_like(x) if hi == lo else (x - lo) / (hi - lo)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean structural similarity (Wang et al. 2004) of two maps, each first min-max normalised to
    [0, 1] (so the scale of a saliency method does not matter; a constant map becomes all zeros).

    Gaussian window sigma 1.5 truncated to 11 x 11 (weights normalised to 1), K1 = 0.01, K2 = 0.03,
    data range 1, population (not sample) variances as in the paper. Local statistics are filtered
    with scipy's ``mode="reflect"`` padding and the 5-pixel border is then dropped from the mean, as
    scikit-image's ``structural_similarity(gaussian_weights=True, use_sample_covariance=False,
    data_range=1)``. Maps must be at least 11 x 11. Symmetric; 1 for identical maps.
    """
    a, b = _pair(a, b)
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    if min(a.shape) < 2 * radius + 1:
        raise ValueError(f"ssim needs maps of at least {2 * radius + 1} x {2 * radius + 1}, got {a.shape}")
    x, y = _minmax(a), _minmax(b)

    def local_mean(z: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(z, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    mx, my = local_mean(x), local_mean(y)
    vx = local_mean(x * x) - mx * mx
    vy = local_mean(y * y) - my * my
    cxy = local_mean(x * y) - mx * my
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[radius:-radius, radius:-radius].mean())


def map_entropy(saliency: np.ndarray, valid: np.ndarray | None = None, normalised: bool = True) -> float:
    """Shannon entropy of the map as a distribution over its (valid) pixels: negative values are
    clipped at 0 and the rest scaled to sum 1; 0 log 0 = 0. In nats divided by log(n_pixels), so
    it lies in [0, 1] (1 = uniform, 0 = one pixel) and compares across resolutions;
    ``normalised=False`` gives plain nats. NaN for a map with no positive mass (or one pixel when
    normalised)."""
    saliency = np.asarray(saliency, dtype=float)
    keep = np.ones(saliency.shape, bool) if valid is None else np.asarray(valid, bool)
    p = np.clip(saliency[keep], 0, None)
    if not np.isfinite(p).all():
        raise ValueError("saliency has non-finite values")
    total = p.sum()
    if total <= 0 or (normalised and p.size < 2):
        return float("nan")
    p = p[p > 0] / total
    h = float(-(p * np.log(p)).sum())
    return h / float(np.log(keep.sum())) if normalised else h
