"""``grounded``: the grounded MLLM (an MLLM and OWL-ViT reading one vision embedding, joined by a
trained projector W; see `_grounded_engine.py` and method.md section 1).

``--model grounded --model-args mllm=llava-hf/llava-1.5-7b-hf,owl=google/owlvit-base-patch32,projector=<folder>``
(the projector folder is made by ``bench train-projector``); the ``hf`` arguments (dtype, ...) apply.
``tiny-grounded`` builds a tiny LLaVA, a tiny OWL-ViT with the same token count and an untrained
(seeded) projector, offline, for tests and the demo.

Besides ``generate`` and ``score`` it answers detection requests from the same embedding, and gives
the embedding to analyses that differentiate or perturb it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import MODELS
from .base import ModelAdapter, ModelFactory, ModelSpec
from ..validation import param
from .hf import ARGS, HFArgs, check_args, folder_identity, hub_identity

@dataclass
class GroundedArgs(HFArgs):
    mllm: str | None = param(None, nonempty=True)        # the LLaVA-style MLLM (hub id or folder)
    owl: str | None = param(None, nonempty=True)         # the OWL-ViT detector (hub id or folder)
    projector: str | None = param(None, nonempty=True)   # the folder made by `bench train-projector`


def source_identity(source: str) -> dict[str, Any]:
    path = Path(source).expanduser()
    if path.is_dir():
        return folder_identity(path)
    if path.is_absolute() or source.startswith("."):
        raise ConfigError(f"--model-args: folder not found: {path}")
    return hub_identity(source, None)


def projector_identity(folder: str) -> dict[str, Any]:
    from .projector import CONFIG, WEIGHTS

    path = Path(folder).expanduser()
    if not (path / CONFIG).exists() or not (path / WEIGHTS).exists():
        raise ConfigError(f"--model-args: projector folder {path} needs {CONFIG} and {WEIGHTS} (made by `bench train-projector`)")
    digest = hashlib.sha256((path / CONFIG).read_bytes() + (path / WEIGHTS).read_bytes())
    return {"path": str(path.resolve()), "sha256": digest.hexdigest()}


class GroundedFactory(ModelFactory):
    """grounded MLLM: --model-args mllm=<LLaVA-style model>,owl=<OWL-ViT>,projector=<folder from bench train-projector>"""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.args = check_args(spec, self.Args)
        self.parts: dict[str, str] | None = None

    Args: type = GroundedArgs

    def prepare(self) -> None:
        missing = [k for k in ("mllm", "owl", "projector") if not self.spec.args.get(k)]
        if missing:
            raise ConfigError(f"--model grounded needs --model-args {missing[0]}=... (mllm=<hub id or folder>, "
                              "owl=<OWL-ViT hub id or folder>, projector=<folder from bench train-projector>)")
        self.parts = {k: self.spec.args[k] for k in ("mllm", "owl", "projector")}

    def identity(self) -> dict[str, Any]:
        if self.parts is None:
            self.prepare()
        return {"kind": "grounded", "mllm": source_identity(self.parts["mllm"]), "owl": source_identity(self.parts["owl"]),
                "projector": projector_identity(self.parts["projector"])}

    def worker_devices_allowed(self) -> bool:
        return self.spec.args.get("device_map") != "auto"

    def capabilities(self) -> set[str]:
        return {"generate", "score", "detect", "explain:black", "explain:white", "explain:ga", "embedding"}

    def load(self, device: str, batch_size: int) -> ModelAdapter:
        if self.parts is None:
            self.prepare()
        from ._grounded_engine import GroundedAdapter

        args = {k: v for k, v in self.spec.args.items() if k in ARGS}
        return GroundedAdapter(self.parts["mllm"], self.parts["owl"], self.parts["projector"], args,
                               device=device, batch_size=batch_size, identity=self.identity())


def build_tiny_projector(folder: Path, in_dim: int, out_dim: int, seed: int) -> Path:
    """An untrained, seeded LLaVA-style projector (written once)."""
    if (folder / "projector.json").exists():
        return folder
    import torch

    from .projector import ProjectorConfig, build, save

    config = ProjectorConfig("llava_mlp", in_dim, out_dim, trained={"note": "untrained: random weights, seed %d" % seed})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build(config)
    save(folder, module, config)
    return folder


class TinyGroundedFactory(GroundedFactory):
    """tiny grounded MLLM, built offline: tiny LLaVA + tiny OWL-ViT (16 image tokens each) + an untrained projector"""

    from .tiny_adapter import TinyArgs as Args

    def prepare(self) -> None:
        import json

        from .tiny_adapter import build_cached, cache_dir_of

        cache = cache_dir_of(self.args)
        seed = self.args.seed
        mllm = build_cached("llava", "tiny", seed, cache)
        owl = build_cached("owlvit", "tiny", seed, cache)
        width = json.loads((owl / "config.json").read_text())["vision_config"]["hidden_size"]
        text = json.loads((mllm / "config.json").read_text())["text_config"]["hidden_size"]
        projector = build_tiny_projector(cache / f"projector-{mllm.name}-{owl.name}", width, text, seed)
        self.parts = {"mllm": str(mllm), "owl": str(owl), "projector": str(projector)}


MODELS.register("grounded", GroundedFactory)
MODELS.register("tiny-grounded", TinyGroundedFactory)
