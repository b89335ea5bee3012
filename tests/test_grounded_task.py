"""The grounded-hallucination task end to end on the mini dataset: answers with the detector confidence
read from the model's own embedding (or from an external detector), metrics, figures, a leaderboard column."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from conftest import SHARED, run_cli

FAST = ["--no-progress"]
ONNX_MODEL = SHARED / "models" / "centernet_mbv3_coco80.onnx"


@pytest.fixture(scope="module")
def grounded_run(tmp_path_factory):
    from bench.cli import main

    out = tmp_path_factory.mktemp("g")
    assert main(["run", "--model", "tiny-grounded", "--tasks", "grounded_pope_mini,grounded_classes_mini", "--set",
                 "max_new_tokens=4", "--output", str(out / "results"), "--run-name", "g", *FAST]) == 0
    return out


def rows(out, task, run="g"):
    return pd.read_parquet(out / "results" / run / "tasks" / task / "rows.parquet")


def test_rows_carry_answer_label_and_the_models_own_detector_confidence(grounded_run):
    from PIL import Image

    from bench.models.base import DetectRequest, ImageInput, ModelSpec
    from bench.registry import MODELS

    table = rows(grounded_run, "grounded_pope_mini")
    assert table["gen_answer"].isin(["yes", "no"]).all() and table["label"].isin(["yes", "no"]).all()
    assert table["confidence"].between(0, 1).all() and set(table["grounding"]) == {"model"}
    adapter = MODELS.get("tiny-grounded")(ModelSpec("tiny-grounded", None, {})).load("cpu", 4)
    for _, row in table.head(6).iterrows():       # the stored confidence is the detector's, from the same embedding
        image = ImageInput(row["image"], Image.open(row["image"]).convert("RGB"))
        expected = adapter.detect_scores([DetectRequest(image, (row["object"],))])[0].max_scores[row["object"]]
        assert row["confidence"] == pytest.approx(expected, abs=1e-5)


def test_all_classes_asks_every_category_of_every_image(grounded_run):
    table = rows(grounded_run, "grounded_classes_mini")
    from bench.resources import assets_dir

    instances = json.loads((assets_dir() / "mini_coco" / "instances.json").read_text())
    assert len(table) == 21 * 80
    names = {c["id"]: c["name"] for c in instances["categories"]}
    present = {(str(a["image_id"]), names[a["category_id"]]) for a in instances["annotations"]}
    assert {(r.image_id, r.object) for r in table.itertuples() if r.label == "yes"} == present
    assert table["question"].iloc[0].endswith("Only answer with 'yes' or 'no'.")


def test_metrics_figures_and_leaderboard_column(grounded_run):
    metrics = json.loads((grounded_run / "results" / "g" / "metrics.json").read_text())["tasks"]["grounded_classes_mini"]
    table = rows(grounded_run, "grounded_classes_mini")
    said_yes = table["gen_answer"] == "yes"
    wrong = said_yes != (table["label"] == "yes")
    disagreement = np.where(said_yes, 1 - table["confidence"], table["confidence"])
    assert metrics["primary"] == "disagreement_auroc"
    if wrong.any() and (~wrong).any():
        assert metrics["metrics"]["disagreement_auroc"]["value"] == pytest.approx(roc_auc_score(wrong, disagreement))
    assert metrics["metrics"]["grounding_auroc"]["value"] == pytest.approx(roc_auc_score(table["label"] == "yes", table["confidence"]))
    counts = sum(sum(v) for k, v in metrics["figures"].items() if k != "bins")
    assert counts == len(table)
    board = (grounded_run / "results" / "leaderboard.md").read_text()
    assert "grounded_classes_mini · disagreement AUROC for wrong answers (generate)" in board


def test_metric_definitions_on_hand_made_rows(tmp_path):
    from bench.spec import TaskSpec
    from bench.tasks.base import TaskContext
    from bench.tasks.grounded_hallucination import GroundedHallucinationTask

    spec = TaskSpec("t", "grounded_hallucination", tmp_path / "t.yaml",
                    dataset={"source": "coco", "annotations": "a", "images": "b"},
                    params={"question_set": "all_classes", "flag_threshold": 0.5})
    task = GroundedHallucinationTask(spec, TaskContext())
    # answer, label, confidence; wrong = answer != label; flag = yes with c < .5, or no with c >= .5
    data = [("yes", "yes", 0.9), ("yes", "no", 0.2), ("yes", "no", 0.7), ("no", "yes", 0.8), ("no", "no", 0.1), ("no", "yes", 0.3)]
    frame = pd.DataFrame({"image_id": [str(i) for i in range(6)], "gen_answer": [d[0] for d in data],
                          "label": [d[1] for d in data], "confidence": [d[2] for d in data]})
    m = {k: v["value"] for k, v in task.metrics(frame).items()}
    # wrong: rows 2, 3, 4? no: rows 1 (yes/no), 2 (yes/no), 3 (no/yes), 5 (no/yes) -> 4 wrong, 2 right
    # flags: row 1 (yes, .2), row 3 (no, .8) -> precision 2/2, recall 2/4
    assert m["flag_precision"] == pytest.approx(1.0) and m["flag_recall"] == pytest.approx(0.5)
    # disagreement: .1, .8, .3, .8, .1, .3 ; wrong = F T T T F T
    assert m["disagreement_auroc"] == pytest.approx(roc_auc_score([0, 1, 1, 1, 0, 1], [.1, .8, .3, .8, .1, .3]))
    assert m["grounding_auroc"] == pytest.approx(roc_auc_score([1, 0, 0, 1, 0, 1], [.9, .2, .7, .8, .1, .3]))
    assert m["answer_accuracy"] == pytest.approx(2 / 6) and m["answer_yes_ratio"] == pytest.approx(0.5)


def test_any_model_with_an_external_owlvit_detector(tmp_path, capsys):
    from bench.models.tiny_adapter import build_cached

    owl = build_cached("owlvit", "tiny", 0, tmp_path / "cache")
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "grounded_pope_mini", "--set", "grounding=external",
                            "--set", f"detector=owlvit:{owl}", "--set", "max_new_tokens=4", "--output", str(out),
                            "--run-name", "x", *FAST], capsys)
    assert code == 0, err
    table = pd.read_parquet(out / "x" / "tasks" / "grounded_pope_mini" / "rows.parquet")
    assert set(table["grounding"]) == {f"detector:owlvit:{owl}"} and table["confidence"].between(0, 1).all()
    cached = json.loads((out / "x" / "tasks" / "grounded_pope_mini" / "detector_confidence.json").read_text())
    assert len(cached["images"]) == table["image_id"].nunique() and cached["settings"]["detector"]["name"].startswith("owlvit:")
    board = (out / "leaderboard.md").read_text()
    assert f"grounded_pope_mini [grounding: owlvit:{owl}] ·" in board


@pytest.mark.skipif(not ONNX_MODEL.exists(), reason="the shared COCO detector is not beside the repository")
def test_external_onnx_grounding_sees_the_dog(tmp_path, capsys):
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "grounded_pope_mini_onnx", "--set",
                            f"detector_model={ONNX_MODEL}", "--set", "max_new_tokens=4", "--output", str(out), "--run-name", "o",
                            *FAST], capsys)
    assert code == 0, err
    table = pd.read_parquet(out / "o" / "tasks" / "grounded_pope_mini_onnx" / "rows.parquet")
    dog = table[(table["image"].str.endswith("dog.jpg")) & (table["object"] == "dog")]
    assert len(dog) == 1 and dog["confidence"].iloc[0] > 0.3
    giraffe = table[(table["image"].str.endswith("giraffe.jpg")) & (table["object"] == "giraffe")]
    assert giraffe["confidence"].iloc[0] > 0.3


def test_bad_configurations(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "grounded_pope_mini", "--output", str(tmp_path / "r"), *FAST], capsys)
    assert code == 2 and "needs a model that detects from its own vision embedding" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()                     # refused before any work
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "grounded_pope_mini", "--set", "grounding=external",
                            "--output", str(tmp_path / "r2"), *FAST], capsys)
    assert code == 2 and "'detector' is required when grounding is 'external'" in err
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "grounded_pope_mini_onnx", "--output", str(tmp_path / "r3"), *FAST], capsys)
    assert code == 2 and "detector model not found" in err
