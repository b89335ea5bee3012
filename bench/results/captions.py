"""``bench score chair --captions FILE``: score a captions file without any model.

The file is JSON lines, one caption per line: ``{"image_id": 42, "caption": "..."}`` (other keys are
kept when they are ``prompt``; the rest are ignored), the format papers publish their captions in.
Ground truth comes from a CHAIR task spec (``--task``, default ``chair_mini``), exactly as in a run,
so a run's ``captions.jsonl`` scores to the run's own numbers.
An image id missing from a line is an error; an id the ground truth does not know is an error
unless ``--skip-unknown`` (then skipped and counted); an empty caption is scored (it mentions nothing)
and counted.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError


@dataclass
class CaptionsReport:
    n_lines: int
    n_scored: int
    n_empty: int
    n_unknown_skipped: int


def read_captions_file(path: Path) -> list[dict[str, Any]]:
    from ..data.jsonl import read_jsonl

    records = []
    for lineno, item in read_jsonl(path, ("image_id", "caption"), "captions file"):
        if not isinstance(item["caption"], str):
            raise DataError(f"{path}: line {lineno} field 'caption' must be a string")
        records.append({"line": lineno, "image_id": str(item["image_id"]), "caption": item["caption"],
                        "prompt": item.get("prompt")})
    if not records:
        raise DataError(f"{path}: no captions")
    return records


def score_captions(captions: Path, task, skip_unknown: bool = False, workdir: Path | None = None):
    """Returns (rows DataFrame, metrics dict, report)."""
    import pandas as pd

    if task.spec.type != "chair":
        raise ConfigError(f"--task {task.name} is a {task.spec.type} task; captions are scored by a chair task")
    records = read_captions_file(captions)
    task.params.num_images = None          # every image of the ground truth may be captioned
    samples = task.samples()
    with tempfile.TemporaryDirectory() as tmp:
        samples = task.prepare(samples, Path(workdir or tmp))
    truth = {s.group: s for s in samples}
    rows, skipped, empty = [], 0, 0
    for record in records:
        sample = truth.get(record["image_id"])
        if sample is None:
            if skip_unknown:
                skipped += 1
                continue
            raise DataError(f"{captions}: line {record['line']}: image id {record['image_id']!r} is not in the ground truth "
                            f"of task {task.name} (--skip-unknown skips and counts such lines)")
        empty += not record["caption"].strip()
        row = {"sample_id": f"line{record['line']}", "sample_index": len(rows), "image_id": sample.group,
               "image": sample.image.display, "error": None, "prompt_index": 0,
               "prompt": record["prompt"] or sample.data["prompt"], "caption_raw": record["caption"], "gen_tokens": None,
               "gen_finished": None, "gt": list(sample.data["gt"]), "gt_source": task.gt_source}
        rows.append(task.derive(row))
    if not rows:
        raise DataError(f"{captions}: no caption matched an image of task {task.name}")
    table = pd.DataFrame(rows)
    return table, task.metrics(table), CaptionsReport(len(records), len(rows), empty, skipped)
