"""Each task type's part of the report, drawn from a run's rows.parquet, metrics.json figures and artifacts.

- POPE: yes-ratio per split (with intervals), a confusion matrix per answer mode, and in score mode the P(yes)
  histograms by label and the ROC curve of P(yes).
- Grounded hallucination: the detector-confidence histograms of metrics.json (by answer and label), and the answers'
  confusion matrix.
- CHAIR: captions beside a thumbnail of their image, object mentions marked (hallucinated in red, grounded in
  green), captions with hallucinations first, capped with a count of the rest.
- Saliency: mean insertion/deletion curves, pointing-game bars, sanity curves, and the overlays the run kept.
- Bias: the rating change per cell with its interval beside the placebo's, and the mean shift against eps.

Each function takes (run, task name, its metrics.json entry, the report context) and returns HTML.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import report_plots as plots
from .report_html import esc, img, note, number, slug, table, thumbnail_uri

if TYPE_CHECKING:
    from .report import Context, Run

MODES = (("generate", "gen_answer"), ("score", "score_answer"))


def _metric(entry: dict[str, Any], name: str, key: str = "value") -> float | None:
    value = entry.get("metrics", {}).get(name) or {}
    x = value.get(key)
    return None if x is None else float(x)


def confusion(labels, answers) -> tuple[np.ndarray, list[str]]:
    """Counts [label yes/no] x [answer yes/no(/other)]; "other" (an unparsed or missing answer) only when present."""
    lab = np.asarray(labels, dtype=object)
    ans = np.asarray(answers, dtype=object)
    columns = ["yes", "no"]
    other = ~np.isin(ans, columns)
    if other.any():
        columns.append("other")
    counts = np.array([[int(((lab == l) & (ans == a)).sum()) if a != "other" else int(((lab == l) & other).sum())
                        for a in columns] for l in ("yes", "no")])
    return counts, columns


def confusion_html(labels, answers, mode: str) -> str:
    counts, columns = confusion(labels, answers)
    rows = [[f"<b>label {l}</b>", *[str(c) for c in counts[i]], str(int(counts[i].sum()))] for i, l in enumerate(("yes", "no"))]
    rows.append(["<b>total</b>", *[str(int(c)) for c in counts.sum(0)], str(int(counts.sum()))])
    total = counts.sum()
    ratio = f"; yes-ratio {counts[:, 0].sum() / total:.3f}" if total else ""
    return (f'<div><h4>{esc(mode)} answers{ratio}</h4>'
            + table(["", *[f"answer {c}" for c in columns], "total"], rows, numeric_from=1) + "</div>")


def pope_intro(runs: list["Run"], names: list[str], context: "Context") -> str:
    """The yes-ratio of each split (task) of each group, per run and answer mode, with intervals; the label's yes
    share as a dashed line."""
    groups: dict[str, list[str]] = {}
    for name in names:
        entry = next(r.tasks[name] for r in runs if name in r.tasks)
        groups.setdefault(entry.get("group") or name, []).append(name)
    out = []
    for group, splits in groups.items():
        series = []
        for run in runs:
            for mode, _ in MODES:
                metric = f"{mode}_yes_ratio"
                entries = [run.tasks.get(s) or {} for s in splits]
                if not any(metric in e.get("metrics", {}) for e in entries):
                    continue
                series.append((f"{run.name} ({mode})" if len(runs) > 1 else mode,
                               [_metric(e, metric) for e in entries], [_metric(e, metric, "ci_low") for e in entries],
                               [_metric(e, metric, "ci_high") for e in entries]))
        if not series:
            continue
        first = next(r for r in runs if splits[0] in r.tasks)
        rows = first.rows(splits[0], ["label"])
        share = float((rows["label"] == "yes").mean()) if rows is not None and len(rows) else None
        uri = plots.grouped_bars(splits, series, f"{group}: yes-ratio per split", "share of yes answers", share,
                                 "label yes share", (0, 1.05))
        out.append(f'<div id="{slug("pope-yes-ratio", group)}">{img(uri, f"yes-ratio per split of {group}", "plot")}</div>')
    return "".join(out)


def pope_task(run: "Run", task: str, entry: dict[str, Any], context: "Context") -> str:
    rows = run.rows(task, ["label", "gen_answer", "score_answer", "score_p_yes"])
    if rows is None or not len(rows):
        return note("no rows.parquet with answers in this run")
    parts = [confusion_html(rows["label"], rows[col], mode) for mode, col in MODES
             if col in rows and rows[col].notna().any()]
    out = '<div class="row">' + "".join(parts) + "</div>"
    if "score_p_yes" in rows and rows["score_p_yes"].notna().any():
        scored = rows[rows["score_p_yes"].notna()]
        uri = plots.pyes_and_roc(scored["score_p_yes"].to_numpy(float), (scored["label"] == "yes").to_numpy(),
                                 _metric(entry, "score_auroc"), task)
        out += img(uri, f"P(yes) histograms and ROC of {task}", "plot")
    return out


def grounded_task(run: "Run", task: str, entry: dict[str, Any], context: "Context") -> str:
    out = []
    rows = run.rows(task, ["label", "gen_answer", "score_answer", "grounding"])
    if rows is not None and len(rows):
        if "grounding" in rows and rows["grounding"].notna().any():
            out.append(note("grounding: " + ", ".join(sorted(rows["grounding"].dropna().unique()))))
        out.append('<div class="row">' + "".join(confusion_html(rows["label"], rows[col], mode) for mode, col in MODES
                                                 if col in rows and rows[col].notna().any()) + "</div>")
    figures = entry.get("figures") or {}
    if "bins" in figures:
        series = {k: v for k, v in figures.items() if k.startswith("answer_")}
        out.append(img(plots.confidence_histograms(figures["bins"], series, task),
                       f"detector confidence histograms of {task}", "plot"))
    else:
        out.append(note("no confidence histograms in metrics.json"))
    return "".join(out)


# -- CHAIR -------------------------------------------------------------------------------------------------------

_NONSPACE = re.compile(r"\S")


def mention_spans(caption: str, rules: str, mentioned: list[str]) -> list[tuple[int, int, str]] | None:
    """(start, end, category) of every object mention in ``caption``, from the task's own CHAIR matcher; None when
    its mentions are not the row's (another vocabulary), so nothing is marked wrongly.

    Every non-space character of a caption belongs to one token, in order, and a token keeps its length, so a
    token starts at the first non-space character after the previous one."""
    from ..tasks.chair import vocabulary
    from ..text.tokenizer import tokenize

    found, _ = vocabulary(rules).analyse(caption)
    if [m.category for m in found] != list(mentioned):
        return None
    starts, ends, cursor = [], [], 0
    for token in tokenize(caption):
        match = _NONSPACE.search(caption, cursor)
        if match is None:
            return None
        starts.append(match.start())
        ends.append(match.start() + len(token))
        cursor = ends[-1]
    spans = []
    for m in found:
        start, end = starts[m.position], ends[m.position + m.n_tokens - 1]
        if caption[start:end].lower().split() != m.surface.lower().split():
            return None
        spans.append((start, end, m.category))
    return spans


def marked_caption(caption: str, spans: list[tuple[int, int, str]] | None, gt: set[str]) -> str:
    if not spans:
        return esc(caption)
    out, cursor = [], 0
    for start, end, category in spans:
        out.append(esc(caption[cursor:start]))
        kind, why = ("ok", "in the ground truth") if category in gt else ("hall", "hallucinated")
        out.append(f'<mark class="{kind}" title="{esc(category)}: {why}">{esc(caption[start:end])}</mark>')
        cursor = end
    return "".join(out) + esc(caption[cursor:])


def _listed(value) -> list[str]:
    return [] if value is None else [str(v) for v in value]


def _thumb(context: "Context", path: str | None) -> str | None:
    if not path:
        return None
    if path not in context.thumbs:
        context.thumbs[path] = thumbnail_uri(path)
    return context.thumbs[path]


def chair_task(run: "Run", task: str, entry: dict[str, Any], context: "Context") -> str:
    rows = run.rows(task, ["sample_index", "image_id", "image", "prompt", "prompt_index", "caption", "gt", "mentioned",
                           "hallucinated", "n_hallucinated"])
    if rows is None or not len(rows):
        return note("no rows.parquet with captions in this run")
    settings = (run.manifest.get("tasks", {}).get(task) or {}).get("settings") or {}
    rules = settings.get("phrase_rules") or "reference"
    order = rows.assign(_h=-rows["n_hallucinated"].fillna(0)).sort_values(["_h", "sample_index"], kind="stable")
    shown = order.head(context.caption_cap)
    n_hall = int((rows["n_hallucinated"].fillna(0) > 0).sum())
    prompts = rows["prompt"].nunique() if "prompt" in rows else 1
    out = [note(f"{len(rows)} captions, {n_hall} with a hallucinated object; showing {len(shown)}, those with "
                f"hallucinations first. Marked: hallucinated objects in red, objects in the ground truth in green.")]
    unmarked = 0
    for _, row in shown.iterrows():
        caption = row["caption"] or ""
        gt = set(_listed(row["gt"]))
        spans = mention_spans(caption, rules, _listed(row["mentioned"]))
        unmarked += spans is None
        uri = _thumb(context, row.get("image"))
        picture = img(uri, f"image {row['image_id']}") if uri else f'<span class="note">image {esc(row["image_id"])} not readable here</span>'
        hall = _listed(row["hallucinated"])
        text = [f'<div class="small">image {esc(row["image_id"])}' + (f" &middot; prompt: {esc(row['prompt'])}" if prompts > 1 else "")
                + "</div>", f"<p>{marked_caption(caption, spans, gt)}</p>",
                f'<div class="small">ground truth: {esc(", ".join(sorted(gt)) or "none")}</div>',
                f'<div class="small">hallucinated: {esc(", ".join(hall) or "none")}</div>']
        out.append(f'<div class="card caption chair-caption">{picture}<div>{"".join(text)}</div></div>')
    if len(rows) > len(shown):
        out.append(note(f"{len(rows) - len(shown)} more captions not shown (cap {context.caption_cap})"))
    if unmarked:
        out.append(note(f"{unmarked} captions shown without marks: this CHAIR matcher does not find the run's mentions"))
    return "".join(out)


# -- saliency ----------------------------------------------------------------------------------------------------

def saliency_task(run: "Run", task: str, entry: dict[str, Any], context: "Context") -> str:
    figures = entry.get("figures") or {}
    out = []
    counts = figures.get("counts")
    if isinstance(counts, dict):
        out.append(note(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())))
    plots_html = []
    if figures.get("mean_curves"):
        plots_html.append(img(plots.mean_curves(figures["mean_curves"], task), f"mean insertion/deletion of {task}", "plot"))
    pointing = figures.get("pointing_game")
    if pointing:
        methods = list(pointing)
        series = [(run.name, [pointing[m] for m in methods], [_metric(entry, f"pointing_game[{m}]", "ci_low") for m in methods],
                   [_metric(entry, f"pointing_game[{m}]", "ci_high") for m in methods])]
        plots_html.append(img(plots.grouped_bars(methods, series, f"{task}: pointing game", "hit rate", ylim=(0, 1.05)),
                              f"pointing game of {task}", "plot"))
    if figures.get("sanity"):
        plots_html.append(img(plots.sanity_curves(figures["sanity"], task), f"sanity curves of {task}", "plot"))
    out.append('<div class="row">' + "".join(plots_html) + "</div>")
    out.append(_overlays(run, task, context))
    return "".join(out)


def _overlays(run: "Run", task: str, context: "Context") -> str:
    folder = run.task_dir(task) / "overlays"
    files = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not files:
        return note("no saliency overlays kept in this run")
    rows = run.rows(task, ["sample_id", "sample_index", "image_id", "method", "target_word", "category", "hallucinated"])
    by_name = {}
    if rows is not None and "sample_id" in rows:       # an overlay is named after its row's sample id
        names = rows["sample_id"].astype(str).str.replace(":", "_", regex=False)
        kept = rows[names.isin({f.stem for f in files})].assign(_name=names)
        by_name = {r["_name"]: r for _, r in kept.iterrows()}
    position = {name: i for i, name in enumerate(by_name)}
    files.sort(key=lambda f: (position.get(f.stem, len(position)), f.name))
    shown = files[:context.overlay_cap]
    cards = []
    for path in shown:
        uri = thumbnail_uri(path)
        if uri is None:
            continue
        row = by_name.get(path.stem)
        if row is not None:
            bits = [f"image {row['image_id']}", f"{row['target_word']}" + (f" ({row['category']})" if row.get("category") else ""),
                    str(row["method"])] + (["hallucinated"] if bool(row.get("hallucinated")) else [])
            label = " · ".join(bits)
        else:
            label = path.stem
        cards.append(f'<figure class="card overlay">{img(uri, label)}<figcaption>{esc(label)}</figcaption></figure>')
    out = '<h4>overlays</h4><div class="row">' + "".join(cards) + "</div>"
    if len(files) > len(shown):
        out += note(f"{len(files) - len(shown)} more overlays not shown (cap {context.overlay_cap})")
    return out


# -- bias --------------------------------------------------------------------------------------------------------

def bias_task(run: "Run", task: str, entry: dict[str, Any], context: "Context") -> str:
    figures = entry.get("figures") or {}
    reading, eps = figures["reading"], figures["headline_eps"]
    cells = [c for c in figures["cells"].get(reading, []) if eps is None or abs(float(c["eps"]) - float(eps)) < 1e-12]
    edits = list(dict.fromkeys(c["edit"] for c in cells))
    main = next((e for e in edits if e != "placebo"), edits[0] if edits else None)
    mine = [c for c in cells if c["edit"] == main]
    out = []
    counts = figures.get("counts")
    if isinstance(counts, dict):
        out.append(note(", ".join(f"{k.replace('_', ' ')}: {v}" for k, v in counts.items())))
    if not mine:
        return "".join(out) + note(f"no rating change cells at eps {eps} ({reading} reading)")
    labels = [f"{c['direction']} | {c['characteristic']}" + (" *" if c.get("significant") else "") for c in mine]
    placebo = [c.get("placebo_change") for c in mine] if any(_finite(c.get("placebo_change")) for c in mine) else None
    eps_text = number(eps) if eps is not None else "?"
    out.append(img(plots.forest(labels, [c["change"] for c in mine], [c.get("ci_low") for c in mine],
                                [c.get("ci_high") for c in mine], placebo,
                                f"{task}: rating change per cell ({main}, {reading}, eps {eps_text})",
                                "change in rating (after - before)", main), f"rating shifts of {task}", "plot"))
    out.append(note(f"{main} edit at eps {eps_text}, {reading} reading; * marks a cell significant after "
                    f"{figures.get('correction') or 'the'} correction; grey: the placebo on the same cell"))
    rows = [[esc(c["direction"]), esc(c["characteristic"]),
             f"{number(c['change'])} [{number(c.get('ci_low'))}, {number(c.get('ci_high'))}]",
             number(c.get("placebo_change")), number(c.get("p_adjusted")), "yes" if c.get("significant") else "no"]
            for c in mine]
    out.append(table(["direction", "characteristic", "change [95% CI]", "placebo change", "p (adjusted)",
                      "significant"], rows, numeric_from=2))
    curve = figures.get("eps_curve") or []
    if len(curve) > 1:
        x = [float(p["eps"]) for p in curve]
        series = {name: [((p.get(reading) or {}).get(key) or {}).get("value") for p in curve]
                  for name, key in ((main, "mean_abs_change"), ("placebo", "mean_abs_change_placebo"))}
        series = {k: v for k, v in series.items() if any(x is not None for x in v)}
        if series:
            out.append(img(plots.lines(x, series, f"{task}: mean |rating change| against eps", "eps",
                                       "mean |change|"), f"rating shift against eps of {task}", "plot"))
    out.append(_edited_images(run, task, figures.get("edited_images") or [], context))
    return "".join(out)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and bool(np.isfinite(value))


def _edited_images(run: "Run", task: str, names: list[str], context: "Context") -> str:
    """Thumbnails of the edited images the run kept (paths inside the task folder), capped like overlays."""
    folder = run.task_dir(task).resolve()
    cards = []
    for name in names[:context.overlay_cap]:
        path = (folder / str(name)).resolve()
        uri = thumbnail_uri(path) if path.is_relative_to(folder) else None
        if uri is not None:
            cards.append(f'<figure class="card">{img(uri, str(name))}<figcaption>{esc(Path(name).stem)}</figcaption></figure>')
    if not cards:
        return ""
    out = '<h4>edited images</h4><div class="row">' + "".join(cards) + "</div>"
    if len(names) > context.overlay_cap:
        out += note(f"{len(names) - context.overlay_cap} more edited images not shown (cap {context.overlay_cap})")
    return out
