"""Saliency: a map for an output token, judged by faithfulness (RISE insertion/deletion), localisation, a sanity
test and what it says about hallucinated words; per method.

Targets (``params.targets``):
  - ``caption_words``: the object words of each image's first reference caption (or of a captions file), teacher-
    forced after the caption text before them (random tiny models rarely say object words of their own); with
    ``words: all`` also the words the image's ground truth does not hold (hallucinated);
  - ``own_caption``: the object words of the model's own greedy description (by token ids and position); an image
    whose description has fewer object words gets rows marked ``absent``, counted in the metrics, not failed;
  - ``pope_answer``: the first token of the model's own answer to POPE questions about the image;
  - ``class_word``: on CUB (the wsolevaluation metadata layout), the class name (or ``class_target``) after
    ``prefix`` ("The image shows a"), scored by MaxBoxAccV2 as the paper's table.
Methods (``params.methods``, e.g. ``--set methods=ga,integrated_gradients,occlusion,random``) are looked up in
`SALIENCY_METHODS`; one row per (image, target, method). A method the model cannot run (``ga`` without a grounded
model; gradients on a model with no white-box seam) is refused before any work. ``sanity: true`` adds the cascading
model-parameter randomisation test to every row. What is derived and reported: `bench/tasks/_saliency_stats.py`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..data.images import ImageRef, check_image_root
from ..errors import ConfigError
from ..explain.request import ExplainConfig, ExplainRequest, ExplainResult, TargetSpec
from ..io import Artifact
from ..registry import SALIENCY_METHODS, TASK_TYPES
from ..spec import listing_hash, sha256_file
from ..validation import param
from ._saliency_stats import CURVE_SCORES, derive, figures, flag_sanity, sample_statistics
from .base import MetricInfo, Sample, TaskType, seeded_subset

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
    sanity: bool = False                               # the cascading model-parameter randomisation test
    captions_file: str | None = None                   # caption_words from a captions file (image_id, caption per line)
    class_target: str | None = None                    # class_word: a fixed word (e.g. "bird") instead of the class name

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


@dataclass
class CubDataset:
    source: Literal["cub"]
    metadata: str                  # the wsolevaluation metadata folder (image_ids.txt, class_labels.txt, localization.txt)
    images: str                    # the folder the image ids are relative to
    classes: str | None = None     # CUB's classes.txt (names from the class folders when absent)
    root: str | None = None


KIND_NEEDS = {"black": "explain:black", "white": "explain:white", "ga": "explain:ga"}


@TASK_TYPES.register("saliency")
class SaliencyTask(TaskType):
    type_name = "saliency"
    Params = SaliencyParams
    DATASETS = {"coco": CocoDataset, "cub": CubDataset}

    def __init__(self, spec, context):
        super().__init__(spec, context)
        where = spec.source
        self.methods = self.params.method_list()
        if not self.methods:
            raise ConfigError(f"{where}: params field 'methods' names no method")
        for name in self.methods:
            if name not in SALIENCY_METHODS:
                raise ConfigError(f"{where}: params field 'methods': {SALIENCY_METHODS.unknown_message(name)}")
        cub = isinstance(self.dataset, CubDataset)
        if self.params.targets == "caption_words" and not (getattr(self.dataset, "captions", None) or self.params.captions_file):
            raise ConfigError(f"{where}: targets caption_words need the dataset's 'captions' file or params 'captions_file'")
        if (self.params.targets == "class_word") != cub:
            raise ConfigError(f"{where}: targets class_word go with a dataset of class labels (source cub), and only they")
        self.config = ExplainConfig(steps=self.params.steps, deletion_baseline=self.params.deletion_baseline,
                                    ig_steps=self.params.ig_steps, ig_baseline=self.params.ig_baseline,
                                    token_space=self.params.token_space, seed=context.seed, grid=self.params.grid,
                                    sanity=self.params.sanity)
        self._fingerprint: dict[str, Any] = {}

    # -- data --------------------------------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        targets = self._cub_targets() if isinstance(self.dataset, CubDataset) else self._coco_targets()
        samples = []
        overlays: dict[str, int] = {}
        for t, (image_id, path, spec, category, boxes, by_category) in enumerate(targets):
            for method in self.methods:
                overlays[method] = overlays.get(method, 0) + 1
                samples.append(Sample(
                    id=f"{image_id}:{t}:{method}", index=len(samples), group=str(image_id), image=ImageRef(path=str(path)),
                    data={"target": spec, "method": method, "category": category, "boxes": boxes, "target_index": t,
                          "gt": sorted(by_category), "overlay": overlays[method] <= self.params.max_overlays,
                          **({"boxes_by_category": by_category} if spec.source == "own_caption" else {})}))
        return samples

    def _coco_targets(self) -> list[tuple]:
        from ..data.coco import CocoInstances, load_captions

        annotations = self.data_path(self.dataset.annotations, "annotation file")
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        coco = CocoInstances.load(annotations, image_root)
        self._fingerprint = {"annotations": {"file": self.dataset.annotations, "sha256": sha256_file(annotations)},
                             "images": listing_hash(image_root)}
        captions: dict = {}
        if self.params.captions_file:
            path = self.data_path(self.params.captions_file, "captions file")
            captions = _captions_file(path)
            self._fingerprint["captions_file"] = {"file": self.params.captions_file, "sha256": sha256_file(path)}
        elif self.dataset.captions:
            path = self.data_path(self.dataset.captions, "captions file")
            captions = {str(k): v for k, v in load_captions(path).items()}
            self._fingerprint["captions"] = {"file": self.dataset.captions, "sha256": sha256_file(path)}
        out = []
        for image_id in seeded_subset(coco.image_ids(), self.params.num_images, self.context.seed):
            boxes = _boxes_by_category(coco, image_id)
            for spec, category in self._targets(coco, image_id, captions.get(str(image_id), []), boxes)[: self.params.max_targets]:
                out.append((image_id, coco.image_file(image_id), spec, category, boxes.get(category, []), boxes))
        return out

    def _cub_targets(self) -> list[tuple]:
        from ..data.cub import load_cub

        metadata = self.data_path(self.dataset.metadata, "metadata folder")
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        classes = self.data_path(self.dataset.classes, "classes file") if self.dataset.classes else None
        images = load_cub(metadata, classes)
        self._fingerprint = {name: {"file": name, "sha256": sha256_file(metadata / name)}
                             for name in ("image_ids.txt", "class_labels.txt", "localization.txt")}
        self._fingerprint["images"] = {"files": len(images)}
        chosen = seeded_subset([im.image_id for im in images], self.params.num_images, self.context.seed)
        by_id = {im.image_id: im for im in images}
        out = []
        for image_id in chosen:
            im = by_id[image_id]
            word = self.params.class_target or im.class_name
            spec = TargetSpec(self.params.prompt, "given", self.params.prefix, word)
            boxes = [list(b) for b in im.boxes]
            out.append((image_id, image_root / image_id, spec, im.class_name, boxes, {im.class_name: boxes}))
        return out

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
            "category": result.category or sample.data["category"],
            "gt_boxes": [v for box in self._boxes(sample, result) for v in box],
            "target_index": sample.data["target_index"], "hallucinated": self._hallucinated(sample, result),
            "status": result.status, "reason": result.reason, "target_text": result.target_text,
            "target_ids": list(result.target_ids), "target_position": result.target_position,
            "caption": result.caption, "seconds": result.seconds,
        }
        if result.status == "ok":
            rows, cols = result.grid
            row.update(grid_rows=rows, grid_cols=cols, saliency=[float(v) for v in np.asarray(result.saliency).reshape(-1)],
                       space=json.dumps(result.space),
                       **{name: [float(v) for v in values] for name, values in result.curves.items()})
            if result.sanity:
                row.update(sanity_steps=list(result.sanity["steps"]), sanity_spearman=list(result.sanity["spearman"]),
                           sanity_ssim=list(result.sanity["ssim"]))
        return derive(row)

    @staticmethod
    def _boxes(sample: Sample, result: ExplainResult) -> list:
        if result.category and result.category != sample.data["category"]:
            return sample.data.get("boxes_by_category", {}).get(result.category, [])
        return sample.data["boxes"]

    @staticmethod
    def _hallucinated(sample: Sample, result: ExplainResult) -> bool | None:
        """An object word is hallucinated when its category is not in the image's ground truth (None: unknown)."""
        category = result.category or sample.data["category"]
        if category is None or sample.data.get("gt") is None:
            return None
        return category not in sample.data["gt"]

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
                *[(name, "double") for name in CURVE_SCORES], ("seconds", "double"),
                ("target_index", "int64"), ("hallucinated", "bool"), ("pointing_hit", "bool"), ("energy", "double"),
                ("entropy", "double"), ("best_iou", "list<double>"), ("sanity_steps", "list<string>"),
                ("sanity_spearman", "list<double>"), ("sanity_ssim", "list<double>")]

    def rescore(self, rows):
        rows = rows.copy()
        records = [derive(dict(r)) for r in rows.to_dict("records")]
        for column in ("p_original", "p_blur", "p_deleted", *CURVE_SCORES, "pointing_hit", "energy", "entropy", "best_iou"):
            rows[column] = [r.get(column) for r in records]
        return rows

    METRIC_LABELS = (("ins_minus_del", "Insertion - deletion AUC", True), ("insertion_auc", "Insertion AUC", True),
                     ("deletion_auc", "Deletion AUC", False), ("insertion_auc_norm", "Insertion AUC, normalised", True),
                     ("deletion_auc_norm", "Deletion AUC, normalised", False),
                     ("token_insertion_auc", "Token-space insertion AUC", True),
                     ("token_deletion_auc", "Token-space deletion AUC", False),
                     ("insertion_vs_random", "Insertion AUC - random's", True),
                     ("deletion_vs_random", "Deletion AUC - random's", False),
                     ("pointing_game", "Pointing game (15 px)", True), ("energy_in_boxes", "Energy in the boxes", True),
                     ("maxboxacc_v2", "MaxBoxAccV2", True), ("maxboxacc@0.3", "MaxBoxAcc at IoU 0.3", True),
                     ("maxboxacc@0.5", "MaxBoxAcc at IoU 0.5", True), ("maxboxacc@0.7", "MaxBoxAcc at IoU 0.7", True),
                     ("entropy", "Map entropy (normalised)", False),
                     ("sanity_spearman", "Spearman with the randomised model's maps", False),
                     ("sanity_ssim", "SSIM with the randomised model's maps", False),
                     ("hallucination_auroc_insertion", "AUROC of low insertion AUC for hallucinated words", True),
                     ("hallucination_auroc_entropy", "AUROC of map entropy for hallucinated words", True))

    def metric_info(self) -> dict[str, MetricInfo]:
        return {f"{name}[{m}]": MetricInfo(f"{name}[{m}]", f"{label} ({m})", up)
                for m in self.methods for name, label, up in self.METRIC_LABELS}

    def primary_name(self) -> str:
        """CUB: MaxBoxAccV2, as the paper's table; caption words with hallucinated ones: their insertion AUROC;
        otherwise insertion minus deletion AUC."""
        if isinstance(self.dataset, CubDataset):
            return "maxboxacc_v2"
        if self.params.words == "all" and self.params.targets in ("caption_words", "own_caption"):
            return "hallucination_auroc_insertion"
        return "ins_minus_del"

    def primary_metric(self) -> str:
        return f"{self.primary_name()}[{self.methods[0]}]"

    def primary_metrics(self) -> list[str]:
        return [f"{self.primary_name()}[{m}]" for m in self.methods]

    def sample_statistics(self, rows):
        return sample_statistics(rows[rows["status"] == "ok"], self.methods)

    def metrics(self, rows) -> dict[str, dict[str, float]]:
        if not (rows["status"] == "ok").any():
            return {}
        return flag_sanity(super().metrics(rows))

    def figures(self, rows) -> dict[str, Any]:
        return figures(rows, self.methods)


def _captions_file(path) -> dict[str, list[str]]:
    from ..results.captions import read_captions_file

    out: dict[str, list[str]] = {}
    for record in read_captions_file(path):
        out.setdefault(record["image_id"], []).append(record["caption"])
    return out


def _boxes_by_category(coco, image_id: int) -> dict[str, list[list[float]]]:
    """Category -> boxes (x1, y1, x2, y2) of an image, crowd boxes included."""
    out: dict[str, list[list[float]]] = {}
    for name, bbox in coco.boxes(image_id):
        if len(bbox) == 4:
            x, y, w, h = bbox
            out.setdefault(name, []).append([float(x), float(y), float(x + w), float(y + h)])
    return out
