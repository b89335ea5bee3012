"""Saliency: a map for an output token, judged by insertion and deletion (RISE), per method.

Targets (``params.targets``):
  - ``caption_words``: the object words of each image's first reference caption, teacher-forced after the caption
    text before them (random tiny models rarely say object words of their own);
  - ``own_caption``: the object words of the model's own greedy description (by token ids and position); an image
    whose description has fewer object words gets rows marked ``absent``, counted in the metrics, not failed;
  - ``pope_answer``: the first token of the model's own answer to POPE questions about the image;
  - ``class_word``: the class word after ``prefix`` (e.g. "The image shows a" + "bird", CUB-style).
Methods (``params.methods``, e.g. ``--set methods=ga,integrated_gradients,occlusion,random``) are looked up in
`SALIENCY_METHODS`; one row per (image, target, method). A method the model cannot run (``ga`` without a grounded
model; gradients on a model with no white-box seam) is refused before any work.

Metrics per method m, with bootstrap intervals over images: ``insertion_auc[m]`` (up), ``deletion_auc[m]`` (down),
``ins_minus_del[m]`` (up; the primary of each method), their normalised and token-space versions, and, when
``random`` runs too, ``insertion_vs_random[m]`` and ``deletion_vs_random[m]``: the paired difference with the random
map on the same targets.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..data.images import ImageRef, check_image_root
from ..errors import ConfigError
from ..explain.request import ExplainConfig, ExplainRequest, ExplainResult, TargetSpec
from ..io import Artifact
from ..metrics.bootstrap import ImageDraw, estimate
from ..registry import SALIENCY_METHODS, TASK_TYPES
from ..spec import listing_hash, sha256_file
from ..validation import param
from .base import MetricInfo, Sample, TaskType, seeded_subset

CURVE_SCORES = ("insertion_auc", "deletion_auc", "insertion_auc_norm", "deletion_auc_norm",
                "token_insertion_auc", "token_deletion_auc")


@dataclass
class SaliencyParams:
    methods: list[str] | str = param(default_factory=lambda: ["integrated_gradients", "occlusion", "random"], nonempty=True)
    targets: Literal["caption_words", "own_caption", "pope_answer", "class_word"] = "caption_words"
    prompt: str = param("Please describe this image in detail.", nonempty=True)
    prefix: str = ""                                   # class_word: the text before the class word
    words: Literal["grounded", "all"] = "grounded"     # caption words: only objects the image has, or every one
    max_targets: int = param(2, min=1)                 # targets per image
    max_new_tokens: int = param(64, min=1)             # own_caption: the description's length
    num_images: int | None = param(None, min=1)
    steps: int = param(64, min=2)
    deletion_baseline: Literal["blur", "black", "mean"] = "blur"
    ig_steps: int = param(32, min=2)
    ig_baseline: Literal["black", "blur"] = "black"
    token_space: bool = True
    grid: int = param(8, min=2)                        # black-box path over other processors: cells per side
    max_overlays: int = param(8, min=0)                # PNG overlays kept per method

    def method_list(self) -> list[str]:
        items = self.methods.split(",") if isinstance(self.methods, str) else self.methods
        return [m.strip() for m in items if m.strip()]


@dataclass
class CocoDataset:
    source: Literal["coco"]
    annotations: str
    images: str
    captions: str | None = None
    root: str | None = None


KIND_NEEDS = {"black": "explain:black", "white": "explain:white", "ga": "explain:ga"}


@TASK_TYPES.register("saliency")
class SaliencyTask(TaskType):
    type_name = "saliency"
    Params = SaliencyParams
    DATASETS = {"coco": CocoDataset}

    def __init__(self, spec, context):
        super().__init__(spec, context)
        where = spec.source
        self.methods = self.params.method_list()
        if not self.methods:
            raise ConfigError(f"{where}: params field 'methods' names no method")
        for name in self.methods:
            if name not in SALIENCY_METHODS:
                raise ConfigError(f"{where}: params field 'methods': {SALIENCY_METHODS.unknown_message(name)}")
        if self.params.targets == "caption_words" and not self.dataset.captions:
            raise ConfigError(f"{where}: targets caption_words need the dataset's 'captions' file")
        if self.params.targets == "class_word":
            raise ConfigError(f"{where}: targets class_word need a dataset with class labels (source cub)")
        self.config = ExplainConfig(steps=self.params.steps, deletion_baseline=self.params.deletion_baseline,
                                    ig_steps=self.params.ig_steps, ig_baseline=self.params.ig_baseline,
                                    token_space=self.params.token_space, seed=context.seed, grid=self.params.grid)
        self._fingerprint: dict[str, Any] = {}

    # -- data --------------------------------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        from ..data.coco import CocoInstances, load_captions

        annotations = self.data_path(self.dataset.annotations, "annotation file")
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        coco = CocoInstances.load(annotations, image_root)
        self._fingerprint = {"annotations": {"file": self.dataset.annotations, "sha256": sha256_file(annotations)},
                             "images": listing_hash(image_root)}
        captions = {}
        if self.dataset.captions:
            path = self.data_path(self.dataset.captions, "captions file")
            captions = load_captions(path)
            self._fingerprint["captions"] = {"file": self.dataset.captions, "sha256": sha256_file(path)}
        ids = seeded_subset(coco.image_ids(), self.params.num_images, self.context.seed)
        targets = []
        for image_id in ids:
            boxes = _boxes_by_category(coco, image_id)
            for spec, category in self._targets(coco, image_id, captions.get(image_id, []), boxes)[: self.params.max_targets]:
                targets.append((image_id, spec, category, boxes.get(category, [])))
        samples = []
        overlays: dict[str, int] = {}
        for t, (image_id, spec, category, boxes) in enumerate(targets):
            for method in self.methods:
                overlays[method] = overlays.get(method, 0) + 1
                samples.append(Sample(
                    id=f"{image_id}:{t}:{method}", index=len(samples), group=str(image_id),
                    image=ImageRef(path=str(coco.image_file(image_id))),
                    data={"target": spec, "method": method, "category": category, "boxes": boxes, "target_index": t,
                          "overlay": overlays[method] <= self.params.max_overlays}))
        return samples

    def _targets(self, coco, image_id: int, captions: list[str], boxes: dict) -> list[tuple[TargetSpec, str | None]]:
        p = self.params
        if p.targets == "caption_words":
            from ..explain.targets import mention_spans

            if not captions:
                return []
            caption = captions[0]
            out = []
            for start, end, category in mention_spans(caption):
                if p.words == "grounded" and category not in boxes:
                    continue
                out.append((TargetSpec(p.prompt, "given", caption[:start].rstrip(), caption[start:end]), category))
            return out
        if p.targets == "own_caption":
            return [(TargetSpec(p.prompt, "own_caption", index=k, max_new_tokens=p.max_new_tokens), None)
                    for k in range(p.max_targets)]
        # pope_answer: "Is there a {object} in the image?" about the image's objects, answered by the model
        objects = coco.objects(image_id)
        template = "Is there a {} in the image?"
        return [(TargetSpec(template.format(o) + "\nAnswer the question using a single word or phrase.", "next_token"), o)
                for o in objects]

    def data_fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    def manifest_extras(self) -> dict[str, Any]:
        return {"methods": self.methods}

    # -- model ---------------------------------------------------------------------------------------------------
    def needs(self) -> set[str]:
        return {KIND_NEEDS[SALIENCY_METHODS.get(m).kind] for m in self.methods}

    def prompt_text(self, sample: Sample) -> str:
        return sample.data["target"].prompt

    def requests(self, sample: Sample, image) -> list:
        seed = self.context.seed * 1_000_003 + sample.data["target_index"]
        return [ExplainRequest(image, sample.data["target"], sample.data["method"], self.config, seed)]

    def row(self, sample: Sample, responses: list) -> dict[str, Any]:
        (result,) = responses
        target: TargetSpec = sample.data["target"]
        row: dict[str, Any] = {
            "method": sample.data["method"], "target_source": target.source, "target_word": target.word,
            "category": sample.data["category"], "gt_boxes": [v for box in sample.data["boxes"] for v in box],
            "status": result.status, "reason": result.reason, "target_text": result.target_text,
            "target_ids": list(result.target_ids), "target_position": result.target_position,
            "caption": result.caption, "seconds": result.seconds,
        }
        if result.status == "ok":
            rows, cols = result.grid
            row.update(grid_rows=rows, grid_cols=cols, saliency=[float(v) for v in np.asarray(result.saliency).reshape(-1)],
                       space=json.dumps(result.space),
                       **{name: [float(v) for v in values] for name, values in result.curves.items()})
        return self._derive(row)

    def artifacts(self, sample: Sample, responses: list, row: dict[str, Any]) -> list:
        (result,) = responses
        if result.status != "ok" or not sample.data["overlay"]:
            return []
        from ..data.images import load_image
        from ..explain.overlay import overlay_png
        from ..explain.space import PixelSpace

        space = PixelSpace.from_dict(result.space)
        png = overlay_png(load_image(sample.image), space.grid_to_original(np.asarray(result.saliency)))
        return [Artifact(f"overlays/{sample.id.replace(':', '_')}.png", png)]

    # -- scoring -------------------------------------------------------------------------------------------------
    def row_schema(self) -> list[tuple[str, str]]:
        return [("method", "string"), ("target_source", "string"), ("target_word", "string"), ("category", "string"),
                ("gt_boxes", "list<double>"), ("status", "string"), ("reason", "string"), ("target_text", "string"),
                ("target_ids", "list<int64>"), ("target_position", "int64"), ("caption", "string"),
                ("grid_rows", "int64"), ("grid_cols", "int64"), ("saliency", "list<double>"), ("space", "string"),
                ("insertion", "list<double>"), ("deletion", "list<double>"),
                ("token_insertion", "list<double>"), ("token_deletion", "list<double>"),
                ("p_original", "double"), ("p_blur", "double"), ("p_deleted", "double"),
                *[(name, "double") for name in CURVE_SCORES], ("seconds", "double")]

    def _derive(self, row: dict[str, Any]) -> dict[str, Any]:
        """AUCs from the stored curves (so `bench rescore` recomputes them without the model)."""
        from ..metrics.curves import auc, normalised_curve

        ins, dele = _listed(row.get("insertion")), _listed(row.get("deletion"))
        if ins is None or dele is None:
            return row
        p_original, p_blur, p_deleted = dele[0], ins[0], dele[-1]
        row.update(p_original=p_original, p_blur=p_blur, p_deleted=p_deleted, insertion_auc=auc(ins), deletion_auc=auc(dele))
        norm_ins, norm_del = normalised_curve(ins, p_original, p_blur), normalised_curve(dele, p_original, p_deleted)
        row["insertion_auc_norm"] = None if norm_ins is None else auc(norm_ins)
        row["deletion_auc_norm"] = None if norm_del is None else auc(norm_del)
        t_ins, t_del = _listed(row.get("token_insertion")), _listed(row.get("token_deletion"))
        if t_ins is not None and t_del is not None:
            row.update(token_insertion_auc=auc(t_ins), token_deletion_auc=auc(t_del))
        return row

    def rescore(self, rows):
        rows = rows.copy()
        records = [self._derive(dict(r)) for r in rows.to_dict("records")]
        for column in ("p_original", "p_blur", "p_deleted", *CURVE_SCORES):
            rows[column] = [r.get(column) for r in records]
        return rows

    def metric_info(self) -> dict[str, MetricInfo]:
        info = {}
        for m in self.methods:
            for name, label, up in (("ins_minus_del", "Insertion - deletion AUC", True), ("insertion_auc", "Insertion AUC", True),
                                    ("deletion_auc", "Deletion AUC", False), ("insertion_auc_norm", "Insertion AUC, normalised", True),
                                    ("deletion_auc_norm", "Deletion AUC, normalised", False),
                                    ("token_insertion_auc", "Token-space insertion AUC", True),
                                    ("token_deletion_auc", "Token-space deletion AUC", False),
                                    ("insertion_vs_random", "Insertion AUC - random's", True),
                                    ("deletion_vs_random", "Deletion AUC - random's", False)):
                info[f"{name}[{m}]"] = MetricInfo(f"{name}[{m}]", f"{label} ({m})", up)
        return info

    def primary_metric(self) -> str:
        return f"ins_minus_del[{self.methods[0]}]"

    def primary_metrics(self) -> list[str]:
        return [f"ins_minus_del[{m}]" for m in self.methods]

    def metrics(self, rows) -> dict[str, dict[str, float]]:
        ok = rows[rows["status"] == "ok"]
        if not len(ok):
            return {}
        draw = ImageDraw(ok["image_id"].tolist(), self.context.bootstrap)
        level = self.context.bootstrap.level
        out: dict[str, dict[str, float]] = {}
        by_method = {m: ok[ok["method"] == m] for m in self.methods}
        random = by_method.get("random")
        for m, part in by_method.items():
            if not len(part):
                continue
            values = {name: part[name].to_numpy(dtype=float) for name in CURVE_SCORES if name in part}
            values["ins_minus_del"] = values["insertion_auc"] - values["deletion_auc"]
            if random is not None and m != "random":
                paired = part.merge(random, on=["image_id", "target_position", "target_text"], suffixes=("", "_random"))
                if len(paired):
                    for name in ("insertion_auc", "deletion_auc"):
                        stat = _mean_stat(paired[name].to_numpy(float) - paired[f"{name}_random"].to_numpy(float),
                                          paired["image_id"].tolist())
                        out[f"{name.split('_')[0]}_vs_random[{m}]"] = estimate(stat, draw, level)
            ids = part["image_id"].tolist()
            for name, v in values.items():
                if np.isfinite(v).any():
                    out[f"{name}[{m}]"] = estimate(_mean_stat(v, ids), draw, level)
        return out

    def figures(self, rows) -> dict[str, Any]:
        ok = rows[rows["status"] == "ok"]
        figures: dict[str, Any] = {"counts": {"rows": int(len(rows)), "absent": int((rows["status"] == "absent").sum()),
                                              "null_normalised": int(ok["insertion_auc_norm"].isna().sum()) if len(ok) else 0}}
        curves = {}
        for m in self.methods:
            part = ok[ok["method"] == m]
            if len(part):
                curves[m] = {name: np.mean(np.stack([np.asarray(c, float) for c in part[name]]), 0).tolist()
                             for name in ("insertion", "deletion")}
        figures["mean_curves"] = curves
        return figures


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


def _listed(value) -> np.ndarray | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    array = np.asarray(list(value), dtype=float)
    return array if array.size else None


def _boxes_by_category(coco, image_id: int) -> dict[str, list[list[float]]]:
    """Category -> boxes (x1, y1, x2, y2) of an image, crowd boxes included."""
    out: dict[str, list[list[float]]] = {}
    for name, bbox in coco.boxes(image_id):
        if len(bbox) == 4:
            x, y, w, h = bbox
            out.setdefault(name, []).append([float(x), float(y), float(x + w), float(y + h)])
    return out

