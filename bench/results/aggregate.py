"""Rows -> metrics.json: per task and per group, each metric with its interval and its metadata."""

from __future__ import annotations

import math
from typing import Any

from ..tasks.base import TaskType
from .schema import SCHEMA_VERSION


def _clean(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def task_entry(task: TaskType, rows) -> dict[str, Any]:
    ok = rows[rows["error"].isna()] if rows is not None else None
    info = task.metric_info()
    values = task.metrics(ok) if ok is not None and len(ok) else {}
    figures = task.figures(ok) if ok is not None and len(ok) else {}
    return {
        "type": task.spec.type,
        "group": task.spec.group,
        "column": task.leaderboard_column(),
        "n_samples": 0 if rows is None else int(len(rows)),
        "n_errors": 0 if rows is None else int(rows["error"].notna().sum()),
        "n_images": 0 if ok is None else int(ok["image_id"].nunique()),
        "primary": task.primary_metric(),
        **({"primaries": task.primary_metrics()} if task.primary_metrics() != [task.primary_metric()] else {}),
        "metrics": {name: {"label": info[name].label, "higher_is_better": info[name].higher_is_better,
                           "scale": info[name].scale, **{k: _clean(v) for k, v in value.items()}}
                    for name, value in values.items()},
        **({"figures": figures} if figures else {}),
    }


def aggregate(run_name: str, tasks: dict[str, TaskType], rows: dict[str, Any], groups: dict[str, list[str]],
              model: dict[str, Any]) -> dict[str, Any]:
    first = next(iter(tasks.values()))
    out: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run": run_name,
        "model": model,
        "interval_method": first.context.bootstrap.describe(),
        "tasks": {name: task_entry(task, rows.get(name)) for name, task in tasks.items()},
        "groups": {},
    }
    for group, members in groups.items():
        members = [m for m in members if rows.get(m) is not None]
        if not members:
            continue
        member_tasks = [tasks[m] for m in members]
        ok_rows = [rows[m][rows[m]["error"].isna()] for m in members]
        values = type(member_tasks[0]).group_metrics(member_tasks, ok_rows) if all(len(r) for r in ok_rows) else {}
        if not values:
            continue
        info = member_tasks[0].metric_info()
        out["groups"][group] = {
            "label": type(member_tasks[0]).group_label(member_tasks),
            "tasks": members,
            "column": group,
            "primary": member_tasks[0].primary_metric(),
            "metrics": {name: {"label": f"{info[name].label}, mean over {len(members)} tasks", "higher_is_better": info[name].higher_is_better,
                               "scale": info[name].scale, **{k: _clean(v) for k, v in value.items()}}
                        for name, value in values.items()},
        }
    return out
