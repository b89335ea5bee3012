"""The projector W of the grounded model: OWL-ViT tokens (width of the OWL vision tower) -> the MLLM's
image-feature space (width of its language model). Saved as ``projector.safetensors`` plus
``projector.json`` (kind, dimensions, and what it was trained between), which the ``grounded``
adapter loads.

Kinds (method.md section 1):
  deeper_mlp  Linear(d_in, h), ReLU, Linear(h, h), ReLU, Linear(h, h), ReLU, Linear(h, d_out); h = 8192
              in the reference ("deeper MLP")
  llava_mlp   Linear(d_in, d_out), GELU, Linear(d_out, d_out): LLaVA's own projector shape (the cheap
              alternative)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

KINDS = ("deeper_mlp", "llava_mlp")
WEIGHTS = "projector.safetensors"
CONFIG = "projector.json"


@dataclass
class ProjectorConfig:
    kind: str
    in_dim: int
    out_dim: int
    hidden_dim: int = 8192
    trained: dict[str, Any] = field(default_factory=dict)   # owl, mllm, data, steps, held-out figures

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ConfigError(f"projector kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def build(config: ProjectorConfig):
    import torch.nn as nn

    if config.kind == "llava_mlp":
        return nn.Sequential(nn.Linear(config.in_dim, config.out_dim), nn.GELU(), nn.Linear(config.out_dim, config.out_dim))
    h = config.hidden_dim
    return nn.Sequential(nn.Linear(config.in_dim, h), nn.ReLU(), nn.Linear(h, h), nn.ReLU(),
                         nn.Linear(h, h), nn.ReLU(), nn.Linear(h, config.out_dim))


def save(folder: Path, module, config: ProjectorConfig) -> None:
    from safetensors.torch import save_file

    from ..io import atomic_write_json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{WEIGHTS}.tmp"
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(tmp))
    tmp.replace(folder / WEIGHTS)
    atomic_write_json(folder / CONFIG, asdict(config))


def load(folder: Path, device: str = "cpu"):
    """(module, config) from a projector folder, with clear errors for a missing or inconsistent one."""
    from safetensors.torch import load_file

    folder = Path(folder).expanduser()
    if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
        raise ConfigError(f"projector folder {folder} needs {CONFIG} and {WEIGHTS} (made by `bench train-projector`)")
    try:
        config = ProjectorConfig(**json.loads((folder / CONFIG).read_text()))
    except (TypeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{folder / CONFIG}: not a projector config: {exc}") from None
    module = build(config)
    state = load_file(str(folder / WEIGHTS))
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{folder / WEIGHTS}: weights do not fit the {config.kind} in {CONFIG}: "
                          f"{str(exc).splitlines()[0]}") from None
    return module.to(device).eval(), config
