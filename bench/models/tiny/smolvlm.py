"""Tiny SmolVLM mirroring ``HuggingFaceTB/SmolVLM-256M-Instruct``.

SmolVLM-256M-Instruct is published as an Idefics3 architecture (``Idefics3ForConditionalGeneration`` /
``Idefics3Processor`` / ``Idefics3ImageProcessor``), and that is what is built here. (transformers also has a
separate ``smolvlm`` model type, used by SmolVLM2; its processor needs the ``num2words`` package and a
torchvision-only video processor, so it cannot be loaded in a torchvision-free environment.)

Kept as in the real checkpoint: SigLIP-style vision tower with patch 16, pixel-shuffle connector with
``scale_factor`` 4; Llama text model in the SmolLM2 shape (GQA 3:1, rope_theta 1e5, untied); Idefics3 image
processor with splitting (``longest_edge`` = 4 x tile size, LANCZOS, mean/std 0.5); SmolLM2 GPT-2-style byte-level
tokenizer with its 17 special tokens at ids 0..16, ``<global-img>``, ``<row_r_col_c>`` (36),
``<fake_token_around_image>``, ``<image>``, ``<end_of_utterance>`` as added tokens; bos ``<|im_start|>``, eos
``<end_of_utterance>``, pad ``<|im_end|>``; chat format ``<|im_start|>User:<image>{text}<end_of_utterance>\\nAssistant:``.

==============================  =============================  =====================================
what                            real                           tiny
==============================  =============================  =====================================
vision image / patch            512 / 16                       128 / 16
image_seq_len (per tile)        64                             4
size.longest_edge / tile size   2048 / 512                     512 / 128
vision hidden / layers / heads  768 / 12 / 12                  32 / 2 / 2
vision intermediate             3072                           64
text hidden / layers            576 / 30                       48 / 2
heads / kv heads                9 / 3                          3 / 1
text intermediate               1536                           128
vocab (tokenizer / config)      49280 / 49280                  ~1.9k / padded to 64
==============================  =============================  =====================================
A 640x480 photo becomes 512x384: 4x3 tiles + the global view = 13 x 4 = 52 ``<image>`` tokens.
"""

from __future__ import annotations

import pathlib

from . import _common
from .idefics3 import Spec, build_spec

MIRRORS = "HuggingFaceTB/SmolVLM-256M-Instruct"

SPECS = {
    "tiny": Spec(
        family="smolvlm", mirrors=MIRRORS, image=128, patch=16, scale_factor=4,
        t_hidden=48, t_inter=128, t_layers=2, t_heads=3, t_kv=1, rope_theta=100000.0, max_positions=8192,
        tokenizer="smollm2", template_prefix="<|im_start|>",
    ),
}


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(SPECS))
    build_spec(dest, SPECS[preset], seed=seed, preset=preset)
