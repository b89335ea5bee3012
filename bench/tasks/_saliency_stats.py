"""What the saliency task derives from a stored map and computes over rows: faithfulness AUCs from the curves,
localisation against the explained object's boxes, map entropy, the randomisation test and hallucination AUROCs.

Per row (recomputed by `bench rescore` from the stored map, its pixel space and its curves):
  insertion/deletion AUCs (raw and normalised), token-space AUCs;
  with ground-truth boxes of the explained object (crowd boxes count), the map on the ORIGINAL pixels (cropped-away
  pixels left out): ``pointing_hit`` (a box pixel within 15 px of the maximum), ``energy`` (share of the map's
  positive mass inside the boxes), ``best_iou`` (per threshold of np.arange(0, 1, 0.01), the best IoU between a
  component box and a ground-truth box: MaxBoxAccV2's per-image input), ``entropy`` (normalised, 0..1).
Over rows, per method m, with bootstrap intervals over images (the same draw for every metric):
  means of the per-row values; ``pointing_game[m]``; ``maxboxacc_v2[m]`` (accuracy at IoU 0.3, 0.5, 0.7, each
  maximised over thresholds across the dataset, then averaged) and its three parts; ``sanity_spearman[m]`` and
  ``sanity_ssim[m]`` at the last cascade step (flagged when the Spearman stays above 0.5: the maps explain the image,
  not the model); ``hallucination_auroc_{insertion,entropy}[m]``: how well the statistic separates hallucinated
  object words (not in the image's ground truth) from grounded ones.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from ..metrics.classification import auroc
from ..metrics.curves import auc, normalised_curve
from ..metrics.localisation import IOU_DELTAS, THRESHOLDS, best_iou_per_threshold, energy_in_boxes, pointing_game
from ..metrics.map_similarity import map_entropy

CURVE_SCORES = ("insertion_auc", "deletion_auc", "insertion_auc_norm", "deletion_auc_norm",
                "token_insertion_auc", "token_deletion_auc")
SANITY_FLAG = 0.5      # a method whose maps keep a Spearman above this after the last cascade step is flagged


def listed(value) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    array = np.asarray(list(value), dtype=float)
    return array if array.size else None


def derive(row: dict[str, Any]) -> dict[str, Any]:
    """Every derived column of one row from its stored map, pixel space, boxes and curves."""
    ins, dele = listed(row.get("insertion")), listed(row.get("deletion"))
    if ins is not None and dele is not None:
        p_original, p_blur, p_deleted = dele[0], ins[0], dele[-1]
        row.update(p_original=p_original, p_blur=p_blur, p_deleted=p_deleted, insertion_auc=auc(ins), deletion_auc=auc(dele))
        norm_ins, norm_del = normalised_curve(ins, p_original, p_blur), normalised_curve(dele, p_original, p_deleted)
        row["insertion_auc_norm"] = None if norm_ins is None else auc(norm_ins)
        row["deletion_auc_norm"] = None if norm_del is None else auc(norm_del)
    t_ins, t_del = listed(row.get("token_insertion")), listed(row.get("token_deletion"))
    if t_ins is not None and t_del is not None:
        row.update(token_insertion_auc=auc(t_ins), token_deletion_auc=auc(t_del))
    grid = listed(row.get("saliency"))
    space = row.get("space")
    if grid is None or not isinstance(space, str):
        return row
    from ..explain.space import PixelSpace

    space_ = PixelSpace.from_dict(json.loads(space))
    original = space_.grid_to_original(grid.reshape(int(row["grid_rows"]), int(row["grid_cols"])))
    valid = np.isfinite(original)
    values = np.where(valid, original, 0.0)
    row["entropy"] = map_entropy(values, valid)
    boxes = listed(row.get("gt_boxes"))
    if boxes is not None:
        boxes = boxes.reshape(-1, 4)
        row["pointing_hit"] = bool(pointing_game(values, boxes, 15, valid))
        row["energy"] = energy_in_boxes(values, boxes, valid)
        row["best_iou"] = best_iou_per_threshold(values, boxes, THRESHOLDS, valid).tolist()
    return row


def _column(part, name: str) -> np.ndarray:
    if name not in part:
        return np.full(len(part), np.nan)
    return np.array([np.nan if v is None else float(v) for v in part[name]], dtype=float)


def _masked(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.where(mask, values, np.nan)


def _auroc_of(scores, labels, mask, weights):
    w = None if weights is None else np.atleast_2d(weights)[:, mask]
    return auroc(scores[mask], labels[mask], w)


def sample_statistics(ok, methods: list[str]):
    """The contract's per-row statistics of every method's metrics (rows of other methods count for nothing)."""
    from ..metrics.contract import SampleStatistics, Summed, mean_of, per_row

    stats = SampleStatistics(ok["image_id"].astype(str).tolist())
    method = ok["method"].to_numpy()
    values = {name: _column(ok, name) for name in CURVE_SCORES}
    values["ins_minus_del"] = values["insertion_auc"] - values["deletion_auc"]
    values["entropy"] = _column(ok, "entropy")
    values["pointing_game"] = _column(ok, "pointing_hit")
    values["energy_in_boxes"] = _column(ok, "energy")
    for name in ("spearman", "ssim"):
        column = f"sanity_{name}"
        values[column] = np.array([v[-1] if (v := listed(x)) is not None else np.nan
                                   for x in (ok[column] if column in ok else [None] * len(ok))])
    random = {(i, t): k for k, (i, t, m) in enumerate(zip(ok["image_id"], ok["target_index"], method)) if m == "random"}
    for m in methods:
        mask = method == m
        for name, v in values.items():
            if np.isfinite(v[mask]).any():
                stats.metrics[f"{name}[{m}]"] = mean_of(_masked(v, mask))
        if random and m != "random":
            partner = np.array([random.get((i, t), -1) for i, t in zip(ok["image_id"], ok["target_index"])])
            has = mask & (partner >= 0)
            for name in ("insertion_auc", "deletion_auc"):
                diff = np.where(has, values[name] - values[name][np.maximum(partner, 0)], np.nan)
                if np.isfinite(diff).any():
                    stats.metrics[f"{name.split('_')[0]}_vs_random[{m}]"] = mean_of(diff)
        if "best_iou" in ok:
            iou = [listed(v) for v in ok["best_iou"]]
            rows = mask & np.array([v is not None for v in iou])
            if rows.any():
                matrix = np.stack([v if v is not None and r else np.zeros(len(THRESHOLDS)) for v, r in zip(iou, rows)])
                hits = np.concatenate([(matrix >= d) * rows[:, None] for d in IOU_DELTAS] + [rows[:, None]], 1).astype(float)
                t = len(THRESHOLDS)

                def accuracy(sums, k):
                    return (sums[:, k * t:(k + 1) * t] / np.maximum(sums[:, -1:], 1e-300)).max(1)

                for k, d in enumerate(IOU_DELTAS):
                    stats.metrics[f"maxboxacc@{d:.1f}[{m}]"] = Summed(hits, lambda s, k=k: accuracy(s, k))
                stats.metrics[f"maxboxacc_v2[{m}]"] = Summed(hits, lambda s: np.mean([accuracy(s, k) for k in range(len(IOU_DELTAS))], 0))
        if "hallucinated" in ok:
            known = mask & ok["hallucinated"].notna().to_numpy()
            label = ok["hallucinated"].fillna(False).astype(bool).to_numpy()
            if known.any() and label[known].any() and not label[known].all():
                for name, column, sign in (("insertion", "insertion_auc", -1.0), ("entropy", "entropy", 1.0)):
                    scores = sign * values[column]
                    if np.isfinite(scores[known]).all():
                        stats.metrics[f"hallucination_auroc_{name}[{m}]"] = per_row(_auroc_of, scores, label, known)
    return stats


def flag_sanity(metrics: dict[str, dict]) -> dict[str, dict]:
    """Mark a method whose maps keep a Spearman above `SANITY_FLAG` after the last cascade step."""
    for name, value in metrics.items():
        if name.startswith("sanity_spearman[") and name != "sanity_spearman[random]":
            if value.get("value") is not None and value["value"] > SANITY_FLAG:
                value["flag"] = "the maps barely change when the model is randomised: they explain the image, not the model"
    return metrics


def figures(rows, methods: list[str]) -> dict[str, Any]:
    ok = rows[rows["status"] == "ok"]
    out: dict[str, Any] = {"counts": {"rows": int(len(rows)), "absent": int((rows["status"] == "absent").sum()),
                                      "null_normalised": int(ok["insertion_auc_norm"].isna().sum()) if len(ok) else 0}}
    curves, pointing, sanity = {}, {}, {}
    for m in methods:
        part = ok[ok["method"] == m]
        if not len(part):
            continue
        curves[m] = {name: np.mean(np.stack([np.asarray(c, float) for c in part[name]]), 0).tolist()
                     for name in ("insertion", "deletion")}
        if "pointing_hit" in part and part["pointing_hit"].notna().any():
            pointing[m] = float(part["pointing_hit"].dropna().astype(float).mean())
        if "sanity_spearman" in part and part["sanity_spearman"].notna().any():
            spearman = np.stack([np.asarray(v, float) for v in part["sanity_spearman"] if listed(v) is not None])
            ssim_ = np.stack([np.asarray(v, float) for v in part["sanity_ssim"] if listed(v) is not None])
            sanity[m] = {"steps": list(part["sanity_steps"].iloc[0]), "spearman": np.nanmean(spearman, 0).tolist(),
                         "ssim": np.nanmean(ssim_, 0).tolist()}
    out["mean_curves"] = curves
    if pointing:
        out["pointing_game"] = pointing
    if sanity:
        out["sanity"] = sanity
    return out
