"""Saliency judged on planted-signal models, through the whole pipeline (`bench run --model hf:<folder>`): the box
model's target logit depends only on the texture inside a known box; its twin ignores the image.

Shown here: every gradient and perturbation method puts its maximum inside the box, beats `random` on insertion by
at least 0.1 (interval above 0) and on deletion, scores a pointing game of 100% and a higher MaxBoxAccV2 than
`random`; randomising the model drops the gradient methods' maps (Spearman below 0.5) while `random` does not move;
a hallucinated word (no pixel supports it) is separated from the grounded one by its insertion AUC; the twin's
curves are flat; `bench rescore` recomputes every derived column from the stored maps and curves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

N_IMAGES = 8
METHODS = ["gradient", "integrated_gradients", "occlusion", "feature_ablation", "random"]
FAST = ["--no-progress", "--no-leaderboard"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted models and a COCO-format set of textured 56 x 56 images with the dog's box."""
    from bench.models.tiny import build
    from bench.models.tiny.planted_saliency import BOX, make_image
    from bench.resources import assets_dir

    root = tmp_path_factory.mktemp("planted")
    for preset in ("box", "twin"):
        build("planted_saliency", root / preset, preset=preset)
    (root / "images").mkdir()
    categories = json.loads((assets_dir() / "mini_coco" / "instances.json").read_text())["categories"]
    dog = next(c["id"] for c in categories if c["name"] == "dog")
    x1, y1, x2, y2 = BOX
    images, annotations, captions = [], [], []
    for i in range(1, N_IMAGES + 1):
        make_image(seed=i).save(root / "images" / f"p{i}.png")
        images.append({"id": i, "file_name": f"p{i}.png", "width": 56, "height": 56})
        annotations.append({"id": i, "image_id": i, "category_id": dog, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
        captions.append({"id": i, "image_id": i, "caption": "A dog in a field."})
    base = {"info": {}, "licenses": [], "images": images, "categories": categories}
    (root / "instances.json").write_text(json.dumps({**base, "annotations": annotations}))
    (root / "captions.json").write_text(json.dumps({**base, "annotations": captions}))
    (root / "pairs.jsonl").write_text("".join(json.dumps({"image_id": i, "caption": "A dog and a cat."}) + "\n"
                                              for i in range(1, N_IMAGES + 1)))
    return root


def spec(folder: Path, root: Path, name: str, **params) -> Path:
    values = {"targets": "caption_words", "prompt": "What's in the image?", "steps": 16, "ig_steps": 16,
              "max_targets": 2, "max_overlays": 2, **params}
    lines = [f"task: {name}", "type: saliency", "dataset:", "  source: coco", f"  root: {root}",
             "  annotations: instances.json", "  images: images", "  captions: captions.json", "params:"]
    lines += [f"  {k}: {json.dumps(v)}" for k, v in values.items()]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def box_run(planted, tmp_path_factory):
    from bench.cli import main

    out = tmp_path_factory.mktemp("runs")
    task = spec(out, planted, "planted_box", methods=METHODS, sanity=True)
    assert main(["run", "--model", f"hf:{planted / 'box'}", "--tasks", str(task), "--output", str(out),
                 "--run-name", "box", *FAST]) == 0
    metrics = json.loads((out / "box" / "metrics.json").read_text())["tasks"]["planted_box"]
    return pd.read_parquet(out / "box" / "tasks" / "planted_box" / "rows.parquet"), metrics, out


def box_cells() -> set[tuple[int, int]]:
    return {(1, 1), (1, 2), (2, 1), (2, 2)}


def test_every_gradient_and_perturbation_method_peaks_inside_the_box(box_run):
    rows, _, _ = box_run
    assert (rows["status"] == "ok").all() and len(rows) == N_IMAGES * len(METHODS)
    for method in METHODS[:-1]:
        for _, row in rows[rows["method"] == method].iterrows():
            grid = np.asarray(row["saliency"]).reshape(row["grid_rows"], row["grid_cols"])
            assert tuple(np.unravel_index(grid.argmax(), grid.shape)) in box_cells(), method


def test_insertion_beats_random_by_a_margin_and_deletion_falls_faster(box_run):
    _, metrics, _ = box_run
    m = metrics["metrics"]
    for method in METHODS[:-1]:
        gain = m[f"insertion_vs_random[{method}]"]
        assert gain["value"] >= 0.1 and gain["ci_low"] > 0, (method, gain)
        assert m[f"deletion_vs_random[{method}]"]["value"] < 0, method
        assert m[f"deletion_auc[{method}]"]["value"] < m["deletion_auc[random]"]["value"]


def test_pointing_game_is_perfect_and_maxboxacc_beats_random(box_run):
    _, metrics, _ = box_run
    m = metrics["metrics"]
    for method in METHODS[:-1]:
        assert m[f"pointing_game[{method}]"]["value"] == 1.0, method
        assert m[f"maxboxacc_v2[{method}]"]["value"] > m["maxboxacc_v2[random]"]["value"], method
    assert metrics["figures"]["pointing_game"]["gradient"] == 1.0


def test_randomising_the_model_changes_the_gradient_maps_but_not_random(box_run):
    rows, metrics, _ = box_run
    m = metrics["metrics"]
    for method in ("gradient", "integrated_gradients"):
        assert m[f"sanity_spearman[{method}]"]["value"] < 0.5, method
        assert "flag" not in m[f"sanity_spearman[{method}]"]
    assert m["sanity_spearman[random]"]["value"] == pytest.approx(1.0)
    assert m["sanity_ssim[random]"]["value"] == pytest.approx(1.0)
    steps = metrics["figures"]["sanity"]["gradient"]["steps"]
    assert steps[0] == "output head" and steps[-1].startswith("vision top")


def test_overlays_are_capped_per_method(box_run):
    _, _, out = box_run
    overlays = sorted(p.name for p in (out / "box" / "tasks" / "planted_box" / "overlays").iterdir())
    assert len(overlays) == 2 * len(METHODS) and all(name.endswith(".png") for name in overlays)


def test_rescore_recomputes_every_derived_column(box_run, capsys):
    import shutil

    rows, metrics, out = box_run
    run = out / "rescored"
    shutil.copytree(out / "box", run)
    path = run / "tasks" / "planted_box" / "rows.parquet"
    tampered = rows.copy()
    for column in ("insertion_auc", "deletion_auc", "energy", "entropy"):
        tampered[column] = 0.5
    tampered["pointing_hit"] = False
    tampered.to_parquet(path)
    code, _, err = run_cli(["rescore", str(run)], capsys)
    assert code == 0, err
    again = pd.read_parquet(path)
    for column in ("insertion_auc", "deletion_auc", "energy", "entropy"):
        np.testing.assert_allclose(again[column], rows[column], atol=1e-12)
    assert (again["pointing_hit"] == rows["pointing_hit"]).all()
    assert json.loads((run / "metrics.json").read_text())["tasks"]["planted_box"]["metrics"] == metrics["metrics"]


def test_hallucinated_words_rely_less_on_the_image(planted, tmp_path, capsys):
    task = spec(tmp_path, planted, "planted_pairs", methods=["occlusion"], words="all", captions_file=str(planted / "pairs.jsonl"))
    code, _, err = run_cli(["run", "--model", f"hf:{planted / 'box'}", "--tasks", str(task), "--output", str(tmp_path),
                            "--run-name", "pairs", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "pairs" / "tasks" / "planted_pairs" / "rows.parquet")
    assert sorted(rows["target_text"].unique()) == ["cat", "dog"]
    assert (rows.loc[rows["target_text"] == "cat", "hallucinated"]).all()
    assert not (rows.loc[rows["target_text"] == "dog", "hallucinated"]).any()
    entry = json.loads((tmp_path / "pairs" / "metrics.json").read_text())["tasks"]["planted_pairs"]
    assert entry["primary"] == "hallucination_auroc_insertion[occlusion]"
    auroc = entry["metrics"]["hallucination_auroc_insertion[occlusion]"]
    assert auroc["value"] == 1.0 and auroc["ci_low"] == 1.0


def test_the_twin_that_ignores_the_image_gives_flat_curves(planted, tmp_path, capsys):
    task = spec(tmp_path, planted, "planted_twin", methods=["occlusion", "random"], max_targets=1)
    code, _, err = run_cli(["run", "--model", f"hf:{planted / 'twin'}", "--tasks", str(task), "--output", str(tmp_path),
                            "--run-name", "twin", "--limit", "6", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(tmp_path / "twin" / "tasks" / "planted_twin" / "rows.parquet")
    for name in ("insertion", "deletion", "token_insertion", "token_deletion"):
        curves = np.stack([np.asarray(c) for c in rows[name]])
        assert np.ptp(curves, axis=1).max() < 1e-6, name
    assert rows["insertion_auc_norm"].isna().all()        # no signal to normalise: null, and counted
    entry = json.loads((tmp_path / "twin" / "metrics.json").read_text())["tasks"]["planted_twin"]
    assert entry["figures"]["counts"]["null_normalised"] == len(rows)
