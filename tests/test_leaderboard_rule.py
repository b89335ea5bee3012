"""Where the leaderboard goes: a run refreshes the board inside the results folder it writes into, so the README's
main command leaves the repository's tracked leaderboard.md untouched; that one is regenerated on purpose."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from bench.config import RunConfig

from conftest import REPO, run_cli

README = (REPO / "README.md").read_text(encoding="utf-8")


def readme_main_command() -> list[str]:
    """The first `bench run` line of the README's "Set up and run" block, as arguments."""
    block = README.split("## Set up and run", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    line = next(line for line in block.splitlines() if line.startswith("bench run"))
    return shlex.split(line)[1:]


def test_the_default_board_is_inside_the_output_folder():
    config = RunConfig(model="tiny-llava", tasks=["pope_mini"])
    assert config.leaderboard_path == Path("results") / "leaderboard.md"
    assert config.output in config.leaderboard_path.parents
    other = RunConfig(model="tiny-llava", tasks=["pope_mini"], output=Path("/somewhere/out"))
    assert other.leaderboard_path == Path("/somewhere/out/leaderboard.md")
    chosen = RunConfig(model="tiny-llava", tasks=["pope_mini"], leaderboard=Path("board.md"))
    assert chosen.leaderboard_path == Path("board.md")


def test_the_readme_main_command_leaves_the_repository_board_untouched(tmp_path, monkeypatch, capsys):
    args = readme_main_command()
    assert args == ["run", "--model", "tiny-llava", "--tasks", "pope_mini"]
    repo_board = (REPO / "leaderboard.md").read_bytes()
    # a fresh clone's working folder, default --output; the extra flags only make it quick (they choose no path)
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(args + ["--limit", "6", "--set", "max_new_tokens=2", "--no-progress"], capsys)
    assert code == 0, err
    assert (REPO / "leaderboard.md").read_bytes() == repo_board
    assert not (tmp_path / "leaderboard.md").exists()
    board = (tmp_path / "results" / "leaderboard.md").read_text()
    assert "tiny-llava__pope_mini" in board and "pope_mini · F1 (generate), mean over 3 tasks" in board
    assert f"leaderboard: {Path('results') / 'leaderboard.md'}" in out


def test_the_repository_board_is_regenerated_by_the_documented_command(tmp_path, monkeypatch, capsys):
    documented = "bench leaderboard --results results --out leaderboard.md"
    assert documented in README
    assert re.search(r"`bench run` refreshes the board of the results folder it writes into", README)
    monkeypatch.chdir(tmp_path)
    assert run_cli(["run", "--model", "fake-harness", "--tasks", "pope_mini_random", "--run-name", "r",
                    "--no-progress"], capsys)[0] == 0
    code, out, err = run_cli(shlex.split(documented)[1:], capsys)
    assert code == 0, err
    assert "| r |" in (tmp_path / "leaderboard.md").read_text()
    (tmp_path / "results" / "leaderboard.md").unlink()
    code, out, err = run_cli(["leaderboard"], capsys)          # without --out: inside --results
    assert code == 0, err
    assert "| r |" in (tmp_path / "results" / "leaderboard.md").read_text()
