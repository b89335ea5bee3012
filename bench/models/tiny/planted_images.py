"""Test images for the planted-bias models (`planted_bias.py`): noisy 56x56 "portraits" with a chosen value of the
one statistic those models read,

    s = mean(red) - mean(blue)      over all pixels, in [0, 1] pixel space (uint8 / 255),

so a test can draw as many images per direction (s > 0: read as "woman", s < 0: read as "man") as it needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SIZE = 56          # the tiny LLaVA's input size (the tiny OWL-ViT resizes it to 64)
S_LIMIT = 0.6      # |s| up to this is always reachable from the portrait palette without clipping trouble


def statistic(image: Any) -> float:
    """s = mean(R) - mean(B) of an RGB image in [0, 1] pixel space.

    ``image``: a PIL image (converted to RGB), a uint8 array [H, W, 3], or a float array [H, W, 3] in [0, 1].
    """
    arr = np.asarray(image.convert("RGB")) if hasattr(image, "convert") else np.asarray(image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"statistic: expected an RGB image [H, W, 3], got shape {arr.shape}")
    arr = arr.astype(np.float64) / 255.0 if arr.dtype == np.uint8 else arr.astype(np.float64)
    return float(arr[..., 0].mean() - arr[..., 2].mean())


def _portrait(rng: np.random.Generator) -> np.ndarray:
    """A float [SIZE, SIZE, 3] image: background, shoulders, face ellipse, hair, eyes, plus pixel noise."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) + 0.5
    img = np.empty((SIZE, SIZE, 3))
    img[:] = rng.uniform(0.3, 0.7, size=3)                                    # background
    img += (yy / SIZE - 0.5)[..., None] * rng.uniform(-0.15, 0.15, size=3)    # a vertical gradient
    cx, cy = SIZE / 2 + rng.uniform(-4, 4), SIZE * 0.42 + rng.uniform(-3, 3)
    rx, ry = rng.uniform(9, 13), rng.uniform(12, 16)
    shoulders = ((xx - cx) / (rx * 2.2)) ** 2 + ((yy - SIZE * 1.05) / (SIZE * 0.35)) ** 2 < 1
    img[shoulders] = rng.uniform(0.25, 0.75, size=3)
    hair = ((xx - cx) / (rx * 1.15)) ** 2 + ((yy - cy + 3) / (ry * 1.1)) ** 2 < 1
    img[hair] = rng.uniform(0.25, 0.45) * np.array([1.0, 0.9, 0.8])
    face = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1
    img[face] = rng.uniform(0.45, 0.75) * np.array([1.0, 0.85, 0.75])
    for side in (-1, 1):                                                      # eyes
        eye = ((xx - cx - side * rx * 0.4) ** 2 + (yy - cy + ry * 0.15) ** 2) < 2.5
        img[eye] = 0.3
    img += rng.normal(0.0, 0.04, size=img.shape)
    return np.clip(img, 0.0, 1.0)


def make_image(s_target: float, seed: int = 0):
    """A 56x56 RGB PIL portrait with ``statistic(image)`` equal to ``s_target`` within 1/255.

    The red and blue channels of a random portrait are shifted in opposite directions (clipping is corrected by a
    few more shifts), so the picture is the same for every ``s_target`` of one seed except for its colour balance.
    ``|s_target|`` must be at most 0.6.
    """
    from PIL import Image

    if not abs(float(s_target)) <= S_LIMIT:
        raise ValueError(f"make_image: |s_target| must be at most {S_LIMIT}, got {s_target}")
    img = _portrait(np.random.default_rng(seed))
    for _ in range(50):
        gap = s_target - float(img[..., 0].mean() - img[..., 2].mean())
        if abs(gap) < 1e-4:
            break
        img[..., 0] = np.clip(img[..., 0] + gap / 2, 0.0, 1.0)
        img[..., 2] = np.clip(img[..., 2] - gap / 2, 0.0, 1.0)
    out = np.rint(img * 255.0).astype(np.uint8)
    image = Image.fromarray(out)
    got = statistic(image)
    if abs(got - s_target) > 1 / 255:
        raise ValueError(f"make_image: could not reach s = {s_target} (got {got:.4f}) for seed {seed}")
    return image
