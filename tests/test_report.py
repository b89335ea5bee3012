"""`bench report`: one self-contained HTML file of runs (no browser here; see test_report_browser.py).

Most tests build run folders by hand, at the size of the mini runs (3 POPE splits of 62 questions, 21+ CHAIR
captions over the bundled photos, 12 saliency overlays, a grounded task, a bias task, a task type the report does
not know), with planted answers so that what the report shows can be checked against a hand count. One test makes a
real (tiny-model) run and reports it.
"""

from __future__ import annotations

import json
import re
import sys
import types
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.resources import assets_dir

MINI = assets_dir() / "mini_coco"
VOID = {"meta", "link", "img", "br", "hr", "input", "source", "col", "area", "base", "wbr"}
POPE_SPLITS = ("pope_mini_adversarial", "pope_mini_popular", "pope_mini_random")
# planted generate answers per split: (label yes & answer yes, yes & no, no & yes, no & no), 62 questions each
PLANTED = {"pope_mini_adversarial": (25, 6, 12, 19), "pope_mini_popular": (28, 3, 9, 22), "pope_mini_random": (20, 11, 5, 26)}
CAPTIONS = [
    "A cat sleeps on a couch next to a dog and a laptop.",
    "Two Passenger Jets fly over a hot dog\u2019s bun, and a person holds an umbrella.",
    "A person rides a bicycle past a bench.",
    "A bowl of oranges and an apple on a dining table.",
    "A horse stands in a field.",
]


def _images() -> list[tuple[str, Path, list[str]]]:
    """(image id, file, ground-truth categories) of the bundled photos."""
    data = json.loads((MINI / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    gt: dict[int, set[str]] = {}
    for a in data["annotations"]:
        gt.setdefault(a["image_id"], set()).add(names[a["category_id"]])
    return [(str(i["id"]), MINI / "images" / i["file_name"], sorted(gt.get(i["id"], ()))) for i in data["images"]]


def metric(value, label, higher=True, scale=100.0, width=0.05, **extra):
    return {"label": label, "higher_is_better": higher, "scale": scale, "value": value,
            "ci_low": None if value is None else value - width, "ci_high": None if value is None else value + width, **extra}


def _entry(kind, metrics, primary, n, n_images, group=None, figures=None, **extra):
    return {"type": kind, "group": group, "column": None, "n_samples": n, "n_errors": 0, "n_images": n_images,
            "primary": primary, "metrics": metrics, **({"figures": figures} if figures else {}), **extra}


def _write_rows(run: Path, task: str, frame: pd.DataFrame) -> None:
    folder = run / "tasks" / task
    folder.mkdir(parents=True, exist_ok=True)
    frame.assign(error=pd.Series([None] * len(frame), dtype=object)).to_parquet(folder / "rows.parquet")


def _pope_rows(task: str, rng) -> pd.DataFrame:
    images = _images()
    yy, yn, ny, nn = PLANTED[task]
    labels = ["yes"] * (yy + yn) + ["no"] * (ny + nn)
    answers = ["yes"] * yy + ["no"] * yn + ["yes"] * ny + ["no"] * nn
    p_yes = np.clip(rng.normal(np.where(np.array(labels) == "yes", 0.65, 0.4), 0.15), 0, 1)
    n = len(labels)
    return pd.DataFrame({
        "sample_id": [str(i) for i in range(n)], "sample_index": np.arange(n),
        "image_id": [images[i % 17][0] for i in range(n)], "image": [str(images[i % 17][1]) for i in range(n)],
        "label": labels, "object": ["cat"] * n, "gen_answer": answers, "score_p_yes": p_yes,
        "score_answer": np.where(p_yes >= 0.5, "yes", "no")})


def _pope_metrics(rows: pd.DataFrame) -> dict:
    out = {}
    for mode, column in (("generate", "gen_answer"), ("score", "score_answer")):
        pred, true = rows[column] == "yes", rows["label"] == "yes"
        tp = float((pred & true).sum())
        precision, recall = tp / max(pred.sum(), 1), tp / true.sum()
        out[f"{mode}_accuracy"] = metric(float((pred == true).mean()), f"Accuracy ({mode})")
        out[f"{mode}_f1"] = metric(2 * precision * recall / (precision + recall), f"F1 ({mode})")
        out[f"{mode}_yes_ratio"] = metric(float(pred.mean()), f"Yes-ratio (predicted) ({mode})", higher=False)
    out["score_auroc"] = metric(0.74, "AUROC of P(yes) (score)")
    return out


def _chair(run: Path, n_captions: int) -> dict:
    from bench.tasks.chair import vocabulary

    images = _images()
    vocab = vocabulary("reference")
    records = []
    for i in range(n_captions):
        image_id, path, gt = images[i % len(images)]
        caption = CAPTIONS[i % len(CAPTIONS)]
        score = vocab.score_caption(caption, set(gt))
        records.append({"sample_id": f"{image_id}:{i}", "sample_index": i, "image_id": image_id, "image": str(path),
                        "prompt_index": 0, "prompt": "Describe.", "caption": caption, "gt": gt,
                        "mentioned": score.mentioned, "hallucinated": score.hallucinated,
                        "n_hallucinated": score.n_hallucinated})
    rows = pd.DataFrame(records)
    _write_rows(run, "chair_mini_64", rows)
    chair_s = float((rows["n_hallucinated"] > 0).mean())
    return _entry("chair", {"CHAIR_s": metric(chair_s, "CHAIR_s", higher=False),
                            "CHAIR_i": metric(0.4, "CHAIR_i", higher=False),
                            "Len": metric(10.6667, "Len (tokens)", scale=1.0, width=1.6)},
                  "CHAIR_s", len(rows), rows["image_id"].nunique())


METHODS = ("integrated_gradients", "occlusion", "random")


def _saliency(run: Path, rng, targets: int = 4) -> dict:
    from PIL import Image

    from bench.explain.overlay import overlay_png

    images = _images()
    records, folder = [], run / "tasks" / "saliency_mini" / "overlays"
    folder.mkdir(parents=True)
    for t in range(targets):
        image_id, path, gt = images[t]
        with Image.open(path) as picture:
            width, height = picture.size
            yy, xx = np.mgrid[0:height, 0:width]
            for m, method in enumerate(METHODS):
                sample_id = f"{image_id}:{t}:{method}"
                records.append({"sample_id": sample_id, "sample_index": len(records), "image_id": image_id,
                                "image": str(path), "method": method, "target_word": (gt or ["thing"])[0],
                                "category": (gt or ["thing"])[0], "hallucinated": t == 3, "status": "ok"})
                smooth = np.sin(xx / (40.0 + 10 * m)) * np.cos(yy / 55.0)
                (folder / f"{sample_id.replace(':', '_')}.png").write_bytes(overlay_png(picture, smooth))
    _write_rows(run, "saliency_mini", pd.DataFrame(records))
    steps = np.linspace(0, 1, 17)
    figures = {"counts": {"rows": len(records), "absent": 0, "null_normalised": 0},
               "mean_curves": {m: {"insertion": (steps ** (1 + i)).tolist(), "deletion": (1 - steps ** (1 + i)).tolist()}
                               for i, m in enumerate(METHODS)},
               "pointing_game": {"integrated_gradients": 0.75, "occlusion": 0.5, "random": 0.25},
               "sanity": {m: {"steps": ["original", "layer 2", "layer 1", "all"], "spearman": [1.0, 0.6, 0.3, 0.1],
                              "ssim": [1.0, 0.5, 0.2, 0.05]} for m in METHODS[:2]}}
    metrics = {}
    for m in METHODS:
        metrics[f"ins_minus_del[{m}]"] = metric(0.1, f"Insertion - deletion AUC ({m})")
        metrics[f"pointing_game[{m}]"] = metric(figures["pointing_game"][m], f"Pointing game (15 px) ({m})", width=0.2)
    metrics["sanity_spearman[occlusion]"] = metric(0.1, "Spearman with the randomised model's maps (occlusion)",
                                                   higher=False, flag="the maps barely change")
    return _entry("saliency", metrics, "ins_minus_del[integrated_gradients]", len(records), targets,
                  figures=figures, primaries=[f"ins_minus_del[{m}]" for m in METHODS])


def _grounded(run: Path, rng) -> dict:
    rows = _pope_rows("pope_mini_random", rng).assign(confidence=rng.uniform(0, 1, 62), grounding="model")
    _write_rows(run, "grounded_pope_mini", rows)
    bins = np.linspace(0, 1, 11)
    figures = {"bins": bins.tolist()}
    for answer in ("yes", "no"):
        for label in ("yes", "no"):
            part = rows[(rows["gen_answer"] == answer) & (rows["label"] == label)]
            figures[f"answer_{answer}_label_{label}"] = np.histogram(part["confidence"], bins)[0].tolist()
    return _entry("grounded_hallucination", {"disagreement_auroc": metric(0.6, "disagreement AUROC"),
                                             "answer_yes_ratio": metric(0.5, "Yes-ratio", higher=False)},
                  "disagreement_auroc", 62, 17, figures=figures)


def bias_figures() -> dict:
    cells = []
    for edit in ("pixel", "placebo"):
        for eps in (0.0157, 0.0314):
            for i, (direction, characteristic) in enumerate([("man->woman", "nurse"), ("man->woman", "engineer"),
                                                             ("woman->man", "nurse"), ("woman->man", "engineer")]):
                # the headline eps (0.0314) has the planted changes; the smaller eps half of them
                change = [0.8, 0.4, -0.2, -0.6][i] * (1 if edit == "pixel" else 0.1) * (1 if eps > 0.02 else 0.5)
                cells.append({"edit": edit, "eps": eps, "direction": direction, "characteristic": characteristic,
                              "change": change, "ci_low": change - 0.2, "ci_high": change + 0.2, "p_adjusted": 0.01 * (i + 1),
                              "significant": i == 0 and edit == "pixel",
                              "placebo_change": 0.05 * i if edit == "pixel" else None})
    curve = [{"eps": eps, "logprob": {"mean_abs_change": {"value": 0.3 + eps * 10},
                                      "mean_abs_change_placebo": {"value": 0.05}}, "success_rate[pixel]": 0.8}
             for eps in (0.0157, 0.0314)]
    return {"reading": "logprob", "headline_eps": 0.0314, "correction": "bh",
            "counts": {"rows": 96, "ok": 90, "below_margin": 6, "same_attribute": 0, "excluded": 0, "skipped_images": 1},
            "cells": {"logprob": cells}, "eps_curve": curve, "edited_images": [], "plot": "shifts.png"}


def make_run(root: Path, name: str, seed: int = 0, chair_captions: int = 30, saliency_targets: int = 4,
             with_bias: bool = True, with_unknown: bool = True) -> Path:
    """A complete run folder at the size of the mini runs, with planted POPE answers."""
    rng = np.random.default_rng(seed)
    run = root / name
    run.mkdir(parents=True)
    tasks = {}
    for split in POPE_SPLITS:
        rows = _pope_rows(split, rng)
        _write_rows(run, split, rows)
        tasks[split] = _entry("pope", _pope_metrics(rows), "generate_f1", 62, 17, group="pope_mini")
    tasks["chair_mini_64"] = _chair(run, chair_captions)
    tasks["grounded_pope_mini"] = _grounded(run, rng)
    tasks["saliency_mini"] = _saliency(run, rng, saliency_targets)
    if with_bias:
        from PIL import Image

        edited = run / "tasks" / "bias_mini" / "edited"
        edited.mkdir(parents=True)
        Image.open(_images()[1][1]).save(edited / "2__pixel_e0_s0_woman-to-man.png")
        figures = {**bias_figures(), "edited_images": ["edited/2__pixel_e0_s0_woman-to-man.png", "../../manifest.json"]}
        tasks["bias_mini"] = _entry("bias", {"mean_abs_change": metric(0.45, "mean |rating change|", higher=False, scale=1.0),
                                             "n_significant": {"value": 1.0, "n_cells": 4.0, "alpha": 0.05}},
                                    "mean_abs_change", 96, 6, figures=figures)
    if with_unknown:
        tasks["mystery_probe"] = _entry("mystery", {"weirdness": metric(0.25, "Weirdness score", higher=False)},
                                        "weirdness", 10, 5, figures={"histogram": {"bins": [0, 0.5, 1], "counts": [3, 7]},
                                                                     "note": "planted"})
    groups = {"pope_mini": {"label": "POPE splits", "tasks": list(POPE_SPLITS), "column": "pope_mini",
                            "primary": "generate_f1",
                            "metrics": {"generate_f1": metric(0.7, "F1 (generate), mean over 3 tasks")}}}
    (run / "metrics.json").write_text(json.dumps({
        "schema_version": 1, "run": name, "model": {"spec": f"tiny-{name}"},
        "interval_method": "percentile bootstrap over images, 1000 resamples, seed 0, 95% interval",
        "tasks": tasks, "groups": groups}))
    (run / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "run_name": name, "status": "complete", "finished": "2026-12-01T10:00:00+00:00",
        "model": {"spec": f"tiny-{name}"}, "tasks": {"chair_mini_64": {"settings": {"phrase_rules": "reference"}}}}))
    return run


def fake_compare(monkeypatch, behaviour) -> list:
    """Put a stand-in `bench.results.compare` in place: ``behaviour`` is a Markdown string to return, or an exception
    to raise. Returns the calls it received."""
    calls = []

    class Result:
        def __init__(self, text):
            self.text = text

        def to_markdown(self):
            return self.text

    def compare_runs(base, candidates):
        calls.append((base, list(candidates)))
        if isinstance(behaviour, BaseException):
            raise behaviour
        return Result(behaviour)

    module = types.ModuleType("bench.results.compare")
    module.compare_runs = compare_runs
    monkeypatch.setitem(sys.modules, "bench.results.compare", module)
    return calls


COMPARE_MD = ("## bench compare\n\n| task | metric | base | candidate | diff [95% CI] |\n|---|---|---:|---:|---|\n"
              "| pope_mini_random | F1 (generate) | 66.7 | 61.2 | -5.5 [-9.0, -2.0] |\n")


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("runs")
    return make_run(root, "model-a", seed=0), make_run(root, "model-b", seed=1)


@pytest.fixture(scope="module")
def report(two_runs, tmp_path_factory) -> tuple[str, Path]:
    """The report of the two mini-size runs (written once for the module's tests)."""
    from bench.results.report import write_report

    with pytest.MonkeyPatch.context() as patch:
        fake_compare(patch, COMPARE_MD)
        out, size, runs = write_report(list(two_runs), tmp_path_factory.mktemp("report") / "report.html",
                                       warn=lambda m: None)
    text = out.read_text(encoding="utf-8")
    assert size == len(text.encode("utf-8")) and [r.name for r in runs] == ["model-a", "model-b"]
    return text, out


class Collector(HTMLParser):
    """Every start tag with its attributes, ids, and whether tags nest properly."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1] if self.stack else 'nothing'}")
        else:
            self.stack.pop()


def parse(text: str) -> Collector:
    parser = Collector()
    parser.feed(text)
    parser.close()
    return parser


def section(text: str, ident: str) -> str:
    """The HTML of the <section id=ident> (up to the next section of the same or a higher level)."""
    start = text.index(f'<section id="{ident}">')
    level = int(text[start + len(f'<section id="{ident}">') + 2])
    following = [m.start() for m in re.finditer(rf'<section id="[^"]+"><h[2-{level}]>', text) if m.start() > start]
    return text[start:following[0]] if following else text[start:]


# -- self-containment ----------------------------------------------------------------------------------------------

def test_the_report_parses_and_loads_nothing_from_outside(report):
    text, _ = report
    parser = parse(text)
    assert parser.problems == [] and parser.stack == []
    metas = [a for t, a in parser.tags if t == "meta" and (a.get("http-equiv") or "").lower() == "content-security-policy"]
    assert len(metas) == 1
    policy = {d.split()[0]: d.split()[1:] for d in metas[0]["content"].split(";") if d.strip()}
    assert policy["default-src"] == ["'none'"] and policy["img-src"] == ["data:"]
    assert text.index("Content-Security-Policy") < text.index("<style>")          # before anything it governs
    images = [a["src"] for t, a in parser.tags if t == "img"]
    assert len(images) > 40 and all(src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for src in images)
    ids = {a["id"] for _, a in parser.tags if a.get("id")}
    for tag, attrs in parser.tags:
        assert tag not in ("script", "iframe", "object", "embed")
        for name in ("src", "href", "srcset", "action", "poster"):
            value = attrs.get(name)
            if value is None:
                continue
            assert value.startswith(("data:", "#")), (tag, name, value[:60])          # no http(s):, //, file path
            assert "http:" not in value.lower() and "https:" not in value.lower()  # (":" is not in base64)
            if value.startswith("#"):
                assert value[1:] in ids                                             # every link goes somewhere
    assert "@import" not in text and "url(" not in text


def test_sections_appear_for_what_the_runs_hold(report, two_runs, tmp_path):
    from bench.results.report import write_report

    text, _ = report
    for ident in ("runs", "metrics", "pope", "grounded", "chair", "saliency", "bias", "figures", "compare",
                  "pope--pope_mini_random", "chair--chair_mini_64", "metrics--groups--pope_mini", "figures--mystery_probe"):
        assert f'<section id="{ident}">' in text, ident
    # a run with POPE only: no CHAIR, saliency, bias or compare section
    root = tmp_path / "pope-only"
    run = make_run(root, "only", chair_captions=1, saliency_targets=1, with_bias=False, with_unknown=False)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["tasks"] = {k: v for k, v in metrics["tasks"].items() if v["type"] == "pope"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    out, _, _ = write_report([run], tmp_path / "one.html")
    alone = out.read_text()
    assert '<section id="pope">' in alone and '<section id="metrics">' in alone
    for ident in ("chair", "saliency", "bias", "figures", "compare", "grounded"):
        assert f'<section id="{ident}">' not in alone, ident


def test_the_mini_runs_report_stays_under_the_size_bound(report):
    text, path = report
    assert path.stat().st_size < 5_000_000
    images = re.findall(r'<img class="thumb" src="data:image/(?:png|jpeg);base64,([^"]+)"', text)
    from PIL import Image
    import base64
    import io
    sizes = [Image.open(io.BytesIO(base64.b64decode(b))).size for b in images[:30]]
    assert sizes and all(max(s) <= 256 for s in sizes)                              # thumbnails, not photos


# -- what the sections show --------------------------------------------------------------------------------------

def _matrix(html_part: str, mode: str) -> list[list[int]]:
    block = html_part[html_part.index(f"<h4>{mode} answers"):]
    block = block[:block.index("</table>")]
    rows = re.findall(r"<tr><td><b>label (?:yes|no)</b></td>(.*?)</tr>", block)
    return [[int(x) for x in re.findall(r'<td class="num">(\d+)</td>', r)] for r in rows]


def test_pope_confusion_matrices_match_the_planted_answers(report, two_runs):
    text, _ = report
    for split, (yy, yn, ny, nn) in PLANTED.items():
        part = section(text, f"pope--{split}")
        first_run = part[:part.index("<h4>model-b</h4>")]
        assert _matrix(first_run, "generate") == [[yy, yn, yy + yn], [ny, nn, ny + nn]]
        rows = pd.read_parquet(two_runs[0] / "tasks" / split / "rows.parquet")
        cross = pd.crosstab(rows["label"], rows["score_answer"]).reindex(index=["yes", "no"], columns=["yes", "no"],
                                                                         fill_value=0)
        expected = [[*map(int, cross.loc[l]), int(cross.loc[l].sum())] for l in ("yes", "no")]
        assert _matrix(first_run, "score") == expected
        assert f"generate answers; yes-ratio {(yy + ny) / 62:.3f}" in first_run
        assert first_run.count('alt="P(yes) histograms and ROC of') == 1
    assert 'id="pope-yes-ratio--pope_mini"' in section(text, "pope")


def test_confusion_counts_other_answers_apart():
    from bench.results.report_tasks import confusion

    counts, columns = confusion(["yes", "yes", "no", "no", "no"], ["yes", None, "no", "maybe", "yes"])
    assert columns == ["yes", "no", "other"]
    assert counts.tolist() == [[1, 0, 1], [1, 1, 1]]


def test_metric_tables_carry_every_metric_its_interval_and_direction(report):
    text, _ = report
    part = section(text, "metrics--tasks--chair_mini_64")
    rows = re.findall(r"<tr>(.*?)</tr>", part)
    chair_s = next(r for r in rows if "<code>CHAIR_s</code>" in r)
    assert "&darr; lower" in chair_s and "\u2605" in chair_s                       # direction; primary marked
    length = next(r for r in rows if "<code>Len</code>" in r)
    assert "&uarr; higher" in length and "10.7 [9.1, 12.3]" in length              # scale 1: tokens
    group = section(text, "metrics--groups--pope_mini")
    assert "70.0 [65.0, 75.0]" in group                                             # fraction x100
    saliency = section(text, "metrics--tasks--saliency_mini")
    assert "the maps barely change" in saliency                                      # a metric's flag is shown
    bias = section(text, "metrics--tasks--bias_mini")
    assert "n_cells=4.0" in bias and "alpha=0.05" in bias                           # extra fields, shown as they are


def test_chair_captions_are_marked_capped_and_hallucinations_come_first(report, two_runs):
    text, _ = report
    part = section(text, "chair--chair_mini_64")
    first = part[:part.index("<h4>model-b</h4>")]
    cards = re.findall(r'<div class="card caption chair-caption">(.*?)</div></div>', first, flags=re.S)
    assert len(cards) == 24 and "6 more captions not shown (cap 24)" in first
    rows = pd.read_parquet(two_runs[0] / "tasks" / "chair_mini_64" / "rows.parquet")
    n_with = int((rows["n_hallucinated"] > 0).sum())
    flags = ["hallucinated: none" not in c for c in cards]
    assert flags == sorted(flags, reverse=True) and sum(flags) == min(n_with, 24)
    # every shown caption has one mark per mention: red for hallucinated, green for the ground truth
    shown_marks = sum(c.count('<mark class="hall"') for c in cards)
    order = rows.assign(h=-rows["n_hallucinated"]).sort_values(["h", "sample_index"], kind="stable").head(24)
    assert shown_marks == int(order["n_hallucinated"].sum())
    assert sum(c.count('<mark class="ok"') for c in cards) == int((order["mentioned"].map(len) - order["n_hallucinated"]).sum())
    assert all('<img class="thumb" src="data:image/jpeg;base64,' in c for c in cards)


def test_mentions_are_found_where_the_caption_has_them():
    from bench.results.report_tasks import marked_caption, mention_spans

    caption = "Two Passenger Jets fly over a hot dog\u2019s bun; a dog's \u201ccouch\u201d."
    spans = mention_spans(caption, "reference", ["airplane", "hot dog", "dog", "couch"])
    assert [(caption[a:b], c) for a, b, c in spans] == [("Passenger Jets", "airplane"), ("hot dog", "hot dog"),
                                                        ("dog", "dog"), ("couch", "couch")]
    html = marked_caption(caption, spans, {"dog"})
    assert '<mark class="hall" title="airplane: hallucinated">Passenger Jets</mark>' in html
    assert '<mark class="ok" title="dog: in the ground truth">dog</mark>' in html
    assert re.sub(r"<[^>]+>", "", html).replace("&#x27;", "'").replace("&quot;", '"') == caption
    assert mention_spans(caption, "reference", ["airplane"]) is None               # not the row's mentions: no marks
    assert marked_caption("a <b> & c", None, set()) == "a &lt;b&gt; &amp; c"


def test_saliency_overlays_curves_and_caps(two_runs):
    from bench.results.report import Context, load_run
    from bench.results.report_tasks import chair_task, saliency_task

    run = load_run(two_runs[0])
    context = Context(warn=lambda m: None, caption_cap=3, overlay_cap=5)
    part = saliency_task(run, "saliency_mini", run.tasks["saliency_mini"], context)
    captions = re.findall(r"<figcaption>(.*?)</figcaption>", part)
    assert len(captions) == 5 and "7 more overlays not shown (cap 5)" in part
    assert captions[0].startswith("image 1 ") and captions[0].endswith("integrated_gradients")   # in sample order
    assert 'alt="mean insertion/deletion of saliency_mini"' in part and 'alt="pointing game of saliency_mini"' in part
    assert 'alt="sanity curves of saliency_mini"' in part
    chair = chair_task(run, "chair_mini_64", run.tasks["chair_mini_64"], context)
    assert chair.count('<div class="card caption chair-caption">') == 3 and "27 more captions not shown (cap 3)" in chair


def test_bias_shifts_and_unknown_types(report):
    text, _ = report
    bias = section(text, "bias--bias_mini")
    assert 'alt="rating shifts of bias_mini"' in bias and 'alt="rating shift against eps of bias_mini"' in bias
    rows = re.findall(r"<tr><td>(man-&gt;woman|woman-&gt;man)</td><td>(\w+)</td><td class=\"num\">([^<]+)</td>", bias)
    assert [r[2] for r in rows[:2]] == ["0.8 [0.6, 1.0]", "0.4 [0.2, 0.6]"]   # the headline eps's pixel cells, not placebo
    assert len(rows) == 2 * 4                                                # 4 cells, in both runs
    assert bias.count("<figcaption>2__pixel_e0_s0_woman-to-man</figcaption>") == 2   # the edited image, per run
    assert "manifest" not in bias                                           # a path outside the task folder: not read
    mystery = section(text, "figures--mystery_probe")
    assert "Weirdness score" in mystery and "&darr; lower" in mystery
    assert "<code>histogram.counts</code>" in mystery and "planted" in mystery


def test_a_figure_of_another_shape_falls_back_to_the_metrics(two_runs, tmp_path):
    from bench.results.report import build_report, load_runs

    run = tmp_path / "odd"
    import shutil
    shutil.copytree(two_runs[0], run)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["tasks"] = {k: metrics["tasks"][k] for k in ("saliency_mini", "bias_mini")}
    metrics["tasks"]["saliency_mini"]["figures"]["mean_curves"] = [1, 2, 3]
    metrics["tasks"]["bias_mini"]["figures"] = {"something": "else"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    warnings: list[str] = []
    text = build_report(load_runs([run], warnings.append), warnings.append)
    assert any("saliency_mini in model-a" in w for w in warnings) and any("bias_mini in model-a" in w for w in warnings)
    part = section(text, "saliency--saliency_mini")
    assert "could not draw this part" in part and "<code>ins_minus_del[occlusion]</code>" in part
    assert '<section id="warnings">' in text


def small_run(root: Path, name: str) -> Path:
    """A run folder with one task of a type the report draws nothing for: a report of it is quick to build."""
    run = root / name
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"run": name, "tasks": {"probe": _entry(
        "mystery", {"score": metric(0.5, "Score")}, "score", 4, 2)}}))
    return run


def test_compare_table_or_a_one_line_note(tmp_path, monkeypatch):
    from bench.results.report import build_report, load_runs

    paths = [small_run(tmp_path, n) for n in ("base", "cand1", "cand2")]
    runs = load_runs(paths, warn=lambda m: None)
    calls = fake_compare(monkeypatch, COMPARE_MD)
    part = section(build_report(runs), "compare")
    assert calls == [(paths[0], paths[1:])]                                       # the first run is the baseline
    assert "<th>diff [95% CI]</th>" in part and "<td>-5.5 [-9.0, -2.0]</td>" in part
    fake_compare(monkeypatch, BenchError("the runs differ in prompts_as_sent"))
    part = section(build_report(runs), "compare")
    assert "not compared: the runs differ in prompts_as_sent" in part and "<table" not in part
    monkeypatch.setitem(sys.modules, "bench.results.compare", None)               # the module is not there
    assert "bench compare is not available" in section(build_report(runs), "compare")
    assert '<section id="compare">' not in build_report(runs[:1])


def test_thumbnails_are_small_and_unreadable_images_are_none(tmp_path):
    import base64
    import io

    from PIL import Image

    from bench.results.report_html import thumbnail_uri

    photo = _images()[0][1]
    uri = thumbnail_uri(photo)
    assert uri.startswith("data:image/jpeg;base64,")
    with Image.open(photo) as original, Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
        assert max(thumb.size) == 256 and abs(thumb.size[0] / thumb.size[1] - original.size[0] / original.size[1]) < 0.02
    small = io.BytesIO()
    Image.new("RGB", (40, 30), "red").save(small, format="PNG")
    assert thumbnail_uri(small.getvalue()) == "data:image/png;base64," + base64.b64encode(small.getvalue()).decode()
    assert thumbnail_uri(b"not an image") is None and thumbnail_uri(tmp_path / "missing.jpg") is None


def test_markdown_tables_become_html_tables():
    from bench.results.report_html import markdown_html

    out = markdown_html("# Result\n\n| a | b \\| c |\n|:--|--:|\n| `x` | **1** |\n\nexit 1: regression\n")
    assert out == ("<h4>Result</h4>\n<table><thead><tr><th>a</th><th>b | c</th></tr></thead><tbody><tr>"
                   "<td><code>x</code></td><td><b>1</b></td></tr></tbody></table>\n<p>exit 1: regression</p>")


# -- errors and the command line -------------------------------------------------------------------------------------

def test_unusable_runs_are_named_and_skipped(tmp_path, capsys):
    from conftest import run_cli

    good = small_run(tmp_path, "good")
    not_a_run = tmp_path / "empty"
    not_a_run.mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "metrics.json").write_text('{"tasks": {')
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "metrics.json").write_text(json.dumps({"tasks": {"t": {"metrics": {"m": {"value": "high"}}}}}))
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    out = tmp_path / "r.html"
    code, stdout, stderr = run_cli(["report", str(good), str(not_a_run), str(broken), str(wrong), str(a_file),
                                    "-o", str(out)], capsys)
    assert code == 0 and out.is_file() and "wrote" in stdout and "1 run: good" in stdout
    lines = stderr.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("bench: warning: report: skipped run ") for line in lines)
    assert f"{not_a_run}: not a run folder (no metrics.json" in lines[0]
    assert f"{broken}: metrics.json is broken (line 1:" in lines[1]
    assert f"{wrong}: metrics.json is broken (t m value is not a number)" in lines[2]
    assert f"{a_file}: not a folder" in lines[3]
    assert "metrics.json is broken" in section(out.read_text(), "warnings")        # listed in the report too

    code, stdout, stderr = run_cli(["report", str(broken), str(tmp_path / "missing"), "-o", str(tmp_path / "n.html")], capsys)
    assert code == 2 and not (tmp_path / "n.html").exists()
    assert stderr.strip().splitlines()[-1].startswith("bench: error: no usable run to report: run ")
    assert "missing: not found" in stderr


def test_output_that_is_a_folder_or_unwritable_is_one_line(tmp_path, capsys):
    from conftest import run_cli

    good = small_run(tmp_path, "good")

    folder = tmp_path / "out"
    folder.mkdir()
    code, _, stderr = run_cli(["report", str(good), "-o", str(folder)], capsys)
    assert code == 2 and stderr.count("\n") == 1 and f"-o {folder}: is a folder" in stderr
    assert list(folder.iterdir()) == []
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    code, _, stderr = run_cli(["report", str(good), "-o", str(blocker / "r.html")], capsys)
    assert code == 2 and stderr.count("\n") == 1 and "bench: error: cannot" in stderr


def test_the_write_is_atomic_and_replaces_an_old_report(tmp_path):
    from bench.results.report import write_report

    run = small_run(tmp_path / "runs", "good")
    out = tmp_path / "out" / "r.html"
    out.parent.mkdir()
    out.write_text("old")
    write_report([run], out, warn=lambda m: None)
    assert out.read_text().startswith("<!DOCTYPE html>") and [p.name for p in out.parent.iterdir()] == ["r.html"]


# -- a real run ----------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> Path:
    from bench.cli import main

    root = tmp_path_factory.mktemp("real")
    code = main(["run", "--model", "tiny-llava", "--tasks", "pope_mini_random,chair_mini_64", "--answer-mode", "score",
                 "--set", "max_new_tokens=8", "--limit", "6", "--run-name", "tiny", "--output", str(root),
                 "--no-progress", "--no-leaderboard", "--bootstrap-resamples", "50"])
    assert code == 0
    return root / "tiny"


def test_a_real_run_reports(real_run, tmp_path, capsys):
    from conftest import run_cli

    out = tmp_path / "real.html"
    code, stdout, stderr = run_cli(["report", str(real_run), str(real_run), "-o", str(out)], capsys)
    assert code == 0, stderr
    text = out.read_text()
    assert out.stat().st_size < 5_000_000 and parse(text).problems == []
    rows = pd.read_parquet(real_run / "tasks" / "pope_mini_random" / "rows.parquet")
    cross = pd.crosstab(rows["label"], rows["score_answer"]).reindex(index=["yes", "no"], columns=["yes", "no"], fill_value=0)
    part = section(text, "pope--pope_mini_random")
    heads = [m.start() for m in re.finditer("<h4>tiny", part)]
    assert len(heads) == 2 and "<h4>tiny #1</h4>" in part         # the run given twice: two parts, told apart
    first = part[heads[0]:heads[1]]
    assert _matrix(first, "score")[0][:2] == [int(x) for x in cross.loc["yes"]]
    chair = pd.read_parquet(real_run / "tasks" / "chair_mini_64" / "rows.parquet")
    chair_part = section(text, "chair--chair_mini_64")
    assert chair_part.count('<div class="card caption chair-caption">') == 2 * len(chair)   # the run given twice
    assert chair_part.count('<mark class="hall"') == 2 * int(chair["n_hallucinated"].sum())
    import importlib.util

    available = importlib.util.find_spec("bench.results.compare") is not None
    compare = section(text, "compare")                               # a run against itself is comparable
    assert ("<table>" in compare and "not compared" not in compare) if available else "not available" in compare
