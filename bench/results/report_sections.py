"""The report's sections that span task types: the runs, the metric tables, the dispatch to each task type's
section (`report_tasks`), the fallback for task types this report does not know, and the `bench compare` table.

A task type's section that cannot be drawn from what a run holds (figures of another shape, missing columns) falls
back to the plain metrics table of that task, with a warning naming it: one odd run never breaks the report.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, Callable

from ..errors import BenchError
from . import report_tasks as tasks
from .report_html import esc, markdown_html, note, number, slug, table

if TYPE_CHECKING:
    from .report import Context, Run

# (section id, heading, task types it shows, per-(task, run) builder, optional per-section intro)
Builder = Callable[["Run", str, dict, "Context"], str]
SECTIONS: list[tuple[str, str, tuple[str, ...], Builder, Callable | None]] = [
    ("pope", "POPE", ("pope", "repope"), tasks.pope_task, tasks.pope_intro),
    ("grounded", "Grounded hallucination", ("grounded_hallucination",), tasks.grounded_task, None),
    ("chair", "CHAIR captions", ("chair",), tasks.chair_task, None),
    ("saliency", "Saliency", ("saliency",), tasks.saliency_task, None),
    ("bias", "Bias: rating shifts", ("bias",), tasks.bias_task, None),
]
KNOWN = {t for _, _, types, _, _ in SECTIONS for t in types}
TYPE_SECTIONS = [(key, title) for key, title, *_ in SECTIONS] + [("figures", "Other tasks")]
_DATA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError)


def runs_section(runs: list["Run"]) -> str:
    rows = []
    for run in runs:
        m = run.manifest
        model = run.metrics.get("model") or m.get("model") or {}
        status = m.get("status", "no manifest")
        if m.get("failure"):
            status += f": {m['failure']}"
        rows.append([esc(run.name), f"<code>{esc(run.path)}</code>", esc(model.get("spec", "?")), esc(status),
                     esc(str(m.get("finished") or m.get("updated") or "")[:19]),
                     esc(", ".join(run.tasks)), esc(run.metrics.get("interval_method", ""))])
    return ('<section id="runs"><h2>Runs</h2>'
            + table(["run", "folder", "model", "status", "finished", "tasks", "intervals"], rows) + "</section>")


def _direction(value: dict[str, Any]) -> str:
    if "higher_is_better" not in value:
        return ""
    return ('<span title="higher is better">&uarr; higher</span>' if value["higher_is_better"]
            else '<span title="lower is better">&darr; lower</span>')


_SHOWN = {"value", "ci_low", "ci_high", "label", "higher_is_better", "scale", "flag"}


def metric_cell(value: dict[str, Any] | None) -> str:
    """``value [low, high]`` in the metric's paper scale, then its other fields (p-values, counts) and any flag."""
    if value is None:
        return "&mdash;"
    scale = float(value.get("scale", 1.0) or 1.0)

    def scaled(key: str) -> float | None:
        x = value.get(key)
        return None if x is None else float(x) * scale

    text = number(scaled("value"))
    if value.get("ci_low") is not None and value.get("ci_high") is not None:
        text += f" [{number(scaled('ci_low'))}, {number(scaled('ci_high'))}]"
    extras = [f"{esc(k)}={number(v) if isinstance(v, (int, float)) else esc(v)}" for k, v in value.items()
              if k not in _SHOWN and isinstance(v, (int, float, str, bool))]
    if extras:
        text += f'<div class="small">{" ".join(extras)}</div>'
    if value.get("flag"):
        text += f'<div class="small warn">{esc(value["flag"])}</div>'
    return text


def metrics_table(entries: list[tuple[str, dict[str, Any] | None]]) -> str:
    """One row per metric (every metric any entry has, in order), one column per (run name, task entry)."""
    names: dict[str, dict[str, Any]] = {}
    for _, entry in entries:
        for name, value in (entry or {}).get("metrics", {}).items():
            names.setdefault(name, value)
    primaries = {p for _, e in entries if e for p in (e.get("primaries") or [e.get("primary")])}
    rows = []
    for name, first in names.items():
        label = esc(first.get("label", name))
        label = f"<b>{label}</b> \u2605" if name in primaries else label
        rows.append([f"{label}<div class=\"small\"><code>{esc(name)}</code></div>", _direction(first),
                     *[metric_cell((e or {}).get("metrics", {}).get(name)) for _, e in entries]])
    return table(["metric", "direction", *[esc(run) for run, _ in entries]], rows, numeric_from=2)


def _entry_line(run: "Run", entry: dict[str, Any]) -> str:
    bits = [f"{k.replace('n_', '')} {entry[k]}" for k in ("n_samples", "n_errors", "n_images") if k in entry]
    what = entry.get("type") or entry.get("label") or ""
    return f"<li>{esc(run.name)}: {esc(what)}{'; ' if bits else ''}{esc(', '.join(bits))}</li>"


def metrics_section(runs: list["Run"]) -> str:
    out = ['<section id="metrics"><h2>Metrics</h2>',
           note("Values as papers print them (fractions x100, Len in tokens), with the 95% bootstrap interval over "
                "images in brackets; \u2605 marks a primary metric.")]
    for kind, title in (("groups", "Group"), ("tasks", "Task")):
        names = list(dict.fromkeys(n for run in runs for n in (run.groups if kind == "groups" else run.tasks)))
        for name in names:
            entries = [(run, (run.groups if kind == "groups" else run.tasks).get(name)) for run in runs]
            held = [(r, e) for r, e in entries if e is not None]
            missing = [r.name for r, e in entries if e is None]
            out.append(f'<section id="{slug("metrics", kind, name)}"><h3>{title} {esc(name)}</h3>')
            out.append('<ul class="note">' + "".join(_entry_line(r, e) for r, e in held)
                       + (f"<li>not in {esc(', '.join(missing))}</li>" if missing else "") + "</ul>")
            out.append(metrics_table([(r.name, e) for r, e in held]) + "</section>")
    if not any(run.tasks for run in runs):
        out.append(note("the runs hold no task"))
    return "".join(out) + "</section>"


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list) and value and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        shown = ", ".join(number(v) for v in value[:12])
        return [(prefix, f"[{shown}{', ...' if len(value) > 12 else ''}] ({len(value)} values)")]
    if isinstance(value, list):
        return [(prefix, f"list of {len(value)}")]
    return [(prefix, value)]


FIGURE_LINES = 60


def generic_task(run: "Run", task: str, entry: dict[str, Any], context: "Context") -> str:
    """A task type this report does not draw: its metrics table, and the scalar parts of its ``figures``."""
    out = [metrics_table([(run.name, entry)])]
    figures = entry.get("figures")
    if isinstance(figures, dict) and figures:
        items = _flatten(figures)
        rows = [[f"<code>{esc(k)}</code>", number(v) if isinstance(v, (int, float)) else esc(v)]
                for k, v in items[:FIGURE_LINES]]
        out.append("<h4>figures</h4>" + table(["field", "value"], rows))
        if len(items) > FIGURE_LINES:
            out.append(note(f"{len(items) - FIGURE_LINES} more figure fields not shown"))
    return "".join(out)


def type_section(key: str, title: str, runs: list["Run"], context: "Context") -> str:
    """The section of one task-type family, with a subsection per task and, inside, one part per run; empty when
    no run has such a task."""
    spec = next((s for s in SECTIONS if s[0] == key), None)
    types, builder, intro = (spec[2], spec[3], spec[4]) if spec else ((), generic_task, None)

    def wanted(entry: dict[str, Any]) -> bool:
        kind = entry.get("type")
        return kind in types if spec else kind not in KNOWN

    names = list(dict.fromkeys(n for run in runs for n, e in run.tasks.items() if wanted(e)))
    if not names:
        return ""
    out = [f'<section id="{key}"><h2>{esc(title)}</h2>']
    if intro is not None:
        out.append(_guarded(lambda: intro(runs, names, context), f"{title} overview", context, ""))
    for name in names:
        out.append(f'<section id="{slug(key, name)}"><h3>{esc(name)}</h3>')
        for run in runs:
            entry = run.tasks.get(name)
            if entry is None or not wanted(entry):
                continue
            label = f"<h4>{esc(run.name)}</h4>" if len(runs) > 1 else ""
            fallback = generic_task(run, name, entry, context) if spec else ""
            out.append('<div class="run-part">' + label
                       + _guarded(lambda: builder(run, name, entry, context), f"{name} in {run.name}", context, fallback)
                       + "</div>")
        out.append("</section>")
    return "".join(out) + "</section>"


def _guarded(draw: Callable[[], str], what: str, context: "Context", fallback: str) -> str:
    try:
        return draw()
    except _DATA_ERRORS as exc:
        context.warning(f"report: could not draw {what} ({type(exc).__name__}: {exc}); showing its metrics only")
        return note(f"could not draw this part ({type(exc).__name__}); its metrics follow", warn=True) + fallback


def compare_section(runs: list["Run"]) -> str:
    """The `bench compare` table of every later run against the first; a one-line note when compare is not
    available or refuses the runs (incomparable)."""
    out = ['<section id="compare"><h2>Compare</h2>',
           note(f"baseline {runs[0].name}; candidate{'s' if len(runs) > 2 else ''} "
                f"{', '.join(r.name for r in runs[1:])}")]
    try:
        from .compare import compare_runs
    except ImportError as exc:
        return "".join(out) + note(f"bench compare is not available in this installation ({exc})") + "</section>"
    try:
        result = compare_runs(runs[0].path, [r.path for r in runs[1:]])
    except BenchError as exc:
        return "".join(out) + note(f"not compared: {exc}") + "</section>"
    if hasattr(result, "to_markdown"):
        out.append(markdown_html(result.to_markdown()))
    else:
        data = result.to_dict() if hasattr(result, "to_dict") else result
        out.append(f"<pre>{esc(json.dumps(data, indent=1, default=str))}</pre>")
    return "".join(out) + "</section>"


def navigation(body: str) -> str:
    links = re.findall(r'<section id="([^"]+)"><h2>([^<]+)</h2>', body)
    return "<nav>" + "".join(f'<a href="#{i}">{t}</a>' for i, t in links) + "</nav>"
