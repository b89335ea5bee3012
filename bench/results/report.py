"""`bench report RUN [RUN ...] -o report.html`: one self-contained HTML file of what the runs hold.

Sections appear for whatever the runs hold: the runs, metric tables with their intervals and directions (every
task and group), then per task type its figures (POPE confusion matrices, yes-ratios, P(yes) histograms and ROC
curves; CHAIR captions with hallucinated words marked beside the image; detector-confidence histograms; saliency
overlays, curves, pointing game and sanity curves; bias rating shifts), a plain metrics table for a task type this
module does not know, and, with two or more runs, the `bench compare` table of the candidates against the first run.

A RUN that is not a run folder, or whose metrics.json is broken, is named in one line and skipped; with no usable
run at all the command fails. The file is written atomically (`bench.io`). See `report_html` for what makes it
self-contained and `report_sections` for each section.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError, DataError
from ..io import atomic_write_text

log = logging.getLogger(__name__)

CAPTION_CAP = 24      # captions shown per (task, run); the rest are counted
OVERLAY_CAP = 24      # saliency overlays shown per (task, run)


@dataclass
class Run:
    """One usable run folder: its metrics.json and manifest.json, and a name unique within the report."""

    path: Path
    name: str
    metrics: dict[str, Any]
    manifest: dict[str, Any]

    @property
    def tasks(self) -> dict[str, dict[str, Any]]:
        return self.metrics.get("tasks", {})

    @property
    def groups(self) -> dict[str, dict[str, Any]]:
        return self.metrics.get("groups") or {}

    def task_dir(self, task: str) -> Path:
        return self.path / "tasks" / task

    def rows(self, task: str, columns: list[str]):
        """The task's rows without error rows (``columns`` that exist, plus ``error``), or None without a readable
        rows.parquet."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.task_dir(task) / "rows.parquet"
        try:
            names = pq.read_schema(path).names
            wanted = [c for c in dict.fromkeys([*columns, "error"]) if c in names]
            frame = pq.read_table(path, columns=wanted).to_pandas()
        except (OSError, pa.ArrowInvalid) as exc:
            log.debug("rows of %s in %s: %s", task, self.path, exc)
            return None
        if "error" in frame:
            frame = frame[frame["error"].isna()].reset_index(drop=True)
        return frame


@dataclass
class Context:
    """What sections share: the caps, a thumbnail cache (an image shown by several runs is encoded once), and the
    warnings given so far (also listed in the report)."""

    warn: Callable[[str], None]
    caption_cap: int = CAPTION_CAP
    overlay_cap: int = OVERLAY_CAP
    thumbs: dict[str, str | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def warning(self, message: str) -> None:
        self.notes.append(message)
        self.warn(message)


def _read_json(path: Path, what: str, run: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        reason = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else type(exc).__name__
        raise DataError(f"run {run}: {what} is broken ({reason})") from None


def _check_entries(entries: Any, kind: str, run: Path) -> None:
    if not isinstance(entries, dict):
        raise DataError(f"run {run}: metrics.json is broken ('{kind}' is not an object)")
    for name, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("metrics"), dict) or \
                not all(isinstance(v, dict) for v in entry["metrics"].values()):
            raise DataError(f"run {run}: metrics.json is broken ({kind} {name!r} has no metrics object)")
        for metric, value in entry["metrics"].items():
            for key in ("value", "ci_low", "ci_high", "scale"):
                if value.get(key) is not None and not isinstance(value[key], (int, float)):
                    raise DataError(f"run {run}: metrics.json is broken ({name} {metric} {key} is not a number)")


def load_run(path: Path | str) -> Run:
    """A run folder's metrics and manifest, checked enough that every section can read them; a one-line
    `DataError` naming the folder otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"run {path}: not a folder" if path.exists() else f"run {path}: not found")
    metrics_path = path / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"run {path}: not a run folder (no metrics.json; an unfinished run writes it at the end)")
    metrics = _read_json(metrics_path, "metrics.json", path)
    if not isinstance(metrics, dict) or "tasks" not in metrics:
        raise DataError(f"run {path}: metrics.json is broken (not a run's metrics: no 'tasks')")
    _check_entries(metrics["tasks"], "tasks", path)
    _check_entries(metrics.get("groups") or {}, "groups", path)
    manifest: Any = {}
    if (path / "manifest.json").is_file():
        manifest = _read_json(path / "manifest.json", "manifest.json", path)
        if not isinstance(manifest, dict):
            raise DataError(f"run {path}: manifest.json is broken (not a JSON object)")
    name = str(metrics.get("run") or manifest.get("run_name") or path.name)
    return Run(path, name, metrics, manifest)


def load_runs(paths: list[Path | str], warn: Callable[[str], None]) -> list[Run]:
    """The usable runs among ``paths``, in order; each unusable one is named through ``warn``. Runs with the same
    name are told apart by their folder (or by their position, when the same folder is given twice)."""
    runs: list[Run] = []
    problems: list[str] = []
    for path in paths:
        try:
            runs.append(load_run(path))
        except DataError as exc:
            problems.append(str(exc))
            warn(f"report: skipped {exc}")
    if not runs:
        raise DataError("no usable run to report: " + "; ".join(problems) if problems else "no run given")
    by_name: dict[str, list[Run]] = {}
    for run in runs:
        by_name.setdefault(run.name, []).append(run)
    for name, same in by_name.items():
        if len(same) > 1:
            distinct = len({r.path.resolve() for r in same}) == len(same)
            for k, run in enumerate(same, 1):
                run.name = f"{name} ({run.path})" if distinct else f"{name} #{k}"
    return runs


def build_report(runs: list[Run], warn: Callable[[str], None] | None = None, *, caption_cap: int = CAPTION_CAP,
                 overlay_cap: int = OVERLAY_CAP, skipped: list[str] | None = None) -> str:
    """The HTML document of ``runs`` (loaded with `load_runs`); ``skipped`` names runs left out, listed in it."""
    from . import report_sections as sections
    from .report_html import esc, page

    context = Context(warn or (lambda message: log.warning("%s", message)), caption_cap, overlay_cap)
    context.notes.extend(skipped or [])
    parts = [sections.runs_section(runs), sections.metrics_section(runs)]
    for key, title in sections.TYPE_SECTIONS:
        part = sections.type_section(key, title, runs, context)
        if part:
            parts.append(part)
    if len(runs) > 1:
        parts.append(sections.compare_section(runs))
    body = "".join(parts)
    notes = "".join(f"<li>{esc(n)}</li>" for n in context.notes)
    nav = sections.navigation(body)
    created = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    head = (f"<header><h1>bench report</h1><p class=\"note\">{len(runs)} run{'s' if len(runs) > 1 else ''}: "
            f"{esc(', '.join(r.name for r in runs))}; written {created}</p>{nav}</header>")
    warnings = f'<section id="warnings"><h2>Warnings</h2><ul class="warn">{notes}</ul></section>' if notes else ""
    return page("bench report: " + ", ".join(r.name for r in runs), head + warnings + body)


def write_report(paths: list[Path | str], output: Path | str, warn: Callable[[str], None] | None = None, **caps: int
                 ) -> tuple[Path, int, list[Run]]:
    """Load ``paths``, build the report and write it atomically to ``output``; (output, bytes written, runs used).
    ``output`` must be a file name: a folder is refused before any work."""
    output = Path(output)
    if output.is_dir():
        raise ConfigError(f"-o {output}: is a folder; give the report's file name, e.g. {output / 'report.html'}")
    warn = warn or (lambda message: log.warning("%s", message))
    skipped: list[str] = []

    def note_skip(message: str) -> None:
        skipped.append(message)
        warn(message)

    runs = load_runs(list(paths), note_skip)
    document = build_report(runs, warn, skipped=skipped, **caps)
    data = document.encode("utf-8")
    atomic_write_text(output, document)
    return output, len(data), runs


__all__ = ["Run", "Context", "load_run", "load_runs", "build_report", "write_report"]
