"""CHAIR metrics (Rohrbach et al. 2018) over per-caption results, optionally under bootstrap weights.

Definitions (all values are fractions in [0, 1] except Len; papers print them x100):

* CHAIR_i = hallucinated object mentions / all object mentions, over all captions, EVERY occurrence
  counted ("dog" three times is three mentions).
* CHAIR_s = captions with at least one hallucinated mention / captions.
* Recall = sum over captions of |distinct GT objects mentioned| / sum over captions of |distinct GT
  objects| (micro-averaged, as the OPERA-lineage ports do; GT includes objects from reference captions).
* Len = mean number of tokens per caption (tokens after two-word phrase merging, punctuation
  included, as those ports count it). It is a mean token count, not a fraction.

Edge cases (decided here; the reference divides by zero instead):

* no mentions at all -> CHAIR_i is nan (there is no mention to be hallucinated; 0 would claim a
  perfect caption set). A caption without mentions still counts for CHAIR_s (as not hallucinated),
  Recall (its GT objects count as missed) and Len.
* no GT objects at all -> Recall is nan.
* no captions (or all weights zero) -> every metric is nan.

The bootstrap works on per-caption counts: :func:`caption_counts` turns the results into arrays and
:func:`metrics_from_counts` recomputes the metrics from them, with ``weights`` of shape [n] or [B, n]
(how many times each caption is drawn in each resample).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol, Sequence

import numpy as np

__all__ = ["COUNT_KEYS", "METRIC_KEYS", "caption_counts", "metrics_from_counts", "metrics_from_totals", "chair_metrics"]

COUNT_KEYS = ("n_mentions", "n_hallucinated_mentions", "has_hallucination", "n_gt", "n_recalled", "n_words")
METRIC_KEYS = ("CHAIR_i", "CHAIR_s", "Recall", "Len")


class _CaptionResult(Protocol):  # bench.text.CaptionScore satisfies it
    mentioned: Sequence[str]
    hallucinated: Sequence[str]
    gt: Sequence[str]
    recalled: Sequence[str]
    n_words: int


def caption_counts(scores: Iterable[_CaptionResult]) -> dict[str, np.ndarray]:
    """Per-caption count arrays (int64, length n_captions), keys as in ``COUNT_KEYS``.

    Also accepts plain dicts with the same fields as :class:`bench.text.CaptionScore` (e.g. rows read
    back from Parquet/JSON).
    """
    rows = []
    for s in scores:
        get = s.get if isinstance(s, Mapping) else lambda k, s=s: getattr(s, k)
        hallucinated = get("hallucinated")
        rows.append((len(get("mentioned")), len(hallucinated), int(len(hallucinated) > 0),
                     len(get("gt")), len(get("recalled")), int(get("n_words"))))
    table = np.array(rows, dtype=np.int64).reshape(-1, len(COUNT_KEYS))
    return {key: table[:, j].copy() for j, key in enumerate(COUNT_KEYS)}


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def metrics_from_counts(counts: Mapping[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """CHAIR_i, CHAIR_s, Recall, Len from per-caption counts.

    ``weights``: None (each caption once), shape [n] or [B, n]; each caption's counts are multiplied
    by its weight. Returns float arrays of shape [B] (B = 1 for None or a 1-D weight vector), nan
    where a denominator is zero (see the module docstring).
    """
    n = len(counts["n_mentions"])
    w = np.ones((1, n)) if weights is None else np.atleast_2d(np.asarray(weights, dtype=float))
    if w.shape[1] != n:
        raise ValueError(f"weights have {w.shape[1]} columns for {n} captions")
    c = np.stack([np.asarray(counts[k], dtype=float) for k in COUNT_KEYS], axis=1)  # [n, 6]
    return metrics_from_totals(w @ c, w.sum(axis=1))


def metrics_from_totals(totals: np.ndarray, n_captions: np.ndarray) -> dict[str, np.ndarray]:
    """The metrics from summed counts [B, 6] (columns in ``COUNT_KEYS`` order) and the numbers of captions [B]."""
    mentions, hallucinated, has_h, n_gt, n_recalled, n_words = np.atleast_2d(totals).T
    return {
        "CHAIR_i": _ratio(hallucinated, mentions),
        "CHAIR_s": _ratio(has_h, n_captions),
        "Recall": _ratio(n_recalled, n_gt),
        "Len": _ratio(n_words, n_captions),
    }


def chair_metrics(scores: Iterable[_CaptionResult]) -> dict[str, float]:
    """CHAIR_i, CHAIR_s, Recall (fractions), Len (mean tokens), plus the totals behind them.

    Totals: n_captions, n_mentions, n_hallucinated_mentions, n_hallucinated_captions, n_gt, n_recalled.
    """
    counts = caption_counts(scores)
    values = metrics_from_counts(counts)
    out: dict[str, float] = {key: float(values[key][0]) for key in METRIC_KEYS}
    out.update(
        n_captions=int(len(counts["n_mentions"])),
        n_mentions=int(counts["n_mentions"].sum()),
        n_hallucinated_mentions=int(counts["n_hallucinated_mentions"].sum()),
        n_hallucinated_captions=int(counts["has_hallucination"].sum()),
        n_gt=int(counts["n_gt"].sum()),
        n_recalled=int(counts["n_recalled"].sum()),
    )
    return out
