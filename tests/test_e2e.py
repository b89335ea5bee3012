"""End to end on the bundled mini dataset with tiny models: devices, batch size, kill and resume,
refused resumes, re-scoring without the model, the leaderboard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli

FAST = ["--no-progress", "--no-leaderboard"]
BOTH_SHORT = ["--answer-mode", "both", "--set", "max_new_tokens=6"]


def rows_of(out: Path, run: str, task: str) -> pd.DataFrame:
    return pd.read_parquet(out / run / "tasks" / task / "rows.parquet")


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """pope_mini_adversarial on one CPU worker, both answer modes: the reference rows."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("ref")
    assert main(["run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial", "--output", str(out),
                 "--run-name", "ref", "--chunk-images", "3", *BOTH_SHORT, *FAST]) == 0
    return out


def test_reference_run_has_rows_metrics_and_manifest(reference_run):
    rows = rows_of(reference_run, "ref", "pope_mini_adversarial")
    assert len(rows) == len(rows["sample_id"].unique()) and rows["error"].isna().all()
    assert rows["sample_index"].tolist() == list(range(len(rows)))
    assert (rows["label"] == "yes").sum() == (rows["label"] == "no").sum()
    assert rows["gen_answer"].isin(["yes", "no"]).all() and rows["score_p_yes"].between(0, 1).all()
    metrics = json.loads((reference_run / "ref" / "metrics.json").read_text())
    entry = metrics["tasks"]["pope_mini_adversarial"]
    assert entry["primary"] == "generate_f1"
    for name in ("generate_f1", "generate_yes_ratio", "score_f1", "score_auroc", "score_accuracy"):
        m = entry["metrics"][name]
        assert m["ci_low"] <= m["value"] <= m["ci_high"]
    assert entry["metrics"]["generate_yes_ratio"]["value"] == pytest.approx((rows["gen_answer"] == "yes").mean())
    assert "bootstrap over images" in metrics["interval_method"]
    manifest = json.loads((reference_run / "ref" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["model"]["identity"]["kind"] == "tiny" and len(manifest["model"]["identity"]["sha256"]) == 64
    description = manifest["model"]["description"]
    assert description["image_backend"] == "pil" and description["prefix_cache"] is True
    assert "ASSISTANT:" in description["chat_template"] or "ASSISTANT" in str(description["chat_template"])
    task = manifest["tasks"]["pope_mini_adversarial"]
    assert task["prompt_as_sent"].startswith("USER: <image>\n") and task["prompt_as_sent"].endswith("ASSISTANT:")
    assert len(task["fingerprint"]["sha256"]) == 64 and task["fingerprint"]["data"]["images"]["files"] == 21
    assert manifest["environment"]["packages"]["transformers"]


def test_two_cpu_workers_give_the_same_rows(reference_run, tmp_path):
    from bench.cli import main

    assert main(["run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial", "--output", str(tmp_path),
                 "--run-name", "two", "--chunk-images", "3", "--devices", "cpu:2", *BOTH_SHORT, *FAST]) == 0
    a = rows_of(reference_run, "ref", "pope_mini_adversarial")
    b = rows_of(tmp_path, "two", "pope_mini_adversarial")
    pd.testing.assert_frame_equal(a.drop(columns=["score_logp_yes", "score_logp_no", "score_p_yes"]),
                                  b.drop(columns=["score_logp_yes", "score_logp_no", "score_p_yes"]))
    np.testing.assert_allclose(a["score_logp_yes"], b["score_logp_yes"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(a["score_p_yes"], b["score_p_yes"], rtol=0, atol=1e-6)
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    # under load the first worker can finish all 7 chunks before the second has loaded the model; the manifest
    # then lists the one worker that ran, and the rows are the same either way
    assert manifest["devices"] == ["cpu", "cpu"] and 1 <= len(manifest["workers"]) <= 2
    assert all(w["device"] == "cpu" for w in manifest["workers"])


def test_batch_size_1_and_8_agree(tmp_path, reference_run):
    from bench.cli import main

    assert main(["run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial", "--output", str(tmp_path),
                 "--run-name", "b1", "--chunk-images", "3", "--batch-size", "1", *BOTH_SHORT, *FAST]) == 0
    a = rows_of(reference_run, "ref", "pope_mini_adversarial")   # batch size 8
    b = rows_of(tmp_path, "b1", "pope_mini_adversarial")
    assert np.abs(a["score_p_yes"] - b["score_p_yes"]).max() < 1e-4
    assert np.abs(a["score_logp_yes"] - b["score_logp_yes"]).max() < 1e-4
    near = (a["score_p_yes"] - 0.5).abs() < 1e-4
    assert (a["score_answer"] == b["score_answer"])[~near].all()
    assert (a["gen_text"] == b["gen_text"]).all()


def test_generic_path_agrees_with_shared_prefix_path(tmp_path, reference_run):
    from bench.cli import main

    assert main(["run", "--model", "tiny-llava", "--model-args", "prefix_cache=off", "--tasks", "pope_mini_adversarial",
                 "--output", str(tmp_path), "--run-name", "generic", "--chunk-images", "3", *BOTH_SHORT, *FAST]) == 0
    a = rows_of(reference_run, "ref", "pope_mini_adversarial")
    b = rows_of(tmp_path, "generic", "pope_mini_adversarial")
    assert np.abs(a["score_logp_no"] - b["score_logp_no"]).max() < 1e-4
    assert (a["gen_text"] == b["gen_text"]).all()


def test_sigkill_mid_run_then_resume_gives_exactly_the_uninterrupted_rows(tmp_path, reference_run):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench", "run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial",
           "--output", str(out), "--run-name", "killed", "--chunk-images", "3", *BOTH_SHORT, *FAST, "--batch-size", "1"]
    chunks_dir = out / "killed" / "tasks" / "pope_mini_adversarial" / "chunks"
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if chunks_dir.exists() and len(list(chunks_dir.glob("chunk-*.parquet"))) >= 2:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = sorted(p.name for p in chunks_dir.glob("chunk-*.parquet"))
    total_chunks = json.loads((out / "killed" / "manifest.json").read_text())["tasks"]["pope_mini_adversarial"]["n_chunks"]
    assert 2 <= len(before) < total_chunks
    assert not (out / "killed" / "metrics.json").exists()
    mtimes = {p.name: p.stat().st_mtime_ns for p in chunks_dir.glob("chunk-*.parquet")}

    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for name, mtime in mtimes.items():   # finished chunks were not recomputed
        assert (chunks_dir / name).stat().st_mtime_ns == mtime
    a = rows_of(reference_run, "ref", "pope_mini_adversarial")
    b = rows_of(out, "killed", "pope_mini_adversarial")
    assert len(b) == len(a) and b["sample_id"].is_unique                    # none lost, none duplicated
    assert list(b["sample_id"]) == list(a["sample_id"])
    assert (a["gen_text"] == b["gen_text"]).all() and (a["gen_answer"] == b["gen_answer"]).all()
    assert np.abs(a["score_p_yes"] - b["score_p_yes"]).max() < 1e-4      # batch size 1 here, 8 there
    manifest = json.loads((out / "killed" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1


def test_resume_with_another_model_or_setting_is_refused(tmp_path, reference_run, capsys):
    import shutil

    shutil.copytree(reference_run / "ref", tmp_path / "ref")
    code, _, err = run_cli(["run", "--model", "tiny-qwen2-vl", "--tasks", "pope_mini_adversarial", "--output", str(tmp_path),
                            "--run-name", "ref", "--chunk-images", "3", *BOTH_SHORT, *FAST], capsys)
    assert code == 2 and "different model spec" in err and "another --run-name" in err
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial", "--output", str(tmp_path),
                            "--run-name", "ref", "--chunk-images", "3", "--answer-mode", "both", "--set", "max_new_tokens=7",
                            *FAST], capsys)
    assert code == 2 and "setting 'max_new_tokens'" in err
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial", "--output", str(tmp_path),
                            "--run-name", "ref", "--chunk-images", "4", *BOTH_SHORT, *FAST], capsys)
    assert code == 2 and "chunk_images" in err
    # the same settings resume (nothing left to do) and leave the rows as they were
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "pope_mini_adversarial", "--output", str(tmp_path),
                            "--run-name", "ref", "--chunk-images", "3", *BOTH_SHORT, *FAST], capsys)
    assert code == 0, err
    pd.testing.assert_frame_equal(rows_of(tmp_path, "ref", "pope_mini_adversarial"),
                                  rows_of(reference_run, "ref", "pope_mini_adversarial"))


def test_rescore_without_the_model_recomputes_derived_fields(tmp_path, reference_run, capsys):
    import shutil

    run_dir = tmp_path / "ref"
    shutil.copytree(reference_run / "ref", run_dir)
    original = json.loads((run_dir / "metrics.json").read_text())
    rows = pd.read_parquet(run_dir / "tasks" / "pope_mini_adversarial" / "rows.parquet")
    rows["gen_answer"] = "tampered"
    rows["score_answer"] = None
    rows.to_parquet(run_dir / "tasks" / "pope_mini_adversarial" / "rows.parquet")
    code, out, err = run_cli(["rescore", str(run_dir)], capsys)
    assert code == 0, err
    rescored = json.loads((run_dir / "metrics.json").read_text())
    assert rescored["tasks"] == original["tasks"]
    fixed = pd.read_parquet(run_dir / "tasks" / "pope_mini_adversarial" / "rows.parquet")
    pd.testing.assert_frame_equal(fixed, rows_of(reference_run, "ref", "pope_mini_adversarial"))
    assert "pope_mini_adversarial: F1 (generate)" in out


def test_group_run_writes_group_metrics_and_a_leaderboard_in_the_temp_folder(tmp_path, capsys):
    repo_board = REPO / "leaderboard.md"
    before = repo_board.read_bytes() if repo_board.exists() else None
    out = tmp_path / "results"
    code, stdout, err = run_cli(["run", "--model", "tiny-llava", "--tasks", "pope_mini", "--output", str(out),
                                 "--answer-mode", "score", "--no-progress"], capsys)
    assert code == 0, err
    metrics = json.loads(next(out.glob("*/metrics.json")).read_text())
    group = metrics["groups"]["pope_mini"]
    assert sorted(group["tasks"]) == ["pope_mini_adversarial", "pope_mini_popular", "pope_mini_random"]
    mean = np.mean([metrics["tasks"][t]["metrics"]["score_f1"]["value"] for t in group["tasks"]])
    assert group["metrics"]["score_f1"]["value"] == pytest.approx(mean)
    board = (out / "leaderboard.md").read_text()   # the board inside the results folder it summarises
    assert "pope_mini · F1 (score), mean over 3 tasks" in board and "tiny-llava" in board
    assert (repo_board.read_bytes() if repo_board.exists() else None) == before
    assert not (tmp_path / "leaderboard.md").exists()   # nothing beside the results folder either


def test_dry_run_loads_nothing_and_writes_nothing(tmp_path, capsys):
    code, out, err = run_cli(["run", "--model", "tiny-llava", "--model-args", f"cache_dir={tmp_path / 'cache'}",
                              "--tasks", "pope_mini", "--output", str(tmp_path / "r"), "--dry-run"], capsys)
    assert code == 0, err
    assert "pope_mini_random (pope)" in out and "group:    pope_mini" in out and "dry run" in out
    assert not (tmp_path / "r").exists() and not (tmp_path / "cache").exists()
