"""Hostile inputs and faults, one test per class of failure: each is a one-line error naming the input (exit 2, no
traceback) or correct behaviour, and nothing outside the run folder is written.

Faults that root would sail through (read-only folders, a full disk) are injected."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO, pope_spec, run_cli
from test_bad_input import assert_one_line_error

FAST = ["--no-progress", "--no-leaderboard"]
FAKE = ["--model", "fake-harness"]
POPE = ["--tasks", "pope_mini_adversarial", "--answer-mode", "score", "--chunk-images", "4"]


def files_under(root: Path, skip: Path | None = None) -> dict[str, int]:
    out = {}
    for p in root.rglob("*"):
        if p.is_file() and not (skip is not None and (p == skip or skip in p.parents)):
            out[str(p)] = p.stat().st_mtime_ns
    return out


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """A working folder; the test asserts that nothing outside its run folder changed (the repository's
    leaderboard and results included)."""
    monkeypatch.chdir(tmp_path)
    repo_before = files_under(REPO / "results") if (REPO / "results").exists() else {}
    board = (REPO / "leaderboard.md").read_bytes()
    yield tmp_path
    assert (REPO / "leaderboard.md").read_bytes() == board
    assert (files_under(REPO / "results") if (REPO / "results").exists() else {}) == repo_before


def assert_untouched(root: Path, before: dict[str, int], run_dir: Path | None = None) -> None:
    after = files_under(root, skip=run_dir)
    assert after == {k: v for k, v in before.items() if run_dir is None or not k.startswith(str(run_dir))}


# -- run names and output ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, fragment", [("..", "--run-name"), (".", "--run-name"), ("a/b", "--run-name"),
                                            ("x" * 300, "at most 120 characters")])
def test_run_names_are_plain_path_components(sandbox, capsys, name, fragment):
    before = files_under(sandbox)
    code, _, err = run_cli(["run", *FAKE, *POPE, "--output", str(sandbox / "out"), "--run-name", name, *FAST], capsys)
    assert_one_line_error(code, err, fragment)
    assert files_under(sandbox) == before


def test_output_that_is_a_file_or_under_one(sandbox, capsys):
    (sandbox / "afile").write_text("x")
    before = files_under(sandbox)
    for output in ("afile", "afile/below"):
        code, _, err = run_cli(["run", *FAKE, *POPE, "--output", output, *FAST], capsys)
        assert_one_line_error(code, err, "afile", "is a file")
    assert files_under(sandbox) == before


def test_tilde_output_is_expanded_for_everything(sandbox, capsys, monkeypatch):
    monkeypatch.setenv("HOME", str(sandbox / "home"))
    code, _, err = run_cli(["run", *FAKE, *POPE, "--output", "~/x", "--run-name", "t", *FAST], capsys)
    assert code == 0, err
    assert (sandbox / "home" / "x" / "t" / "manifest.json").exists() and not (sandbox / "~").exists()


def test_leaderboard_that_is_a_folder_is_refused_before_the_run(sandbox, capsys):
    (sandbox / "board").mkdir()
    code, _, err = run_cli(["run", *FAKE, *POPE, "--output", "out", "--leaderboard", "board", "--no-progress"], capsys)
    assert_one_line_error(code, err, "--leaderboard", "is a folder")
    assert not (sandbox / "out").exists() and not list(sandbox.rglob(".*.tmp-*"))


def test_read_only_output_is_one_line(sandbox, capsys, monkeypatch):
    real = Path.mkdir

    def read_only(self, *args, **kwargs):
        if str(Path(self).absolute()).startswith(str(sandbox / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run_cli(["run", *FAKE, *POPE, "--output", "ro", *FAST], capsys)
    assert_one_line_error(code, err, "ro", "read-only file system")
    assert not (sandbox / "ro").exists()


def test_disk_full_mid_run_fails_truthfully_leaves_no_temp_file_and_resumes(sandbox, capsys, monkeypatch):
    import bench.io as bio

    real, calls = os.fsync, []

    def fsync(fd):
        if "chunk-000001" in os.readlink(f"/proc/self/fd/{fd}") and not calls:   # chunk 1 finds the disk full, once
            calls.append(fd)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd)

    monkeypatch.setattr(bio.os, "fsync", fsync)
    args = ["run", *FAKE, *POPE, "--output", "out", "--run-name", "full", *FAST]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "no space left on the device", "chunk-000001.parquet")
    manifest = json.loads((sandbox / "out" / "full" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "no space left" in manifest["failure"]
    assert not list(sandbox.rglob(".*.tmp-*"))
    monkeypatch.setattr(bio.os, "fsync", real)
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert len(pd.read_parquet(sandbox / "out" / "full" / "tasks" / "pope_mini_adversarial" / "rows.parquet")) == 62


def test_model_cache_dir_that_is_a_file(sandbox, capsys):
    (sandbox / "cachefile").write_text("x")
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--model-args", "cache_dir=cachefile", *POPE, "--output", "out",
                            *FAST], capsys)
    assert_one_line_error(code, err, "cache_dir", "is a file")
    assert not (sandbox / "out").exists()


# -- devices -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("devices", ["cuda:0", "cpu,cuda:1", "mps"])
def test_devices_this_torch_cannot_use_are_refused_before_any_model(sandbox, capsys, devices):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, _, err = run_cli(["run", "--model", "tiny-llava", *POPE, "--devices", devices, "--output", "out", *FAST], capsys)
    assert_one_line_error(code, err, "--devices", devices.split(",")[-1])
    assert not (sandbox / "out").exists()


# -- values --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, fragment", [
    (["--set", "max_new_tokens=-5", "--answer-mode", "generate"], "'max_new_tokens' must be at least 1"),
    (["--set", "template=Is it there?"], "'template' must contain '{}'"),
    (["--set", "num_images=-1"], "'num_images' must be at least 1"),
    (["--model-args", "seconds_per_sample=abc"], "key 'seconds_per_sample' must be a number"),
    (["--seed", "-1"], "--seed must be 0 or more"),
])
def test_values_are_checked_against_their_declared_types_and_ranges(sandbox, capsys, extra, fragment):
    code, _, err = run_cli(["run", *FAKE, *POPE, "--output", "out", *FAST, *extra], capsys)
    assert_one_line_error(code, err, fragment)
    assert not (sandbox / "out").exists()


def test_tiny_model_seed_must_be_a_whole_number(sandbox, capsys):
    code, _, err = run_cli(["run", "--model", "tiny-llava", "--model-args", "seed=abc", *POPE, "--output", "out", *FAST], capsys)
    assert_one_line_error(code, err, "key 'seed' must be an integer")


def test_a_failure_at_load_is_recorded_and_never_blocks_the_corrected_command(sandbox, capsys):
    base = ["run", "--model", "tiny-llava", *POPE, "--output", "out", "--run-name", "attn", *FAST]
    code, _, err = run_cli(base[:3] + ["--model-args", "attn_implementation=bogus"] + base[3:], capsys)
    assert_one_line_error(code, err, "bogus")
    manifest = json.loads((sandbox / "out" / "attn" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and "bogus" in manifest["failure"]
    code, _, err = run_cli(base, capsys)
    assert code == 0, err
    manifest = json.loads((sandbox / "out" / "attn" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["earlier_attempts"][0]["status"] == "failed"


# -- specs and data ------------------------------------------------------------------------------------------------

def test_spec_that_is_not_utf8_or_a_folder(sandbox, capsys):
    bad = sandbox / "latin.yaml"
    bad.write_bytes("task: latin\ntype: pope\ndescription: caf\xe9\n".encode("latin-1"))
    (sandbox / "specs").mkdir()
    for target, fragment in ((str(bad), "not UTF-8"), (str(sandbox / "specs"), "is a folder")):
        for command in (["run", *FAKE, "--tasks", target, "--output", "out", *FAST], ["validate", target]):
            code, _, err = run_cli(command, capsys)
            assert_one_line_error(code, err, target, fragment)
    assert not (sandbox / "out").exists()


def test_two_specs_with_one_name_are_refused(sandbox, capsys, mini_copy):
    (sandbox / "a").mkdir()
    (sandbox / "b").mkdir()
    one, two = pope_spec(sandbox / "a", mini_copy), pope_spec(sandbox / "b", mini_copy)
    code, _, err = run_cli(["run", *FAKE, "--tasks", f"{one},{two}", "--output", "out", *FAST], capsys)
    assert_one_line_error(code, err, "two task specs are named 'my_pope'", str(one), str(two))


def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("change, fragment", [
    (lambda d: d["categories"][2].update(name=None), "categories[2] field 'name' must be a non-empty string"),
    (lambda d: d["images"].append(dict(d["images"][0])), "repeats the id"),
])
def test_malformed_annotations_name_the_right_entry(sandbox, capsys, mini_copy, change, fragment):
    _edit(mini_copy / "instances.json", change)
    code, _, err = run_cli(["run", *FAKE, "--tasks", str(pope_spec(sandbox, mini_copy)), "--output", "out", *FAST], capsys)
    assert_one_line_error(code, err, "instances.json", fragment)
    if "repeats" in fragment:
        assert f"images[{len(json.loads((mini_copy / 'instances.json').read_text())['images']) - 1}]" in err
        assert "of images[0]" in err


def test_one_missing_image_is_counted_once(sandbox, capsys, mini_copy):
    (mini_copy / "images" / "dog.jpg").unlink()
    (mini_copy / "images" / "kite.jpg").unlink()
    code, _, err = run_cli(["run", *FAKE, "--tasks", str(pope_spec(sandbox, mini_copy)), "--output", "out", *FAST], capsys)
    assert_one_line_error(code, err, "image file not found", "(2 images missing in all")


def test_decompression_bomb_becomes_an_error_row_with_max_errors(sandbox, capsys, mini_copy):
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.new("L", (1, 1)).save(mini_copy / "images" / "kite.jpg", format="PNG")
    data = bytearray((mini_copy / "images" / "kite.jpg").read_bytes())
    import struct
    import zlib

    data[16:24] = struct.pack(">II", 30000, 30000)                  # the IHDR claims 30000 x 30000
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    (mini_copy / "images" / "kite.jpg").write_bytes(bytes(data))
    assert 30000 * 30000 > 2 * limit
    code, _, err = run_cli(["run", *FAKE, "--tasks", str(pope_spec(sandbox, mini_copy)), "--output", "out", "--run-name", "bomb",
                            "--max-errors", "10", *FAST], capsys)
    assert code == 0, err
    rows = pd.read_parquet(sandbox / "out" / "bomb" / "tasks" / "my_pope" / "rows.parquet")
    assert rows["error"].dropna().str.contains("more pixels than PIL allows").all() and rows["error"].notna().any()


def test_symlink_loop_in_the_image_folder(sandbox, capsys, mini_copy):
    os.symlink(mini_copy / "images" / "loop", mini_copy / "images" / "loop")
    code, _, err = run_cli(["run", *FAKE, "--tasks", str(pope_spec(sandbox, mini_copy)), "--output", "out", "--run-name", "l",
                            *FAST], capsys)
    assert code == 0, err


# -- damaged run folders -------------------------------------------------------------------------------------------

@pytest.fixture
def finished_run(sandbox, capsys):
    assert run_cli(["run", *FAKE, *POPE, "--output", "out", "--run-name", "ok", "--no-progress"], capsys)[0] == 0
    return sandbox / "out" / "ok"


@pytest.mark.parametrize("damage, fragment", [
    (lambda run: (run / "manifest.json").write_text("[1, 2]"), "must be a JSON object"),
    (lambda run: (run / "manifest.json").write_text("{broken"), "unreadable manifest"),
    (lambda run: (run / "tasks" / "pope_mini_adversarial" / "rows.parquet").write_bytes(
        (run / "tasks" / "pope_mini_adversarial" / "rows.parquet").read_bytes()[:100]), "not a readable Parquet file"),
    (lambda run: pd.read_parquet(run / "tasks" / "pope_mini_adversarial" / "rows.parquet").drop(columns=["label"]).to_parquet(
        run / "tasks" / "pope_mini_adversarial" / "rows.parquet"), "lack column 'label'"),
])
def test_rescore_of_a_damaged_run_is_one_line(finished_run, capsys, damage, fragment):
    damage(finished_run)
    code, _, err = run_cli(["rescore", str(finished_run)], capsys)
    assert_one_line_error(code, err, fragment)


def test_rescore_rewrites_a_broken_metrics_file(finished_run, capsys):
    good = json.loads((finished_run / "metrics.json").read_text())
    (finished_run / "metrics.json").write_text("{not json")
    code, _, err = run_cli(["rescore", str(finished_run)], capsys)
    assert code == 0, err
    assert json.loads((finished_run / "metrics.json").read_text())["tasks"] == good["tasks"]


# -- the leaderboard -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("damage", [
    lambda run: (run / "metrics.json").write_text("{broken"),
    lambda run: (run / "metrics.json").write_text("[]"),
    lambda run: (run / "metrics.json").write_text(json.dumps({"tasks": {"x": {"primary": "f1", "metrics": {"f1": {"value": "high"}}}}})),
    lambda run: (run / "manifest.json").write_text("{broken"),
])
def test_a_broken_neighbour_is_named_and_skipped(finished_run, capsys, damage):
    damage(finished_run)
    code, _, err = run_cli(["run", *FAKE, *POPE, "--output", "out", "--run-name", "next", "--no-progress"], capsys)
    assert code == 0, err
    assert "skipped run out/ok" in err and "Traceback" not in err
    board = (finished_run.parent / "leaderboard.md").read_text()
    assert "| next |" in board and "| ok |" not in board
    code, out, err = run_cli(["leaderboard", "--results", "out", "--out", "board.md"], capsys)
    assert code == 0 and "skipped run" in err


def test_leaderboard_of_a_missing_results_folder_keeps_the_old_board(sandbox, capsys):
    (sandbox / "board.md").write_text("old board\n")
    code, _, err = run_cli(["leaderboard", "--results", "nothing-here", "--out", "board.md"], capsys)
    assert_one_line_error(code, err, "nothing-here", "results folder not found")
    assert (sandbox / "board.md").read_text() == "old board\n"
