"""Paired statistics (bench.metrics.paired) against scipy, brute force over ImageDraw, and hand-worked cases."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
from scipy import stats

from bench.errors import DataError
from bench.metrics.bootstrap import BootstrapConfig, ImageDraw, estimate, interval, on_rows
from bench.metrics.classification import binary_metrics
from bench.metrics.paired import (
    MDE_FACTOR, benjamini_hochberg, block_counts, bootstrap_statistic, cohens_dz, compare_paired, f1, holm,
    image_aggregates, mcnemar_exact, mean_over_tasks, paired_bootstrap, ratio, sign_flip_test, wilcoxon_test,
)

MEAN = ratio(0, 1)  # the mean of a per-image value from aggregates (value, 1)


def _rows(rng, n_images, max_rows=6):
    """Rows of a yes/no task: image ids, predictions and labels, 1..max_rows rows per image."""
    per_image = rng.integers(1, max_rows + 1, size=n_images)
    ids = np.repeat([f"img{i}" for i in range(n_images)], per_image)
    order = rng.permutation(len(ids))  # rows of an image are not contiguous
    ids = ids[order]
    label = rng.random(len(ids)) < 0.5
    pred = np.where(rng.random(len(ids)) < 0.75, label, ~label)
    return ids.tolist(), pred, label


def _confusion(pred, label):
    """Per-row columns (correct, 1, tp, fp, fn)."""
    return np.stack([pred == label, np.ones_like(pred), pred & label, pred & ~label, ~pred & label], axis=1)


# ------------------------------------------------------------------------------------------ the draw

@pytest.mark.parametrize("block", [None, 1, 7, 64, 5000])
def test_block_counts_concatenate_to_image_draw(block):
    config = BootstrapConfig(resamples=200, seed=11)
    ids = [f"i{j}" for j in range(37)]
    blocks = list(block_counts(len(ids), config, block))
    assert all(len(b) <= (block or 200) for b in blocks)
    np.testing.assert_array_equal(np.concatenate(blocks), ImageDraw(ids, config).counts)


def test_block_counts_without_images():
    config = BootstrapConfig(resamples=5)
    assert np.concatenate(list(block_counts(0, config, 2))).shape == (5, 0)


def test_image_aggregates_follow_image_draw_order_and_given_units():
    ids = ["b", "a", "b", "c", "a"]
    units, agg = image_aggregates(ids, np.array([[1, 1], [0, 1], [1, 1], [1, 1], [1, 1]]))
    assert units == list(ImageDraw(ids, BootstrapConfig()).units) == ["b", "a", "c"]
    np.testing.assert_array_equal(agg, [[2, 2], [1, 2], [1, 1]])
    units, agg = image_aggregates(ids, np.ones(5), units=["c", "z", "a", "b"])
    np.testing.assert_array_equal(agg[:, 0], [1, 0, 2, 2])
    with pytest.raises(DataError, match="'a'"):
        image_aggregates(ids, np.ones(5), units=["b", "c"])


# ------------------------------------------------------------------------------------------ bootstrap

def test_bootstrap_statistic_equals_estimate_on_rows():
    rng = np.random.default_rng(0)
    ids, pred, label = _rows(rng, 60)
    config = BootstrapConfig(resamples=300, seed=5)
    draw = ImageDraw(ids, config)
    _, agg = image_aggregates(ids, _confusion(pred, label))
    for name, stat in [("accuracy", ratio(0, 1, zero_division=0.0)), ("f1", f1(2, 3, 4, zero_division=0.0)),
                       ("yes_ratio", lambda s: (s[:, 2] + s[:, 3]) / s[:, 1])]:
        expected = estimate(on_rows(lambda w, n=name: binary_metrics(pred, label, w)[n], ids), draw, config.level)
        got = bootstrap_statistic(agg, stat, config)
        assert got == pytest.approx(expected, rel=1e-12), name


def test_group_mean_equals_shared_draw_over_tasks():
    """Three tasks on overlapping images, one draw over the union (as POPE's group metrics)."""
    rng = np.random.default_rng(1)
    config = BootstrapConfig(resamples=200, seed=2)
    tasks = []
    for size, keep in [(30, 30), (30, 20), (30, 12)]:
        ids, pred, label = _rows(rng, size)
        subset = {f"img{i}" for i in rng.choice(size, keep, replace=False)}
        mask = np.array([i in subset for i in ids])
        tasks.append(([i for i, m in zip(ids, mask) if m], pred[mask], label[mask]))
    union = [i for ids, _, _ in tasks for i in ids]
    draw = ImageDraw(union, config)
    per_task = [on_rows(lambda w, p=p, l=l: binary_metrics(p, l, w)["f1"], ids) for ids, p, l in tasks]
    expected = estimate(lambda d: np.mean([s(d) for s in per_task], axis=0), draw, config.level)

    units = list(draw.units)
    agg = np.hstack([image_aggregates(ids, _confusion(p, l)[:, 2:], units=units)[1] for ids, p, l in tasks])
    stat = mean_over_tasks([(f1(zero_division=0.0), slice(3 * t, 3 * t + 3)) for t in range(3)])
    assert bootstrap_statistic(agg, stat, config) == pytest.approx(expected, rel=1e-12)


def test_paired_bootstrap_equals_brute_force_with_one_draw():
    rng = np.random.default_rng(3)
    n = 80
    base = np.stack([rng.integers(0, 5, n), np.full(n, 5)], axis=1).astype(float)   # (n_correct, n_rows)
    cand = np.stack([np.minimum(5, base[:, 0] + rng.integers(-1, 3, n)), base[:, 1]], axis=1)
    config = BootstrapConfig(resamples=400, seed=9)
    counts = ImageDraw([f"i{j}" for j in range(n)], config).counts.astype(float)
    diffs = (counts @ cand[:, 0]) / (counts @ cand[:, 1]) - (counts @ base[:, 0]) / (counts @ base[:, 1])
    result = paired_bootstrap(base, cand, ratio(0, 1), config)
    assert result.baseline == pytest.approx(base[:, 0].sum() / base[:, 1].sum())
    assert result.candidate == pytest.approx(cand[:, 0].sum() / cand[:, 1].sum())
    assert result.difference == pytest.approx(result.candidate - result.baseline)
    low, high = interval(diffs, config.level)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), rel=1e-12)
    assert result.se == pytest.approx(np.std(diffs, ddof=1), rel=1e-12)
    assert result.mde == pytest.approx(MDE_FACTOR * result.se)
    assert result.n_images == n and result.nan_resamples == 0 and math.isnan(result.p_value)


def test_nan_resamples_are_dropped_from_interval_and_se():
    """F1 of a rare class: resamples that draw no positive at all have 0/0 and are dropped."""
    n = 12
    base = np.zeros((n, 3))
    cand = np.zeros((n, 3))
    base[0] = [1, 0, 0]
    cand[0] = [1, 1, 0]
    config = BootstrapConfig(resamples=500, seed=4)
    counts = ImageDraw([str(j) for j in range(n)], config).counts.astype(float)
    b, c = counts @ base, counts @ cand
    with np.errstate(invalid="ignore"):
        diffs = 2 * c[:, 0] / (2 * c[:, 0] + c[:, 1] + c[:, 2]) - 2 * b[:, 0] / (2 * b[:, 0] + b[:, 1] + b[:, 2])
    dropped = int(np.isnan(diffs).sum())
    assert dropped > 0
    result = paired_bootstrap(base, cand, f1(), config)
    assert result.nan_resamples == dropped
    assert (result.ci_low, result.ci_high) == pytest.approx(interval(diffs, config.level))
    assert result.se == pytest.approx(np.nanstd(diffs, ddof=1))
    assert result.difference == pytest.approx(2 / 3 - 1)


def test_mismatched_or_non_finite_aggregates_are_data_errors():
    with pytest.raises(DataError, match="differ in shape"):
        paired_bootstrap(np.ones((3, 2)), np.ones((4, 2)), MEAN, BootstrapConfig(resamples=5))
    with pytest.raises(DataError, match="NaN"):
        sign_flip_test(np.array([[np.nan, 1.0]]), np.ones((1, 2)), MEAN)
    with pytest.raises(DataError, match="NaN"):
        cohens_dz([1.0, np.nan])


# ------------------------------------------------------------------------------------------ sign flip

def _scipy_paired(base, cand, statistic, **kwargs):
    """scipy.stats.permutation_test on image indices: swapping x_i and y_i swaps image i's aggregates."""
    n = len(base)
    stacked = np.vstack([base, cand])

    def diff(x, y, axis=-1):
        return statistic(stacked[y].sum(-2)) - statistic(stacked[x].sum(-2))

    def vectorised(x, y, axis=-1):
        x, y = np.atleast_2d(x), np.atleast_2d(y)
        return np.array([diff(a, b_) for a, b_ in zip(x, y)]).reshape(np.shape(x)[:-1])

    return stats.permutation_test((np.arange(n), np.arange(n, 2 * n)), vectorised, vectorized=True,
                                  permutation_type="samples", alternative="two-sided", **kwargs)


def _scalar(statistic):
    return lambda sums: float(np.asarray(statistic(np.asarray(sums, float)[None, :]))[0])


def test_sign_flip_exact_equals_scipy_for_a_mean():
    rng = np.random.default_rng(5)
    n = 11
    before = rng.normal(size=n)
    after = before + rng.normal(0.4, 1.0, size=n)
    base, cand = np.stack([before, np.ones(n)], 1), np.stack([after, np.ones(n)], 1)
    ours = sign_flip_test(base, cand, MEAN)
    assert ours.exact and ours.permutations == 2 ** n
    reference = stats.permutation_test((after - before,), np.mean, vectorized=True, n_resamples=np.inf,
                                       permutation_type="samples", alternative="two-sided")
    assert ours.statistic == pytest.approx(reference.statistic)
    assert ours.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    assert ours.p_value == pytest.approx(_scipy_paired(base, cand, _scalar(MEAN), n_resamples=np.inf).pvalue)
    assert 0 < ours.p_value < 1


@pytest.mark.parametrize("which", ["accuracy", "f1"])
def test_sign_flip_exact_equals_scipy_for_a_ratio_of_sums(which):
    rng = np.random.default_rng(6)
    n = 10
    ids, pred_b, label = _rows(rng, n, max_rows=8)
    pred_c = np.where(rng.random(len(ids)) < 0.3, label, pred_b)  # the candidate fixes some answers
    units, base = image_aggregates(ids, _confusion(pred_b, label))
    _, cand = image_aggregates(ids, _confusion(pred_c, label), units=units)
    stat = ratio(0, 1) if which == "accuracy" else f1(2, 3, 4)
    ours = sign_flip_test(base, cand, stat)
    reference = _scipy_paired(base, cand, _scalar(stat), n_resamples=np.inf)
    assert ours.statistic == pytest.approx(reference.statistic)
    assert ours.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    assert ours.p_value < 1  # a real effect, not a degenerate 1


def test_sign_flip_counts_rounding_ties_as_scipy_does():
    """F1 differences of theoretically equal value that differ in the last bits (different fractions):
    scipy's relative tolerance counts them as ties; without it this p-value would be 0.7109375."""
    base = np.array([[2, 3, 3], [2, 3, 2], [2, 2, 0], [1, 1, 3], [0, 2, 2], [2, 2, 3], [1, 0, 0], [3, 0, 2]], float)
    cand = np.array([[2, 3, 2], [2, 0, 0], [2, 3, 2], [3, 0, 2], [0, 0, 1], [0, 2, 2], [1, 0, 1], [2, 3, 1]], float)
    ours = sign_flip_test(base, cand, f1())
    reference = _scipy_paired(base, cand, _scalar(f1()), n_resamples=np.inf)
    assert ours.p_value == pytest.approx(reference.pvalue, abs=1e-12)
    assert ours.p_value == pytest.approx(0.734375)


def test_sign_flip_randomised_uses_scipys_plus_one_correction():
    n, resamples = 40, 999
    before = np.zeros(n)
    after = np.linspace(1, 2, n)  # every image improves: only the identity swap is as extreme (chance 2^-40)
    base, cand = np.stack([before, np.ones(n)], 1), np.stack([after, np.ones(n)], 1)
    ours = sign_flip_test(base, cand, MEAN, resamples=resamples, seed=1)
    assert not ours.exact and ours.permutations == resamples
    assert ours.p_value == pytest.approx(2 / (resamples + 1))
    reference = stats.permutation_test((after - before,), np.mean, vectorized=True, n_resamples=resamples,
                                       permutation_type="samples", alternative="two-sided", rng=1)
    assert ours.p_value == pytest.approx(reference.pvalue)


def test_sign_flip_randomised_agrees_with_scipy_and_is_seeded():
    rng = np.random.default_rng(7)
    n = 30
    before = rng.normal(size=n)
    after = before + rng.normal(0.35, 1.0, size=n)
    base, cand = np.stack([before, np.ones(n)], 1), np.stack([after, np.ones(n)], 1)
    ours = sign_flip_test(base, cand, MEAN, resamples=20000, seed=3)
    reference = stats.permutation_test((after - before,), np.mean, vectorized=True, n_resamples=20000,
                                       permutation_type="samples", alternative="two-sided", rng=3)
    assert 0.01 < reference.pvalue < 0.5
    assert ours.p_value == pytest.approx(reference.pvalue, abs=0.015)  # Monte Carlo error ~0.004
    assert sign_flip_test(base, cand, MEAN, resamples=20000, seed=3) == ours
    assert sign_flip_test(base, cand, MEAN, resamples=20000, seed=4).p_value != ours.p_value
    assert not sign_flip_test(base[:17], cand[:17], MEAN, resamples=1000).exact
    assert sign_flip_test(base[:17], cand[:17], MEAN, resamples=2 ** 17).exact


# ------------------------------------------------------------------------------------------ other tests

def test_wilcoxon_equals_scipy_pratt():
    rng = np.random.default_rng(8)
    diffs = np.round(rng.normal(0.3, 1.0, size=40), 1)
    diffs[:5] = 0.0
    ours = wilcoxon_test(diffs)
    reference = stats.wilcoxon(diffs, zero_method="pratt", alternative="two-sided")
    assert (ours.statistic, ours.p_value) == pytest.approx((reference.statistic, reference.pvalue))


def test_mcnemar_equals_binomtest_on_discordant_pairs():
    base = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 1, 1], bool)
    cand = np.array([1, 0, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1], bool)
    result = mcnemar_exact(base, cand)
    assert (result.b, result.c) == (2, 4)   # only base right: images 1, 8; only candidate: 3, 4, 6, 9
    assert result.p_value == pytest.approx(stats.binomtest(2, 6, 0.5).pvalue)
    assert result.p_value == pytest.approx(2 * (1 + 6 + 15) / 64)  # hand: 2 P(X <= 2), X ~ Bin(6, 1/2)
    assert mcnemar_exact(base, base).p_value == 1.0
    with pytest.raises(DataError):
        mcnemar_exact(base, cand[:-1])


def test_cohens_dz_by_hand():
    # mean 2, deviations -1, 0, 1 -> sd 1
    assert cohens_dz([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert cohens_dz([-1.0, 0.0, 1.0, 4.0]) == pytest.approx(1.0 / np.std([-1, 0, 1, 4], ddof=1))


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.03, 0.04 (m = 4): x4, x3, x2, x1 -> 0.04, 0.06, 0.06, 0.04 -> running max
    p = [0.03, 0.01, np.nan, 0.04, 0.02]
    np.testing.assert_allclose(holm(p), [0.06, 0.04, np.nan, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.3]), [0.6, 0.6])   # 2 x 0.3 = 0.6; min(1, 0.5) -> max 0.6
    np.testing.assert_allclose(holm([0.6, 0.9]), [1.0, 1.0])    # clipped
    assert holm([]).size == 0


def test_benjamini_hochberg_by_hand_and_against_scipy():
    # sorted 0.01, 0.02, 0.03, 0.5 (m = 4): x4/1, x4/2, x4/3, x4/4 -> 0.04, 0.04, 0.04, 0.5
    p = [0.5, np.nan, 0.02, 0.01, 0.03]
    np.testing.assert_allclose(benjamini_hochberg(p), [0.5, np.nan, 0.04, 0.04, 0.04])
    # 0.04 x 3/2 = 0.06, 0.045 x 3/3 = 0.045 -> step-up min: 0.045, 0.045; 0.001 x 3 = 0.003
    np.testing.assert_allclose(benjamini_hochberg([0.04, 0.001, 0.045]), [0.045, 0.003, 0.045])
    rng = np.random.default_rng(9)
    q = np.concatenate([rng.random(30), rng.random(10) * 0.01])
    np.testing.assert_allclose(benjamini_hochberg(q), stats.false_discovery_control(q))
    assert np.all(benjamini_hochberg(q) <= 1) and np.all(holm(q) >= benjamini_hochberg(q))


# ------------------------------------------------------------------------------------------ degenerate

def test_all_zero_cell():
    n = 25
    values = np.random.default_rng(10).normal(size=n)
    base = np.stack([values, np.ones(n)], 1)
    result = compare_paired(base, base.copy(), MEAN, BootstrapConfig(resamples=200))
    assert (result.difference, result.ci_low, result.ci_high, result.se, result.mde) == (0, 0, 0, 0, 0)
    assert result.p_value == 1.0
    assert sign_flip_test(base, base, MEAN, resamples=500).p_value == 1.0  # randomised too
    assert wilcoxon_test(np.zeros(n)).p_value == 1.0
    assert cohens_dz(np.zeros(n)) == 0.0


def test_one_image():
    base, cand = np.array([[0.2, 1.0]]), np.array([[0.7, 1.0]])
    result = compare_paired(base, cand, MEAN, BootstrapConfig(resamples=50))
    assert result.difference == pytest.approx(0.5)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.5, 0.5))
    assert result.se == 0 and result.mde == 0 and result.p_value == 1.0 and result.n_images == 1
    assert wilcoxon_test([0.5]).p_value == 1.0
    assert math.isnan(cohens_dz([0.5]))


def test_constant_non_zero_differences():
    n = 6
    base = np.stack([np.arange(n, dtype=float), np.ones(n)], 1)
    cand = base + [0.25, 0.0]
    result = compare_paired(base, cand, MEAN, BootstrapConfig(resamples=100))
    assert (result.difference, result.ci_low, result.ci_high) == pytest.approx((0.25, 0.25, 0.25))
    assert result.se == pytest.approx(0, abs=1e-12)
    assert result.p_value == pytest.approx(2 / 2 ** n)   # only the identity and the full swap are as extreme
    assert math.isnan(cohens_dz(np.full(n, 0.25)))
    assert wilcoxon_test(np.full(n, 0.25)).p_value == pytest.approx(stats.wilcoxon(np.full(n, 0.25)).pvalue)


def test_no_images():
    empty = np.zeros((0, 2))
    result = compare_paired(empty, empty, MEAN, BootstrapConfig(resamples=20))
    assert result.n_images == 0
    assert all(math.isnan(v) for v in (result.difference, result.ci_low, result.ci_high, result.se, result.p_value))
    assert math.isnan(wilcoxon_test([]).p_value) and math.isnan(cohens_dz([]))


# ------------------------------------------------------------------------------------------ scale

def test_million_rows_hundred_thousand_images_in_bounded_memory():
    """1e6 rows in 1e5 images, 1,000 resamples: a [1000 x 100000] array alone would be 800 MB."""
    rng = np.random.default_rng(12)
    n_images, n_rows = 100_000, 1_000_000
    image = rng.integers(0, n_images, n_rows)
    image[:n_images] = np.arange(n_images)  # every image has a row
    ids = np.char.add("im", image.astype(str)).tolist()
    correct_b = rng.random(n_rows) < 0.80
    correct_c = np.where(rng.random(n_rows) < 0.05, True, correct_b)  # the candidate fixes ~1% of rows
    units, base = image_aggregates(ids, np.stack([correct_b, np.ones(n_rows)], 1))
    _, cand = image_aggregates(ids, np.stack([correct_c, np.ones(n_rows)], 1), units=units)
    assert len(units) == n_images and base[:, 1].sum() == n_rows
    del ids

    tracemalloc.start()
    result = compare_paired(base, cand, ratio(0, 1), BootstrapConfig(resamples=1000, seed=0), test_resamples=1000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 400e6
    assert result.n_images == n_images
    assert result.difference == pytest.approx(correct_c.mean() - correct_b.mean())
    assert result.ci_low < result.difference < result.ci_high
    assert 0 < result.se < 0.01 and result.mde == pytest.approx(MDE_FACTOR * result.se)
    assert result.p_value == pytest.approx(2 / 1001)  # a ~1-point gain over 1e5 images is beyond every swap


def test_many_metrics_at_once_equal_each_alone():
    from bench.metrics.bootstrap import BootstrapConfig
    from bench.metrics.paired import compare_paired, compare_paired_many, f1, ratio

    rng = np.random.default_rng(5)
    n = 40
    base = rng.integers(0, 4, size=(n, 3)).astype(float)
    cand = rng.integers(0, 4, size=(n, 3)).astype(float)
    mean_b, mean_c = np.c_[rng.random(n), np.ones(n)], np.c_[rng.random(n) + 0.1, np.ones(n)]
    config = BootstrapConfig(300, 2)
    pairs = [(base, cand, f1(0, 1, 2, zero_division=0.0)), (mean_b, mean_c, ratio(0, 1)), (base, cand, ratio(0, 2))]
    many = compare_paired_many(pairs, config, test_resamples=2000)
    for (b, c, stat), got in zip(pairs, many):
        alone = compare_paired(b, c, stat, config, test_resamples=2000)
        for field in ("baseline", "candidate", "difference", "ci_low", "ci_high", "se", "mde", "p_value"):
            assert getattr(got, field) == pytest.approx(getattr(alone, field), rel=1e-12, abs=1e-12), field


# ------------------------------------------------------------------------------------------ the swaps and the sort

def test_swaps_are_the_same_whatever_the_block_size(monkeypatch):
    import bench.metrics.paired as paired

    rng = np.random.default_rng(8)
    delta = rng.integers(-3, 4, size=(150, 2)).astype(float)  # 150 images: three 64-bit words per swap set
    whole = np.concatenate(list(paired.null_shifts(delta, 500, False, seed=4)))
    monkeypatch.setattr(paired, "SWAP_BLOCK_NUMBERS", 150 * 7)  # blocks of 7 swap sets
    blocked = np.concatenate(list(paired.null_shifts(delta, 500, False, seed=4)))
    np.testing.assert_array_equal(whole, blocked)
    # each image is swapped in about half the sets, independently of the others
    swapped = np.concatenate(list(paired.null_shifts(np.eye(150), 500, False, seed=4)))
    assert set(np.unique(swapped)) == {0.0, 1.0}
    assert abs(swapped.mean() - 0.5) < 0.01 and np.abs(np.corrcoef(swapped[:, :20].T)[np.triu_indices(20, 1)]).max() < 0.2


def test_integer_shifts_in_float32_equal_float64():
    import bench.metrics.paired as paired

    rng = np.random.default_rng(9)
    delta = rng.integers(-40, 41, size=(3000, 3)).astype(float)
    assert paired._shift_dtype(delta) is np.float32
    widened = np.c_[delta, np.full(len(delta), 0.5)]  # a non-integer column: the product runs in float64
    assert paired._shift_dtype(widened) is np.float64
    narrow = np.concatenate(list(paired.null_shifts(delta, 300, False, seed=1)))
    wide = np.concatenate(list(paired.null_shifts(widened, 300, False, seed=1)))
    np.testing.assert_array_equal(narrow, wide[:, :3])
    assert paired._shift_dtype(np.full((2, 1), 2.0 ** 24)) is np.float64  # a partial sum could pass 2^24


def test_auroc_sorted_once_equals_sorting_every_time():
    from bench.metrics.classification import RankedScores, auroc
    from bench.metrics.contract import SampleStatistics, paired_estimate, per_row

    rng = np.random.default_rng(10)
    ids = [f"i{k}" for k in rng.integers(0, 40, 300)]
    label = rng.random(300) < 0.4
    runs = []
    for shift in (0.0, 0.3):
        scores = np.round(rng.random(300) + shift * label, 2)  # rounded: ties
        plain, prepared = SampleStatistics(ids), SampleStatistics(ids)
        plain.metrics["auroc"] = per_row(auroc, scores, label)
        prepared.metrics["auroc"] = per_row(auroc, scores, label, prepare=RankedScores)
        runs.append((plain, prepared))
    weights = rng.poisson(1.0, size=(5, 300)).astype(float)
    np.testing.assert_allclose(runs[0][1].metrics["auroc"](weights), auroc(runs[0][0].metrics["auroc"].arrays[0], label, weights))
    config = BootstrapConfig(200, 3)
    slow = paired_estimate(runs[0][0], runs[1][0], "auroc", config, resamples=200).result
    fast = paired_estimate(runs[0][1], runs[1][1], "auroc", config, resamples=200).result
    for name in ("baseline", "candidate", "difference", "ci_low", "ci_high", "se", "p_value"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), rel=1e-12, abs=1e-12), name
    assert fast.difference > 0 and fast.p_value < 0.05
