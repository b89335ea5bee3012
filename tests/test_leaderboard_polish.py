"""Leaderboard polish: default run names use the group, old run folders keep resuming under their names, runs
whose sort column was computed on another fingerprint are shown apart, and the model column shows dtype and size."""

from __future__ import annotations

import json
import shutil

from conftest import run_cli

from bench.results.leaderboard import build, render_csv, render_markdown

FAST = ["--no-progress", "--no-leaderboard"]


def test_the_default_run_name_uses_the_group_and_an_old_folder_keeps_its_name(tmp_path, capsys):
    args = ["run", "--model", "fake-harness", "--tasks", "pope_mini", "--answer-mode", "score", "--output", str(tmp_path), *FAST]
    assert run_cli(args, capsys)[0] == 0
    assert (tmp_path / "fake-harness__pope_mini" / "manifest.json").exists()
    # a folder made under the former default name (the split names joined) is found and resumed, not duplicated
    old = "fake-harness__pope_mini_adversarial-pope_mini_popular-pope_mini_random"
    shutil.move(tmp_path / "fake-harness__pope_mini", tmp_path / old)
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    assert "all" in out and "already finished" in out
    assert not (tmp_path / "fake-harness__pope_mini").exists()


def fake(root, name, spec, fingerprint, value, description=None):
    folder = root / name
    folder.mkdir(parents=True)
    metrics = {"run": name, "model": {"spec": spec}, "groups": {},
               "tasks": {"t": {"primary": "acc", "column": "t",
                               "metrics": {"acc": {"value": value, "ci_low": value - 0.01, "ci_high": value + 0.01,
                                                   "label": "Accuracy", "higher_is_better": True, "scale": 100.0}}}}}
    manifest = {"finished": "2026-12-01T00:00:00+00:00", "tasks": {"t": {"fingerprint": {"sha256": fingerprint}}},
                "model": {"description": description or {}}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "manifest.json").write_text(json.dumps(manifest))


def test_runs_on_another_fingerprint_are_shown_apart_and_the_model_shows_dtype_and_size(tmp_path):
    fake(tmp_path, "a", "hf:a", "f1", 0.7, {"dtype": "bfloat16", "parameters": 7_063_000_000})
    fake(tmp_path, "b", "hf:b", "f1", 0.8)
    fake(tmp_path, "c", "hf:c", "other-data", 0.95)
    board = build(tmp_path)
    assert [r["run"] for r in board.rows] == ["b", "a"] and [r["run"] for r in board.apart] == ["c"]
    text = render_markdown(board)
    assert text.index("| b |") < text.index("| a |") < text.index("## Not comparable on t · Accuracy") < text.index("| c |")
    assert "`hf:a (bfloat16, 7.06B)`" in text and "`hf:b`" in text
    csv_rows = render_csv(board).splitlines()
    assert csv_rows[-1].endswith(",no") and csv_rows[1].endswith(",yes")


def test_a_real_run_records_dtype_and_parameter_count(tmp_path, capsys):
    assert run_cli(["run", "--model", "tiny-llava", "--tasks", "pope_mini_random", "--answer-mode", "score", "--limit", "6",
                    "--output", str(tmp_path), "--no-progress"], capsys)[0] == 0
    text = (tmp_path / "leaderboard.md").read_text()
    manifest = json.loads(next(tmp_path.glob("*/manifest.json")).read_text())
    n = manifest["model"]["description"]["parameters"]
    assert n > 0 and "(float32, " in text
