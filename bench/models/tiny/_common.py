"""Shared plumbing for the tiny-model builders: seeding, saving, the ``bench_tiny.json`` stamp."""

from __future__ import annotations

import json
import pathlib
from typing import Any

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def rescale_normalize(mean: list[float] = CLIP_MEAN, std: list[float] = CLIP_STD) -> dict[str, Any]:
    """The image-processor settings every family shares: RGB, rescale by 1/255, normalise by mean/std."""
    return {"do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": list(mean),
            "image_std": list(std), "do_convert_rgb": True}


def check_preset(preset: str, allowed: tuple[str, ...] = ("tiny",)) -> None:
    if preset not in allowed:
        raise ValueError(f"unknown preset {preset!r}; this family has: {', '.join(allowed)}")


def instantiate(model_cls, config, seed: int):
    """Build ``model_cls(config)`` in float32 with a fixed torch seed, leaving the caller's RNG state untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    model = model.to(torch.float32).eval()
    return model


def set_float32(config) -> None:
    """Record float32 as the checkpoint dtype on the config and its sub-configs."""
    import torch

    for cfg in [config, *(getattr(config, name, None) for name in getattr(config, "sub_configs", {}) or {})]:
        if cfg is not None:
            cfg.dtype = torch.float32


def param_count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def save(
    dest: pathlib.Path,
    model,
    processor,
    *,
    family: str,
    preset: str,
    seed: int,
    mirrors: str,
    generation: dict[str, Any] | None = None,
    notes: dict[str, Any] | None = None,
) -> None:
    """Write model + processor + generation config + ``bench_tiny.json`` into ``dest`` (created if missing)."""
    dest = pathlib.Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if generation is not None:
        from transformers import GenerationConfig

        model.generation_config = GenerationConfig(**generation)
    model.save_pretrained(dest)
    processor.save_pretrained(dest)
    stamp = {
        "family": family,
        "preset": preset,
        "seed": seed,
        "mirrors": mirrors,
        "parameters": param_count(model),
        "random_weights": True,
    }
    if notes:
        stamp["notes"] = notes
    (dest / "bench_tiny.json").write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
