"""The one statistics contract: a task says what its metrics are made of, per sample; metrics, intervals, group means
and paired differences are computed here, in one place, for every task type.

A task's `SampleStatistics` holds the cluster (image) of each row and, per metric, either
- `Summed`: per-row values [rows, k] whose per-image SUMS determine the metric through a statistic of their column
  sums (accuracy from (correct, 1), F1 from (tp, fp, fn), CHAIR_i from (hallucinated mentions, mentions), a mean from
  (value, counted), MaxBoxAcc from per-threshold hits): intervals, group means and paired tests then work on
  per-image aggregates in blocks (`bench.metrics.paired`), never on a [resamples x rows] array;
- `PerRow`: a function of row weights (AUROC), for metrics that per-image sums cannot express: bootstrapped with
  row weights from the same image draw.
Every interval uses the same draw of images (`bootstrap.ImageDraw`'s stream), so a metric moved onto this contract
keeps its numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable, Sequence

import numpy as np

from .bootstrap import BootstrapConfig, interval
from .paired import (BLOCK_NUMBERS, PairedResult, Statistic, block_counts, bootstrap_statistic, compare_paired,
                     compare_paired_many, image_codes, mean_over_tasks, mcnemar_exact,
                     sum_by_image)

PER_ROW_TEST_RESAMPLES = 1000   # sign-flip swaps for per-row metrics (AUROC): each swap recomputes the metric


@dataclass(frozen=True)
class Summed:
    values: np.ndarray                 # [rows, k] per-row values, summed per image
    statistic: Statistic               # column sums [m, k] -> [m]
    correct: np.ndarray | None = None  # per-row correctness (bool), for McNemar when one row per image


@dataclass(frozen=True)
class PerRow:
    """``function(*arrays, weights)`` -> [B] over per-row ``arrays`` (e.g. ``auroc(scores, labels, weights)``), with
    row weights [B, rows] (None: each row once). With ``prepare``, ``prepare(*arrays)`` is built once and called
    with the weights instead (e.g. `classification.RankedScores`, which sorts the scores once for every resample)."""

    function: Callable[..., np.ndarray]
    arrays: tuple
    prepare: Callable[..., Callable[[np.ndarray | None], np.ndarray]] | None = None
    _prepared: dict = field(default_factory=dict, repr=False, compare=False)

    def __call__(self, weights: np.ndarray | None) -> np.ndarray:
        if self.prepare is None:
            return self.function(*self.arrays, weights)
        if "own" not in self._prepared:
            self._prepared["own"] = self.prepare(*self.arrays)
        return self._prepared["own"](weights)

    def over_both(self, other: "PerRow", weights: np.ndarray) -> np.ndarray:
        """The metric over this run's rows and ``other``'s together, weighted [B, rows + other rows]."""
        if self.prepare is None:
            return self.function(*self._joined(other), weights)
        kept = self._prepared.get("both")
        if kept is None or kept[0] is not other:
            kept = self._prepared["both"] = (other, self.prepare(*self._joined(other)))
        return kept[1](weights)

    def _joined(self, other: "PerRow") -> list[np.ndarray]:
        return [np.concatenate([np.asarray(a), np.asarray(b)]) for a, b in zip(self.arrays, other.arrays)]


def per_row(function: Callable[..., np.ndarray], *arrays, prepare=None) -> PerRow:
    return PerRow(function, tuple(np.asarray(a) for a in arrays), prepare)


@dataclass
class SampleStatistics:
    image_ids: list[str]
    metrics: dict[str, Summed | PerRow] = field(default_factory=dict)
    _codes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def one_row_per_image(self) -> bool:
        return len(set(self.image_ids)) == len(self.image_ids)

    @cached_property
    def units(self) -> list[str]:
        """The images in order of first appearance (the bootstrap's numbering)."""
        return list(dict.fromkeys(self.image_ids))

    def aggregates(self, name: str, units: list[str]) -> np.ndarray:
        """Metric ``name``'s per-image sums [len(units), k] in the order of ``units``; each row's image position
        is found once per ``units`` and kept (one run's metrics share it)."""
        key = tuple(units)
        if key not in self._codes:
            self._codes[key] = image_codes(self.image_ids, units)[1]
        return sum_by_image(self._codes[key], self.metrics[name].values, len(units))


def mean_of(values: np.ndarray) -> Summed:
    """The mean of per-row values, NaN rows left out (a row that has no value for this metric)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    return Summed(np.stack([np.where(finite, values, 0.0), finite.astype(float)], 1),
                  lambda sums: _divide(sums[:, 0], sums[:, 1]))


def _divide(num, den, zero_division: float = math.nan):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), zero_division)


def _row_codes(image_ids: Sequence[str], units: Sequence[str]) -> np.ndarray:
    index = {u: k for k, u in enumerate(units)}
    return np.fromiter((index[i] for i in image_ids), dtype=np.int64, count=len(image_ids))


def per_row_resamples(functions: Sequence[tuple[Callable, Sequence[str]]], units: Sequence[str],
                      config: BootstrapConfig) -> np.ndarray:
    """[resamples, len(functions)]: each per-row function under the image draw (`ImageDraw`'s stream over ``units``),
    block by block, so no [resamples x rows] array is ever whole."""
    codes = [_row_codes(ids, units) for _, ids in functions]
    rows = max(1, max(len(c) for c in codes))
    out = []
    for counts in block_counts(len(units), config, block=max(1, BLOCK_NUMBERS // rows)):
        counts = counts.astype(float)
        out.append(np.stack([f(counts[:, c]) for (f, _), c in zip(functions, codes)], 1))
    return np.concatenate(out) if out else np.zeros((0, len(functions)))


def _estimate_rows(functions: Sequence[tuple[Callable, Sequence[str]]], units: Sequence[str], config: BootstrapConfig,
                   combine: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
    point = float(combine(np.array([[float(np.asarray(f(None)).reshape(-1)[0]) for f, _ in functions]]))[0])
    low, high = interval(combine(per_row_resamples(functions, units, config)), config.level)
    return {"value": point, "ci_low": low, "ci_high": high}


def estimate_all(stats: SampleStatistics, config: BootstrapConfig) -> dict[str, dict[str, float]]:
    """Each metric's value and percentile interval over images."""
    out = {}
    units = stats.units
    for name, metric in stats.metrics.items():
        if isinstance(metric, Summed):
            out[name] = bootstrap_statistic(stats.aggregates(name, units), metric.statistic, config)
        else:
            out[name] = _estimate_rows([(metric, stats.image_ids)], units, config, lambda v: v[:, 0])
    return out


def group_estimates(parts: Sequence[SampleStatistics], config: BootstrapConfig) -> dict[str, dict[str, float]]:
    """The mean of each metric over the tasks of a group (those every task has), with ONE image draw over the
    union of their images."""
    names = [n for n in parts[0].metrics if all(n in p.metrics for p in parts[1:])]
    units = list(dict.fromkeys(i for p in parts for i in p.image_ids))
    out = {}
    for name in names:
        metrics = [p.metrics[name] for p in parts]
        if all(isinstance(m, Summed) for m in metrics):
            out[name] = bootstrap_statistic(*group_matrix(parts, name, units), config)
        else:
            functions = [(_as_row_metric(m, p), p.image_ids) for p, m in zip(parts, metrics)]
            out[name] = _estimate_rows(functions, units, config, lambda v: v.mean(1))
    return out


def group_matrix(parts: Sequence[SampleStatistics], name: str, units: list[str]) -> tuple[np.ndarray, Statistic]:
    """A summed metric over the tasks of a group as one wide aggregate matrix over ``units`` (each task's columns
    side by side), and the statistic that averages the tasks' values: one image draw then serves every task."""
    matrix, pieces, start = [], [], 0
    for p in parts:
        aggregates = p.aggregates(name, units)
        matrix.append(aggregates)
        pieces.append((p.metrics[name].statistic, slice(start, start + aggregates.shape[1])))
        start += aggregates.shape[1]
    return np.hstack(matrix), mean_over_tasks(pieces)


def _as_row_metric(metric: Summed | PerRow, stats: SampleStatistics) -> Callable:
    if isinstance(metric, PerRow):
        return metric

    def compute(weights):
        w = np.ones((1, len(stats.image_ids))) if weights is None else np.atleast_2d(weights)
        return metric.statistic(w @ metric.values)

    return compute


# -- paired: two runs on the same images ------------------------------------------------------------------------

@dataclass(frozen=True)
class Paired:
    result: PairedResult
    mcnemar: dict | None = None


def paired_estimate(base: SampleStatistics, cand: SampleStatistics, name: str, config: BootstrapConfig,
                    resamples: int = 10000, exact_up_to: int = 16, row_resamples: int = PER_ROW_TEST_RESAMPLES) -> Paired:
    """Candidate against baseline on one metric: the same image draw for both runs (paired bootstrap), the
    sign-flip permutation test at the image level (exact up to ``exact_up_to`` images, else ``resamples`` seeded
    swaps), and for one row per image with per-row correctness, the exact McNemar test."""
    b, c = base.metrics[name], cand.metrics[name]
    units = base.units
    if isinstance(b, Summed) and isinstance(c, Summed):
        base_agg, cand_agg = base.aggregates(name, units), cand.aggregates(name, units)
        result = compare_paired(base_agg, cand_agg, b.statistic, config, test_resamples=resamples, exact_up_to=exact_up_to)
        return Paired(result, _mcnemar(base, cand, name, units))
    if not (isinstance(b, PerRow) and isinstance(c, PerRow)):
        raise TypeError(f"metric {name}: both runs must describe it the same way")
    return Paired(_paired_rows(base, cand, b, c, units, config, min(resamples, row_resamples)))


def paired_estimates(base: SampleStatistics, cand: SampleStatistics, names: Sequence[str], config: BootstrapConfig,
                     resamples: int = 10000, exact_up_to: int = 16) -> dict[str, Paired]:
    """`paired_estimate` for several metrics of one task: the summed ones share one pass over the draws."""
    units = base.units
    summed = [n for n in names if isinstance(base.metrics[n], Summed) and isinstance(cand.metrics[n], Summed)]
    pairs = [(base.aggregates(name, units), cand.aggregates(name, units), base.metrics[name].statistic)
             for name in summed]
    out = {}
    for name, result in zip(summed, compare_paired_many(pairs, config, resamples, exact_up_to)):
        out[name] = Paired(result, _mcnemar(base, cand, name, units))
    for name in names:
        if name not in out:
            out[name] = paired_estimate(base, cand, name, config, resamples, exact_up_to)
    return {name: out[name] for name in names}


def _mcnemar(base: SampleStatistics, cand: SampleStatistics, name: str, units: list[str]) -> dict | None:
    b, c = base.metrics[name], cand.metrics[name]
    if b.correct is None or c.correct is None or not (base.one_row_per_image and cand.one_row_per_image):
        return None
    order_b = {i: k for k, i in enumerate(base.image_ids)}
    order_c = {i: k for k, i in enumerate(cand.image_ids)}
    test = mcnemar_exact(np.asarray(b.correct)[[order_b[u] for u in units]], np.asarray(c.correct)[[order_c[u] for u in units]])
    return {"b": test.b, "c": test.c, "p_value": test.p_value}


def _paired_rows(base: SampleStatistics, cand: SampleStatistics, f_base: PerRow, f_cand: PerRow, units: list[str],
                 config: BootstrapConfig, resamples: int) -> PairedResult:
    """A paired comparison of a per-row metric (AUROC): bootstrap with one image draw mapped onto both runs' rows;
    a sign-flip test that, per image, swaps which run's rows count for which side (randomised, seeded, at most
    `PER_ROW_TEST_RESAMPLES` swaps: each recomputes the metric over both runs' rows). Blocks keep every weight
    array under `BLOCK_NUMBERS` numbers."""
    point_b, point_c = float(f_base(None)[0]), float(f_cand(None)[0])
    both = per_row_resamples([(f_base, base.image_ids), (f_cand, cand.image_ids)], units, config)
    diffs = both[:, 1] - both[:, 0]
    low, high = interval(diffs, config.level)
    finite = diffs[np.isfinite(diffs)]
    se = float(np.std(finite, ddof=1)) if finite.size > 1 else math.nan
    index = {u: k for k, u in enumerate(units)}
    rows_b = np.array([index[i] for i in base.image_ids])
    rows_c = np.array([index[i] for i in cand.image_ids])
    observed = point_c - point_b
    rng = np.random.default_rng(config.seed)
    extreme, total = 0, 0
    block = max(1, BLOCK_NUMBERS // (2 * (rows_b.size + rows_c.size)))
    for start in range(0, resamples, block):
        n = min(block, resamples - start)
        swap = rng.integers(0, 2, size=(n, len(units))).astype(float)
        # a swapped image's candidate rows count on the baseline side and vice versa: both sides see every image once
        side_c = np.hstack([swap[:, rows_b], 1.0 - swap[:, rows_c]])
        side_b = np.hstack([1.0 - swap[:, rows_b], swap[:, rows_c]])
        null = f_base.over_both(f_cand, side_c) - f_base.over_both(f_cand, side_b)
        tolerance = 100 * np.finfo(float).eps * abs(observed)
        extreme += int(np.sum(np.abs(null) >= abs(observed) - tolerance))
        total += n
    p = min(1.0, (extreme + 1) / (total + 1))
    n_images = len(units)
    return PairedResult(point_b, point_c, observed, low, high, se, 2.80 * se if math.isfinite(se) else math.nan, p,
                        n_images, config.level, f"sign-flip over images, {total} seeded swaps (rows)",
                        int(np.sum(~np.isfinite(diffs))))


__all__ = ["Summed", "PerRow", "per_row", "SampleStatistics", "mean_of", "estimate_all", "group_estimates",
           "paired_estimate", "paired_estimates", "Paired"]
