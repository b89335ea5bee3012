"""A saliency map over its image, as a small PNG: the photo in grey, the map in a heat colour on top; regions the
model never saw (cropped away) stay grey."""

from __future__ import annotations

import io

import numpy as np

MAX_SIDE = 256


def heat(values: np.ndarray) -> np.ndarray:
    """[H, W] in [0, 1] -> [H, W, 3] uint8: black, red, yellow, white."""
    v = np.clip(values, 0, 1)[..., None]
    stops = np.array([[0, 0, 0], [200, 30, 30], [255, 210, 0], [255, 255, 255]], dtype=float)
    position = v * (len(stops) - 1)
    low = np.floor(position).astype(int).clip(0, len(stops) - 2)
    frac = position - low
    return (stops[low[..., 0]] * (1 - frac) + stops[low[..., 0] + 1] * frac).astype(np.uint8)


def overlay_png(image, saliency_original: np.ndarray, alpha: float = 0.55) -> bytes:
    """PNG bytes of ``image`` (PIL) with ``saliency_original`` ([H0, W0], NaN where unseen) blended over it."""
    from PIL import Image

    grey = np.asarray(image.convert("L").convert("RGB"), dtype=float)
    values = np.asarray(saliency_original, dtype=float)
    seen = np.isfinite(values)
    if seen.any():
        low, high = np.nanmin(values), np.nanmax(values)
        scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    else:
        scaled = np.zeros_like(values)
    colour = heat(np.nan_to_num(scaled)).astype(float)
    blended = np.where(seen[..., None], (1 - alpha) * grey + alpha * colour, grey)
    out = Image.fromarray(blended.clip(0, 255).astype(np.uint8))
    out.thumbnail((MAX_SIDE, MAX_SIDE))
    buffer = io.BytesIO()
    out.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()
