"""POPE questions from a Hugging Face ``datasets`` dataset (a local folder here; a hub name for users
who have the hub), with a column mapping and a filter."""

from __future__ import annotations

import json

import pandas as pd
from PIL import Image

from bench.resources import assets_dir
from conftest import run_cli


def make_dataset(folder):
    import datasets

    images = assets_dir() / "mini_coco" / "images"
    rows = {"question_id": [], "question": [], "answer": [], "image_source": [], "category": [], "image": []}
    for i, (name, obj, answer, split) in enumerate([
        ("dog.jpg", "dog", "yes", "adversarial"), ("dog.jpg", "cat", "no", "adversarial"),
        ("giraffe.jpg", "zebra", "yes", "adversarial"), ("giraffe.jpg", "umbrella", "no", "adversarial"),
        ("kite.jpg", "kite", "yes", "random"),
    ]):
        rows["question_id"].append(i + 1)
        rows["question"].append(f"Is there {'an' if obj[0] in 'aeiou' else 'a'} {obj} in the image?")
        rows["answer"].append(answer)
        rows["image_source"].append(name.split(".")[0])
        rows["category"].append(split)
        rows["image"].append(Image.open(images / name).convert("RGB"))
    features = datasets.Features({"question_id": datasets.Value("int64"), "question": datasets.Value("string"),
                                  "answer": datasets.Value("string"), "image_source": datasets.Value("string"),
                                  "category": datasets.Value("string"), "image": datasets.Image()})
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(folder))


def test_pope_from_a_datasets_folder(tmp_path, capsys):
    make_dataset(tmp_path / "ds")
    spec = tmp_path / "pope_hf_local.yaml"
    spec.write_text(
        "task: pope_hf_local\ntype: pope\n"
        f"dataset:\n  source: hf\n  path: {tmp_path / 'ds'}\n  split: test\n"
        "  columns: {image: image, question: question, label: answer, image_id: image_source, question_id: question_id}\n"
        "  filter: {category: adversarial}\n"
        "params: {answer_mode: score}\n")
    code, out, err = run_cli(["run", "--model", "tiny-llava", "--tasks", str(spec), "--output", str(tmp_path / "r"),
                              "--no-progress", "--no-leaderboard"], capsys)
    assert code == 0, err
    run = next((tmp_path / "r").iterdir())
    rows = pd.read_parquet(run / "tasks" / "pope_hf_local" / "rows.parquet")
    assert rows["object"].tolist() == ["dog", "cat", "zebra", "umbrella"]       # the filter dropped the kite row
    assert rows["image_id"].tolist() == ["dog", "dog", "giraffe", "giraffe"]
    assert rows["label"].tolist() == ["yes", "no", "yes", "no"]
    assert rows["score_p_yes"].notna().all() and rows["error"].isna().all()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["tasks"]["pope_hf_local"]["fingerprint"]["data"]["dataset"]["fingerprint"]


def test_missing_dataset_column_is_a_clear_error(tmp_path, capsys):
    make_dataset(tmp_path / "ds")
    spec = tmp_path / "pope_hf_bad.yaml"
    spec.write_text("task: pope_hf_bad\ntype: pope\n"
                    f"dataset:\n  source: hf\n  path: {tmp_path / 'ds'}\n"
                    "  columns: {image: image, question: prompt, label: answer}\n")
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", str(spec), "--output", str(tmp_path / "r"),
                            "--no-progress"], capsys)
    assert code == 2 and "has no column 'prompt'" in err and "Traceback" not in err
