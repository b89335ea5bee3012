"""The leaderboard: one row per run, one column per primary metric, sorted in the metric's declared direction;
Markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
import io
import json

import pytest

from bench.errors import BenchError
from bench.results.leaderboard import build, render_csv, render_latex, render_markdown, write_leaderboard


def fake_run(root, name, model, pope_f1, chair_s, finished="2026-11-27T10:00:00+00:00"):
    folder = root / name
    folder.mkdir(parents=True)
    entry = lambda primary, label, value, higher: {  # noqa: E731
        "primary": primary, "column": None,
        "metrics": {primary: {"value": value, "ci_low": value - 0.02, "ci_high": value + 0.03, "label": label,
                              "higher_is_better": higher, "scale": 100.0}}}
    tasks = {}
    if pope_f1 is not None:
        tasks["pope_x"] = {**entry("generate_f1", "F1 (generate)", pope_f1, True), "column": "pope_x"}
    if chair_s is not None:
        tasks["chair_x"] = {**entry("CHAIR_s", "CHAIR_s", chair_s, False), "column": "chair_x"}
    (folder / "metrics.json").write_text(json.dumps({"run": name, "model": {"spec": model}, "tasks": tasks, "groups": {}}))
    (folder / "manifest.json").write_text(json.dumps({"finished": finished}))


@pytest.fixture
def results(tmp_path):
    root = tmp_path / "results"
    fake_run(root, "a", "hf:model-a", 0.80, 0.30)
    fake_run(root, "b", "hf:model-b", 0.90, 0.50)
    fake_run(root, "c", "hf:model-c", None, 0.10)
    (root / "not-a-run").mkdir()
    return root


def test_rows_sort_by_the_columns_declared_direction(results):
    by_f1 = build(results, sort="pope_x")
    assert [r["run"] for r in by_f1.rows] == ["b", "a", "c"]          # higher is better; the missing value last
    by_chair = build(results, sort="chair_x")
    assert [r["run"] for r in by_chair.rows] == ["c", "a", "b"]       # lower is better
    assert {c.key for c in by_f1.columns} == {"pope_x · F1 (generate)", "chair_x · CHAIR_s"}


def test_unknown_sort_column_is_an_error(results):
    with pytest.raises(BenchError, match="no leaderboard column 'nothing'"):
        build(results, sort="nothing")


def test_markdown_csv_and_latex(results, tmp_path):
    board = build(results, sort="pope_x")
    md = render_markdown(board)
    assert "| b | `hf:model-b` | 2026-11-27 | 50.0 [48.0, 53.0] | 90.0 [88.0, 93.0] |" in md
    assert "chair_x · CHAIR_s ↓" in md and "pope_x · F1 (generate) ↑" in md
    table = list(csv.DictReader(io.StringIO(render_csv(board))))
    assert table[0]["run"] == "b" and table[0]["pope_x · F1 (generate)"] == "90.0000" and table[2]["pope_x · F1 (generate)"] == ""
    tex = render_latex(board)
    assert tex.startswith("\\begin{tabular}") and "90.0 {\\scriptsize [88.0, 93.0]}" in tex and "pope\\_x" in tex
    out = write_leaderboard(results, tmp_path / "board.md", "chair", ("md", "csv", "latex"))
    assert out.read_text().count("\n|") >= 4 and (tmp_path / "board.csv").exists() and (tmp_path / "board.tex").exists()


def test_cli_writes_where_it_is_told(results, tmp_path, capsys):
    from bench.cli import main

    assert main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "lb.md"), "--format", "md,csv"]) == 0
    assert (tmp_path / "lb.md").exists() and (tmp_path / "lb.csv").exists()
    assert main(["leaderboard", "--results", str(results), "--out", str(tmp_path / "x.md"), "--format", "pdf"]) == 2
    assert "unknown format 'pdf'" in capsys.readouterr().err
