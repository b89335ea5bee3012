"""POPE: "Is there a {object} in the image?" over present and absent objects (Li et al. 2023).

Answer modes: ``generate`` (greedy decoding, the official parsing rule), ``score`` (one forward pass:
P(yes) = the summed probability of the tokenizer's yes tokens over that of yes plus no tokens, for
the answer's first token; "yes" when P(yes) >= 0.5), or ``both``. Metrics per mode with yes as the
positive class; the yes-ratio is the share of PREDICTED yes; AUROC of P(yes) for ``score``.

``type: repope`` is RePOPE (Neuhaus & Hein 2025): the official questions relabelled, read from the folder the
user gives (``--set repope_dir=...``: the files are not shipped), and scored exactly as POPE.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..data.images import ImageRef, check_image_root
from ..errors import ConfigError, DataError
from ..metrics.classification import RankedScores, auroc
from ..models.base import GenerateRequest, GenerateResult, ScoreRequest, ScoreResult
from ..registry import TASK_TYPES
from ..spec import listing_hash, sha256_file
from ..validation import param
from .base import MetricInfo, Sample, TaskType
from . import pope_sampling

MODES = ("generate", "score")
CLASSIFICATION = (("accuracy", "Accuracy"), ("precision", "Precision"), ("recall", "Recall"), ("f1", "F1"),
                  ("yes_ratio", "Yes-ratio (predicted)"))


def parse_answer(text: str) -> str:
    """The official POPE rule: keep the text before the first '.', drop commas, split on spaces;
    "no" if any word is "No", "no" or "not", otherwise "yes" (so an empty answer is "yes")."""
    text = text.strip()
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def p_yes(logp_yes: float, logp_no: float) -> float:
    """P(yes) / (P(yes) + P(no)), computed stably from log-probabilities."""
    if math.isinf(logp_yes) and math.isinf(logp_no):
        return 0.5
    return 1.0 / (1.0 + math.exp(min(700.0, logp_no - logp_yes)))


@dataclass
class PopeParams:
    negatives: Literal["random", "popular", "adversarial"] | None = None   # for questions built from annotations
    min_objects: int = param(3, min=1)            # eligible images have at least this many distinct objects
    max_positives: int = param(3, min=1)          # present objects asked per image, each paired with one absent object
    num_images: int | None = param(500, min=1)    # images sampled (None: all eligible ones)
    template: str = param("Is there a {} in the image?", contains="{}")
    prompt_suffix: str = "\nAnswer the question using a single word or phrase."
    answer_mode: Literal["generate", "score", "both"] = "generate"
    max_new_tokens: int = param(128, min=1)
    yes_words: list[str] = param(default_factory=lambda: ["yes"], nonempty=True, items={"nonempty": True})
    no_words: list[str] = param(default_factory=lambda: ["no"], nonempty=True, items={"nonempty": True})

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.answer_mode == "both" else (self.answer_mode,)


@dataclass
class CocoDataset:
    source: Literal["coco"]
    annotations: str
    images: str
    root: str | None = None


@dataclass
class OfficialDataset:
    source: Literal["pope_official"]
    questions: str
    images: str
    root: str | None = None
    sha256: str | None = None


@dataclass
class HfDataset:
    source: Literal["hf"]
    path: str
    columns: dict
    split: str = "test"
    name: str | None = None
    revision: str | None = None
    data_files: Any = None
    filter: dict = field(default_factory=dict)


DATASETS = {"coco": CocoDataset, "pope_official": OfficialDataset, "hf": HfDataset}


@TASK_TYPES.register("pope")
class PopeTask(TaskType):
    type_name = "pope"
    Params = PopeParams
    DATASETS = DATASETS

    def __init__(self, spec, context):
        super().__init__(spec, context)
        where = str(spec.source)
        source = spec.dataset["source"]
        if source == "coco" and self.params.negatives is None and self._needs_negatives():
            raise ConfigError(f"{where}: params field 'negatives' (random, popular or adversarial) is required for COCO annotations")
        if self.params.max_positives < 1 or self.params.min_objects < 1:
            raise ConfigError(f"{where}: params fields 'min_objects' and 'max_positives' must be at least 1")
        self._fingerprint: dict[str, Any] = {}

    def _needs_negatives(self) -> bool:
        return True

    # -- data ----------------------------------------------------------------------------------
    def samples(self) -> list[Sample]:
        if isinstance(self.dataset, CocoDataset):
            return self._coco_samples()
        if isinstance(self.dataset, OfficialDataset):
            return self._official_samples()
        return self._hf_samples()

    def _sample(self, index: int, qid: int, image_id: str, ref: ImageRef, obj: str, label: str, text: str) -> Sample:
        return Sample(id=str(qid), index=index, group=image_id, image=ref,
                      data={"question_id": qid, "object": obj, "label": label, "question": text})

    def _coco_samples(self) -> list[Sample]:
        from ..data.coco import CocoInstances

        annotations = self.data_path(self.dataset.annotations, "annotation file")
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        coco = CocoInstances.load(annotations, image_root)
        images = [(str(i), coco.objects(i)) for i in coco.image_ids()]
        p = self.params
        items = pope_sampling.generate(images, strategy=p.negatives, min_objects=p.min_objects, max_positives=p.max_positives,
                                       num_images=p.num_images, seed=self.context.seed, template=p.template)
        self._fingerprint = {"annotations": {"file": self.dataset.annotations, "sha256": sha256_file(annotations)},
                             "images": listing_hash(image_root)}
        return [self._sample(i, it.question_id, it.image, ImageRef(path=str(coco.image_file(int(it.image)))), it.object, it.label, it.text)
                for i, it in enumerate(items)]

    def _official_samples(self) -> list[Sample]:
        from ..data.pope_files import OFFICIAL_SHA256

        questions_path = self.data_path(self.dataset.questions, "question file")
        if not questions_path.exists():
            raise DataError(f"POPE question file not found: {questions_path}")
        return self._question_file_samples(questions_path, self.dataset.sha256 or OFFICIAL_SHA256.get(questions_path.name))

    def _question_file_samples(self, questions_path: Path, expected: str | None, **checksum_words) -> list[Sample]:
        """Samples of a question file in the official format, checked against its pinned sha256."""
        from ..data.pope_files import image_id_from_file, read_questions, verify_checksum

        digest = verify_checksum(questions_path, expected, **checksum_words)
        image_root = check_image_root(self.data_path(self.dataset.images, "image folder"), what=f"task {self.name}")
        questions = read_questions(questions_path)
        self._fingerprint = {"questions": {"file": self.dataset.questions, "sha256": digest}, "images": listing_hash(image_root)}
        return [self._sample(i, q.question_id, image_id_from_file(q.image), ImageRef(path=str(image_root / q.image)),
                             q.object, q.label, q.text) for i, q in enumerate(questions)]

    def _hf_samples(self) -> list[Sample]:
        from ..data.hf import dataset_key, fingerprint, open_dataset

        d = self.dataset
        for role in ("image", "question", "label"):
            if role not in d.columns:
                raise ConfigError(f"{self.spec.source}: dataset field 'columns' is missing role '{role}'")
        spec = {"path": d.path, "name": d.name, "split": d.split, "revision": d.revision, "data_files": d.data_files, "columns": d.columns}
        ds, _ = open_dataset(spec)
        key = dataset_key(spec)
        cols = d.columns
        table = ds.select_columns([c for role, c in cols.items() if role != "image"] + list(d.filter)).to_pandas()
        samples = []
        for row, record in table.iterrows():
            if any(record[k] != v for k, v in d.filter.items()):
                continue
            text = str(record[cols["question"]])
            match = pope_sampling_object(text)
            label = str(record[cols["label"]]).strip().lower()
            if label not in ("yes", "no"):
                raise DataError(f"dataset {d.path!r} row {row}: column {cols['label']!r} must be yes/no, got {label!r}")
            image_id = str(record[cols["image_id"]]) if "image_id" in cols else f"row{row}"
            obj = str(record[cols["object"]]) if "object" in cols else match
            qid = int(record[cols["question_id"]]) if "question_id" in cols else row
            samples.append(self._sample(len(samples), qid, image_id, ImageRef(dataset=key, row=int(row)), obj, label, text))
        self._fingerprint = {"dataset": {"path": d.path, "split": d.split, "revision": d.revision, "fingerprint": fingerprint(ds)}}
        return samples

    def data_fingerprint(self) -> dict[str, Any]:
        return self._fingerprint

    # -- model -----------------------------------------------------------------------------------
    def prompt_text(self, sample: Sample) -> str:
        return sample.data["question"] + self.params.prompt_suffix

    def _words(self) -> tuple[tuple[str, tuple[str, ...]], ...]:
        return (("yes", tuple(self.params.yes_words)), ("no", tuple(self.params.no_words)))

    def first_token_words(self) -> list[tuple[tuple[str, tuple[str, ...]], ...]]:
        return [self._words()] if "score" in self.params.modes else []

    def requests(self, sample: Sample, image) -> list:
        p = self.params
        out: list = []
        if "generate" in p.modes:
            out.append(GenerateRequest(image, self.prompt_text(sample), p.max_new_tokens))
        if "score" in p.modes:
            out.append(ScoreRequest(image, self.prompt_text(sample), first_token_words=self._words()))
        return out

    def row(self, sample: Sample, responses: list) -> dict[str, Any]:
        row: dict[str, Any] = {k: sample.data[k] for k in ("question_id", "object", "label", "question")}
        for response in responses:
            if isinstance(response, GenerateResult):
                row.update(gen_text=response.text, gen_tokens=response.n_tokens, gen_finished=response.finished)
            elif isinstance(response, ScoreResult):
                row.update(score_logp_yes=response.first_token_words["yes"], score_logp_no=response.first_token_words["no"])
        return self._derive(row)

    def _derive(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("gen_text") is not None:
            row["gen_answer"] = parse_answer(row["gen_text"])
        if row.get("score_logp_yes") is not None and not _isnan(row["score_logp_yes"]):
            row["score_p_yes"] = p_yes(row["score_logp_yes"], row["score_logp_no"])
            row["score_answer"] = "yes" if row["score_p_yes"] >= 0.5 else "no"
        return row

    # -- scoring ---------------------------------------------------------------------------------
    def row_schema(self) -> list[tuple[str, str]]:
        return [("question_id", "int64"), ("object", "string"), ("label", "string"), ("question", "string"),
                ("gen_text", "string"), ("gen_tokens", "int64"), ("gen_finished", "bool"), ("gen_answer", "string"),
                ("score_logp_yes", "double"), ("score_logp_no", "double"), ("score_p_yes", "double"), ("score_answer", "string")]

    def rescore(self, rows):
        rows = rows.copy()
        records = [self._derive({k: (None if _missing(v) else v) for k, v in r.items()}) for r in rows.to_dict("records")]
        for column in ("gen_answer", "score_p_yes", "score_answer"):
            rows[column] = [r.get(column) for r in records]
        return rows

    def metric_info(self) -> dict[str, MetricInfo]:
        info = {}
        for mode in self.params.modes:
            for name, label in CLASSIFICATION:
                higher = name != "yes_ratio"
                info[f"{mode}_{name}"] = MetricInfo(f"{mode}_{name}", f"{label} ({mode})", higher)
            if mode == "score":
                info["score_auroc"] = MetricInfo("score_auroc", "AUROC of P(yes) (score)", True)
        return info

    def primary_metric(self) -> str:
        return f"{self.params.modes[0]}_f1"

    def sample_statistics(self, rows):
        """Per row: the confusion-matrix counts of each answer mode (yes is the positive class), and P(yes) with the
        label for the AUROC of score mode."""
        from ..metrics.contract import SampleStatistics, Summed, per_row
        from ..metrics.paired import f1, ratio

        label = (rows["label"] == "yes").to_numpy()
        stats = SampleStatistics(rows["image_id"].astype(str).tolist())
        for mode in self.params.modes:
            pred = (rows[f"{'gen' if mode == 'generate' else 'score'}_answer"] == "yes").to_numpy()
            tp, fp, fn = pred & label, pred & ~label, ~pred & label
            counts = np.stack([tp, fp, fn, pred == label, np.ones(len(pred)), pred], 1).astype(float)
            stats.metrics[f"{mode}_accuracy"] = Summed(counts, ratio(3, 4, zero_division=0.0), correct=pred == label)
            stats.metrics[f"{mode}_precision"] = Summed(counts, lambda s: _zero_safe(s[:, 0], s[:, 0] + s[:, 1]))
            stats.metrics[f"{mode}_recall"] = Summed(counts, lambda s: _zero_safe(s[:, 0], s[:, 0] + s[:, 2]))
            stats.metrics[f"{mode}_f1"] = Summed(counts, f1(0, 1, 2, zero_division=0.0))
            stats.metrics[f"{mode}_yes_ratio"] = Summed(counts, ratio(5, 4, zero_division=0.0))
            if mode == "score":
                stats.metrics["score_auroc"] = per_row(auroc, rows["score_p_yes"].to_numpy(dtype=float), label, prepare=RankedScores)
        return stats

    GROUP_MEANS = True

    @classmethod
    def group_label(cls, tasks: list["PopeTask"]) -> str:
        return "POPE splits " + ", ".join(t.name for t in tasks)


@dataclass
class RepopeParams(PopeParams):
    repope_dir: str | None = None   # the folder holding the RePOPE files (--set repope_dir=...); required


@dataclass
class RepopeDataset:
    source: Literal["repope"]
    questions: str                  # the file's name inside repope_dir
    images: str
    root: str | None = None
    sha256: str | None = None       # default: the pinned RePOPE file of that name


@TASK_TYPES.register("repope")
class RepopeTask(PopeTask):
    """RePOPE: the official POPE files with wrong labels corrected and ambiguous questions removed (same ids, images
    and texts). Its files come from ``--set repope_dir=FOLDER``, never from the package (their source states no
    licence); each is checked against its pinned sha256. Everything else, scoring included, is POPE's."""

    type_name = "repope"
    Params = RepopeParams
    DATASETS = {"repope": RepopeDataset}

    def samples(self) -> list[Sample]:
        from ..data.pope_files import REPOPE_SHA256, REPOPE_SOURCE

        name = self.dataset.questions
        if self.params.repope_dir is None:
            raise ConfigError(f"task {self.name} reads RePOPE's {name} from your copy ({REPOPE_SOURCE}; not shipped, "
                              f"its source states no licence): add --set repope_dir=<the folder holding {name}>")
        path = Path(self.params.repope_dir).expanduser() / name
        if not path.is_file():
            raise DataError(f"RePOPE question file not found: {path} (from --set repope_dir={self.params.repope_dir})")
        return self._question_file_samples(path, self.dataset.sha256 or REPOPE_SHA256.get(name), what="RePOPE file",
                                           hint=f"use the files of {REPOPE_SOURCE}, or name another version's "
                                                "sha256 in the spec's dataset field 'sha256'")

    @classmethod
    def group_label(cls, tasks: list["PopeTask"]) -> str:
        return "RePOPE splits " + ", ".join(t.name for t in tasks)


def _zero_safe(num, den):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def pope_sampling_object(text: str) -> str:
    from ..data.pope_files import QUESTION_RE

    match = QUESTION_RE.match(text.strip())
    return match["object"] if match else ""


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _isnan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)
