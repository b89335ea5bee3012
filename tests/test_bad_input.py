"""Bad input: each a clear one-line error (no traceback), a non-zero exit, and no half-written result file."""

from __future__ import annotations

import json


from conftest import pope_spec, run_cli

TINY = ["--model", "tiny-llava", "--no-progress", "--no-leaderboard"]


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("Loading weights", "Writing model"))]
    assert len(lines) == 1, err
    assert lines[0].startswith("bench: error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def result_files(out) -> list:
    return sorted(p for p in out.rglob("*") if p.is_file()) if out.exists() else []


def test_unknown_task(tmp_path, capsys):
    code, _, err = run_cli(["run", *TINY, "--tasks", "pope_mini_randon", "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "unknown task 'pope_mini_randon'", "did you mean pope_mini_random")
    assert result_files(tmp_path / "r") == []


def test_unknown_model(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "tiny-lava", "--tasks", "pope_mini_random", "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "unknown model 'tiny-lava'", "tiny-llava")
    assert result_files(tmp_path / "r") == []


def test_missing_local_model_folder(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", f"hf:{tmp_path}/nothing-here", "--tasks", "pope_mini_random",
                            "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "model folder not found")


def test_malformed_yaml(tmp_path, capsys):
    spec = tmp_path / "broken.yaml"
    spec.write_text("task: broken\ntype: pope\nparams: {negatives: random\n")
    code, _, err = run_cli(["run", *TINY, "--tasks", str(spec), "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, str(spec), "malformed YAML")
    assert result_files(tmp_path / "r") == []


def test_annotations_missing_a_field(tmp_path, mini_copy, capsys):
    data = json.loads((mini_copy / "instances.json").read_text())
    del data["annotations"][3]["category_id"]
    (mini_copy / "instances.json").write_text(json.dumps(data))
    code, _, err = run_cli(["run", *TINY, "--tasks", str(pope_spec(tmp_path, mini_copy)), "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "instances.json", "annotations[3] is missing field 'category_id'")
    assert result_files(tmp_path / "r") == []


def test_annotation_file_that_is_not_json(tmp_path, mini_copy, capsys):
    (mini_copy / "instances.json").write_text("{not json")
    code, _, err = run_cli(["run", *TINY, "--tasks", str(pope_spec(tmp_path, mini_copy)), "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "instances.json", "not valid JSON")


def test_missing_image_root(tmp_path, mini_copy, capsys):
    spec = pope_spec(tmp_path, mini_copy)
    code, _, err = run_cli(["run", *TINY, "--tasks", str(spec), "--data-root", str(tmp_path / "elsewhere"),
                            "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "not found", str(tmp_path / "elsewhere"))
    assert result_files(tmp_path / "r") == []


def test_coco_task_without_data_root(tmp_path, capsys):
    code, _, err = run_cli(["run", *TINY, "--tasks", "pope_coco_random", "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "needs --data-root")


def test_missing_image_file(tmp_path, mini_copy, capsys):
    (mini_copy / "images" / "giraffe.jpg").unlink()
    code, _, err = run_cli(["run", *TINY, "--tasks", str(pope_spec(tmp_path, mini_copy)), "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "image file not found", str(mini_copy / "images" / "giraffe.jpg"))
    assert result_files(tmp_path / "r") == []


def test_empty_dataset(tmp_path, mini_copy, capsys):
    data = json.loads((mini_copy / "instances.json").read_text())
    data["images"], data["annotations"] = [], []
    (mini_copy / "instances.json").write_text(json.dumps(data))
    code, _, err = run_cli(["run", *TINY, "--tasks", str(pope_spec(tmp_path, mini_copy)), "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "no samples")
    assert result_files(tmp_path / "r") == []


def test_bad_model_args(tmp_path, capsys):
    code, _, err = run_cli(["run", *TINY, "--model-args", "dtype=float8", "--tasks", "pope_mini_random",
                            "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "key 'dtype' must be one of")
    code, _, err = run_cli(["run", *TINY, "--model-args", "colour=blue", "--tasks", "pope_mini_random",
                            "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "unknown key 'colour'")


def test_unknown_override(tmp_path, capsys):
    code, _, err = run_cli(["run", *TINY, "--tasks", "pope_mini_random", "--set", "temperature=0.7",
                            "--output", str(tmp_path / "r")], capsys)
    assert_one_line_error(code, err, "no selected task has a parameter 'temperature'")


def corrupt(path):
    data = path.read_bytes()
    path.write_bytes(data[:200] + b"\x00" * 64)   # a truncated JPEG: the header reads, the pixels do not


def test_corrupt_jpeg_stops_the_run_naming_sample_and_file_and_keeps_finished_chunks(tmp_path, mini_copy, capsys):
    spec = pope_spec(tmp_path, mini_copy, negatives="random")
    out = tmp_path / "r"
    # Find which chunk the giraffe falls in, then corrupt it: earlier chunks must survive.
    corrupt(mini_copy / "images" / "giraffe.jpg")
    code, _, err = run_cli(["run", *TINY, "--tasks", str(spec), "--output", str(out), "--chunk-images", "1"], capsys)
    assert_one_line_error(code, err, "giraffe.jpg", "sample my_pope/")
    chunks = sorted((out).rglob("chunk-*.parquet"))
    assert not list(out.rglob(".*.tmp-*"))                       # no half-written file
    import pandas as pd

    for chunk in chunks:
        assert len(pd.read_parquet(chunk)) > 0                    # finished chunks are whole
    manifest = json.loads(next(out.glob("*/manifest.json")).read_text())
    assert manifest["status"] == "failed"
    assert not list(out.glob("*/metrics.json"))


def test_corrupt_jpeg_with_max_errors_becomes_error_rows(tmp_path, mini_copy, capsys):
    spec = pope_spec(tmp_path, mini_copy, negatives="random")
    corrupt(mini_copy / "images" / "giraffe.jpg")
    out = tmp_path / "r"
    code, stdout, err = run_cli(["run", *TINY, "--tasks", str(spec), "--output", str(out), "--max-errors", "10"], capsys)
    assert code == 0, err
    import pandas as pd

    rows = pd.read_parquet(next(out.glob("*/tasks/my_pope/rows.parquet")))
    failed = rows[rows["error"].notna()]
    assert len(failed) == 4 and set(failed["image"].map(lambda p: p.split("/")[-1])) == {"giraffe.jpg"}
    assert failed["error"].str.contains("cannot read image").all()
    assert failed["score_p_yes"].isna().all()
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text())
    assert metrics["tasks"]["my_pope"]["n_errors"] == 4
    assert metrics["tasks"]["my_pope"]["n_samples"] == len(rows)
    assert "4 errors" in stdout


def test_too_many_errors_stop_the_run(tmp_path, mini_copy, capsys):
    spec = pope_spec(tmp_path, mini_copy, negatives="random")
    for name in ("giraffe.jpg", "dog.jpg", "horses.jpg"):
        corrupt(mini_copy / "images" / name)
    code, _, err = run_cli(["run", *TINY, "--tasks", str(spec), "--output", str(tmp_path / "r"), "--max-errors", "3",
                            "--chunk-images", "1"], capsys)
    assert_one_line_error(code, err, "more than --max-errors 3")
