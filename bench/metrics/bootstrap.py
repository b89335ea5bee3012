"""Percentile bootstrap over images: all rows of one image move together.

The questions about one image are correlated, so the resampling unit is the image (its group id).
For a statistic over several tasks (the mean over POPE splits), the same image draw is applied to
every task: draw over the union of their image ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class BootstrapConfig:
    resamples: int = 1000
    seed: int = 0
    level: float = 0.95

    def describe(self) -> str:
        return (f"percentile bootstrap over images (all of an image's rows resampled together), "
                f"{self.resamples} resamples, seed {self.seed} (each image drawn as uniform int32 indices from "
                f"numpy's default_rng), {self.level:.0%} interval")


class ImageDraw:
    """One set of B resamples over a list of image ids, mappable onto any rows carrying those ids."""

    def __init__(self, image_ids: Sequence[str], config: BootstrapConfig):
        self.units = {unit: i for i, unit in enumerate(dict.fromkeys(image_ids))}
        n = len(self.units)
        self.counts = image_counts(np.random.default_rng(config.seed), n, config.resamples)

    def row_weights(self, row_image_ids: Sequence[str]) -> np.ndarray:
        index = np.fromiter((self.units[i] for i in row_image_ids), dtype=np.int64, count=len(row_image_ids))
        return self.counts[:, index].astype(float)


def image_counts(rng: np.random.Generator, n_images: int, resamples: int) -> np.ndarray:
    """[resamples, n_images] int64: how often each image is drawn in each resample of n_images draws with
    replacement (multinomial counts). Each resample is n_images uniform indices from ``rng.integers`` (int32),
    counted; the stream is the same however the resamples are split into calls, so blocks of resamples drawn one
    after another concatenate to one whole draw."""
    if n_images == 0:
        return np.zeros((resamples, 0), dtype=np.int64)
    if n_images >= 2 ** 31:
        raise ValueError(f"{n_images} images: the bootstrap draws int32 indices")
    picks = rng.integers(0, n_images, size=(resamples, n_images), dtype=np.int32)
    counts = np.empty((resamples, n_images), dtype=np.int64)
    for row, drawn in zip(counts, picks):
        row[:] = np.bincount(drawn, minlength=n_images)
    return counts


def interval(values: np.ndarray, level: float) -> tuple[float, float]:
    values = np.asarray(values, dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def estimate(stat: Callable[[ImageDraw | None], np.ndarray], draw: ImageDraw, level: float) -> dict[str, float]:
    """``stat(None)`` is the point value; ``stat(draw)`` the B resampled values (the stat maps the draw
    onto its own rows with ``draw.row_weights``). Returns the value and its percentile interval."""
    point = float(np.asarray(stat(None)).reshape(-1)[0])
    low, high = interval(stat(draw), level)
    return {"value": point, "ci_low": low, "ci_high": high}


def on_rows(stat: Callable[[np.ndarray | None], np.ndarray], row_image_ids: Sequence[str]) -> Callable[[ImageDraw | None], np.ndarray]:
    """Turn a stat over row weights into a stat over image draws, for rows carrying these image ids."""
    ids = list(row_image_ids)
    return lambda draw: stat(None if draw is None else draw.row_weights(ids))
