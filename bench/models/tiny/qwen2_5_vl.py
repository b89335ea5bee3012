"""Tiny Qwen2.5-VL mirroring ``Qwen/Qwen2.5-VL-3B-Instruct``.

Kept as in the real checkpoint: ``Qwen2_5_VLForConditionalGeneration``; ViT with RMSNorm + SwiGLU (silu) blocks,
*window attention* in all blocks except ``fullatt_block_indexes`` (the real ones are the last block of every group of
8; here the last of every group of 2), patch 14, temporal patch 2, spatial merge 2, ``tokens_per_second`` 2;
Qwen2 text model with mrope (sections in the real 2:3:3 ratio), rope_theta 1e6, GQA, tied embeddings (3B);
Qwen2VLImageProcessor (same constants as Qwen2-VL); the Qwen2.5 special tokens in the real order; the ChatML
template with the default system prompt (identical to Qwen2-VL's output).

==============================  =========================  =================================
what                            real                       tiny
==============================  =========================  =================================
max_pixels / min_pixels         12845056 / 3136            28224 (36 merged tokens) / 3136
vision hidden / depth / heads   1280 / 32 / 16             32 / 4 / 2
vision intermediate             3420                       64
fullatt_block_indexes           [7, 15, 23, 31]            [1, 3]
window_size (px)                112 (4x4 merged units)     56 (2x2 merged units)
out_hidden_size                 2048                       64 (= text hidden)
text hidden / layers            2048 / 36                  64 / 2
heads / kv heads / head_dim     16 / 2 / 128               4 / 2 / 16
mrope_section                   [16, 24, 24]               [2, 3, 3]
text intermediate               11008                      128
vocab (tokenizer / config)      151665 / 151936            ~1.9k / padded to 64
==============================  =========================  =================================
A 640x480 photo gives 30 image tokens (5x6 merged grid), as with the tiny Qwen2-VL.
"""

from __future__ import annotations

import pathlib

from . import _common
from .qwen2_vl import QWEN2_SPECIAL, _Parts, build_parts, token_ids
from .tokenizer import vocab_size_for

MIRRORS = "Qwen/Qwen2.5-VL-3B-Instruct"

# Qwen2.5 adds tool-call / FIM / repo tokens after the Qwen2-VL ones (ids 151657.. in the real vocabulary).
QWEN2_5_SPECIAL = QWEN2_SPECIAL + [
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
]

_PRESETS = {"tiny": dict(v_hidden=32, v_inter=64, v_depth=4, v_heads=2, fullatt=[1, 3], window=56,
                         t_hidden=64, t_inter=128, t_layers=2, t_heads=4, t_kv=2, mrope=[2, 3, 3])}


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(_PRESETS))
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    p = _PRESETS[preset]
    tok, image_processor = build_parts(QWEN2_5_SPECIAL)
    processor = _Parts(tok, image_processor, "Qwen2_5_VLProcessor")
    bos = tok.convert_tokens_to_ids("<|endoftext|>")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert sum(p["mrope"]) * 2 == p["t_hidden"] // p["t_heads"]
    config = Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=vocab_size_for(tok), hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
            num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], num_key_value_heads=p["t_kv"],
            hidden_act="silu", max_position_embeddings=128000, rms_norm_eps=1e-6, use_sliding_window=False,
            sliding_window=32768, max_window_layers=p["t_layers"], attention_dropout=0.0,
            rope_scaling={"type": "mrope", "mrope_section": p["mrope"]}, rope_theta=1_000_000.0,
            bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=p["v_depth"], hidden_size=p["v_hidden"], intermediate_size=p["v_inter"], num_heads=p["v_heads"],
            hidden_act="silu", in_channels=3, patch_size=14, spatial_merge_size=2, temporal_patch_size=2,
            tokens_per_second=2, window_size=p["window"], out_hidden_size=p["t_hidden"],
            fullatt_block_indexes=p["fullatt"],
        ),
        tie_word_embeddings=True,
        **token_ids(tok),
    )
    _common.set_float32(config)
    model = _common.instantiate(Qwen2_5_VLForConditionalGeneration, config, seed)
    _common.save(
        dest, model, processor, family="qwen2_5_vl", preset=preset, seed=seed, mirrors=MIRRORS,
        generation=dict(bos_token_id=bos, eos_token_id=[eos, bos], pad_token_id=bos),
    )
