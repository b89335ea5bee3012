"""Re-score a finished POPE run under other labels (RePOPE), without the model.

RePOPE keeps the official question ids, images and texts, so each labels file is matched to the one POPE task of
the run whose questions it names (a question matches when its id, image file name and text are the run's). Of that
task's rows, those the file leaves out are dropped and counted (removed), the others take the file's label (and
are counted as relabelled where it differs). The metrics go to ``metrics.<source>.json`` beside ``metrics.json``,
which is never touched; the leaderboard shows them in their own columns, ``<task> · <metric> [labels: <source>]``.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ConfigError, DataError
from ..io import atomic_write_json
from ..spec import sha256_file
from .aggregate import aggregate
from .rescore import load_run

KEY = ["question_id", "image", "question"]


@dataclass(frozen=True)
class Relabelling:
    """How one labels file changed one task: questions kept (with the file's label), removed, relabelled."""

    task: str
    file: str
    sha256: str
    n_kept: int
    n_removed: int
    n_relabelled: int


def question_table(questions) -> pd.DataFrame:
    """`PopeQuestion`s -> a table of question_id, image (file name), question, label."""
    return pd.DataFrame({"question_id": [q.question_id for q in questions], "image": [q.image for q in questions],
                         "question": [q.text for q in questions], "label": [q.label for q in questions]})


def run_questions(rows: pd.DataFrame) -> pd.DataFrame:
    """A POPE task's rows -> the same table as `question_table` (the image by its file name, as the files give it;
    an error row keeps only its id: its question and label are null)."""
    ok = rows["error"].isna().to_numpy()
    return pd.DataFrame({"question_id": rows["sample_id"].astype("int64").to_numpy(),   # POPE: the question id
                         "image": [Path(str(p)).name if good else None for p, good in zip(rows["image"], ok)],
                         "question": rows["question"].where(ok, None).to_numpy(),
                         "label": rows["label"].where(ok, None).to_numpy()})


def compare(base: pd.DataFrame, labels: pd.DataFrame) -> dict[str, int]:
    """Counts of ``labels`` against ``base`` (both as `question_table`): ``unmatched`` (labelled questions whose id
    ``base`` lacks, or has with another image or text; a base row without text, an error row, matches by id),
    ``kept``, ``removed`` (base questions the labels leave out) and ``relabelled`` (kept ones whose label differs)."""
    merged = labels.merge(base.drop_duplicates("question_id"), on="question_id", how="left", suffixes=("", "_base"),
                          indicator=True)
    present = (merged["_merge"] == "both").to_numpy()
    unknown = merged["question_base"].isna().to_numpy()
    same = ((merged["question"] == merged["question_base"]) & (merged["image"] == merged["image_base"])).to_numpy()
    found = present & (unknown | same)
    changed = found & ~unknown & (merged["label"] != merged["label_base"]).to_numpy()
    kept = int(found.sum())
    return {"unmatched": int(len(labels) - kept), "kept": kept, "removed": int(base["question_id"].nunique() - kept),
            "relabelled": int(changed.sum())}


def relabel_rows(rows: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """The rows of the labelled questions only, in their order, each with the file's label."""
    new = labels.set_index("question_id")["label"]
    ids = rows["sample_id"].astype("int64")
    out = rows[ids.isin(new.index).to_numpy()].copy()
    out["label"] = new.loc[ids[ids.isin(new.index)].to_numpy()].to_numpy()
    return out


def source_slug(source: str) -> str:
    """"RePOPE" -> "repope": the label source as it names its metrics file."""
    slug = re.sub(r"[^a-z0-9]+", "-", source.lower()).strip("-")
    if not slug:
        raise ConfigError(f"--labels-name: {source!r} has no letter or digit to name its metrics file by")
    return slug


def relabelled_path(run_dir: Path, source: str) -> Path:
    return Path(run_dir) / f"metrics.{source_slug(source)}.json"


def _label_source(files: list[tuple[Path, str]], source: str | None) -> str:
    from ..data.pope_files import REPOPE_SHA256

    if source is not None:
        return source
    for path, digest in files:
        if digest not in REPOPE_SHA256.values():
            raise ConfigError(f"--labels {path}: not one of the pinned RePOPE files (sha256 {digest}); "
                              "name its label source with --labels-name")
    return "RePOPE"


def relabel_run(run_dir: Path, label_files: list[Path], source: str | None = None,
                bootstrap_resamples: int | None = None) -> tuple[Path, dict[str, Any], list[Relabelling]]:
    """Re-score the run's POPE tasks under ``label_files`` (one per task, matched by question ids); writes
    ``metrics.<source>.json`` and returns (its path, its content, one `Relabelling` per file)."""
    from ..data.pope_files import read_questions
    from ..tasks.pope import PopeTask

    store, manifest, tasks, rows = load_run(run_dir, bootstrap_resamples)
    run_name = manifest.get("run_name", Path(run_dir).name)
    pope = {name: run_questions(rows[name]) for name, task in tasks.items() if isinstance(task, PopeTask)}
    if not pope:
        raise ConfigError(f"run {run_name} has no POPE task to relabel")
    files = []
    for path in map(Path, label_files):
        if not path.is_file():
            raise DataError(f"--labels {path}: file not found")
        files.append((path, sha256_file(path)))
    source = _label_source(files, source)
    chosen: dict[str, tuple[Relabelling, pd.DataFrame]] = {}
    for path, digest in files:
        labels = question_table(read_questions(path))
        repeated = labels["question_id"][labels["question_id"].duplicated()]
        if len(repeated):
            raise DataError(f"--labels {path}: question id {repeated.iloc[0]} appears more than once")
        counts = {name: compare(base, labels) for name, base in pope.items()}
        best = min(counts, key=lambda n: counts[n]["unmatched"])
        if counts[best]["unmatched"]:
            raise DataError(f"--labels {path}: {counts[best]['unmatched']} of {len(labels)} question ids do not match "
                            f"run {run_name} (nearest: task {best}; a question matches by id, image and text)")
        alike = [n for n in counts if counts[n]["unmatched"] == 0]
        if len(alike) > 1:
            raise DataError(f"--labels {path}: matches tasks {', '.join(alike)} alike; give a file of one split")
        if best in chosen:
            raise DataError(f"--labels {path}: task {best} is already relabelled by {chosen[best][0].file}")
        c = counts[best]
        chosen[best] = (Relabelling(best, path.name, digest, c["kept"], c["removed"], c["relabelled"]), labels)
    names = [n for n in tasks if n in chosen]           # in the run's task order
    new_rows = {n: relabel_rows(rows[n], chosen[n][1]) for n in names}
    report = [chosen[n][0] for n in names]
    metrics = aggregate(run_name, {n: tasks[n] for n in names}, new_rows, _groups(store.metrics_path, set(names)),
                        manifest.get("model", {}))
    metrics["labels"] = {"source": source, "files": {r.task: asdict(r) for r in report}}
    out = relabelled_path(run_dir, source)
    atomic_write_json(out, metrics)
    return out, metrics, report


def _groups(metrics_path: Path, relabelled: set[str]) -> dict[str, list[str]]:
    """The groups the run reported whose every task is relabelled (a mean over some splits would mislead)."""
    try:
        reported = json.loads(metrics_path.read_text(encoding="utf-8")).get("groups", {})
        return {g: list(e["tasks"]) for g, e in reported.items() if set(e["tasks"]) <= relabelled}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError):
        return {}
