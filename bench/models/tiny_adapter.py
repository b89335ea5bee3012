"""``tiny-*``: tiny random-weight models built offline from configs, for tests and the offline demo.

Each is built once (seeded, deterministic) into a cache folder with ``save_pretrained`` and then
loaded through the SAME code path as any ``hf:`` model. The folder name carries a hash of the
builder's source, so a changed builder never reuses a stale model. ``--model-args cache_dir=...``
moves the cache (default ``~/.cache/bench/tiny``); all ``hf`` arguments apply as well.
Their outputs are random: they prove the pipeline, never a model's quality.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry import MODELS
from .base import ModelAdapter, ModelFactory, ModelSpec
from ..errors import ConfigError
from ..validation import param
from .hf import ARGS, HFArgs, check_args, folder_identity

# registered name -> (family, preset, the real model it mirrors)
TINY_MODELS = {
    "tiny-llava": ("llava", "tiny", "llava-hf/llava-1.5-7b-hf"),
    "tiny-llava-next": ("llava_next", "tiny", "llava-hf/llava-v1.6-mistral-7b-hf"),
    "tiny-qwen2-vl": ("qwen2_vl", "tiny", "Qwen/Qwen2-VL-2B-Instruct"),
    "tiny-qwen2.5-vl": ("qwen2_5_vl", "tiny", "Qwen/Qwen2.5-VL-3B-Instruct"),
    "tiny-idefics3": ("idefics3", "tiny", "HuggingFaceM4/Idefics3-8B-Llama3"),
    "tiny-smolvlm": ("smolvlm", "tiny", "HuggingFaceTB/SmolVLM-256M-Instruct"),
    "tiny-paligemma": ("paligemma", "tiny", "google/paligemma-3b-mix-224"),
    "bench-llava-100m": ("llava", "bench", "llava-hf/llava-1.5-7b-hf (576 image tokens, ~100M-parameter language model)"),
}
@dataclass
class TinyArgs(HFArgs):
    cache_dir: str | None = param(None, nonempty=True)   # where tiny models are built (default ~/.cache/bench/tiny)
    seed: int = param(0, min=0)                          # the seed of the random weights


def cache_dir_of(args: TinyArgs) -> Path:
    folder = Path(args.cache_dir).expanduser() if args.cache_dir else default_cache_dir()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"--model-args: cache_dir {folder} is a file, not a folder")
    return folder


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "bench" / "tiny"


def builder_hash(family: str) -> str:
    """Hash of the builder sources (family module, tokenizer, shared helpers)."""
    folder = Path(__file__).parent / "tiny"
    digest = hashlib.sha256()
    names = {f"{family}.py", "tokenizer.py", "_common.py"}
    if family.startswith("planted_"):        # planted models start from the tiny LLaVA and OWL-ViT builders
        names |= {"llava.py", "owlvit.py", "planted_images.py"}
    for name in sorted(names):
        path = folder / name
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:10]


def build_cached(family: str, preset: str, seed: int, cache_dir: Path) -> Path:
    """Build the model into ``cache_dir`` once; concurrent builders race safely (atomic rename)."""
    target = cache_dir / f"{family}-{preset}-seed{seed}-{builder_hash(family)}"
    if (target / "bench_tiny.json").exists():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=cache_dir))
    try:
        from transformers.utils import logging as hf_logging

        from .tiny import build

        hf_logging.disable_progress_bar()
        build(family, staging, seed=seed, preset=preset)
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first
            if not (target / "bench_tiny.json").exists():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return target


class TinyFactory(ModelFactory):
    @classmethod
    def summary(cls, name: str) -> str:
        return f"random weights, built offline; mirrors {TINY_MODELS[name][2]}"

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        args = check_args(spec, TinyArgs)
        self.family, self.preset, self.mirrors = TINY_MODELS[spec.adapter]
        self.seed = args.seed
        self.cache_dir = cache_dir_of(args)
        self.folder: Path | None = None

    def prepare(self) -> None:
        self.folder = build_cached(self.family, self.preset, self.seed, self.cache_dir)

    def identity(self) -> dict[str, Any]:
        info: dict[str, Any] = {"kind": "tiny", "family": self.family, "preset": self.preset, "seed": self.seed,
                                "mirrors": self.mirrors, "builder": builder_hash(self.family)}
        if self.folder is not None:
            info["sha256"] = folder_identity(self.folder)["sha256"]
        return info

    def capabilities(self) -> set[str]:
        return {"generate", "score", "explain:black"} | ({"explain:white"} if self.family == "llava" else set())

    def load(self, device: str, batch_size: int) -> ModelAdapter:
        if self.folder is None:
            self.prepare()
        hf_args = {k: v for k, v in self.spec.args.items() if k in ARGS}
        from ._hf_engine import HFAdapter

        return HFAdapter(str(self.folder), hf_args, device=device, batch_size=batch_size, identity=self.identity())


for _name in TINY_MODELS:
    MODELS.register(_name, TinyFactory)
