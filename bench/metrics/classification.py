"""Binary classification metrics with "yes" as the positive class, optionally under bootstrap weights."""

from __future__ import annotations

import numpy as np


def _w(n: int, weights: np.ndarray | None) -> np.ndarray:
    return np.ones((1, n)) if weights is None else np.atleast_2d(weights).astype(float)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def binary_metrics(pred: np.ndarray, label: np.ndarray, weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """accuracy, precision, recall, F1 (positive = yes) and yes_ratio = share of PREDICTED yes.

    Precision (recall) is 0 when nothing is predicted (labelled) positive, as scikit-learn's
    ``zero_division=0``. Returns arrays of shape [B] (B = 1 without weights).
    """
    pred = np.asarray(pred, dtype=bool)
    label = np.asarray(label, dtype=bool)
    w = _w(len(pred), weights)
    tp = (w * (pred & label)).sum(1)
    fp = (w * (pred & ~label)).sum(1)
    fn = (w * (~pred & label)).sum(1)
    total = w.sum(1)
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return {
        "accuracy": _ratio((w * (pred == label)).sum(1), total),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall),
        "yes_ratio": _ratio(tp + fp, total),
    }


def auroc(scores: np.ndarray, label: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Area under the ROC curve (ties count one half), with per-row weights; nan when a class is absent.

    Equals scikit-learn's ``roc_auc_score(label, scores, sample_weight=w)`` for every row of weights.
    """
    return RankedScores(scores, label)(weights)


class RankedScores:
    """`auroc` over fixed scores and labels, sorted once: each call scores rows of weights [B, n] (the
    bootstrap's resamples, a permutation test's swaps) without sorting again."""

    def __init__(self, scores: np.ndarray, label: np.ndarray):
        scores = np.asarray(scores, dtype=float)
        self.n = len(scores)
        self.order = np.argsort(scores, kind="mergesort")
        s = scores[self.order]
        self.positive = np.asarray(label, dtype=bool)[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first row of each run of equal scores

    def __call__(self, weights: np.ndarray | None = None) -> np.ndarray:
        w = _w(self.n, weights)[:, self.order]
        w_neg = np.where(self.positive, 0.0, w)
        w_pos = np.where(self.positive, w, 0.0)
        neg_per_tie = np.add.reduceat(w_neg, self.starts, axis=1)          # [B, n_ties]
        pos_per_tie = np.add.reduceat(w_pos, self.starts, axis=1)
        neg_below = np.cumsum(neg_per_tie, axis=1) - neg_per_tie            # negatives strictly below each tie group
        area = (pos_per_tie * (neg_below + 0.5 * neg_per_tie)).sum(1)
        total_pos, total_neg = w_pos.sum(1), w_neg.sum(1)
        with np.errstate(divide="ignore", invalid="ignore"):
            result = area / (total_pos * total_neg)
        return np.where((total_pos > 0) & (total_neg > 0), result, np.nan)
