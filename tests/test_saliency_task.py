"""The saliency task end to end on the bundled specs and tiny models, the CUB layout, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from conftest import run_cli
from test_bad_input import assert_one_line_error

FAST = ["--no-progress", "--no-leaderboard"]


def test_saliency_mini_writes_rows_metrics_per_method_and_a_column_each(tmp_path, capsys):
    code, out, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "saliency_mini", "--output", str(tmp_path),
                              "--run-name", "s", "--limit", "9", "--no-progress"], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "s" / "tasks" / "saliency_mini" / "rows.parquet")
    assert len(rows) == 9 and (rows["status"] == "ok").all()
    assert sorted(rows["method"].unique()) == ["integrated_gradients", "occlusion", "random"]
    assert rows.groupby(["image_id", "target_index"])["method"].nunique().eq(3).all()   # one row per (image, target, method)
    first = rows.iloc[0]
    assert len(first["saliency"]) == first["grid_rows"] * first["grid_cols"] == 16
    assert len(first["insertion"]) == len(first["deletion"]) == 17                    # 16 steps
    assert first["deletion"][0] == pytest.approx(first["p_original"])
    entry = json.loads((tmp_path / "s" / "metrics.json").read_text())["tasks"]["saliency_mini"]
    assert entry["primaries"] == [f"ins_minus_del[{m}]" for m in ("integrated_gradients", "occlusion", "random")]
    for name in ("insertion_auc[occlusion]", "deletion_auc[occlusion]", "ins_minus_del[random]", "pointing_game[occlusion]"):
        value = entry["metrics"][name]
        assert value["ci_low"] <= value["value"] <= value["ci_high"]
    board = (tmp_path / "leaderboard.md").read_text()
    for method in ("integrated_gradients", "occlusion", "random"):
        assert f"Insertion - deletion AUC ({method})" in board


def test_pope_answer_and_grounded_ga_specs_run(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "saliency_pope_mini", "--output", str(tmp_path),
                            "--run-name", "p", "--limit", "3", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "p" / "tasks" / "saliency_pope_mini" / "rows.parquet")
    assert (rows["target_source"] == "next_token").all() and rows["target_ids"].map(len).eq(1).all()
    code, _, err = run_cli(["run", "--model", "tiny-grounded", "--tasks", "saliency_grounded_mini", "--output", str(tmp_path),
                            "--run-name", "g", "--limit", "4", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "g" / "tasks" / "saliency_grounded_mini" / "rows.parquet")
    assert set(rows["method"]) == {"ga", "integrated_gradients", "occlusion", "random"}


@pytest.mark.parametrize("model", ["tiny-llava-next", "tiny-qwen2-vl", "tiny-idefics3", "tiny-smolvlm", "tiny-paligemma"])
def test_black_box_methods_run_on_every_family(tmp_path, capsys, model):
    code, _, err = run_cli(["run", "--model", model, "--tasks", "saliency_pope_mini", "--set", "methods=occlusion,random",
                            "--set", "grid=4", "--set", "steps=4", "--output", str(tmp_path), "--run-name", "b", "--limit", "2",
                            *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "b" / "tasks" / "saliency_pope_mini" / "rows.parquet")
    ok = rows[rows["status"] == "ok"]
    assert len(ok) + (rows["status"] == "absent").sum() == 2
    for _, row in ok.iterrows():          # the black-box grid lies over the original image
        space = json.loads(row["space"])
        assert space["scale"] == [1.0, 1.0] and space["grid"] == [4, 4] and len(row["insertion"]) == 5


@pytest.mark.parametrize("model, method, fragment", [
    ("tiny-llava", "ga", "gradient alignment, which only a grounded model offers"),
    ("tiny-qwen2-vl", "integrated_gradients", "gradients or attention through the image"),
    ("tiny-llava", "gradcam", "unknown saliency method 'gradcam'"),
])
def test_methods_a_model_cannot_run_are_refused_before_any_work(tmp_path, capsys, model, method, fragment):
    code, _, err = run_cli(["run", "--model", model, "--tasks", "saliency_mini", "--set", f"methods={method}",
                            "--output", str(tmp_path / "r"), *FAST], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (tmp_path / "r").exists()


def test_absent_own_caption_targets_are_counted_not_failed(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "saliency_mini", "--set", "targets=own_caption",
                            "--set", "max_targets=2", "--set", "max_new_tokens=4", "--set", "methods=random",
                            "--output", str(tmp_path), "--run-name", "o", "--limit", "4", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "o" / "tasks" / "saliency_mini" / "rows.parquet")
    absent = rows[rows["status"] == "absent"]
    assert len(absent) and absent["reason"].str.contains("object word").all() and absent["error"].isna().all()
    entry = json.loads((tmp_path / "o" / "metrics.json").read_text())["tasks"]["saliency_mini"]
    assert entry["figures"]["counts"]["absent"] == len(absent)


@pytest.fixture
def cub(tmp_path):
    """A 3-image fixture in the wsolevaluation layout (images from the bundled photos)."""
    from bench.resources import assets_dir

    root = tmp_path / "cub"
    photos = assets_dir() / "mini_coco" / "images"
    entries = [("001.Bald_Eagle/eagle.jpg", 0, [(200.0, 30.0, 520.0, 380.0)]),
               ("002.Kite_Bird/kite.jpg", 1, [(250.0, 20.0, 330.0, 90.0), (10.0, 300.0, 60.0, 340.0)]),
               ("001.Bald_Eagle/butterfly.jpg", 0, [(100.0, 50.0, 400.0, 300.0)])]
    metadata, images = root / "metadata" / "CUB" / "test", root / "CUB_200_2011" / "images"   # as saliency_cub expects
    metadata.mkdir(parents=True)
    for image_id, _, _ in entries:
        (images / image_id).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / image_id.split("/")[1], images / image_id)
    (metadata / "image_ids.txt").write_text("".join(f"{i}\n" for i, _, _ in entries))
    (metadata / "class_labels.txt").write_text("".join(f"{i},{c}\n" for i, c, _ in entries))
    (metadata / "localization.txt").write_text(
        "".join(f"{i},{b[0]},{b[1]},{b[2]},{b[3]}\n" for i, _, boxes in entries for b in boxes))
    return root, entries


def _hand_best_iou(saliency: np.ndarray, valid: np.ndarray, boxes: list) -> np.ndarray:
    """Per threshold, by hand: min-max normalise over the valid pixels, threshold strictly, box every 8-connected
    component on pixel edges, best IoU with any ground-truth box."""
    s = np.where(valid, saliency, np.nan)
    low, high = np.nanmin(s), np.nanmax(s)
    norm = np.where(valid, (s - low) / (high - low) if high > low else 0.0, 0.0)
    out = []
    for t in np.arange(0, 1, 0.01):
        labels, _ = ndimage.label((norm > t) & valid, structure=np.ones((3, 3)))
        best = 0.0
        for sl in ndimage.find_objects(labels):
            px1, py1, px2, py2 = sl[1].start, sl[0].start, sl[1].stop, sl[0].stop
            for gx1, gy1, gx2, gy2 in boxes:
                iw = max(0.0, min(px2, gx2) - max(px1, gx1))
                ih = max(0.0, min(py2, gy2) - max(py1, gy1))
                union = (px2 - px1) * (py2 - py1) + (gx2 - gx1) * (gy2 - gy1) - iw * ih
                best = max(best, iw * ih / union)
        out.append(best)
    return np.array(out)


def test_cub_fixture_runs_end_to_end_and_maxboxacc_matches_a_hand_computation(tmp_path, capsys, cub):
    root, entries = cub
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "saliency_cub", "--data-root", str(root),
                            "--set", "methods=occlusion,random", "--set", "steps=8", "--output", str(tmp_path),
                            "--run-name", "c", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "c" / "tasks" / "saliency_cub" / "rows.parquet")
    assert sorted(rows.loc[rows["method"] == "random", "target_text"]) == ["bald eagle", "bald eagle", "kite bird"]
    entry = json.loads((tmp_path / "c" / "metrics.json").read_text())["tasks"]["saliency_cub"]
    assert entry["primary"] == "maxboxacc_v2[occlusion]"
    from bench.explain.space import PixelSpace

    for method in ("occlusion", "random"):
        part = rows[rows["method"] == method]
        matrix = []
        for _, row in part.iterrows():
            space = PixelSpace.from_dict(json.loads(row["space"]))
            original = space.grid_to_original(np.asarray(row["saliency"]).reshape(row["grid_rows"], row["grid_cols"]))
            boxes = np.asarray(row["gt_boxes"]).reshape(-1, 4).tolist()
            matrix.append(_hand_best_iou(np.nan_to_num(original), np.isfinite(original), boxes))
        matrix = np.array(matrix)
        expected = np.mean([max((matrix[:, t] >= d).mean() for t in range(matrix.shape[1])) for d in (0.3, 0.5, 0.7)])
        assert entry["metrics"][f"maxboxacc_v2[{method}]"]["value"] == pytest.approx(expected, abs=1e-12)


def test_cub_metadata_errors_are_one_line(tmp_path, capsys, cub):
    root, _ = cub
    (root / "metadata" / "CUB" / "test" / "localization.txt").write_text("001.Bald_Eagle/eagle.jpg,1,2,three,4\n")
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "saliency_cub", "--data-root", str(root),
                            "--output", str(tmp_path / "r"), *FAST], capsys)
    assert_one_line_error(code, err, "localization.txt", "line 1")
