"""The leaderboard: one row per model run, one column per task's (or group's) primary metric.

A column is keyed by the task or group and its primary metric (so a POPE run scored in ``score``
mode never shares a column with one in ``generate`` mode, and CHAIR against a detector's ground
truth never shares one with CHAIR against annotations). Values print as ``value [low, high]`` in the
metric's paper scale (x100 for fractions); rows sort by a chosen column in its declared direction.

A run re-scored under other labels (``bench rescore RUN --labels ...``) has ``metrics.<source>.json`` beside its
metrics.json; its cells join the run's row in their own columns, ``<task> · <metric> [labels: <source>]``, which
sort right after the columns they relabel.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import BenchError
from ..io import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass
class Cell:
    value: float
    low: float | None
    high: float | None
    scale: float

    def text(self, digits: int = 1) -> str:
        v = f"{self.value * self.scale:.{digits}f}"
        if self.low is None or self.high is None:
            return v
        return f"{v} [{self.low * self.scale:.{digits}f}, {self.high * self.scale:.{digits}f}]"


@dataclass
class Column:
    key: str               # "<task or group> · <metric label>"
    higher_is_better: bool


@dataclass
class Board:
    columns: list[Column]
    rows: list[dict[str, Any]]   # run, model, date, cells: {column key: Cell}, fingerprints: {column key: sha256}
    sort_key: str | None
    apart: list[dict[str, Any]] | None = None   # runs whose sort column was computed on other data or another spec


def _entries(metrics: dict[str, Any]):
    for kind in ("groups", "tasks"):
        for name, entry in metrics.get(kind, {}).items():
            for primary in entry.get("primaries") or [entry.get("primary")]:   # saliency: one per method
                value = entry.get("metrics", {}).get(primary)
                if value is None or value.get("value") is None:
                    continue
                yield f"{entry.get('column', name)} · {value['label']}", value


def _fingerprints(metrics: dict[str, Any], manifest: dict[str, Any]) -> dict[str, str]:
    """Column key -> the fingerprint of what its cell was computed on (a task's; a group's: its members')."""
    tasks = manifest.get("tasks", {}) if isinstance(manifest.get("tasks"), dict) else {}

    def of(task: str) -> str:
        entry = tasks.get(task, {})
        return str(entry.get("fingerprint", {}).get("sha256", "")) if isinstance(entry, dict) else ""

    out = {}
    for kind in ("groups", "tasks"):
        for name, entry in metrics.get(kind, {}).items():
            fingerprint = "+".join(sorted(of(t) for t in entry.get("tasks", []))) if kind == "groups" else of(name)
            for primary in entry.get("primaries") or [entry.get("primary")]:
                value = entry.get("metrics", {}).get(primary)
                if value is not None:
                    out[f"{entry.get('column', name)} · {value['label']}"] = fingerprint
    return out


def model_label(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    """The model's spec, with its dtype and parameter count when the run recorded them: ``hf:x (bfloat16, 7.06B)``."""
    spec = str(metrics.get("model", {}).get("spec", "?"))
    description = (manifest.get("model") or {}).get("description") or {}
    parts = [str(description["dtype"])] if description.get("dtype") else []
    if isinstance(description.get("parameters"), (int, float)):
        parts.append(_count(description["parameters"]))
    return f"{spec} ({', '.join(parts)})" if parts else spec


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def _cells(metrics: dict[str, Any], suffix: str = ""):
    """(column key, higher is better, cell) of each primary metric in a metrics file."""
    for key, value in _entries(metrics):
        cell = Cell(float(value["value"]), _number(value.get("ci_low")), _number(value.get("ci_high")),
                    float(value.get("scale", 1.0)))
        yield key + suffix, bool(value.get("higher_is_better", True)), cell


def _relabelled_cells(run_dir: Path, warn: Callable[[str], None]):
    """The cells of the run's ``metrics.<source>.json`` files (re-scored under other labels); a broken one is
    named through ``warn`` and skipped, the run's own cells stay."""
    for path in sorted(run_dir.glob("metrics.*.json")):
        try:
            metrics = _read_json(path)
            source = metrics["labels"]["source"] if isinstance(metrics, dict) else None
            if not isinstance(source, str):
                raise TypeError("no label source")
            found = list(_cells(metrics, f" [labels: {source}]"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError) as exc:
            warn(f"leaderboard: skipped {path} (not a readable relabelled metrics file: {type(exc).__name__})")
            continue
        yield from found


def collect(results_dir: Path, warn: Callable[[str], None] | None = None) -> tuple[list[Column], list[dict[str, Any]]]:
    """Columns and rows from every run folder's metrics.json (and its relabelled metrics files). A run whose files
    are broken (unreadable JSON, wrong types) is skipped and named through ``warn``; it never stops the board."""
    warn = warn or (lambda message: log.warning("%s", message))
    columns: dict[str, Column] = {}
    rows = []
    for metrics_path in sorted(Path(results_dir).glob("*/metrics.json")):
        try:
            metrics = _read_json(metrics_path)
            manifest_path = metrics_path.parent / "manifest.json"
            manifest = _read_json(manifest_path) if manifest_path.exists() else {}
            if not isinstance(metrics, dict) or not isinstance(manifest, dict):
                raise TypeError("not a JSON object")
            cells = {}
            found = []
            for key, higher, cell in [*_cells(metrics), *_relabelled_cells(metrics_path.parent, warn)]:
                found.append((key, higher))
                cells[key] = cell
            fingerprints = _fingerprints(metrics, manifest)
            for key in cells:
                if key not in fingerprints and " [labels: " in key:      # relabelled: the run's own fingerprint
                    fingerprints[key] = fingerprints.get(key.split(" [labels: ")[0], "")
            row = {"run": str(metrics.get("run", metrics_path.parent.name)), "model": model_label(metrics, manifest),
                   "date": str(manifest.get("finished", manifest.get("updated", "")))[:10], "cells": cells,
                   "fingerprints": fingerprints}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError) as exc:
            warn(f"leaderboard: skipped run {metrics_path.parent} (its metrics or manifest is broken: {type(exc).__name__})")
            continue
        for key, higher in found:
            columns.setdefault(key, Column(key, higher))
        rows.append(row)
    group_first = sorted(columns.values(), key=lambda c: c.key)
    return group_first, rows


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def build(results_dir: Path, sort: str | None = None, warn: Callable[[str], None] | None = None) -> Board:
    if not Path(results_dir).is_dir():
        raise BenchError(f"--results {results_dir}: results folder not found")
    columns, rows = collect(results_dir, warn)
    sort_key = None
    if sort:
        matches = [c for c in columns if c.key == sort] or [c for c in columns if c.key.startswith(sort)]
        if not matches:
            raise BenchError(f"--sort: no leaderboard column {sort!r} (columns: {'; '.join(c.key for c in columns) or 'none'})")
        sort_key = matches[0].key
    elif columns:
        sort_key = columns[0].key
    if sort_key:
        column = next(c for c in columns if c.key == sort_key)
        sign = -1.0 if column.higher_is_better else 1.0

        def order(row):
            cell = row["cells"].get(sort_key)
            missing = cell is None or cell.value is None or math.isnan(cell.value)
            return (missing, 0.0 if missing else sign * cell.value, row["run"])

        rows.sort(key=order)
        rows, apart = _split_by_fingerprint(rows, sort_key)
        return Board(columns, rows, sort_key, apart)
    return Board(columns, rows, sort_key)


def _split_by_fingerprint(rows: list[dict[str, Any]], key: str) -> tuple[list[dict], list[dict]]:
    """The runs whose sort-column cell was computed on the most common fingerprint (the same spec and data), and
    the others (another spec or data version: their numbers are not comparable with the first)."""
    from collections import Counter

    prints = [r["fingerprints"].get(key) for r in rows if key in r["cells"]]
    if not prints:
        return rows, []
    reference = Counter(prints).most_common(1)[0][0]
    keep = [r for r in rows if key not in r["cells"] or r["fingerprints"].get(key) == reference]
    return keep, [r for r in rows if r not in keep]


def render_markdown(board: Board) -> str:
    head = ["Run", "Model", "Date"] + [c.key + (" ↑" if c.higher_is_better else " ↓") for c in board.columns]
    lines = ["# Leaderboard", "",
             "Generated by `bench leaderboard`; do not edit. Each cell is the task's (or group's) primary metric, "
             "x100, with its 95% bootstrap interval over images." + (f" Sorted by {board.sort_key}." if board.sort_key else ""),
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in board.rows:
        lines.append(_markdown_row(row, board.columns))
    if not board.rows:
        lines.append("| (no finished runs) |" + " |" * (len(head) - 1))
    if board.apart:
        lines += ["", f"## Not comparable on {board.sort_key}", "",
                  "These runs computed that column on another spec or other data (another fingerprint), so their "
                  "numbers do not rank with the table above.", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += [_markdown_row(row, board.columns) for row in board.apart]
    return "\n".join(lines) + "\n"


def _markdown_row(row: dict[str, Any], columns: list[Column]) -> str:
    cells = [row["cells"][c.key].text() if c.key in row["cells"] else "" for c in columns]
    return "| " + " | ".join([row["run"], f"`{row['model']}`", row["date"]] + cells) + " |"


def render_csv(board: Board) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    header = ["run", "model", "date"]
    for c in board.columns:
        header += [c.key, f"{c.key} low", f"{c.key} high"]
    writer.writerow(header + ["comparable on the sort column"])
    for row in board.rows + (board.apart or []):
        out = [row["run"], row["model"], row["date"]]
        for c in board.columns:
            cell = row["cells"].get(c.key)
            out += ["", "", ""] if cell is None else [
                f"{cell.value * cell.scale:.4f}",
                "" if cell.low is None else f"{cell.low * cell.scale:.4f}",
                "" if cell.high is None else f"{cell.high * cell.scale:.4f}"]
        writer.writerow(out + ["no" if row in (board.apart or []) else "yes"])
    return buffer.getvalue()


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("&", r"\&"), ("%", r"\%"), ("#", r"\#"), ("·", r"$\cdot$")):
        text = text.replace(a, b)
    return text


def render_latex(board: Board) -> str:
    lines = [r"\begin{tabular}{ll" + "c" * len(board.columns) + "}", r"\toprule",
             " & ".join(["Run", "Model"] + [_tex(c.key) + (r" $\uparrow$" if c.higher_is_better else r" $\downarrow$")
                                           for c in board.columns]) + r" \\", r"\midrule"]
    for row in board.rows + (board.apart or []):
        if board.apart and row is board.apart[0]:
            lines.append(r"\midrule \multicolumn{%d}{l}{\emph{not comparable on the sort column (another spec or data)}} \\"
                         % (2 + len(board.columns)))
        cells = []
        for c in board.columns:
            cell = row["cells"].get(c.key)
            if cell is None:
                cells.append("--")
            elif cell.low is None:
                cells.append(f"{cell.value * cell.scale:.1f}")
            else:
                cells.append(f"{cell.value * cell.scale:.1f} {{\\scriptsize [{cell.low * cell.scale:.1f}, {cell.high * cell.scale:.1f}]}}")
        lines.append(" & ".join([_tex(row["run"]), r"\texttt{" + _tex(row["model"]) + "}"] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


RENDERERS = {"md": render_markdown, "csv": render_csv, "latex": render_latex}
SUFFIX = {"md": ".md", "csv": ".csv", "latex": ".tex"}


def write_leaderboard(results_dir: Path, out: Path, sort: str | None = None, formats: tuple[str, ...] = ("md",),
                      warn: Callable[[str], None] | None = None) -> Path:
    """Write the leaderboard in each format (the first at ``out``, others beside it with their suffix)."""
    out = Path(out)
    if out.is_dir():
        raise BenchError(f"leaderboard {out}: is a folder; give the leaderboard file's path")
    board = build(results_dir, sort, warn)
    for i, fmt in enumerate(formats):
        path = out if i == 0 else out.with_suffix(SUFFIX[fmt])
        atomic_write_bytes(path, RENDERERS[fmt](board).encode())
    return out
