"""Detector-grounded hallucination detection (Giulivi & Boracchi 2024, method.md section 1).

Each yes/no question about an object is answered by the model, and the detector's highest confidence
c for that object on the image is recorded with the answer. With ``grounding: model`` c comes from the
grounded model's OWN vision embedding (the one its language model read); with ``grounding: external``
any MLLM is checked against a separate detector run on the image (ONNX or OWL-ViT), recorded as such
and reported in its own leaderboard column.

Question sets: ``pope`` (the POPE task's questions: COCO annotations, the official files, or a
datasets source) or ``all_classes`` (the paper's variant: every present and every absent category of
each image, "Is there a {class} in the image? Only answer with 'yes' or 'no'.").

Figures (bootstrap over images): AUROC of c for the object's presence (how well the embedding grounds
it); AUROC of the disagreement score (1 - c for a "yes", c for a "no") for the answer being wrong; the
precision and recall of a "likely hallucination" flag (the detector disagrees with the answer at
``flag_threshold``); answer accuracy and F1; histograms of c by answer and label.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..data.images import ImageRef, check_image_root
from ..errors import ConfigError, DataError
from ..metrics.classification import RankedScores, auroc
from ..models.base import DetectRequest, DetectResult
from ..registry import TASK_TYPES
from ..validation import param
from ..spec import listing_hash, sha256_file
from .base import MetricInfo, Sample, seeded_subset
from .pope import CocoDataset, PopeParams, PopeTask, _zero_safe
from .pope_sampling import with_article

BINS = np.linspace(0.0, 1.0, 11)


@dataclass
class GroundedParams(PopeParams):
    question_set: Literal["pope", "all_classes"] = "pope"
    all_classes_template: str = param("Is there a {} in the image? Only answer with 'yes' or 'no'.", contains="{}")
    grounding: Literal["model", "external"] = "model"
    detector: str | None = None          # external grounding: onnx:<preset>, owlvit:<hub id or folder>
    detector_model: str | None = None    # the .onnx file of an ONNX detector
    flag_threshold: float = param(0.1, min=0, max=1)   # the detector "disagrees" with yes below it, with no at or above it


@TASK_TYPES.register("grounded_hallucination")
class GroundedHallucinationTask(PopeTask):
    type_name = "grounded_hallucination"
    Params = GroundedParams

    def __init__(self, spec, context):
        super().__init__(spec, context)
        p = self.params
        where = spec.source
        if p.grounding == "external" and not p.detector:
            raise ConfigError(f"{where}: params field 'detector' is required when grounding is 'external'")
        if p.question_set == "all_classes" and not isinstance(self.dataset, CocoDataset):
            raise ConfigError(f"{where}: question_set all_classes needs COCO annotations (dataset source coco)")

    def _needs_negatives(self) -> bool:
        return self.params.question_set == "pope"

    def needs(self) -> set[str]:
        return {"detect"} if self.params.grounding == "model" else set()

    @property
    def grounding_name(self) -> str:
        return "model" if self.params.grounding == "model" else f"detector:{self.params.detector}"

    # -- data ----------------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        samples = self._all_classes_samples() if self.params.question_set == "all_classes" else super().samples()
        if self.params.grounding == "external":
            from ..detectors.factory import detector_identity

            self._fingerprint["detector"] = detector_identity(self.params.detector, self.params.detector_model)
        return samples

    def _all_classes_samples(self) -> list[Sample]:
        from ..data.coco import CocoInstances

        annotations = self.data_path(self.dataset.annotations, "annotation file")
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        coco = CocoInstances.load(annotations, image_root)
        ids = seeded_subset(coco.image_ids(), self.params.num_images, self.context.seed)
        names = coco.category_names()
        samples = []
        for image_id in ids:
            present = set(coco.objects(image_id))
            ref = ImageRef(path=str(coco.image_file(image_id)))
            for name in names:
                samples.append(self._sample(len(samples), len(samples) + 1, str(image_id), ref, name,
                                            "yes" if name in present else "no", with_article(self.params.all_classes_template, name)))
        self._fingerprint = {"annotations": {"file": self.dataset.annotations, "sha256": sha256_file(annotations)},
                             "images": listing_hash(image_root)}
        return samples

    def prepare(self, samples: list[Sample], workdir: Path) -> list[Sample]:
        """External grounding: the detector's confidences, once per image for all its asked objects (cached)."""
        if self.params.grounding != "external":
            return samples
        from ..data.images import ImageLoadError, load_image
        from ..detectors.factory import DetectionCache, detector_identity, make_detector, max_scores

        identity = detector_identity(self.params.detector, self.params.detector_model)
        cache = DetectionCache(workdir / "detector_confidence.json", {"detector": identity})
        by_image: dict[str, list[Sample]] = {}
        for s in samples:
            by_image.setdefault(s.group, []).append(s)
        detector = None
        for image_id, group in by_image.items():
            known = cache.images.setdefault(image_id, {})
            wanted = [o for o in dict.fromkeys(s.data["object"] for s in group) if o not in known]
            if not wanted:
                continue
            try:
                image = load_image(group[0].image)
            except ImageLoadError:
                continue   # counted when the model reads it
            detector = detector or make_detector(self.params.detector, self.params.detector_model, 0.0)
            vocabulary = getattr(detector, "vocabulary", None)
            asked = [o for o in wanted if vocabulary is None or o in vocabulary]
            scores = max_scores(detector, [image], asked)[0] if asked else []
            known.update({o: float(v) for o, v in zip(asked, scores)})
            known.update({o: 0.0 for o in wanted if o not in asked})   # outside a closed vocabulary: never seen
        cache.save()
        return [Sample(s.id, s.index, s.group, s.image, {**s.data, "confidence": cache.images.get(s.group, {}).get(s.data["object"])})
                for s in samples]

    def leaderboard_column(self) -> str:
        return self.name if self.params.grounding == "model" else f"{self.name} [grounding: {self.params.detector}]"

    # -- model -----------------------------------------------------------------------------------
    def prompt_text(self, sample: Sample) -> str:
        suffix = "" if self.params.question_set == "all_classes" else self.params.prompt_suffix
        return sample.data["question"] + suffix

    def requests(self, sample: Sample, image) -> list:
        out = super().requests(sample, image)
        if self.params.grounding == "model":
            out.append(DetectRequest(image, (sample.data["object"],)))
        elif sample.data.get("confidence") is None:
            raise DataError(f"no detector confidence for image {sample.group} ({sample.image.display})")
        return out

    def row(self, sample: Sample, responses: list) -> dict[str, Any]:
        row = super().row(sample, [r for r in responses if not isinstance(r, DetectResult)])
        detected = [r for r in responses if isinstance(r, DetectResult)]
        row["confidence"] = detected[0].max_scores[sample.data["object"]] if detected else sample.data["confidence"]
        row["grounding"] = self.grounding_name
        return row

    # -- scoring ---------------------------------------------------------------------------------
    def row_schema(self) -> list[tuple[str, str]]:
        return super().row_schema() + [("confidence", "double"), ("grounding", "string")]

    def _answer_column(self) -> str:
        return "gen_answer" if self.params.modes[0] == "generate" else "score_answer"

    def metric_info(self) -> dict[str, MetricInfo]:
        mode = self.params.modes[0]
        t = self.params.flag_threshold
        return {
            "disagreement_auroc": MetricInfo("disagreement_auroc", f"disagreement AUROC for wrong answers ({mode})", True),
            "grounding_auroc": MetricInfo("grounding_auroc", "grounding AUROC for presence", True),
            "flag_precision": MetricInfo("flag_precision", f"precision of the hallucination flag at c={t:g} ({mode})", True),
            "flag_recall": MetricInfo("flag_recall", f"recall of the hallucination flag at c={t:g} ({mode})", True),
            "answer_accuracy": MetricInfo("answer_accuracy", f"answer accuracy ({mode})", True),
            "answer_f1": MetricInfo("answer_f1", f"answer F1 ({mode})", True),
            "answer_yes_ratio": MetricInfo("answer_yes_ratio", f"answer yes-ratio ({mode})", False),
        }

    def primary_metric(self) -> str:
        return "disagreement_auroc"

    def sample_statistics(self, rows):
        """Per row: the detector's confidence and its disagreement with the answer (AUROCs), the flag's and the
        answers' confusion counts."""
        from ..metrics.contract import SampleStatistics, Summed, per_row
        from ..metrics.paired import f1, ratio

        label = (rows["label"] == "yes").to_numpy()
        said_yes = (rows[self._answer_column()] == "yes").to_numpy()
        c = rows["confidence"].to_numpy(dtype=float)
        wrong = said_yes != label
        disagreement = np.where(said_yes, 1.0 - c, c)
        flag = np.where(said_yes, c < self.params.flag_threshold, c >= self.params.flag_threshold)
        flags = np.stack([flag & wrong, flag & ~wrong, ~flag & wrong], 1).astype(float)
        answers = np.stack([said_yes & label, said_yes & ~label, ~said_yes & label, said_yes == label,
                            np.ones(len(label)), said_yes], 1).astype(float)
        stats = SampleStatistics(rows["image_id"].astype(str).tolist())
        stats.metrics.update({
            "disagreement_auroc": per_row(auroc, disagreement, wrong, prepare=RankedScores),
            "grounding_auroc": per_row(auroc, c, label, prepare=RankedScores),
            "flag_precision": Summed(flags, lambda s: _zero_safe(s[:, 0], s[:, 0] + s[:, 1])),
            "flag_recall": Summed(flags, lambda s: _zero_safe(s[:, 0], s[:, 0] + s[:, 2])),
            "answer_accuracy": Summed(answers, ratio(3, 4, zero_division=0.0), correct=said_yes == label),
            "answer_f1": Summed(answers, f1(0, 1, 2, zero_division=0.0)),
            "answer_yes_ratio": Summed(answers, ratio(5, 4, zero_division=0.0)),
        })
        return stats

    def figures(self, rows) -> dict[str, Any]:
        """Histograms of the detector confidence by answer and label (10 bins over [0, 1])."""
        said_yes = rows[self._answer_column()] == "yes"
        out = {"bins": [round(b, 2) for b in BINS.tolist()]}
        for answer in ("yes", "no"):
            for label in ("yes", "no"):
                values = rows.loc[(said_yes == (answer == "yes")) & (rows["label"] == label), "confidence"].to_numpy(dtype=float)
                out[f"answer_{answer}_label_{label}"] = np.histogram(values, BINS)[0].tolist()
        return out

    GROUP_MEANS = False
