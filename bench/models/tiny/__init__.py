"""Offline builders of tiny random-weight models that mirror real multi-modal architectures.

Each family module exposes ``build(dest, *, seed=0, preset="tiny")`` and writes a complete ``save_pretrained`` folder
(model, processor/tokenizer, generation config, ``bench_tiny.json``) that loads through the ordinary
``AutoProcessor.from_pretrained(dest, backend="pil")`` + ``AutoModelForImageTextToText.from_pretrained(dest)``
(``OwlViTForObjectDetection`` for the detector). Nothing is downloaded.

This module stays light: torch / transformers are imported only when a builder runs.
"""

from __future__ import annotations

import importlib
import os

FAMILIES: dict[str, str] = {
    "llava": "bench.models.tiny.llava:build",
    "llava_next": "bench.models.tiny.llava_next:build",
    "qwen2_vl": "bench.models.tiny.qwen2_vl:build",
    "qwen2_5_vl": "bench.models.tiny.qwen2_5_vl:build",
    "idefics3": "bench.models.tiny.idefics3:build",
    "smolvlm": "bench.models.tiny.smolvlm:build",
    "paligemma": "bench.models.tiny.paligemma:build",
    "owlvit": "bench.models.tiny.owlvit:build",
    "planted_bias": "bench.models.tiny.planted_bias:build",
    "planted_saliency": "bench.models.tiny.planted_saliency:build",
}

# The real checkpoint each family mirrors (also written into each folder's bench_tiny.json).
MIRRORS: dict[str, str] = {
    "llava": "llava-hf/llava-1.5-7b-hf",
    "llava_next": "llava-hf/llava-v1.6-mistral-7b-hf",
    "qwen2_vl": "Qwen/Qwen2-VL-2B-Instruct",
    "qwen2_5_vl": "Qwen/Qwen2.5-VL-3B-Instruct",
    "idefics3": "HuggingFaceM4/Idefics3-8B-Llama3",
    "smolvlm": "HuggingFaceTB/SmolVLM-256M-Instruct",
    "paligemma": "google/paligemma-3b-mix-224",
    "owlvit": "google/owlvit-base-patch32",
    "planted_bias": "google/owlvit-base-patch32 / llava-hf/llava-1.5-7b-hf (planted: both read mean(R) - mean(B))",
    "planted_saliency": "llava-hf/llava-1.5-7b-hf (planted: P('dog') reads the high-frequency texture inside a known box)",
}


def resolve(family: str):
    """The builder function of ``family`` (imported lazily)."""
    try:
        target = FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown tiny model family {family!r}; known: {', '.join(sorted(FAMILIES))}") from None
    module_name, _, func_name = target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def build(family: str, dest: str | os.PathLike, *, seed: int = 0, preset: str = "tiny") -> None:
    """Build the tiny ``family`` model into ``dest`` (see the family modules for what each mirrors)."""
    import pathlib

    resolve(family)(pathlib.Path(dest), seed=seed, preset=preset)
