"""Re-score a saved run without the model: derived fields and metrics from the saved raw outputs.

The task is rebuilt from the spec recorded in the manifest (not from today's YAML), so a re-score
uses exactly the settings the run used.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..errors import BenchError, DataError
from ..io import atomic_write_json, write_table
from ..metrics.bootstrap import BootstrapConfig
from ..registry import TASK_TYPES
from ..runner.store import RunStore
from ..spec import TaskSpec
from ..tasks.base import TaskContext
from .aggregate import aggregate
from .schema import BASE_COLUMNS

log = logging.getLogger(__name__)


def task_from_manifest(name: str, entry: dict[str, Any], manifest: dict[str, Any], resamples: int | None):
    spec = entry["spec"]
    config = manifest.get("config", {}) if isinstance(manifest.get("config"), dict) else {}
    try:
        seed = int(config.get("seed", 0))
    except (TypeError, ValueError):
        raise DataError(f"manifest of {manifest.get('run_name', '?')}: config field 'seed' must be an integer") from None
    context = TaskContext(None, seed, BootstrapConfig(resamples or int(config.get("bootstrap_resamples", 1000)), seed))
    task_spec = TaskSpec(name=name, type=spec["type"], source=Path(entry.get("source", name)), group=spec.get("group"),
                         dataset=spec.get("dataset", {}), params=spec.get("params", {}))
    return TASK_TYPES.get(spec["type"])(task_spec, context)


def load_run(run_dir: Path, bootstrap_resamples: int | None = None):
    """A saved run's store, manifest, tasks (rebuilt from the manifest) and rows (derived fields recomputed in
    memory): (store, manifest, {task: TaskType}, {task: DataFrame})."""
    store = RunStore(run_dir)
    manifest = store.read_manifest()
    entries = manifest.get("tasks")
    if not isinstance(entries, dict) or not entries:
        raise DataError(f"{store.manifest_path}: field 'tasks' must be a non-empty mapping of task name to its entry")
    tasks, rows = {}, {}
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("spec"), dict) or "type" not in entry["spec"]:
            raise DataError(f"{store.manifest_path}: tasks.{name} lacks its 'spec' (with a 'type')")
        task = task_from_manifest(name, entry, manifest, bootstrap_resamples)
        table = store.read_rows(name)
        if table is None:
            raise BenchError(f"{run_dir}: task {name} has no saved rows")
        source = store.rows_path(name) if store.rows_path(name).exists() else store.chunk_dir(name)
        missing = [c for c, _ in BASE_COLUMNS + task.row_schema() if c not in table.columns]
        if missing:
            raise DataError(f"{source}: rows lack column '{missing[0]}'")
        tasks[name], rows[name] = task, task.rescore(table)
    return store, manifest, tasks, rows


def rescore(run_dir: Path, bootstrap_resamples: int | None = None) -> dict[str, Any]:
    """Recompute a run's derived fields and metrics from its raw outputs; rewrites rows.parquet and metrics.json."""
    store, manifest, tasks, rows = load_run(run_dir, bootstrap_resamples)
    groups: dict[str, list[str]] = {}
    for name, task in tasks.items():
        if task.spec.group:
            groups.setdefault(task.spec.group, []).append(name)
    previous = store.metrics_path
    if previous.exists():
        import json

        try:
            kept = json.loads(previous.read_text(encoding="utf-8")).get("groups", {})
            groups = {g: m for g, m in groups.items() if g in kept}   # only the groups the run itself reported
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
            log.warning("%s is broken; it is written anew", previous)
    for name, task in tasks.items():
        write_table(store.rows_path(name), rows[name], task.row_schema())
    metrics = aggregate(manifest.get("run_name", Path(run_dir).name), tasks, rows, groups, manifest.get("model", {}))
    atomic_write_json(store.metrics_path, metrics)
    return metrics
