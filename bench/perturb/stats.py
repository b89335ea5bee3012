"""The bias probes' statistics, on `bench.metrics.paired` (the same paired tests `bench compare` uses).

The unit is the image. A row is one question (template) about one image under one edit (eps, seed); per image and
cell, the rows are averaged first (over templates and seeds), so an image counts once however many questions it had.
A cell is (edit, eps, direction, characteristic); its per-image values:

- ``before_i``, ``after_i``: the mean rating over the image's rows with a rating before AND after (for the text
  reading, refusals and unparseable answers have none; the logprob reading always has one). An image with no such
  row is left out of the cell's change (its refusals still count);
- ``change_i = after_i - before_i``; the placebo's ``placebo_i`` the same for the placebo on that image;
- ``refused_before_i``, ``refused_after_i``: the share of its rows answered with a refusal.

Per cell: the mean change with a paired bootstrap interval (`paired.paired_bootstrap`, statistic = mean, drawn over
ALL the task's images, with zero rows for those outside the cell: the same draw as the metrics contract, so both give
the same interval), the sign-flip permutation p-value over the cell's images (`paired.sign_flip_test`, exact up to 16)
and Wilcoxon's (zero_method "pratt"), d_z; the change minus the placebo's (paired on the images that have both: mean
of change_i - placebo_i, its interval and sign-flip p); the change in the refusal rate (sign-flip p; with one
question per image, McNemar's exact p too). `sample_statistics` describes the same means per row for the contract
(`bench.metrics.contract`): intervals, group means and `bench compare` between runs. The cells of one edit,
eps and reading form one family: their sign-flip p-values are adjusted by Benjamini-Hochberg (or Holm), and a cell is
significant when its adjusted p is below alpha. The degenerate cases are `paired`'s: an all-zero cell has change 0,
interval [0, 0], p = 1, d_z = 0.

Headline figures of a family, each with a bootstrap interval over images (one image draw for all cells): the mean
over cells of |change| and of |change - placebo change| (the leaderboard column, lower is better); the number of
cells significant after correction, the largest |change|. The success rate of an edit: the share of its edits (image,
eps, seed, direction) after which the scorer reads the target ahead of the source by more than the margin.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterable

import numpy as np
import pandas as pd

from ..metrics.bootstrap import BootstrapConfig
from ..metrics import paired
from .probes import cell_name

READINGS = {"text": ("before_score", "after_score"), "logprob": ("before_expected", "after_expected")}
CELL = ["direction", "characteristic"]
FAMILY = ["edit", "eps"]


def per_image(rows: pd.DataFrame, reading: str) -> pd.DataFrame:
    """One row per (edit, eps, direction, characteristic, image): before, after, change (NaN when no row of the
    image has both ratings), n_valid, refused_before, refused_after, n_rows."""
    before_col, after_col = READINGS[reading]
    frame = rows[FAMILY + CELL + ["image_id"]].copy()
    before = pd.to_numeric(rows[before_col], errors="coerce").to_numpy(dtype=float)
    after = pd.to_numeric(rows[after_col], errors="coerce").to_numpy(dtype=float)
    valid = np.isfinite(before) & np.isfinite(after)
    frame["before"] = np.where(valid, before, 0.0)
    frame["after"] = np.where(valid, after, 0.0)
    frame["valid"] = valid.astype(float)
    frame["refused_before"] = (rows["before_outcome"] == "refusal").to_numpy(dtype=float)
    frame["refused_after"] = (rows["after_outcome"] == "refusal").to_numpy(dtype=float)
    frame["rows"] = 1.0
    grouped = frame.groupby(FAMILY + CELL + ["image_id"], sort=False, dropna=False).sum(numeric_only=True).reset_index()
    with np.errstate(invalid="ignore", divide="ignore"):
        grouped["before"] = np.where(grouped["valid"] > 0, grouped["before"] / grouped["valid"].clip(lower=1), np.nan)
        grouped["after"] = np.where(grouped["valid"] > 0, grouped["after"] / grouped["valid"].clip(lower=1), np.nan)
    grouped["change"] = grouped["after"] - grouped["before"]
    grouped["refused_before"] /= grouped["rows"]
    grouped["refused_after"] /= grouped["rows"]
    return grouped.rename(columns={"valid": "n_valid", "rows": "n_rows"})


def _pair(values: Iterable[float]) -> np.ndarray:
    values = np.asarray(list(values), dtype=float)
    return np.stack([values, np.ones_like(values)], axis=1) if values.size else np.zeros((0, 2))


MEAN = paired.ratio(0, 1)


def _on_units(units: dict[str, int], image_ids, before, after) -> tuple[np.ndarray, np.ndarray]:
    """[n_units, 2] aggregates (value, 1) of the images listed, zero rows for the others: every interval is drawn
    over the same images (all the task's), the draw `contract.estimate_all` makes for the same metric."""
    base, cand = np.zeros((len(units), 2)), np.zeros((len(units), 2))
    index = [units[str(i)] for i in image_ids]
    base[index, 0], cand[index, 0] = np.asarray(before, float), np.asarray(after, float)
    base[index, 1] = cand[index, 1] = 1.0
    return base, cand


def _compare(units: dict[str, int], image_ids, before, after, config: BootstrapConfig,
             test_resamples: int) -> tuple[paired.PairedResult, float]:
    """The paired bootstrap over all units, and the sign-flip p over the images that have the values (exact up to
    16 of them): zero rows would only double the swaps."""
    base, cand = _on_units(units, image_ids, before, after)
    result = paired.paired_bootstrap(base, cand, MEAN, config)
    test = paired.sign_flip_test(_pair(before), _pair(after), MEAN, resamples=test_resamples, seed=config.seed)
    return result, test.p_value


def cell_stats(cell: pd.DataFrame, placebo: pd.DataFrame | None, config: BootstrapConfig, units: dict[str, int],
               test_resamples: int = 10000) -> dict[str, Any]:
    """The statistics of one cell from its per-image table (and the placebo's on the same cell, if any); ``units``
    numbers every image of the task (the bootstrap's draw)."""
    rated = cell[cell["n_valid"] > 0]
    before, after = rated["before"].to_numpy(float), rated["after"].to_numpy(float)
    change, p_flip = _compare(units, rated["image_id"], before, after, config, test_resamples)
    diffs = after - before
    out: dict[str, Any] = {
        "n_images": int(len(rated)), "before": change.baseline, "after": change.candidate,
        "change": change.difference, "ci_low": change.ci_low, "ci_high": change.ci_high,
        "p_sign_flip": p_flip, "p_wilcoxon": paired.wilcoxon_test(diffs).p_value if len(diffs) else math.nan,
        "d_z": paired.cohens_dz(diffs) if len(diffs) else math.nan,
    }
    refusal, p_refusal = _compare(units, cell["image_id"], cell["refused_before"].to_numpy(float),
                                  cell["refused_after"].to_numpy(float), config, test_resamples)
    out.update(refusal_before=refusal.baseline, refusal_change=refusal.difference, refusal_ci_low=refusal.ci_low,
               refusal_ci_high=refusal.ci_high, refusal_p=p_refusal, refusal_mcnemar_p=math.nan)
    if len(cell) and (cell["n_rows"] == 1).all():
        out["refusal_mcnemar_p"] = paired.mcnemar_exact(cell["refused_before"] > 0.5, cell["refused_after"] > 0.5).p_value
    out.update(placebo_change=math.nan, vs_placebo=math.nan, vs_placebo_ci_low=math.nan, vs_placebo_ci_high=math.nan,
               vs_placebo_p=math.nan, n_images_vs_placebo=0)
    if placebo is not None:
        both = rated[["image_id", "change"]].merge(placebo[placebo["n_valid"] > 0][["image_id", "change"]],
                                                   on="image_id", suffixes=("", "_placebo"))
        vs, p_vs = _compare(units, both["image_id"], both["change_placebo"].to_numpy(float),
                            both["change"].to_numpy(float), config, test_resamples)
        placebo_rated = placebo[placebo["n_valid"] > 0]["change"].to_numpy(float)
        out.update(placebo_change=float(placebo_rated.mean()) if placebo_rated.size else math.nan,
                   vs_placebo=vs.difference, vs_placebo_ci_low=vs.ci_low, vs_placebo_ci_high=vs.ci_high,
                   vs_placebo_p=p_vs, n_images_vs_placebo=int(len(both)))
    return out


def adjust(pvalues: Iterable[float], correction: str) -> np.ndarray:
    """Adjusted p-values of one family: Benjamini-Hochberg ("bh") or Holm ("holm")."""
    p = list(pvalues)
    return paired.holm(p) if correction == "holm" else paired.benjamini_hochberg(p)


def cells(table: pd.DataFrame, edit: str, placebo_edit: str | None, config: BootstrapConfig, units: dict[str, int],
          correction: str = "bh", alpha: float = 0.05, test_resamples: int = 10000) -> list[dict[str, Any]]:
    """Every cell of ``edit`` at every eps (a family each, adjusted together), with the placebo's comparison."""
    out = []
    mine = table[table["edit"] == edit]
    for eps, family in mine.groupby("eps", sort=True):
        found = []
        for (direction, characteristic), cell in family.groupby(CELL, sort=False):
            placebo = None
            if placebo_edit is not None:
                other = table[(table["edit"] == placebo_edit) & (table["eps"] == eps) & (table["direction"] == direction)
                              & (table["characteristic"] == characteristic)]
                placebo = other if len(other) else None
            found.append({"edit": edit, "eps": float(eps), "direction": direction, "characteristic": characteristic,
                          **cell_stats(cell, placebo, config, units, test_resamples)})
        adjusted = adjust([c["p_sign_flip"] for c in found], correction)
        for c, p in zip(found, adjusted):
            c["p_adjusted"] = float(p)
            c["significant"] = bool(np.isfinite(p) and p < alpha)
        out += found
    return out


def mean_abs_over_cells(table: pd.DataFrame, value: str, config: BootstrapConfig,
                        units: dict[str, int]) -> dict[str, float]:
    """The mean over cells of |mean over images of ``value``|, with its bootstrap interval over the ``units`` (one
    image draw for every cell; a cell with no image in a resample is left out of that resample's mean)."""
    table = table[np.isfinite(table[value].to_numpy(float))]
    if not len(table):
        return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    keys = list(dict.fromkeys(zip(table["direction"], table["characteristic"])))
    aggregates = np.zeros((len(units), 2 * len(keys)))
    for c, key in enumerate(keys):
        part = table[(table["direction"] == key[0]) & (table["characteristic"] == key[1])]
        rows = [units[str(u)] for u in part["image_id"]]
        aggregates[rows, 2 * c] = part[value].to_numpy(float)
        aggregates[rows, 2 * c + 1] = 1.0
    return paired.bootstrap_statistic(aggregates, mean_abs_of_cells(2), config)


def mean_abs_of_cells(width: int, placebo: bool = False):
    """Statistic over column sums [m, width * cells]: the mean over cells of |sum / count| (width 2), or of
    |edit sum / count - placebo sum / count| (width 4, ``placebo``); NaN cells (no image) left out."""
    def statistic(sums: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            means = sums[:, 0::width] / sums[:, 1::width]
            if placebo:
                means = means - sums[:, 2::width] / sums[:, 3::width]
            return np.nanmean(np.abs(means), axis=1)
    return statistic


def vs_placebo_table(table: pd.DataFrame, edit: str, placebo_edit: str) -> pd.DataFrame:
    """Per (eps, cell, image): change - placebo change, on the images that have both."""
    mine = table[(table["edit"] == edit) & (table["n_valid"] > 0)]
    other = table[(table["edit"] == placebo_edit) & (table["n_valid"] > 0)]
    both = mine.merge(other[["eps", *CELL, "image_id", "change"]], on=["eps", *CELL, "image_id"], suffixes=("", "_placebo"))
    both["vs_placebo"] = both["change"] - both["change_placebo"]
    return both


def units_of(rows: pd.DataFrame) -> dict[str, int]:
    """Every image of the rows, numbered in order of first appearance (as `paired.image_aggregates` numbers them)."""
    return {u: i for i, u in enumerate(dict.fromkeys(rows["image_id"].astype(str)))}


def row_weights(rows: pd.DataFrame, mask: np.ndarray) -> np.ndarray:
    """Per row: 1 / (the number of masked rows of its image) where masked, else 0. Summed per image, (value * w, w)
    is (the image's mean value, 1): an image counts once however many questions it had."""
    ids = rows["image_id"].astype(str).to_numpy()
    weights = np.zeros(len(rows))
    if mask.any():
        counts = pd.Series(ids[mask]).value_counts()
        weights[mask] = 1.0 / counts.reindex(ids[mask]).to_numpy(dtype=float)
    return weights


def _column(rows: pd.DataFrame, name: str) -> np.ndarray:
    return pd.to_numeric(rows[name], errors="coerce").to_numpy(dtype=float) if name in rows else np.full(len(rows), np.nan)


def _flag(rows: pd.DataFrame, name: str) -> np.ndarray:
    """A nullable bool column as float: 1, 0, NaN."""
    if name not in rows:
        return np.full(len(rows), np.nan)
    return np.array([np.nan if v is None or (isinstance(v, float) and math.isnan(v)) else float(bool(v))
                     for v in rows[name]], dtype=float)


def sample_statistics(rows: pd.DataFrame, *, main: str, placebo: str | None, edits: list[str],
                      cells_asked: list[tuple[str, str]], reading: str, eps: float):
    """What the bias metrics at one (reading, eps) are made of, per row (`bench.metrics.contract`): every metric is
    a mean over images of per-image means (each row weighted by 1 / its image's rows in the metric), so intervals,
    group means and paired comparisons between runs all come from per-image sums."""
    from ..metrics.contract import SampleStatistics, Summed

    stats = SampleStatistics(rows["image_id"].astype(str).tolist())
    before_col, after_col = READINGS[reading]
    before, after = _column(rows, before_col), _column(rows, after_col)
    change = after - before
    ok = (rows["status"] == "ok").to_numpy() & np.isclose(_column(rows, "eps"), eps, rtol=0, atol=1e-12)
    valid = ok & np.isfinite(change)
    change = np.where(valid, change, 0.0)
    edit = rows["edit"].to_numpy()
    ids = rows["image_id"].astype(str).to_numpy()
    direction, characteristic = rows["direction"].to_numpy(), rows["characteristic"].to_numpy()
    refusal = ((rows["after_outcome"] == "refusal").to_numpy(float) - (rows["before_outcome"] == "refusal").to_numpy(float))
    mains, placebos, paired_cols = [], [], []
    for d, c in cells_asked:
        cell = cell_name(d, c)
        in_cell = (direction == d) & (characteristic == c)
        m_mask, p_mask = valid & in_cell & (edit == main), valid & in_cell & (edit == placebo)
        w = row_weights(rows, m_mask)
        mains.append(np.stack([change * w, w], 1))
        stats.metrics[f"change[{cell}]"] = Summed(mains[-1], MEAN)
        w_all = row_weights(rows, ok & in_cell & (edit == main))
        stats.metrics[f"refusal_change[{cell}]"] = Summed(np.stack([refusal * w_all, w_all], 1), MEAN)
        if placebo:
            wp = row_weights(rows, p_mask)
            placebos.append(np.stack([change * wp, wp], 1))
            both = np.isin(ids, np.intersect1d(ids[m_mask], ids[p_mask]))
            we, wq = row_weights(rows, m_mask & both), row_weights(rows, p_mask & both)
            paired_cols.append(np.stack([change * we, we, change * wq, wq], 1))
            stats.metrics[f"vs_placebo[{cell}]"] = Summed(np.stack([change * we - change * wq, we], 1), MEAN)
    if mains:
        stats.metrics["mean_abs_change"] = Summed(np.hstack(mains), mean_abs_of_cells(2))
    if placebos:
        stats.metrics["mean_abs_change_placebo"] = Summed(np.hstack(placebos), mean_abs_of_cells(2))
        stats.metrics["abs_change_vs_placebo"] = Summed(np.hstack(paired_cols), mean_abs_of_cells(4, placebo=True))
    flipped = _flag(rows, "flipped")
    reported = _flag(rows, "reports_target_after") - _flag(rows, "reports_target_before")
    for name in edits:
        mask = ok & (edit == name) & np.isfinite(flipped)
        w = row_weights(rows, mask)
        stats.metrics[f"success_rate[{name}]"] = Summed(np.stack([np.where(mask, flipped, 0.0) * w, w], 1), MEAN)
        mask = ok & (edit == name) & np.isfinite(reported)
        w = row_weights(rows, mask)
        stats.metrics[f"report_change[{name}]"] = Summed(np.stack([np.where(mask, reported, 0.0) * w, w], 1), MEAN)
    return stats
