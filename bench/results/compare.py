"""``bench compare BASE CANDIDATE [CANDIDATE ...]``: paired, image-clustered comparisons that refuse incomparable runs.

Comparable or refused: the runs must have the same task fingerprints, sample ids, prompts as sent and generation
settings; otherwise `Incomparable` names the first field that differs (``--allow-different FIELD`` overrides it).
Per task, metric and group mean (`bench.metrics.contract.paired_estimate`): baseline, candidate, difference, a
paired bootstrap interval with the same image draw for both runs, a two-sided sign-flip permutation p-value at the
image level (exact up to 16 images, else 10,000 seeded swaps), the exact McNemar test on per-sample correctness for
tasks with one row per image, Holm's correction across every (task, metric) compared for one candidate, and the
minimum detectable effect (2.80 x the bootstrap standard error of the difference).

The gate: by default every task's and group's primary metric; with ``margin`` X (in the units of metrics.json:
fractions, tokens for Len) a gated metric REGRESSES when the interval's bound on the worse side passes -X, i.e. the
candidate may be more than X worse in the metric's declared direction.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import BenchError
from ..metrics.bootstrap import BootstrapConfig
from ..metrics.paired import holm

FIELDS = ("fingerprint", "samples", "prompts", "settings")


class Incomparable(BenchError):
    """The runs differ in what they evaluated (exit status 2)."""


@dataclass
class Loaded:
    path: Path
    manifest: dict[str, Any]
    metrics: dict[str, Any]
    tasks: dict[str, Any]            # task name -> TaskType (rebuilt from the manifest)
    rows: dict[str, Any]             # task name -> rows without errors


def load(path: Path, only: Sequence[str] | None = None) -> Loaded:
    from .rescore import load_run

    metrics_path = Path(path) / "metrics.json"
    try:
        metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BenchError(f"{path}: no metrics.json (the run has not finished)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{metrics_path}: unreadable metrics file ({type(exc).__name__})") from None
    _, manifest, tasks, rows = load_run(Path(path), None)
    if only:
        missing = [t for t in only if t not in tasks and t not in metrics.get("groups", {})]
        if missing:
            raise BenchError(f"{path}: has no task or group {missing[0]!r}")
    kept = {name: r[r["error"].isna()] for name, r in rows.items()}
    return Loaded(Path(path), manifest, metrics, tasks, kept)


def check_comparable(base: Loaded, cand: Loaded, names: list[str], allow: set[str]) -> list[str]:
    """Raise `Incomparable` naming the first difference not allowed; returns the differences allowed."""
    allowed = []
    for name in names:
        b, c = base.manifest["tasks"].get(name, {}), cand.manifest["tasks"].get(name, {})
        checks = (("fingerprint", b.get("fingerprint", {}).get("sha256"), c.get("fingerprint", {}).get("sha256")),
                  ("samples", sorted(map(str, base.rows[name]["sample_id"])), sorted(map(str, cand.rows[name]["sample_id"]))),
                  ("prompts", b.get("prompt_as_sent"), c.get("prompt_as_sent")),
                  ("settings", b.get("settings"), c.get("settings")))
        for what, x, y in checks:
            if x != y:
                if what in allow:
                    allowed.append(f"{name}: {what}")
                    continue
                detail = _difference(x, y) if what != "samples" else f"{len(x)} vs {len(y)} samples without errors"
                raise Incomparable(f"{cand.path} is not comparable with {base.path}: task {name} differs in its {what} "
                                   f"({detail}); --allow-different {what} compares them anyway")
    return allowed


def _difference(x: Any, y: Any) -> str:
    if isinstance(x, dict) and isinstance(y, dict):
        key = next((k for k in sorted(set(x) | set(y)) if x.get(k) != y.get(k)), None)
        return f"'{key}': {x.get(key)!r} vs {y.get(key)!r}"
    text = f"{x!r} vs {y!r}"
    return text if len(text) < 160 else text[:157] + "..."


@dataclass
class Line:
    candidate: str
    scope: str                      # task or group name
    metric: str
    label: str
    higher_is_better: bool
    scale: float
    baseline: float
    value: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float
    mde: float
    n_images: int
    test: str
    gated: bool
    mcnemar: dict | None = None
    p_holm: float = math.nan
    regression: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in self.__dict__.items()}


@dataclass
class Comparison:
    base: str
    candidates: list[str]
    margin: float | None
    lines: list[Line] = field(default_factory=list)
    allowed: dict[str, list[str]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        return any(line.regression for line in self.lines)

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, "candidates": self.candidates, "margin": self.margin, "regressed": self.regressed,
                "allowed_differences": self.allowed, "skipped": self.skipped, "lines": [l.as_dict() for l in self.lines]}

    def to_markdown(self) -> str:
        head = ["candidate", "task", "metric", "baseline", "candidate value", "difference [95% CI]", "p", "p (Holm)",
                "MDE", "images", "gate"]
        out = [f"Baseline: `{self.base}`" + (f"; margin {self.margin:g}" if self.margin is not None else ""), "",
               "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for l in self.lines:
            s = l.scale
            arrow = "↑" if l.higher_is_better else "↓"
            gate = "REGRESSION" if l.regression else ("ok" if l.gated and self.margin is not None else ("gated" if l.gated else ""))
            mc = f"; McNemar p {l.mcnemar['p_value']:.3g}" if l.mcnemar else ""
            out.append("| " + " | ".join([
                Path(l.candidate).name, l.scope, f"{l.label} {arrow}", _num(l.baseline, s), _num(l.value, s),
                f"{_num(l.difference, s, signed=True)} [{_num(l.ci_low, s, signed=True)}, {_num(l.ci_high, s, signed=True)}]",
                f"{l.p_value:.3g}{mc}" if not math.isnan(l.p_value) else "", f"{l.p_holm:.3g}" if not math.isnan(l.p_holm) else "",
                _num(l.mde, s), str(l.n_images), gate]) + " |")
        if self.skipped:
            out += ["", "Not compared: " + "; ".join(self.skipped)]
        for cand, allowed in self.allowed.items():
            if allowed:
                out += ["", f"Allowed differences for `{Path(cand).name}`: " + "; ".join(allowed)]
        return "\n".join(out) + "\n"


def _num(value: float, scale: float, signed: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value * scale:+.2f}" if signed else f"{value * scale:.2f}"


def compare_runs(base_dir: Path, candidate_dirs: Sequence[Path], *, tasks: Sequence[str] | None = None,
                 metrics: Sequence[str] | None = None, margin: float | None = None,
                 allow_different: Sequence[str] = (), resamples: int = 1000, seed: int = 0,
                 test_resamples: int = 10000) -> Comparison:
    """Compare each candidate run with the baseline run; see the module docstring."""
    from ..metrics.contract import paired_estimates

    unknown = sorted(set(allow_different) - set(FIELDS))
    if unknown:
        raise BenchError(f"--allow-different: unknown field {unknown[0]!r} (one of {', '.join(FIELDS)})")
    base = load(Path(base_dir), tasks)
    config = BootstrapConfig(resamples, seed)
    comparison = Comparison(str(base_dir), [str(c) for c in candidate_dirs], margin)
    wanted_tasks = [t for t in (tasks or base.tasks) if t in base.tasks]
    groups = {g: e for g, e in base.metrics.get("groups", {}).items() if not tasks or g in tasks or set(e["tasks"]) & set(wanted_tasks)}
    for cand_dir in candidate_dirs:
        cand = load(Path(cand_dir), tasks)
        names = [t for t in wanted_tasks if t in cand.tasks]
        missing = [t for t in wanted_tasks if t not in cand.tasks]
        if missing:
            raise Incomparable(f"{cand_dir} is not comparable with {base_dir}: it has no task {missing[0]}")
        comparison.allowed[str(cand_dir)] = check_comparable(base, cand, names, set(allow_different))
        lines: list[Line] = []
        stats_b, stats_c = {}, {}
        for name in names:
            task = base.tasks[name]
            try:
                stats_b[name], stats_c[name] = task.sample_statistics(base.rows[name]), task.sample_statistics(cand.rows[name])
            except NotImplementedError:
                comparison.skipped.append(f"{name} (its task type gives no per-sample statistics)")
                continue
            entry = base.metrics["tasks"].get(name, {})
            chosen = [m for m in _chosen(entry, metrics) if m in stats_b[name].metrics]
            for metric, paired in paired_estimates(stats_b[name], stats_c[name], chosen, config, test_resamples).items():
                lines.append(_line(str(cand_dir), name, metric, entry, paired, gated=metric in _gated(entry, metrics)))
        for group, entry in groups.items():
            members = [m for m in entry["tasks"] if m in stats_b]
            if len(members) != len(entry["tasks"]):
                continue
            for metric in _chosen(entry, metrics):
                result = _group_paired([stats_b[m] for m in members], [stats_c[m] for m in members], metric, config, test_resamples)
                if result is not None:
                    lines.append(_line(str(cand_dir), group, metric, entry, result, gated=metric in _gated(entry, metrics)))
        adjusted = holm([l.p_value for l in lines])
        for line, p in zip(lines, adjusted):
            line.p_holm = float(p)
            line.regression = line.gated and margin is not None and _regresses(line, margin)
        comparison.lines += lines
    return comparison


def _chosen(entry: dict, metrics: Sequence[str] | None) -> list[str]:
    names = list(entry.get("metrics", {}))
    return [m for m in names if m in metrics] if metrics else names


def _gated(entry: dict, metrics: Sequence[str] | None) -> set[str]:
    if metrics:
        return set(metrics)
    return set(entry.get("primaries") or [entry.get("primary")])


def _regresses(line: Line, margin: float) -> bool:
    if line.higher_is_better:
        return not math.isnan(line.ci_low) and line.ci_low < -margin
    return not math.isnan(line.ci_high) and line.ci_high > margin


def _line(candidate: str, scope: str, metric: str, entry: dict, paired, gated: bool) -> Line:
    info = entry.get("metrics", {}).get(metric, {})
    r = paired.result
    return Line(candidate, scope, metric, info.get("label", metric), bool(info.get("higher_is_better", True)),
                float(info.get("scale", 1.0)), r.baseline, r.candidate, r.difference, r.ci_low, r.ci_high, r.p_value,
                r.mde, r.n_images, r.test, gated, paired.mcnemar)


def _group_paired(base_parts, cand_parts, metric: str, config: BootstrapConfig, resamples: int):
    """The group mean of a summed metric, compared over the union of the members' images with one draw."""
    from ..metrics.contract import Paired, Summed, group_matrix
    from ..metrics.paired import compare_paired

    if not all(isinstance(p.metrics.get(metric), Summed) for p in list(base_parts) + list(cand_parts)):
        return None
    units = list(dict.fromkeys(i for p in base_parts for i in p.image_ids))
    base, statistic = group_matrix(base_parts, metric, units)
    cand, _ = group_matrix(cand_parts, metric, units)
    result = compare_paired(base, cand, statistic, config, test_resamples=resamples)
    return Paired(result)
