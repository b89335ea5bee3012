"""``hf``: any transformers image-text-to-text model (AutoProcessor + AutoModelForImageTextToText).

``--model hf:<hub id or local folder>``; ``--model-args`` keys:
  dtype            float32 | bfloat16 | float16 | auto   (default: float32 on CPU, bfloat16 on CUDA)
  device_map       auto: one worker spanning every visible GPU (for a model too big for one)
  attn_implementation  sdpa | eager | flash_attention_2 | ...  (default: the library's choice)
  image_backend    pil | torchvision   (default pil; the two resize differently, so it is chosen
                   explicitly and recorded)
  revision         hub revision (branch, tag or commit)
  prefix_cache     auto | off   (auto: share one image's prompt prefix across its questions where
                   the architecture allows it)
  prefix_cache_size  images whose prefix cache is kept for later requests (default 8; 0: none)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

from ..errors import ConfigError
from ..validation import param, parse_dataclass
from ..registry import MODELS
from .base import ModelAdapter, ModelFactory, ModelSpec

@dataclass
class HFArgs:
    """``--model-args`` of the ``hf`` adapter (and of every adapter built on it)."""

    dtype: Literal["float32", "bfloat16", "float16", "auto"] | None = None   # None: float32 on CPU, bfloat16 on CUDA
    device_map: Literal["auto"] | None = None
    attn_implementation: str | None = param(None, nonempty=True)
    image_backend: Literal["pil", "torchvision"] = "pil"
    revision: str | None = param(None, nonempty=True)
    prefix_cache: Literal["auto", "off"] = "auto"
    prefix_cache_size: int = param(8, min=0)


ARGS = {f.name for f in fields(HFArgs)}


def check_args(spec: ModelSpec, cls: type = HFArgs) -> Any:
    """The typed, range-checked ``--model-args`` of ``spec`` (one-line errors naming the key)."""
    return parse_dataclass(cls, dict(spec.args), f"--model-args for {spec.display}", "", coerce=True, field_word="key")


def folder_identity(folder: Path) -> dict[str, Any]:
    """A load-free content identity of a local model folder: its config and its weight files' names and sizes."""
    digest = hashlib.sha256()
    for name in ("config.json", "generation_config.json", "model.safetensors.index.json"):
        path = folder / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    weights = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.suffix in (".safetensors", ".bin"))
    digest.update(json.dumps(weights).encode())
    return {"kind": "local", "path": str(folder.resolve()), "sha256": digest.hexdigest(), "weight_files": len(weights)}


def hub_identity(repo: str, revision: str | None) -> dict[str, Any]:
    """The commit of a hub model: the given revision, or the one in the local cache (offline)."""
    commit = None
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "config.json", revision=revision)
        if isinstance(cached, str):
            commit = Path(cached).parent.name
    except Exception:  # no cache or an old huggingface_hub: the revision alone identifies it
        commit = None
    return {"kind": "hub", "repo": repo, "revision": revision or "main", "commit": commit}


def config_model_type(source: str, revision: str | None = None) -> str | None:
    """``model_type`` from a model's config.json, read without loading it (a local folder or the hub cache)."""
    path = Path(source).expanduser() / "config.json"
    if not path.exists():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(source, "config.json", revision=revision)
            path = Path(cached) if isinstance(cached, str) else None
        except Exception:  # noqa: BLE001 - no cache, an odd repo id: unknown
            path = None
    if path is None:
        return None
    try:
        return json.loads(path.read_text()).get("model_type")
    except (OSError, ValueError):
        return None


class HFFactory(ModelFactory):
    """hf:<hub id or local folder>: any transformers image-text-to-text model (AutoProcessor + AutoModelForImageTextToText)"""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        if not spec.target:
            raise ConfigError("--model hf needs a target: hf:<hub id or local folder>, e.g. hf:llava-hf/llava-1.5-7b-hf")
        check_args(spec)

    @property
    def source(self) -> str:
        return self.spec.target

    def identity(self) -> dict[str, Any]:
        path = Path(self.source).expanduser()
        if path.is_dir():
            return folder_identity(path)
        if path.is_absolute() or self.source.startswith("."):
            raise ConfigError(f"--model: model folder not found: {path}")
        return hub_identity(self.source, self.spec.args.get("revision"))

    def worker_devices_allowed(self) -> bool:
        return self.spec.args.get("device_map") != "auto"

    def capabilities(self) -> set[str]:
        """Generate and score; saliency by perturbation for every family, and by gradients for LLaVA-1.5-style
        models. When the model's config cannot be read before loading (a hub model not cached yet), the gradient
        methods are allowed here and checked when the model loads."""
        model_type = config_model_type(self.source, self.spec.args.get("revision"))
        return {"generate", "score", "explain:black"} | ({"explain:white"} if model_type in (None, "llava") else set())

    def load(self, device: str, batch_size: int) -> ModelAdapter:
        from ._hf_engine import HFAdapter

        args = dict(self.spec.args)
        commit = getattr(self, "pinned", {}).get("commit")
        if commit and not Path(self.source).expanduser().is_dir():
            args["revision"] = commit      # a resume loads the commit the run first loaded
        return HFAdapter(self.source, args, device=device, batch_size=batch_size, identity=self.identity())


MODELS.register("hf", HFFactory)
