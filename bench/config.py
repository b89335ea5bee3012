"""The run configuration: one object built by the CLI and passed down whole."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .models.base import ModelSpec


@dataclass
class RunConfig:
    model: str
    tasks: list[str]
    model_args: dict[str, str] = field(default_factory=dict)
    devices: str = "cpu"
    batch_size: int = 8
    limit: int | None = None
    run_name: str | None = None
    output: Path = Path("results")
    data_root: Path | None = None
    max_errors: int = 0
    seed: int = 0
    dry_run: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)   # task params set on the command line
    chunk_images: int = 8
    leaderboard: Path | None = None                           # None: <output>/leaderboard.md
    write_leaderboard: bool = True
    progress: bool = True
    bootstrap_resamples: int = 1000
    retry_errors: bool = False                                # recompute the samples that became error rows
    threads: int | None = None                                # torch threads per CPU worker (None: cores / workers)
    launcher: str = "local"                                   # where workers run: local (this machine) or ray
    ray_address: str | None = None                            # --launcher ray: auto or HOST:PORT (None: a local instance)

    def __post_init__(self):
        self.output = Path(self.output).expanduser()
        if self.leaderboard is not None:
            self.leaderboard = Path(self.leaderboard).expanduser()
        if self.data_root is not None:
            self.data_root = Path(self.data_root).expanduser()
        for name in ("batch_size", "chunk_images", "bootstrap_resamples"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"--threads must be at least 1, got {self.threads}")
        if self.seed < 0:
            raise ConfigError(f"--seed must be 0 or more, got {self.seed}")
        if self.max_errors < 0:
            raise ConfigError(f"--max-errors must be 0 or more, got {self.max_errors}")
        if not self.tasks:
            raise ConfigError("--tasks: no task given")
        if self.launcher not in ("local", "ray"):
            raise ConfigError(f"--launcher: use local or ray, got {self.launcher!r}")
        if self.ray_address is not None:
            if self.launcher != "ray":
                raise ConfigError("--ray-address is for --launcher ray")
            from .runner.launchers import check_ray_address

            self.ray_address = check_ray_address(self.ray_address)

    @property
    def model_spec(self) -> ModelSpec:
        return parse_model(self.model, self.model_args)

    @property
    def leaderboard_path(self) -> Path:
        """The board a run refreshes: ``--leaderboard``, else the one inside the results folder it summarises (so a
        run never rewrites the repository's tracked leaderboard.md; that one is regenerated on purpose with
        ``bench leaderboard --results results --out leaderboard.md``)."""
        return self.leaderboard if self.leaderboard is not None else self.output / "leaderboard.md"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}


def parse_model(model: str, args: dict[str, str]) -> ModelSpec:
    """``tiny-llava`` -> adapter tiny-llava; ``hf:org/name`` -> adapter hf, target org/name."""
    from .registry import MODELS

    if model in MODELS:
        return ModelSpec(model, None, dict(args))
    prefix, sep, target = model.partition(":")
    if sep and prefix in MODELS:
        return ModelSpec(prefix, target, dict(args))
    raise ConfigError(MODELS.unknown_message(model if not sep else prefix) +
                      " (use hf:<hub id or folder> for any transformers model)")


def parse_key_values(text: str | None, option: str) -> dict[str, str]:
    """``a=1,b=x`` -> {"a": "1", "b": "x"}."""
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option}: expected key=value pairs separated by commas, got {part!r}")
        out[key.strip()] = value.strip()
    return out
