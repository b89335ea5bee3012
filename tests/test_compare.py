"""`bench compare`: paired differences between runs on the same images, against hand computations and scipy; the CI
gate's exit codes; incomparable runs refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from conftest import run_cli

FAST = ["--no-progress", "--no-leaderboard"]


def one_question_per_image(folder: Path) -> Path:
    """An official-format POPE question file with ONE question per mini image (for McNemar), and its spec."""
    from bench.resources import assets_dir

    data = json.loads((assets_dir() / "mini_coco" / "instances.json").read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    first = {}
    for ann in data["annotations"]:
        first.setdefault(ann["image_id"], names[ann["category_id"]])
    lines = []
    for k, img in enumerate(data["images"]):
        obj = first.get(img["id"], "dog")
        lines.append(json.dumps({"question_id": k + 1, "image": img["file_name"], "text": f"Is there a {obj} in the image?",
                                 "label": "yes" if img["id"] in first else "no"}))
    (folder / "one.jsonl").write_text("\n".join(lines) + "\n")
    spec = folder / "pope_one.yaml"
    spec.write_text(f"task: pope_one\ntype: pope\ndataset:\n  source: pope_official\n  questions: {folder / 'one.jsonl'}\n"
                    f"  images: {assets_dir() / 'mini_coco' / 'images'}\nparams:\n  answer_mode: generate\n  max_new_tokens: 2\n")
    return spec


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A baseline run, a copy with a planted regression (a known number of images answered wrongly), and a rerun."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("cmp")
    spec = one_question_per_image(out)
    for name in ("base", "same"):
        assert main(["run", "--model", "fake-harness", "--tasks", str(spec), "--output", str(out), "--run-name", name, *FAST]) == 0
    shutil.copytree(out / "base", out / "worse")
    path = out / "worse" / "tasks" / "pope_one" / "rows.parquet"
    rows = pd.read_parquet(path)
    correct = rows["gen_answer"] == rows["label"]
    flipped = rows.index[correct][:4]                       # four images that were right now answer wrongly
    rows.loc[flipped, "gen_text"] = np.where(rows.loc[flipped, "label"] == "yes", "No", "Yes")
    rows.to_parquet(path)
    return out, spec, list(flipped)


def image_data(run: Path) -> pd.DataFrame:
    rows = pd.read_parquet(run / "tasks" / "pope_one" / "rows.parquet")
    from bench.tasks.pope import parse_answer

    rows["correct"] = [parse_answer(t) == label for t, label in zip(rows["gen_text"], rows["label"])]
    return rows


def test_difference_interval_and_tests_match_hand_computations_and_scipy(runs, capsys):
    out, _, flipped = runs
    code, text, err = run_cli(["compare", str(out / "base"), str(out / "worse"), "--format", "json", "--metrics",
                               "generate_accuracy"], capsys)
    assert code == 0, err
    (line,) = json.loads(text)["lines"]
    base, worse = image_data(out / "base"), image_data(out / "worse")
    assert line["difference"] == pytest.approx(worse["correct"].mean() - base["correct"].mean())
    assert line["difference"] == pytest.approx(-len(flipped) / len(base))

    # the paired bootstrap by hand: one image draw (ImageDraw's stream, seed 0) for both runs
    from bench.metrics.bootstrap import BootstrapConfig, ImageDraw

    draw = ImageDraw(base["image_id"].tolist(), BootstrapConfig(1000, 0))
    w = draw.row_weights(base["image_id"].tolist())
    diffs = (w @ worse["correct"].to_numpy(float) - w @ base["correct"].to_numpy(float)) / w.sum(1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert (line["ci_low"], line["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    assert line["mde"] == pytest.approx(2.80 * np.std(diffs, ddof=1))

    # the sign-flip test at the image level against scipy (21 images: scipy's and our seeded swaps differ, so the
    # p-values agree within Monte-Carlo error; the exact case is tested in tests/test_paired_stats.py)
    b, c = base["correct"].to_numpy(float), worse["correct"].to_numpy(float)
    result = sps.permutation_test((b, c), lambda x, y: np.mean(y) - np.mean(x), permutation_type="samples",
                                  n_resamples=20000, random_state=0)
    assert line["p_value"] == pytest.approx(result.pvalue, abs=0.02)

    # McNemar (one row per image): the exact binomial test on the discordant pairs
    only_base = int((base["correct"] & ~worse["correct"]).sum())
    only_worse = int((~base["correct"] & worse["correct"]).sum())
    assert (line["mcnemar"]["b"], line["mcnemar"]["c"]) == (only_base, only_worse) == (len(flipped), 0)
    assert line["mcnemar"]["p_value"] == pytest.approx(sps.binomtest(only_base, only_base + only_worse, 0.5).pvalue)


def test_holm_covers_every_metric_compared(runs, capsys):
    out, _, _ = runs
    code, text, _ = run_cli(["compare", str(out / "base"), str(out / "worse"), "--format", "json"], capsys)
    lines = json.loads(text)["lines"]
    from bench.metrics.paired import holm

    p = [l["p_value"] for l in lines]
    np.testing.assert_allclose([l["p_holm"] for l in lines], holm(p))
    assert {l["metric"] for l in lines} >= {"generate_accuracy", "generate_f1", "generate_yes_ratio"}


def test_the_gate_exits_1_on_the_regression_and_0_on_the_same_model(runs, capsys, tmp_path):
    out, _, _ = runs
    code, text, err = run_cli(["compare", str(out / "base"), str(out / "worse"), "--margin", "0.01",
                               "--metrics", "generate_accuracy"], capsys)
    assert code == 1 and "REGRESSION" in text and "regression beyond --margin" in err
    code, text, _ = run_cli(["compare", str(out / "base"), str(out / "same"), "--margin", "0.01"], capsys)
    assert code == 0 and "REGRESSION" not in text
    code, _, _ = run_cli(["compare", str(out / "base"), str(out / "same"), str(out / "worse"), "--margin", "0.01",
                          "--metrics", "generate_accuracy", "--output", str(tmp_path / "table.md")], capsys)
    assert code == 1                                             # several candidates: 1 if any regresses
    assert "| worse |" in (tmp_path / "table.md").read_text() and "| same |" in (tmp_path / "table.md").read_text()


def test_incomparable_runs_are_refused_naming_the_field_unless_allowed(runs, capsys):
    from bench.cli import main

    out, spec, _ = runs
    assert main(["run", "--model", "fake-harness", "--tasks", str(spec), "--set", "prompt_suffix= Answer yes or no.",
                 "--output", str(out), "--run-name", "other", *FAST]) == 0
    code, _, err = run_cli(["compare", str(out / "base"), str(out / "other")], capsys)
    assert code == 2 and "task pope_one differs in its fingerprint" in err and "--allow-different" in err
    code, _, err = run_cli(["compare", str(out / "base"), str(out / "other"), "--allow-different", "fingerprint"], capsys)
    assert code == 2 and "differs in its prompts" in err
    code, text, err = run_cli(["compare", str(out / "base"), str(out / "other"), "--allow-different",
                               "fingerprint,prompts,settings"], capsys)
    assert code == 0, err
    assert "Allowed differences" in text
