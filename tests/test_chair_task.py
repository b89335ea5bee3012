"""CHAIR as a task: end to end on the mini dataset, re-scoring a captions file to the same numbers,
hand-computed metrics on a hand-made dataset, detector ground truth (ONNX and OWL-ViT), bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.tasks.chair import drop_unfinished_sentence
from conftest import SHARED, run_cli

FAST = ["--no-progress"]
ONNX_MODEL = SHARED / "models" / "centernet_mbv3_coco80.onnx"


@pytest.fixture(scope="module")
def chair_run(tmp_path_factory):
    from bench.cli import main

    out = tmp_path_factory.mktemp("chair")
    assert main(["run", "--model", "tiny-llava", "--tasks", "chair_mini_64", "--set", "max_new_tokens=24", "--output",
                 str(out / "results"), "--run-name", "c", *FAST]) == 0
    return out


def test_chair_run_writes_rows_metrics_captions_and_a_leaderboard_column(chair_run):
    run = chair_run / "results" / "c"
    rows = pd.read_parquet(run / "tasks" / "chair_mini_64" / "rows.parquet")
    assert len(rows) == 21 and rows["error"].isna().all()
    assert set(rows["gt_source"]) == {"annotations"}
    dog = rows[rows["image"].str.endswith("dog.jpg")].iloc[0]
    assert {"dog", "bicycle", "truck"} <= set(dog["gt"])
    for _, row in rows.iterrows():                          # the stored lists agree with each other
        assert set(row["hallucinated"]) == {m for m in row["mentioned"] if m not in set(row["gt"])}
        assert row["n_mentions"] == len(row["mentioned"]) and row["has_hallucination"] == (len(row["hallucinated"]) > 0)
    metrics = json.loads((run / "metrics.json").read_text())["tasks"]["chair_mini_64"]
    assert metrics["primary"] == "CHAIR_s" and metrics["metrics"]["CHAIR_s"]["higher_is_better"] is False
    assert metrics["metrics"]["CHAIR_s"]["value"] == pytest.approx(rows["has_hallucination"].mean())
    mentions = rows["n_mentions"].sum()
    if mentions:
        assert metrics["metrics"]["CHAIR_i"]["value"] == pytest.approx(rows["n_hallucinated"].sum() / mentions)
    manifest = json.loads((run / "manifest.json").read_text())["tasks"]["chair_mini_64"]
    assert len(manifest["selected_image_ids"]) == 21 and manifest["ground_truth"] == "annotations"
    captions = (run / "tasks" / "chair_mini_64" / "captions.jsonl").read_text().splitlines()
    assert len(captions) == 21 and json.loads(captions[0]).keys() >= {"image_id", "caption"}
    board = (chair_run / "results" / "leaderboard.md").read_text()
    assert "chair_mini_64 · CHAIR_s ↓" in board


def test_rescoring_the_runs_captions_file_gives_the_same_numbers(chair_run, capsys, tmp_path):
    run = chair_run / "results" / "c"
    code, out, err = run_cli(["score", "chair", "--captions", str(run / "tasks" / "chair_mini_64" / "captions.jsonl"),
                              "--task", "chair_mini_64", "--output", str(tmp_path / "scored")], capsys)
    assert code == 0, err
    scored = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    original = json.loads((run / "metrics.json").read_text())["tasks"]["chair_mini_64"]["metrics"]
    for name in ("CHAIR_s", "CHAIR_i", "Recall", "Len"):
        for key in ("value", "ci_low", "ci_high"):
            assert scored["metrics"][name][key] == pytest.approx(original[name][key], nan_ok=True)
    assert "21 captions scored of 21 lines" in out


# A hand-made dataset: ground truth known by construction.
#   image 1: instances dog, bicycle;  reference caption "A dog near a bike." -> gt {dog, bicycle}
#   image 2: instances cat;           reference caption "A kitten on a sofa." -> gt {cat, couch}
#   image 3: no instances;            reference caption "A red flower."        -> gt {}
CAPTIONS = [
    (1, "A dog and a cat sit next to a bicycle. The dog is brown."),   # mentions dog, cat, bicycle, dog; cat hallucinated
    (2, "A kitten sleeps on a couch."),                                 # cat, couch; none hallucinated
    (3, "A flower in a vase on a table."),                              # vase, dining table: both hallucinated
]
# CHAIR_i = hallucinated mentions / mentions = (1 + 0 + 2) / (4 + 2 + 2) = 3/8
# CHAIR_s = captions with a hallucination / captions = 2/3
# Recall  = distinct gt mentioned / distinct gt = (2 + 2 + 0) / (2 + 2 + 0) = 1


def hand_made(folder: Path) -> Path:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 32, "height": 32} for i in (1, 2, 3)]
    for image in images:
        Image.new("RGB", (32, 32), (40 * image["id"], 80, 120)).save(folder / "images" / image["file_name"])
    categories = [{"id": 18, "name": "dog"}, {"id": 2, "name": "bicycle"}, {"id": 17, "name": "cat"}]
    annotations = [{"id": 1, "image_id": 1, "category_id": 18, "bbox": [0, 0, 5, 5]},
                   {"id": 2, "image_id": 1, "category_id": 2, "bbox": [0, 0, 5, 5]},
                   {"id": 3, "image_id": 2, "category_id": 17, "bbox": [0, 0, 5, 5]}]
    (folder / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    refs = [{"id": 1, "image_id": 1, "caption": "A dog near a bike."}, {"id": 2, "image_id": 2, "caption": "A kitten on a sofa."},
            {"id": 3, "image_id": 3, "caption": "A red flower."}]
    (folder / "captions.json").write_text(json.dumps({"images": images, "annotations": refs}))
    spec = folder / "chair_hand.yaml"
    spec.write_text(f"task: chair_hand\ntype: chair\ndataset:\n  source: coco\n  root: {folder}\n  annotations: instances.json\n"
                    "  captions: captions.json\n  images: images\nparams:\n  num_images: null\n")
    return spec


def write_captions(path: Path, items) -> Path:
    path.write_text("\n".join(json.dumps(item) for item in items) + "\n")
    return path


def test_hand_computed_chair_values(tmp_path, capsys):
    spec = hand_made(tmp_path / "data")
    captions = write_captions(tmp_path / "caps.jsonl", [{"image_id": i, "caption": c} for i, c in CAPTIONS])
    code, out, err = run_cli(["score", "chair", "--captions", str(captions), "--task", str(spec),
                              "--output", str(tmp_path / "o")], capsys)
    assert code == 0, err
    m = json.loads((tmp_path / "o" / "metrics.json").read_text())["metrics"]
    assert m["CHAIR_i"]["value"] == pytest.approx(3 / 8)
    assert m["CHAIR_s"]["value"] == pytest.approx(2 / 3)
    assert m["Recall"]["value"] == pytest.approx(1.0)
    rows = pd.read_parquet(tmp_path / "o" / "rows.parquet")
    assert list(rows["mentioned"][0]) == ["dog", "cat", "bicycle", "dog"] and list(rows["hallucinated"][0]) == ["cat"]
    assert list(rows["gt"][1]) == ["cat", "couch"]          # the reference caption's "sofa" joins the ground truth
    assert sorted(rows["hallucinated"][2]) == ["dining table", "vase"]


def test_captions_file_errors_and_counted_skips(tmp_path, capsys):
    spec = hand_made(tmp_path / "data")
    missing = write_captions(tmp_path / "a.jsonl", [{"image_id": 1, "caption": "A dog."}, {"caption": "A cat."}])
    code, _, err = run_cli(["score", "chair", "--captions", str(missing), "--task", str(spec)], capsys)
    assert code == 2 and "line 2 is missing field 'image_id'" in err and "Traceback" not in err

    unknown = write_captions(tmp_path / "b.jsonl", [{"image_id": 1, "caption": "A dog."}, {"image_id": 99, "caption": "A cat."}])
    code, _, err = run_cli(["score", "chair", "--captions", str(unknown), "--task", str(spec)], capsys)
    assert code == 2 and "image id '99' is not in the ground truth" in err
    code, out, err = run_cli(["score", "chair", "--captions", str(unknown), "--task", str(spec), "--skip-unknown"], capsys)
    assert code == 0 and "1 captions scored of 2 lines" in out and "1 with unknown image ids skipped" in out

    empty = write_captions(tmp_path / "c.jsonl", [{"image_id": 1, "caption": ""}, {"image_id": 2, "caption": "A cat."}])
    code, out, err = run_cli(["score", "chair", "--captions", str(empty), "--task", str(spec)], capsys)
    assert code == 0 and "1 empty (scored as mentioning nothing)" in out


def test_annotation_file_without_captions_is_an_error(tmp_path, capsys):
    spec = hand_made(tmp_path / "data")
    data = json.loads((tmp_path / "data" / "captions.json").read_text())
    data["annotations"] = []
    (tmp_path / "data" / "captions.json").write_text(json.dumps(data))
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", str(spec), "--output", str(tmp_path / "r"), *FAST], capsys)
    assert code == 2 and "has no captions" in err and not (tmp_path / "r").exists()
    data.pop("annotations")
    (tmp_path / "data" / "captions.json").write_text(json.dumps(data))
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", str(spec), "--output", str(tmp_path / "r"), *FAST], capsys)
    assert code == 2 and "missing field 'annotations'" in err


@pytest.mark.parametrize("text, expected", [
    ("A dog on a porch. A bike leans on the", "A dog on a porch."),
    ("A dog on a porch.", "A dog on a porch."),
    ("A dog! And a cat? Maybe a", "A dog! And a cat?"),
    ("no sentence end at all", "no sentence end at all"),
    ("Mr. Smith's dog. The", "Mr. Smith's dog."),
])
def test_drop_unfinished_sentence(text, expected):
    assert drop_unfinished_sentence(text) == expected


@pytest.mark.skipif(not ONNX_MODEL.exists(), reason="the shared COCO detector is not beside the repository")
def test_detector_ground_truth_gets_its_own_column(tmp_path, capsys):
    out = tmp_path / "results"
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "chair_mini_detector", "--set", "max_new_tokens=12",
                            "--set", f"detector_model={ONNX_MODEL}", "--output", str(out), "--run-name", "d", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(out / "d" / "tasks" / "chair_mini_detector" / "rows.parquet")
    assert set(rows["gt_source"]) == {"detector:onnx:centernet_mbv3_coco80"}
    giraffe = rows[rows["image"].str.endswith("giraffe.jpg")].iloc[0]
    assert {"giraffe", "zebra"} <= set(giraffe["gt"])
    truth = json.loads((out / "d" / "tasks" / "chair_mini_detector" / "ground_truth.json").read_text())
    assert len(truth["settings"]["detector"]["sha256"]) == 64
    board = (out / "leaderboard.md").read_text()
    assert "chair_mini_detector [gt: onnx:centernet_mbv3_coco80] · CHAIR_s" in board


def test_chair_on_an_image_folder_with_an_owlvit_detector(tmp_path, capsys):
    from bench.models.tiny_adapter import build_cached

    owl = build_cached("owlvit", "tiny", 0, tmp_path / "cache")
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("dog.jpg", "giraffe.jpg", "rocket.jpg"):
        shutil.copy(Path(__file__).resolve().parents[1] / "bench" / "assets" / "mini_coco" / "images" / name, folder / name)
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "chair_folder", "--data-root", str(folder),
                            "--set", f"detector=owlvit:{owl}", "--set", "detector_threshold=0.0", "--set", "max_new_tokens=8",
                            "--output", str(tmp_path / "r"), "--run-name", "f", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "r" / "f" / "tasks" / "chair_folder" / "rows.parquet")
    assert sorted(rows["image_id"]) == ["dog", "giraffe", "rocket"]
    assert all(len(gt) > 0 for gt in rows["gt"])            # threshold 0: the random detector sees something
    assert set(rows["gt_source"]) == {f"detector:owlvit:{owl}"}
