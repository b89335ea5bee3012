"""Paired statistics over images: two runs on the same images (``bench compare``), or one image before and
after an edit (the bias probes).

Everything works on PER-IMAGE AGGREGATES: an array [n_images, k] of per-image counts or sums whose column
sums determine the metric. Accuracy comes from per-image (n_correct, n_rows), F1 from (tp, fp, fn), the mean
of a per-image value from (value, 1). A *statistic* maps column sums [m, k] to m values (vectorised over m,
so one call scores a whole block of resamples); `ratio`, `f1` and `mean_over_tasks` build the common ones.
A metric averaged over several tasks with one image draw (the three POPE splits) is a wider aggregate matrix
over the union of their images, with the columns of each task side by side; an image missing from a task
has zero rows there (all zeros in that task's columns). `image_aggregates` builds the matrix from rows.

The image is the unit of resampling (its questions are correlated), and nothing here materialises an
[resamples x rows] or [resamples x images] array: the draws come in blocks of at most `BLOCK_NUMBERS`
numbers, and each block is reduced at once to column sums (``counts_block @ aggregates``).

- `block_counts`: the multinomial image counts of `bootstrap.ImageDraw`, block by block; concatenated they
  are exactly ``ImageDraw(ids, config).counts`` (same seed, same stream), so a metric keeps its numbers.
- `bootstrap_statistic`: value and percentile interval of one statistic, as `bootstrap.estimate` gives.
- `paired_bootstrap`: both runs under the SAME image draw: baseline, candidate, difference (candidate minus
  baseline), its percentile interval, the bootstrap standard error of the difference and the minimum
  detectable effect ``MDE_FACTOR x se`` (2.80 = 1.96 + 0.84: the true difference a two-sided 5% test
  detects with 80% power; fixed, whatever the interval's level).
- `sign_flip_test`: the paired permutation test at the image level (under the null an image's two
  aggregates are exchangeable, so swap them image by image; for a mean of per-image values this is the sign
  flip of the per-image differences). Equal to ``scipy.stats.permutation_test(..., permutation_type=
  "samples", alternative="two-sided")``: exact over all 2^n swaps for small n; otherwise random swaps with
  scipy's convention, p = (count + 1) / (resamples + 1) per side (the observed statistic counts as one
  element of the null distribution, so p is never 0), two-sided p = min(1, 2 x the smaller side), and
  "as extreme" allows scipy's relative tolerance of 100 machine epsilons of the observed value.
- `compare_paired`: `paired_bootstrap` plus `sign_flip_test`, bundled in one `PairedResult` to render.
- `wilcoxon_test`, `mcnemar_exact`, `cohens_dz`: per-image differences or correct flags.
- `holm`, `benjamini_hochberg`: adjusted p-values over a family (NaNs passed through and not counted).

Degenerate cases (each tested):
- all-zero cell (every image's two aggregates equal, e.g. every per-image difference 0): difference 0,
  interval [0, 0], se and MDE 0, sign-flip and Wilcoxon p = 1, d_z = 0 (0/0 is read as "no change").
- one image: every resample draws that image once, so the interval is [d, d] and se = MDE = 0 (the
  bootstrap cannot see variation it has no second image for); the sign-flip p is 1 (the two swaps give d
  and -d); Wilcoxon's p is 1 (scipy's exact n=1 distribution); d_z is NaN (no standard deviation).
- constant non-zero differences (sd 0): d_z is NaN (a standardised effect is undefined without spread);
  the interval collapses to [d, d] for a mean statistic; the tests still give p-values (2 / 2^n exact).
- no images: every paired number is NaN (p-values too; `bootstrap_statistic` gives what `estimate` gives
  on an empty draw); McNemar with no discordant pairs: p = 1.
- NaN statistic in a resample (a ratio whose denominator is zero in that draw): that resample is dropped
  from the interval and the standard error (`PairedResult.nan_resamples` says how many), as
  `bootstrap.interval` does; a NaN point value gives NaN throughout. In the sign-flip test a NaN null value
  counts as not extreme (scipy's comparisons do the same), and a NaN observed value gives p = NaN.
- non-finite aggregates or differences are a one-line `DataError` (dropping images silently would change
  the sample).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError
from .bootstrap import BootstrapConfig, image_counts, interval

Statistic = Callable[[np.ndarray], np.ndarray]
"""Column sums [m, k] -> m metric values."""

BLOCK_NUMBERS = 10_000_000
"""The most numbers one block of bootstrap draws holds ([b, n_images] counts): 80 MB as int64."""

SWAP_BLOCK_NUMBERS = 2_000_000
"""The most swaps one block of the sign-flip test holds ([b, n_images]): 8 MB as float32, small enough to stay in
cache between the bits, their conversion and the product."""

MDE_FACTOR = 2.80
"""z(0.975) + z(0.80): the minimum detectable effect of a two-sided 5% test at 80% power, in standard errors."""

_TIE_EPS = np.finfo(float).eps * 100  # scipy.stats.permutation_test's relative tolerance for ties


# ---------------------------------------------------------------------------------------------- statistics

def ratio(numerator: int, denominator: int, *, zero_division: float = math.nan) -> Statistic:
    """sum(column numerator) / sum(column denominator); ``zero_division`` when the denominator is 0
    (NaN: the resample is dropped from intervals; 0.0 reproduces `classification.binary_metrics`)."""
    def statistic(sums: np.ndarray) -> np.ndarray:
        return _divide(sums[:, numerator], sums[:, denominator], zero_division)
    return statistic


def f1(tp: int = 0, fp: int = 1, fn: int = 2, *, zero_division: float = math.nan) -> Statistic:
    """F1 = 2 tp / (2 tp + fp + fn) from three count columns; ``zero_division`` when all three are 0
    (0.0 reproduces `classification.binary_metrics`, which is 0 whenever tp is 0)."""
    def statistic(sums: np.ndarray) -> np.ndarray:
        return _divide(2 * sums[:, tp], 2 * sums[:, tp] + sums[:, fp] + sums[:, fn], zero_division)
    return statistic


def mean_over_tasks(parts: Sequence[tuple[Statistic, Sequence[int] | slice]]) -> Statistic:
    """The mean of several tasks' metrics, each ``(statistic, its columns)`` of one wide aggregate matrix
    (one image draw shared by all tasks, as the POPE group means)."""
    parts = list(parts)
    if not parts:
        raise ValueError("mean_over_tasks needs at least one task")

    def statistic(sums: np.ndarray) -> np.ndarray:
        return np.mean([stat(sums[:, columns]) for stat, columns in parts], axis=0)
    return statistic


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den != 0, num / np.where(den != 0, den, 1), zero_division)


def image_aggregates(row_image_ids: Sequence[str], values: np.ndarray,
                     units: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """Per-row values [rows, k] summed per image -> (image ids, aggregates [n_images, k]).

    Without ``units`` the images are in order of first appearance, as `bootstrap.ImageDraw` numbers them,
    so the draws of `block_counts` fall on the same images. With ``units`` (e.g. the union over the tasks
    of a group, or over two runs) the rows follow that order and images without rows get zeros.
    """
    units, codes = image_codes(row_image_ids, units)
    return units, sum_by_image(codes, values, len(units))


def image_codes(row_image_ids: Sequence[str], units: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """(image ids, each row's position among them): `image_aggregates`'s numbering, computed once to sum several
    metrics' values of the same rows."""
    import pandas as pd

    if units is None:
        codes, uniques = pd.factorize(pd.Index(list(row_image_ids), dtype=object), sort=False)
        return [str(u) for u in uniques], codes
    units = list(dict.fromkeys(units))
    codes = pd.Index(units, dtype=object).get_indexer(list(row_image_ids))
    if (codes < 0).any():
        missing = row_image_ids[int(np.flatnonzero(codes < 0)[0])]
        raise DataError(f"image {missing!r} of the rows is not among the {len(units)} given images")
    return units, codes


def sum_by_image(codes: np.ndarray, values: np.ndarray, n_images: int) -> np.ndarray:
    """Per-row values [rows, k] summed per image code -> [n_images, k]."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        values = values[:, None]
    if values.ndim != 2 or len(values) != len(codes):
        raise DataError(f"per-row values have shape {values.shape}, expected [{len(codes)}, k]")
    if not n_images:
        return np.zeros((0, values.shape[1]))
    return np.stack([np.bincount(codes, weights=values[:, j], minlength=n_images) for j in range(values.shape[1])],
                    axis=1)


# ---------------------------------------------------------------------------------------------- bootstrap

def _block_rows(n_images: int, block: int | None, total: int) -> int:
    rows = block if block is not None else BLOCK_NUMBERS // max(n_images, 1)
    return max(1, min(int(rows), max(total, 1)))


def block_counts(n_images: int, config: BootstrapConfig, block: int | None = None) -> Iterator[np.ndarray]:
    """The bootstrap's multinomial image counts in blocks [b, n_images] (b = ``block`` rows, default so a
    block holds at most `BLOCK_NUMBERS`); concatenated, exactly ``ImageDraw(ids, config).counts``
    (`bootstrap.image_counts` draws the resamples from the stream in turn, so splitting changes nothing)."""
    rng = np.random.default_rng(config.seed)
    rows = _block_rows(n_images, block, config.resamples)
    for start in range(0, config.resamples, rows):
        yield image_counts(rng, n_images, min(rows, config.resamples - start))


def _resampled_sums(aggregates: np.ndarray, config: BootstrapConfig) -> Iterator[np.ndarray]:
    """Column sums [b, k] of the aggregates under each block of the image draw."""
    for counts in block_counts(len(aggregates), config):
        yield counts @ aggregates


def _point(statistic: Statistic, sums: np.ndarray) -> float:
    value = np.asarray(statistic(sums[None, :]), dtype=float).reshape(-1)
    if value.size != 1:
        raise ValueError(f"a statistic must map column sums [m, k] to m values; it gave {value.size} for m = 1")
    return float(value[0])


def _checked(aggregates: np.ndarray, name: str) -> np.ndarray:
    aggregates = np.asarray(aggregates, dtype=float)
    if aggregates.ndim == 1:
        aggregates = aggregates[:, None]
    if aggregates.ndim != 2:
        raise DataError(f"{name} aggregates must be [n_images, k], got shape {aggregates.shape}")
    if not np.isfinite(aggregates).all():
        raise DataError(f"{name} aggregates contain NaN or infinite values; drop or fill those images first")
    return aggregates


def bootstrap_statistic(aggregates: np.ndarray, statistic: Statistic, config: BootstrapConfig) -> dict[str, float]:
    """Value and percentile interval of ``statistic`` over per-image ``aggregates`` [n, k], resampling
    images: the same numbers as `bootstrap.estimate` with an `ImageDraw` on the rows, in bounded memory.
    Returns ``{"value", "ci_low", "ci_high"}`` (the keys of `estimate`)."""
    aggregates = _checked(aggregates, "the")
    point = _point(statistic, aggregates.sum(0))
    values = np.concatenate([np.asarray(statistic(sums), dtype=float).reshape(-1)
                             for sums in _resampled_sums(aggregates, config)])
    low, high = interval(values, config.level)
    return {"value": point, "ci_low": low, "ci_high": high}


@dataclass(frozen=True)
class PairedResult:
    """One paired comparison, candidate against baseline, on the same images; what compare and bias render.

    ``difference`` = candidate - baseline; ``ci_low``/``ci_high`` its percentile interval (same image draw
    for both runs); ``se`` the bootstrap standard error of the difference; ``mde`` = `MDE_FACTOR` x se;
    ``p_value`` from ``test`` ("none" when only the bootstrap ran); ``nan_resamples`` resamples dropped
    because the difference was NaN there.
    """

    baseline: float
    candidate: float
    difference: float
    ci_low: float
    ci_high: float
    se: float
    mde: float
    p_value: float
    n_images: int
    level: float
    test: str = "none"
    nan_resamples: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def _paired_inputs(base: np.ndarray, cand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    base, cand = _checked(base, "baseline"), _checked(cand, "candidate")
    if base.shape != cand.shape:
        raise DataError(f"baseline aggregates {base.shape} and candidate aggregates {cand.shape} differ in shape; "
                        "align both runs on the same images and columns")
    return base, cand


def paired_bootstrap(base: np.ndarray, cand: np.ndarray, statistic: Statistic,
                     config: BootstrapConfig) -> PairedResult:
    """Baseline and candidate values, their difference and its percentile interval, se and MDE, with the
    same image draw (`block_counts`) for both runs. ``base`` and ``cand`` are [n, k], row i the same image."""
    base, cand = _paired_inputs(base, cand)
    n, k = base.shape
    b_value, c_value = _point(statistic, base.sum(0)), _point(statistic, cand.sum(0))
    both = np.hstack([base, cand])
    diffs = np.concatenate([np.asarray(statistic(sums[:, k:]), dtype=float) - np.asarray(statistic(sums[:, :k]), dtype=float)
                            for sums in _resampled_sums(both, config)])
    valid = diffs[~np.isnan(diffs)]
    low, high = interval(valid, config.level) if n else (math.nan, math.nan)
    se = float(np.std(valid, ddof=1)) if n and valid.size > 1 else math.nan
    return PairedResult(baseline=b_value, candidate=c_value, difference=c_value - b_value, ci_low=low, ci_high=high,
                        se=se, mde=MDE_FACTOR * se, p_value=math.nan, n_images=n, level=config.level,
                        nan_resamples=int(diffs.size - valid.size))


# ---------------------------------------------------------------------------------------------- tests

@dataclass(frozen=True)
class PermutationResult:
    """``statistic`` = statistic(candidate) - statistic(baseline); ``permutations`` the swaps evaluated
    (2^n when ``exact``); ``p_value`` two-sided."""

    statistic: float
    p_value: float
    permutations: int
    exact: bool


def sign_flip_test(base: np.ndarray, cand: np.ndarray, statistic: Statistic, resamples: int = 10000,
                   seed: int = 0, exact_up_to: int = 16) -> PermutationResult:
    """Paired permutation test: swap each image's baseline and candidate aggregates independently.

    Exact over all 2^n swaps when n <= ``exact_up_to`` (or when 2^n <= ``resamples``, as scipy decides);
    otherwise ``resamples`` random swaps from ``numpy.random.default_rng(seed)``, drawn in blocks, with
    scipy's +1 correction (module docstring). A swap set s (1 = swapped) has sums
    cand + s @ (base - cand) and base - s @ (base - cand), so a block is one matrix product.
    """
    base, cand = _paired_inputs(base, cand)
    n = len(base)
    if resamples < 1:
        raise ValueError("resamples must be at least 1")
    if exact_up_to > 30:
        raise ValueError("exact_up_to must be at most 30 (2^30 swaps)")
    if n == 0:
        return PermutationResult(math.nan, math.nan, 0, True)
    delta = base - cand
    b_total, c_total = base.sum(0), cand.sum(0)
    observed = float(np.asarray(statistic(c_total[None, :]), dtype=float)[0]
                     - np.asarray(statistic(b_total[None, :]), dtype=float)[0])
    exact = _is_exact(n, resamples, exact_up_to)
    total = 2 ** n if exact else int(resamples)
    if math.isnan(observed):
        return PermutationResult(observed, math.nan, total, exact)
    gamma = abs(_TIE_EPS * observed)
    less = greater = 0
    for shift in null_shifts(delta, total, exact, seed):
        values = (np.asarray(statistic(c_total + shift), dtype=float)
                  - np.asarray(statistic(b_total - shift), dtype=float))
        less += int(np.count_nonzero(values <= observed + gamma))
        greater += int(np.count_nonzero(values >= observed - gamma))
    adjustment = 0 if exact else 1
    p = 2 * min(less + adjustment, greater + adjustment) / (total + adjustment)
    return PermutationResult(observed, float(min(p, 1.0)), total, exact)


def _is_exact(n: int, resamples: int, exact_up_to: int) -> bool:
    return n <= exact_up_to or (n < 62 and 2 ** n <= resamples)


def _shift_dtype(delta: np.ndarray) -> type:
    """float32 when every partial sum of ``swaps @ delta`` is an integer below 2^24 (then float32 is exact, and
    the product reads half the memory); float64 otherwise."""
    integral = bool(np.all(delta == np.round(delta)))
    return np.float32 if integral and float(np.abs(delta).sum(0).max(initial=0.0)) <= 2 ** 24 else np.float64


def null_shifts(delta: np.ndarray, total: int, exact: bool, seed: int) -> Iterator[np.ndarray]:
    """``swaps @ delta`` block by block [b, k], for the swap sets of the sign-flip test: all 2^n in order when
    ``exact``, else ``total`` random ones. A random swap set is n fair bits taken from the raw 64-bit output of
    ``numpy.random.default_rng(seed)`` (64 images per word, little-endian bit order), so the swaps are the same
    whatever the block size, and the same for one metric or several compared at once."""
    n = len(delta)
    dtype = _shift_dtype(delta)
    weights = np.ascontiguousarray(delta, dtype=dtype)
    rows = max(1, min(total, SWAP_BLOCK_NUMBERS // max(n, 1)))
    if exact:
        bits = np.arange(n, dtype=np.int64)
        for start in range(0, total, rows):
            swaps = (np.arange(start, min(start + rows, total), dtype=np.int64)[:, None] >> bits) & 1
            yield swaps.astype(dtype) @ weights
        return
    words = (n + 63) // 64
    generator = np.random.default_rng(seed).bit_generator
    buffer = np.empty((rows, n), dtype=dtype)
    for start in range(0, total, rows):
        b = min(rows, total - start)
        raw = generator.random_raw(size=(b, words)).astype("<u8", copy=False)
        bits = np.unpackbits(raw.view(np.uint8), axis=1, count=n, bitorder="little")
        np.copyto(buffer[:b], bits)
        yield buffer[:b] @ weights


def compare_paired(base: np.ndarray, cand: np.ndarray, statistic: Statistic, config: BootstrapConfig,
                   test_resamples: int = 10000, exact_up_to: int = 16) -> PairedResult:
    """`paired_bootstrap` with the p-value of `sign_flip_test` (seeded with ``config.seed``)."""
    result = paired_bootstrap(base, cand, statistic, config)
    test = sign_flip_test(base, cand, statistic, resamples=test_resamples, seed=config.seed, exact_up_to=exact_up_to)
    kind = "exact" if test.exact else f"{test.permutations} random"
    return PairedResult(**{**result.as_dict(), "p_value": test.p_value,
                           "test": f"paired sign-flip permutation test over images, {kind} swaps, two-sided"})


def compare_paired_many(pairs: Sequence[tuple[np.ndarray, np.ndarray, Statistic]], config: BootstrapConfig,
                        test_resamples: int = 10000, exact_up_to: int = 16) -> list[PairedResult]:
    """`compare_paired` for several metrics of the same images at once: one pass over the bootstrap draw and one over
    the swaps serve them all (the draws, not the metrics, are the cost on large runs). Each pair is (base [n, k_i],
    cand [n, k_i], statistic); the results equal `compare_paired` on each pair alone."""
    if not pairs:
        return []
    checked = [_paired_inputs(b, c) for b, c, _ in pairs]
    n = len(checked[0][0])
    if any(len(b) != n for b, _ in checked):
        raise DataError("every metric compared at once must cover the same images")
    if _is_exact(n, test_resamples, exact_up_to):
        return [compare_paired(b, c, stat, config, test_resamples, exact_up_to) for (b, c), (_, _, stat) in zip(checked, pairs)]
    widths = [b.shape[1] for b, _ in checked]
    edges = np.cumsum([0] + widths)
    base = np.hstack([b for b, _ in checked])
    cand = np.hstack([c for _, c in checked])
    stats = [stat for _, _, stat in pairs]
    parts = [slice(edges[i], edges[i + 1]) for i in range(len(stats))]

    def each(sums_b: np.ndarray, sums_c: np.ndarray) -> list[np.ndarray]:
        return [np.asarray(st(sums_c[:, sl]), dtype=float) - np.asarray(st(sums_b[:, sl]), dtype=float)
                for st, sl in zip(stats, parts)]

    b_tot, c_tot = base.sum(0), cand.sum(0)
    points_b = [_point(st, b_tot[sl]) for st, sl in zip(stats, parts)]
    points_c = [_point(st, c_tot[sl]) for st, sl in zip(stats, parts)]
    both = np.hstack([base, cand])
    k = base.shape[1]
    boot: list[list[np.ndarray]] = [[] for _ in stats]
    for counts in block_counts(n, config):
        sums = counts @ both
        for i, d in enumerate(each(sums[:, :k], sums[:, k:])):
            boot[i].append(d)
    observed = [c - b for b, c in zip(points_b, points_c)]
    less, greater = [0] * len(stats), [0] * len(stats)
    for shift in null_shifts(base - cand, test_resamples, False, config.seed):
        for i, values in enumerate(each(b_tot - shift, c_tot + shift)):
            gamma = abs(_TIE_EPS * observed[i])
            less[i] += int(np.count_nonzero(values <= observed[i] + gamma))
            greater[i] += int(np.count_nonzero(values >= observed[i] - gamma))
    out = []
    for i in range(len(stats)):
        diffs = np.concatenate(boot[i])
        valid = diffs[~np.isnan(diffs)]
        low, high = interval(valid, config.level)
        se = float(np.std(valid, ddof=1)) if valid.size > 1 else math.nan
        p = float(min(1.0, 2 * min(less[i] + 1, greater[i] + 1) / (test_resamples + 1))) if not math.isnan(observed[i]) else math.nan
        out.append(PairedResult(points_b[i], points_c[i], observed[i], low, high, se, MDE_FACTOR * se, p, n, config.level,
                                f"paired sign-flip permutation test over images, {test_resamples} random swaps, two-sided",
                                int(diffs.size - valid.size)))
    return out


def _diffs(diffs: np.ndarray) -> np.ndarray:
    diffs = np.asarray(diffs, dtype=float).reshape(-1)
    if not np.isfinite(diffs).all():
        raise DataError("per-image differences contain NaN or infinite values; drop or fill those images first")
    return diffs


@dataclass(frozen=True)
class SignedRankResult:
    """Wilcoxon's statistic (scipy's: the smaller rank sum for the two-sided test) and its p-value."""

    statistic: float
    p_value: float


def wilcoxon_test(diffs: np.ndarray) -> SignedRankResult:
    """Wilcoxon signed-rank test of per-image differences, ``scipy.stats.wilcoxon(zero_method="pratt",
    alternative="two-sided")`` (Pratt keeps the zeros in the ranking, then drops their ranks).
    No differences: NaN; all differences 0: statistic 0, p = 1 (defined here, without calling scipy)."""
    from scipy import stats

    diffs = _diffs(diffs)
    if diffs.size == 0:
        return SignedRankResult(math.nan, math.nan)
    if not diffs.any():
        return SignedRankResult(0.0, 1.0)
    result = stats.wilcoxon(diffs, zero_method="pratt", alternative="two-sided")
    return SignedRankResult(float(result.statistic), float(result.pvalue))


@dataclass(frozen=True)
class McNemarResult:
    """``b``: pairs only the baseline got right; ``c``: pairs only the candidate got right."""

    b: int
    c: int
    p_value: float


def mcnemar_exact(base_correct: np.ndarray, cand_correct: np.ndarray) -> McNemarResult:
    """Exact McNemar test: two-sided binomial test of b against b + c discordant pairs at 0.5
    (``scipy.stats.binomtest``); p = 1 with no discordant pair."""
    from scipy import stats

    base_correct = np.asarray(base_correct, dtype=bool).reshape(-1)
    cand_correct = np.asarray(cand_correct, dtype=bool).reshape(-1)
    if base_correct.shape != cand_correct.shape:
        raise DataError(f"McNemar needs paired outcomes: {base_correct.size} baseline and {cand_correct.size} "
                        "candidate values")
    b = int(np.count_nonzero(base_correct & ~cand_correct))
    c = int(np.count_nonzero(~base_correct & cand_correct))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return McNemarResult(b, c, p)


def cohens_dz(diffs: np.ndarray) -> float:
    """Cohen's d_z = mean / sd (ddof 1) of per-image differences; 0 when all are 0, NaN with fewer than two
    images or constant non-zero differences (no spread to standardise by)."""
    diffs = _diffs(diffs)
    if diffs.size and not diffs.any():
        return 0.0
    if diffs.size < 2:
        return math.nan
    sd = float(np.std(diffs, ddof=1))
    return float(np.mean(diffs)) / sd if sd > 0 else math.nan


# ---------------------------------------------------------------------------------------------- multiplicity

def _finite_p(pvalues: Sequence[float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.asarray(pvalues, dtype=float).reshape(-1)
    keep = ~np.isnan(p)
    if ((p[keep] < 0) | (p[keep] > 1)).any():
        raise ValueError("p-values must lie in [0, 1]")
    return p, keep, p[keep]


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values: sorted ascending, max over j <= i of (m - j + 1) p_(j), at most 1.
    NaNs stay NaN and do not count towards m."""
    p, keep, x = _finite_p(pvalues)
    out = p.copy()
    m = x.size
    if m:
        order = np.argsort(x, kind="mergesort")
        scaled = np.minimum(1.0, (m - np.arange(m)) * x[order])
        adjusted = np.empty(m)
        adjusted[order] = np.maximum.accumulate(scaled)
        out[keep] = adjusted
    return out


def benjamini_hochberg(pvalues: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate): sorted ascending, min over j >= i of
    m p_(j) / j, at most 1. NaNs stay NaN and do not count towards m."""
    p, keep, x = _finite_p(pvalues)
    out = p.copy()
    m = x.size
    if m:
        order = np.argsort(x, kind="mergesort")
        scaled = x[order] * m / np.arange(1, m + 1)
        adjusted = np.empty(m)
        adjusted[order] = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
        out[keep] = adjusted
    return out
