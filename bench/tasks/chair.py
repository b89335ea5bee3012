"""CHAIR: object hallucination in free-form image descriptions (Rohrbach et al. 2018).

The model describes each image (greedy, ``max_new_tokens`` 512 by default); every COCO object word
in the description is a mention (synonyms, plurals, two-word phrases and the reference's special
cases: `bench/text/chair_words.py`). Ground truth per image is either its annotations (COCO instance
categories plus the objects mentioned in its reference captions) or a detector run on the image
(``ground_truth: detector``), which makes CHAIR work on any image folder; results from a detector
get their own leaderboard column named with the detector.

Metrics (bootstrap over images): CHAIR_s (primary; captions with a hallucinated object), CHAIR_i
(hallucinated mentions / mentions, every occurrence counted), Recall, Len.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..data.images import ImageRef, check_image_root
from ..errors import ConfigError, DataError
from ..models.base import GenerateRequest, GenerateResult
from ..registry import TASK_TYPES
from ..spec import listing_hash, sha256_file
from ..validation import param
from .base import MetricInfo, Sample, TaskType, seeded_subset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_SENTENCE_END = re.compile(r"[.!?][\"')\]]*(?=\s|$)")


def drop_unfinished_sentence(text: str) -> str:
    """Cut the text after its last complete sentence (unless nothing would be left)."""
    stripped = text.rstrip()
    ends = list(_SENTENCE_END.finditer(stripped))
    if not ends or ends[-1].end() == len(stripped):
        return stripped
    return stripped[: ends[-1].end()]


@dataclass
class ChairParams:
    prompts: list[str] = param(default_factory=lambda: ["Please describe this image in detail."], nonempty=True,
                               items={"nonempty": True})
    max_new_tokens: int = param(512, min=1)
    drop_unfinished_sentence: bool = False
    num_images: int | None = param(500, min=1)     # a seeded subset (None: every image); the ids are recorded
    ground_truth: Literal["annotations", "detector"] = "annotations"
    detector: str | None = None        # e.g. onnx:centernet_mbv3_coco80, owlvit:google/owlvit-base-patch32
    detector_model: str | None = None  # the model file of an ONNX detector
    detector_threshold: float | None = param(None, min=0, max=1)
    phrase_rules: Literal["reference", "opera"] = "reference"   # "opera": "train track" etc. count as nothing


@dataclass
class CocoCaptionsDataset:
    source: Literal["coco"]
    images: str
    annotations: str | None = None     # instances file (needed for annotation ground truth)
    captions: str | None = None        # captions file (reference captions)
    root: str | None = None


@dataclass
class FolderDataset:
    source: Literal["image_folder"]
    images: str = "."
    root: str | None = None


DATASETS = {"coco": CocoCaptionsDataset, "image_folder": FolderDataset}

ROW_SCHEMA = [
    ("prompt_index", "int64"), ("prompt", "string"), ("caption_raw", "string"), ("caption", "string"),
    ("gen_tokens", "int64"), ("gen_finished", "bool"), ("gt", "list<string>"), ("gt_source", "string"),
    ("mentioned", "list<string>"), ("mentioned_words", "list<string>"), ("hallucinated", "list<string>"),
    ("hallucinated_words", "list<string>"), ("recalled", "list<string>"), ("n_words", "int64"),
    ("n_mentions", "int64"), ("n_hallucinated", "int64"), ("has_hallucination", "bool"),
]
DERIVED = ("caption", "mentioned", "mentioned_words", "hallucinated", "hallucinated_words", "recalled", "n_words",
           "n_mentions", "n_hallucinated", "has_hallucination")


@functools.lru_cache(maxsize=None)
def vocabulary(rules: str):
    """The CHAIR matcher: the reference's phrase rules, or the OPERA ports' ("train track" counts as nothing)."""
    from ..text.chair_words import OPERA_IGNORED_PHRASES, ChairVocabulary, default_vocabulary

    return default_vocabulary() if rules == "reference" else ChairVocabulary(ignored_phrases=OPERA_IGNORED_PHRASES)


@TASK_TYPES.register("chair")
class ChairTask(TaskType):
    type_name = "chair"
    Params = ChairParams
    DATASETS = DATASETS
    METRICS = (
        MetricInfo("CHAIR_s", "CHAIR_s", higher_is_better=False),
        MetricInfo("CHAIR_i", "CHAIR_i", higher_is_better=False),
        MetricInfo("Recall", "Recall", higher_is_better=True),
        MetricInfo("Len", "Len (tokens)", higher_is_better=True, scale=1.0),
    )

    def __init__(self, spec, context):
        super().__init__(spec, context)
        where = str(spec.source)
        source = spec.dataset["source"]
        p = self.params
        if not p.prompts or not all(isinstance(x, str) and x.strip() for x in p.prompts):
            raise ConfigError(f"{where}: params field 'prompts' must be a non-empty list of prompts")
        if p.ground_truth == "detector" and not p.detector:
            raise ConfigError(f"{where}: params field 'detector' is required when ground_truth is 'detector'")
        if p.ground_truth == "annotations":
            if source == "image_folder":
                raise ConfigError(f"{where}: an image folder has no annotations; set params ground_truth: detector")
            if not (self.dataset.annotations and self.dataset.captions):
                raise ConfigError(f"{where}: annotation ground truth needs dataset fields 'annotations' and 'captions'")
        self._fingerprint: dict[str, Any] = {}
        self._image_ids: list[str] = []

    # -- data ----------------------------------------------------------------------------------
    @property
    def gt_source(self) -> str:
        return "annotations" if self.params.ground_truth == "annotations" else f"detector:{self.params.detector}"

    def _select(self, ids: list[str]) -> list[str]:
        return seeded_subset(ids, self.params.num_images, self.context.seed)

    def samples(self) -> list[Sample]:
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        fingerprint: dict[str, Any] = {"images": listing_hash(image_root)}
        gt: dict[str, list[str] | None] = {}
        if isinstance(self.dataset, FolderDataset):
            files = sorted(p.name for p in image_root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            images = {Path(name).stem: image_root / name for name in files}
        else:
            images, gt = self._coco(image_root, fingerprint)
        if self.params.ground_truth == "detector":
            from ..detectors.factory import detector_identity

            fingerprint["detector"] = detector_identity(self.params.detector, self.params.detector_model)
            gt = {}
        selected = self._select(list(images))
        self._image_ids = selected
        fingerprint["selected_images"] = {"n": len(selected), "seed": self.context.seed}
        self._fingerprint = fingerprint
        samples = []
        for image_id in selected:
            for k, prompt in enumerate(self.params.prompts):
                samples.append(Sample(id=f"{image_id}#{k}" if len(self.params.prompts) > 1 else image_id, index=len(samples),
                                      group=image_id, image=ImageRef(path=str(images[image_id])),
                                      data={"prompt_index": k, "prompt": prompt, "gt": gt.get(image_id)}))
        return samples

    def _coco(self, image_root: Path, fingerprint: dict[str, Any]):
        from ..data.coco import CocoInstances, load_captions, read_json

        vocab = vocabulary(self.params.phrase_rules)
        gt: dict[str, list[str]] = {}
        if self.dataset.annotations:
            path = self.data_path(self.dataset.annotations, "instances file")
            coco = CocoInstances.load(path, image_root)
            fingerprint["annotations"] = {"file": self.dataset.annotations, "sha256": sha256_file(path)}
            images = {str(i): coco.image_file(i) for i in coco.image_ids()}
            objects = {str(i): coco.objects(i) for i in coco.image_ids()}
        else:
            objects = {}
            images = {}
        if self.dataset.captions:
            path = self.data_path(self.dataset.captions, "captions file")
            captions = load_captions(path)
            if not any(captions.values()):
                raise DataError(f"{path}: the annotation file has no captions (CHAIR's ground truth needs reference captions)")
            fingerprint["captions"] = {"file": self.dataset.captions, "sha256": sha256_file(path)}
            if not images:
                data = read_json(path)
                images = {str(img["id"]): image_root / img["file_name"] for img in data["images"]}
        else:
            captions = {}
        if self.params.ground_truth == "annotations":
            for image_id in images:
                try:
                    truth = vocab.ground_truth(objects.get(image_id, []), captions.get(int(image_id), []))
                except ValueError as exc:
                    raise DataError(f"{self.dataset.annotations}: image {image_id}: {exc}") from None
                gt[image_id] = sorted(truth)
        return images, gt

    def data_fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    def manifest_extras(self) -> dict[str, Any]:
        return {"selected_image_ids": self._image_ids, "ground_truth": self.gt_source}

    def prepare(self, samples: list[Sample], workdir: Path) -> list[Sample]:
        """Detector ground truth: run the detector once per image (cached in the run folder)."""
        if self.params.ground_truth != "detector":
            return samples
        from ..data.images import ImageLoadError, load_image
        from ..detectors.factory import DetectionCache, detector_identity, make_detector

        identity = detector_identity(self.params.detector, self.params.detector_model)
        cache = DetectionCache(workdir / "ground_truth.json", {"detector": identity, "threshold": self.params.detector_threshold})
        todo = [s for s in {s.group: s for s in samples}.values() if s.group not in cache.images]
        if todo:
            detector = make_detector(self.params.detector, self.params.detector_model, self.params.detector_threshold)
            names = list(vocabulary(self.params.phrase_rules).categories)
            queries = detector.vocabulary and [n for n in names if n in detector.vocabulary] or names
            for sample in todo:
                try:
                    image = load_image(sample.image)
                except ImageLoadError:
                    continue   # the sample fails when the model reads it, and is counted there
                cache.images[sample.group] = sorted(set(detector.detect([image], queries)[0].labels))
            cache.save()
        return [Sample(s.id, s.index, s.group, s.image, {**s.data, "gt": cache.images.get(s.group)}) for s in samples]

    def leaderboard_column(self) -> str:
        return self.name if self.params.ground_truth == "annotations" else f"{self.name} [gt: {self.params.detector}]"

    # -- model -----------------------------------------------------------------------------------
    def prompt_text(self, sample: Sample) -> str:
        return sample.data["prompt"]

    def requests(self, sample: Sample, image) -> list:
        if sample.data.get("gt") is None:
            raise DataError(f"no ground truth for image {sample.group} ({sample.image.display})")
        return [GenerateRequest(image, sample.data["prompt"], self.params.max_new_tokens)]

    def row(self, sample: Sample, responses: list) -> dict[str, Any]:
        (response,) = [r for r in responses if isinstance(r, GenerateResult)]
        row = {"prompt_index": sample.data["prompt_index"], "prompt": sample.data["prompt"], "caption_raw": response.text,
               "gen_tokens": response.n_tokens, "gen_finished": response.finished, "gt": list(sample.data["gt"]),
               "gt_source": self.gt_source}
        return self.derive(row)

    def derive(self, row: dict[str, Any]) -> dict[str, Any]:
        caption = row["caption_raw"] or ""
        if self.params.drop_unfinished_sentence:
            caption = drop_unfinished_sentence(caption)
        score = vocabulary(self.params.phrase_rules).score_caption(caption, set(row["gt"]))
        row.update(caption=caption, mentioned=score.mentioned, mentioned_words=score.words, hallucinated=score.hallucinated,
                   hallucinated_words=score.hallucinated_words, recalled=score.recalled, n_words=score.n_words,
                   n_mentions=score.n_mentions, n_hallucinated=score.n_hallucinated, has_hallucination=score.has_hallucination)
        return row

    # -- scoring ---------------------------------------------------------------------------------
    def row_schema(self) -> list[tuple[str, str]]:
        return ROW_SCHEMA

    def rescore(self, rows):
        rows = rows.copy()
        records = []
        for record in rows.to_dict("records"):
            if isinstance(record.get("error"), str):
                records.append({k: None for k in DERIVED})
                continue
            record["gt"] = list(record["gt"])
            records.append(self.derive(record))
        for column in DERIVED:
            rows[column] = [r[column] for r in records]
        return rows

    def sample_statistics(self, rows):
        """Per caption: its mention, hallucination, ground-truth, recall and word counts (`bench.metrics.chair`)."""
        from ..metrics.chair import metrics_from_totals
        from ..metrics.contract import SampleStatistics, Summed

        counts = np.stack([
            rows["n_mentions"].to_numpy(dtype=float), rows["n_hallucinated"].to_numpy(dtype=float),
            rows["has_hallucination"].to_numpy(dtype=float), rows["gt"].map(len).to_numpy(dtype=float),
            rows["recalled"].map(len).to_numpy(dtype=float), rows["n_words"].to_numpy(dtype=float),
            np.ones(len(rows))], 1)

        def metric(name):
            # column sums of the per-caption counts, plus the number of captions, give every CHAIR metric
            return lambda sums: metrics_from_totals(sums[:, :6], sums[:, 6])[name]

        stats = SampleStatistics(rows["image_id"].astype(str).tolist())
        for name in ("CHAIR_s", "CHAIR_i", "Recall", "Len"):
            stats.metrics[name] = Summed(counts, metric(name))
        return stats

    def write_extras(self, rows, folder: Path) -> None:
        """captions.jsonl: image_id + caption per line, the format papers publish captions in."""
        from ..io import atomic_write_bytes

        lines = []
        for record in rows.to_dict("records"):
            if isinstance(record.get("error"), str):
                continue
            image_id = int(record["image_id"]) if str(record["image_id"]).isdigit() else record["image_id"]
            lines.append(json.dumps({"image_id": image_id, "caption": record["caption_raw"], "prompt": record["prompt"]}))
        atomic_write_bytes(folder / "captions.jsonl", ("\n".join(lines) + "\n").encode())
