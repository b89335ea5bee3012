"""Shared fixtures: a private copy of the mini dataset and spec files pointing at it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench.resources import assets_dir

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture
def mini_copy(tmp_path) -> Path:
    """A writable copy of the bundled mini dataset (images + annotations)."""
    root = tmp_path / "mini"
    shutil.copytree(assets_dir() / "mini_coco", root)
    return root


def pope_spec(folder: Path, root: Path, name: str = "my_pope", **params) -> Path:
    """Write a POPE spec over a COCO-format folder; returns its path."""
    values = {"negatives": "adversarial", "min_objects": 1, "num_images": None, "answer_mode": "score", **params}
    lines = [f"task: {name}", "type: pope", "dataset:", "  source: coco", f"  root: {root}",
             "  annotations: instances.json", "  images: images", "params:"]
    lines += [f"  {k}: {'null' if v is None else v}" for k, v in values.items()]
    path = folder / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    from bench.cli import main

    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err
