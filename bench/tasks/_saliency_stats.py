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

from ..metrics.bootstrap import ImageDraw, estimate, interval
from ..metrics.classification import auroc
from ..metrics.curves import auc, normalised_curve
from ..metrics.localisation import (IOU_DELTAS, THRESHOLDS, best_iou_per_threshold, box_accuracy, energy_in_boxes,
                                    pointing_game)
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


def _mean_stat(values: np.ndarray, image_ids: list[str]):
    """The mean of per-row values (NaN rows left out), as a stat over image draws."""
    finite = np.isfinite(values)
    v = np.where(finite, values, 0.0)

    def stat(draw):
        if draw is None:
            return np.array([v[finite].mean() if finite.any() else math.nan])
        w = draw.row_weights(image_ids) * finite[None, :]
        with np.errstate(invalid="ignore", divide="ignore"):
            return (w @ v) / w.sum(1)

    return stat


def _column(part, name: str) -> np.ndarray:
    if name not in part:
        return np.full(len(part), np.nan)
    return np.array([np.nan if v is None else float(v) for v in part[name]], dtype=float)


def method_metrics(part, random_part, draw: ImageDraw, level: float, method: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    ids = part["image_id"].tolist()
    values = {name: _column(part, name) for name in CURVE_SCORES}
    values["ins_minus_del"] = values["insertion_auc"] - values["deletion_auc"]
    values["entropy"] = _column(part, "entropy")
    if "pointing_hit" in part:
        values["pointing_game"] = _column(part, "pointing_hit")
        values["energy_in_boxes"] = _column(part, "energy")
    for name, v in values.items():
        if np.isfinite(v).any():
            out[f"{name}[{method}]"] = estimate(_mean_stat(v, ids), draw, level)
    if random_part is not None and method != "random":
        paired = part.merge(random_part, on=["image_id", "target_index"], suffixes=("", "_random"))
        if len(paired):
            for name in ("insertion_auc", "deletion_auc"):
                diff = _column(paired, name) - _column(paired, f"{name}_random")
                out[f"{name.split('_')[0]}_vs_random[{method}]"] = estimate(_mean_stat(diff, paired["image_id"].tolist()), draw, level)
    out.update(_maxboxacc(part, draw, level, method))
    out.update(_sanity(part, draw, level, method))
    out.update(_hallucination(part, draw, level, method))
    return out


def _maxboxacc(part, draw: ImageDraw, level: float, method: str) -> dict[str, dict[str, float]]:
    if "best_iou" not in part:
        return {}
    rows = [(i, np.asarray(v, float)) for i, v in zip(part["image_id"], part["best_iou"]) if listed(v) is not None]
    if not rows:
        return {}
    ids = [i for i, _ in rows]
    matrix = np.stack([v for _, v in rows])
    weights = draw.row_weights(ids)
    out = {}
    for delta in IOU_DELTAS:
        point = box_accuracy(matrix, delta).max(1)[0]
        low, high = interval(box_accuracy(matrix, delta, weights).max(1), level)
        out[f"maxboxacc@{delta:.1f}[{method}]"] = {"value": float(point), "ci_low": low, "ci_high": high}
    point = np.mean([box_accuracy(matrix, d).max(1)[0] for d in IOU_DELTAS])
    low, high = interval(np.mean([box_accuracy(matrix, d, weights).max(1) for d in IOU_DELTAS], axis=0), level)
    out[f"maxboxacc_v2[{method}]"] = {"value": float(point), "ci_low": low, "ci_high": high}
    return out


def _sanity(part, draw: ImageDraw, level: float, method: str) -> dict[str, dict[str, float]]:
    if "sanity_spearman" not in part:
        return {}
    last = {name: np.array([listed(v)[-1] if listed(v) is not None else np.nan for v in part[f"sanity_{name}"]])
            for name in ("spearman", "ssim")}
    if not np.isfinite(last["spearman"]).any():
        return {}
    ids = part["image_id"].tolist()
    out = {f"sanity_{name}[{method}]": estimate(_mean_stat(v, ids), draw, level) for name, v in last.items()}
    value = out[f"sanity_spearman[{method}]"]["value"]
    if method != "random" and value is not None and value > SANITY_FLAG:
        out[f"sanity_spearman[{method}]"]["flag"] = ("the maps barely change when the model is randomised: "
                                                     "they explain the image, not the model")
    return out


def _hallucination(part, draw: ImageDraw, level: float, method: str) -> dict[str, dict[str, float]]:
    if "hallucinated" not in part:
        return {}
    known = part[part["hallucinated"].notna()]
    label = known["hallucinated"].astype(bool).to_numpy()
    if not len(known) or label.all() or not label.any():
        return {}
    ids = known["image_id"].tolist()
    out = {}
    for name, column, sign in (("insertion", "insertion_auc", -1.0), ("entropy", "entropy", 1.0)):
        scores = sign * _column(known, column)
        if not np.isfinite(scores).all():
            continue
        point = float(auroc(scores, label)[0])
        low, high = interval(auroc(scores, label, draw.row_weights(ids)), level)
        out[f"hallucination_auroc_{name}[{method}]"] = {"value": point, "ci_low": low, "ci_high": high}
    return out


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
