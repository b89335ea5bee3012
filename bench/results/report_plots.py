"""The report's plots: matplotlib figures rendered to PNG ``data:`` URIs.

Figures are built with ``matplotlib.figure.Figure`` and the Agg canvas directly, never ``pyplot``: no GUI backend is
chosen and no global plotting state is touched, so the report can run inside any process. Sizes are small (about
400 x 260 px at 80 dpi) to keep a report of many tasks in a few megabytes.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

from .report_html import data_uri

DPI = 80
PALETTE = ["#1f5ab4", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c", "#5c940d"]


def _figure(width: float = 5.0, height: float = 3.2, ncols: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
    return fig, axes


def _uri(fig) -> str:
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=DPI)
    return data_uri(out.getvalue(), "image/png")


def _errors(values: Sequence[float], lows: Sequence[float | None], highs: Sequence[float | None]) -> np.ndarray:
    """[2, n] error-bar lengths below and above each value; 0 where a bound is missing."""
    v = np.asarray(values, dtype=float)
    lo = np.array([np.nan if x is None else x for x in lows], dtype=float)
    hi = np.array([np.nan if x is None else x for x in highs], dtype=float)
    return np.nan_to_num(np.vstack([v - lo, hi - v]), nan=0.0).clip(min=0.0)


def grouped_bars(categories: list[str], series: list[tuple[str, list[float], list[Any], list[Any]]], title: str,
                 ylabel: str, reference: float | None = None, reference_label: str = "", ylim: tuple[float, float] | None = None
                 ) -> str:
    """Bars per category, one per series (label, values, interval lows, highs); an optional dashed reference line."""
    fig, (ax,) = _figure(width=max(4.5, 1.1 * len(categories) + 2.5))
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(len(categories))
    for i, (label, values, lows, highs) in enumerate(series):
        vals = np.array([np.nan if v is None else v for v in values], dtype=float)
        ax.bar(x - 0.4 + width * (i + 0.5), np.nan_to_num(vals), width, yerr=_errors(vals, lows, highs), capsize=3,
               label=label, color=PALETTE[i % len(PALETTE)])
    if reference is not None:
        ax.axhline(reference, color="#444", linestyle="--", linewidth=1, label=reference_label or None)
    ax.set_xticks(x)
    ax.set_xticklabels(categories, rotation=15 if len(categories) > 3 else 0, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=7)
    return _uri(fig)


def pyes_and_roc(p_yes: np.ndarray, positive: np.ndarray, auroc: float | None, title: str) -> str:
    """Score mode: the P(yes) histograms of questions whose label is yes and no, and the ROC curve of P(yes)."""
    from sklearn.metrics import roc_curve

    fig, (left, right) = _figure(width=4.2, ncols=2)
    bins = np.linspace(0, 1, 21)
    left.hist(p_yes[positive], bins=bins, alpha=0.6, color=PALETTE[0], label=f"label yes ({int(positive.sum())})")
    left.hist(p_yes[~positive], bins=bins, alpha=0.6, color=PALETTE[1], label=f"label no ({int((~positive).sum())})")
    left.axvline(0.5, color="#444", linestyle=":", linewidth=1)
    left.set_xlabel("P(yes)")
    left.set_ylabel("questions")
    left.set_title(f"{title}: P(yes)", fontsize=10)
    left.legend(fontsize=7)
    if positive.any() and (~positive).any():
        fpr, tpr, _ = roc_curve(positive, p_yes)
        right.plot(fpr, tpr, color=PALETTE[0], label=f"AUROC {auroc:.3f}" if auroc is not None else None)
        if auroc is not None:
            right.legend(fontsize=7, loc="lower right")
    else:
        right.text(0.5, 0.5, "one class only: no ROC", ha="center", va="center", fontsize=9)
    right.plot([0, 1], [0, 1], color="#999", linestyle="--", linewidth=1)
    right.set_xlim(0, 1)
    right.set_ylim(0, 1.01)
    right.set_xlabel("false positive rate")
    right.set_ylabel("true positive rate")
    right.set_title("ROC of P(yes)", fontsize=10)
    return _uri(fig)


def confidence_histograms(bins: Sequence[float], series: dict[str, Sequence[float]], title: str) -> str:
    """Grounded tasks: the detector's confidence per bin, one panel per label, the model's answers side by side."""
    edges = np.asarray(bins, dtype=float)
    centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
    fig, axes = _figure(width=4.0, ncols=2)
    for ax, label in zip(axes, ("yes", "no")):
        for i, answer in enumerate(("yes", "no")):
            counts = np.asarray(series.get(f"answer_{answer}_label_{label}", np.zeros(len(centres))), dtype=float)
            ax.bar(centres - widths / 4 + i * widths / 2, counts, widths / 2, color=PALETTE[i], label=f"answer {answer}")
        ax.set_xlim(edges[0], edges[-1])
        ax.set_xlabel("detector confidence")
        ax.set_ylabel("questions")
        ax.set_title(f"{title}: label {label}", fontsize=10)
        ax.legend(fontsize=7)
    return _uri(fig)


def mean_curves(curves: dict[str, dict[str, Sequence[float]]], title: str) -> str:
    """Saliency: the mean insertion and deletion curves per method, against the share of pixels revealed/removed."""
    fig, axes = _figure(width=4.0, ncols=2)
    for ax, kind in zip(axes, ("insertion", "deletion")):
        for i, (method, curve) in enumerate(curves.items()):
            y = np.asarray(curve.get(kind, []), dtype=float)
            if len(y):
                ax.plot(np.linspace(0, 1, len(y)), y, color=PALETTE[i % len(PALETTE)], label=method)
        ax.set_xlabel("share of pixels " + ("inserted" if kind == "insertion" else "deleted"))
        ax.set_ylabel("P(target)")
        ax.set_title(f"{title}: mean {kind}", fontsize=10)
        ax.legend(fontsize=7)
    return _uri(fig)


def sanity_curves(sanity: dict[str, dict[str, Any]], title: str) -> str:
    """Saliency sanity test: Spearman and SSIM of each method's maps with the randomised model's, per cascade step."""
    fig, axes = _figure(width=4.2, ncols=2)
    for ax, kind in zip(axes, ("spearman", "ssim")):
        steps: list[str] = []
        for i, (method, entry) in enumerate(sanity.items()):
            y = np.asarray(entry.get(kind, []), dtype=float)
            steps = [str(s) for s in entry.get("steps", [])] or steps
            ax.plot(np.arange(len(y)), y, marker="o", color=PALETTE[i % len(PALETTE)], label=method)
        if steps:
            ax.set_xticks(np.arange(len(steps)))
            ax.set_xticklabels(steps, rotation=30, fontsize=7)
        ax.set_ylabel(kind)
        ax.set_title(f"{title}: {kind} vs randomised", fontsize=10)
        ax.legend(fontsize=7)
    return _uri(fig)


def forest(labels: list[str], values: list[float], lows: list[Any], highs: list[Any], placebo: list[Any] | None,
           title: str, xlabel: str, edit: str = "edit") -> str:
    """Bias: each cell's change with its interval (a row each), the placebo's change in grey, the zero line."""
    fig, (ax,) = _figure(width=6.0, height=max(2.0, 0.32 * len(labels) + 1.2))
    y = np.arange(len(labels))[::-1]
    vals = np.array([np.nan if v is None else v for v in values], dtype=float)
    ax.errorbar(vals, y, xerr=_errors(vals, lows, highs), fmt="o", color=PALETTE[0], capsize=3, label=edit)
    if placebo is not None:
        ax.plot(np.array([np.nan if v is None else v for v in placebo], dtype=float), y - 0.2, "s", color="#999",
                markersize=4, label="placebo")
    ax.axvline(0, color="#444", linewidth=1)
    ax.set_yticks(y)
    ax.set_yticklabels(labels, fontsize=7)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _uri(fig)


def lines(x: Sequence[float], series: dict[str, Sequence[Any]], title: str, xlabel: str, ylabel: str) -> str:
    """One line per series over ``x`` (missing points left out)."""
    fig, (ax,) = _figure()
    for i, (label, ys) in enumerate(series.items()):
        ax.plot(x, [np.nan if v is None else v for v in ys], marker="o", color=PALETTE[i % len(PALETTE)], label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _uri(fig)
