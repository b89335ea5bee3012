"""The task-type protocol: spec -> samples -> requests -> per-sample rows -> metrics.

A task type turns its validated spec into `Sample`s (what to ask about which image, and the truth),
says which model `requests` each sample needs, turns the model's responses into one flat row per
sample (raw outputs and the fields derived from them), and computes metrics from a table of rows.
`rescore` recomputes the derived fields from the raw ones, so a saved run can be re-scored
without the model.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..data.images import ImageRef
from ..errors import ConfigError
from ..metrics.bootstrap import BootstrapConfig
from ..resources import BUNDLED_PREFIX, resolve_path
from ..spec import TaskSpec
from ..validation import parse_dataclass  # noqa: F401  (re-exported: task modules use it)


@dataclass(frozen=True)
class Sample:
    id: str                 # unique within the task, stable across runs
    index: int              # position in the task's sample order
    group: str              # the image id: chunking and bootstrap unit
    image: ImageRef
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricInfo:
    name: str
    label: str
    higher_is_better: bool
    scale: float = 100.0    # how papers print it (fractions x100)


@dataclass
class TaskContext:
    """What a task needs to resolve its data: where the data lives and the run's seed."""

    data_root: Path | None = None
    seed: int = 0
    bootstrap: BootstrapConfig = field(default_factory=BootstrapConfig)


def seeded_subset(ids: list, n: int | None, seed: int) -> list:
    """``n`` of ``ids`` drawn with ``random.Random(seed)``, kept in dataset order (all of them when n is None)."""
    import random

    if n is None or n >= len(ids):
        return list(ids)
    chosen = set(random.Random(seed).sample(ids, n))
    return [i for i in ids if i in chosen]


class TaskType(ABC):
    """Base class of task types. Subclasses set ``Params`` (a dataclass) and ``METRICS``."""

    type_name: ClassVar[str]
    Params: ClassVar[type]
    METRICS: ClassVar[tuple[MetricInfo, ...]] = ()
    DATASETS: ClassVar[dict[str, type]] = {}   # dataset "source" -> the dataclass of its fields

    def __init__(self, spec: TaskSpec, context: TaskContext):
        self.spec = spec
        self.context = context
        where = str(spec.source)
        self.params = parse_dataclass(self.Params, spec.params, where, "params")
        self.dataset: Any = None
        if self.DATASETS:
            source = spec.dataset.get("source")
            if source not in self.DATASETS:
                raise ConfigError(f"{where}: dataset field 'source' must be one of {', '.join(self.DATASETS)}, got {source!r}")
            self.dataset = parse_dataclass(self.DATASETS[source], spec.dataset, where, "dataset")

    @property
    def name(self) -> str:
        return self.spec.name

    def data_root(self) -> Path | None:
        """``--data-root`` if given, else the spec's own ``dataset.root`` (e.g. a bundled dataset)."""
        if self.context.data_root is not None:
            return self.context.data_root
        root = getattr(self.dataset, "root", None)
        return resolve_path(root, None) if root else None

    def data_path(self, value: str, what: str) -> Path:
        """A dataset path of the spec: bundled, absolute, or under the data root (which must then be known)."""
        root = self.data_root()
        if root is None and not value.startswith(BUNDLED_PREFIX) and not Path(value).is_absolute():
            raise ConfigError(f"{self.spec.source}: task {self.name} needs --data-root (the folder that holds {value!r}, its {what})")
        return resolve_path(value, root)

    # -- data --------------------------------------------------------------------------------
    @abstractmethod
    def samples(self) -> list[Sample]:
        """All samples, in a stable order. Raises DataError/ConfigError before any model work."""

    @abstractmethod
    def data_fingerprint(self) -> dict[str, Any]:
        """Checksums of the files this task reads and a listing hash of its images."""

    def prepare(self, samples: list[Sample], workdir: Path) -> list[Sample]:
        """Work a task needs before the model runs (e.g. detector ground truth), cached in ``workdir``.
        Runs in real runs only (never in a dry run); returns the samples, possibly with more data."""
        return samples

    def manifest_extras(self) -> dict[str, Any]:
        """Extra facts for the manifest (e.g. the ids of a sampled image subset)."""
        return {}

    def write_extras(self, rows, folder: Path) -> None:
        """Extra outputs written beside rows.parquet at the end of a run (e.g. a captions file)."""

    def settings(self) -> dict[str, Any]:
        """Everything that changes the model's outputs (prompts, decoding): part of the resume key."""
        return dataclasses.asdict(self.params)

    # -- model ---------------------------------------------------------------------------------
    @abstractmethod
    def requests(self, sample: Sample, image: Any) -> list[Any]:
        """The model requests for one sample (``image`` is the loaded `ImageInput`)."""

    def first_token_words(self) -> list[tuple[tuple[str, tuple[str, ...]], ...]]:
        """The word lists its score requests read at the first answer token (e.g. yes vs no), resolved by the
        adapter at load so that its description records them."""
        return []

    def needs(self) -> set[str]:
        """Request kinds beyond generate/score the model must answer (checked before any work)."""
        return set()

    def prompt_text(self, sample: Sample) -> str | None:
        """The user prompt of a sample, if the task has one (recorded in the manifest with the template)."""
        return None

    def leaderboard_column(self) -> str:
        """The leaderboard column of this task's primary metric (results from other ground truths get their own)."""
        return self.name

    @abstractmethod
    def row(self, sample: Sample, responses: list[Any]) -> dict[str, Any]:
        """One flat row (raw outputs + derived fields) from the responses to `requests`."""

    def artifacts(self, sample: Sample, responses: list[Any], row: dict[str, Any]) -> list[Any]:
        """Files to keep beside the rows (`bench.io.Artifact`: a path relative to the task folder, and bytes),
        e.g. PNG overlays; the driver writes them with the sample's chunk. None by default."""
        return []

    # -- scoring -------------------------------------------------------------------------------
    @abstractmethod
    def row_schema(self) -> list[tuple[str, str]]:
        """(column, arrow type name) of the task's own columns, in order."""

    def rescore(self, rows):
        """Recompute derived columns from raw outputs (a pandas DataFrame); default: nothing derived."""
        return rows

    def sample_statistics(self, rows):
        """What each metric is made of, per sample, with the image of each row: a
        `bench.metrics.contract.SampleStatistics`. Metrics, intervals, group means and paired comparisons between
        runs are all computed from it, in one place; rows with an error are excluded by the caller. A task type
        that computes its metrics otherwise (overriding `metrics`) cannot be compared between runs."""
        raise NotImplementedError(f"task type {self.type_name} gives no per-sample statistics")

    def metrics(self, rows) -> dict[str, dict[str, float]]:
        """metric name -> {value, ci_low, ci_high}, from `sample_statistics` (bootstrap over images)."""
        from ..metrics.contract import estimate_all

        return estimate_all(self.sample_statistics(rows), self.context.bootstrap)

    def figures(self, rows) -> dict[str, Any]:
        """Extra data for plots (histograms...), stored in metrics.json beside the metrics; none by default."""
        return {}

    def primary_metric(self) -> str:
        return self.METRICS[0].name

    def primary_metrics(self) -> list[str]:
        """Every metric that gets a leaderboard column (one per method for saliency); default: the primary."""
        return [self.primary_metric()]

    def metric_info(self) -> dict[str, MetricInfo]:
        return {m.name: m for m in self.METRICS}

    GROUP_MEANS: ClassVar[bool] = False   # a group of these tasks also reports each metric's mean over its tasks

    @classmethod
    def group_metrics(cls, tasks: list["TaskType"], rows: list[Any]) -> dict[str, dict[str, float]]:
        """The mean of each metric over a group's tasks (e.g. the POPE splits), one image draw for all of them,
        when the task type declares ``GROUP_MEANS``; none otherwise."""
        if not cls.GROUP_MEANS:
            return {}
        from ..metrics.contract import group_estimates

        return group_estimates([t.sample_statistics(r) for t, r in zip(tasks, rows)], tasks[0].context.bootstrap)

    @classmethod
    def group_label(cls, tasks: list["TaskType"]) -> str:
        return ""
