"""Tiny Qwen2-VL mirroring ``Qwen/Qwen2-VL-2B-Instruct``.

Kept as in the real checkpoint: ``Qwen2VLForConditionalGeneration``; native-resolution ViT with 2-D rotary,
patch 14, temporal patch 2, spatial merge 2 (PatchMerger MLP), quick_gelu; Qwen2 text model with multimodal rotary
("mrope" with 3 sections t/h/w in the real 2:3:3 ratio), rope_theta 1e6, GQA, tied embeddings (2B); the
Qwen2VLImageProcessor (smart resize to multiples of 28, bicubic, CLIP mean/std, min/max pixels); the special tokens
<|endoftext|> <|im_start|> <|im_end|> ... <|vision_start|> <|vision_end|> <|vision_pad|> <|image_pad|> <|video_pad|>
appended after the BPE vocabulary in the real order; the ChatML template with the default system prompt.

==============================  =========================  =============================
what                            real                       tiny
==============================  =========================  =============================
max_pixels / min_pixels         12845056 / 3136            28224 (36 merged tokens) / 3136
vision embed / depth / heads    1280 / 32 / 16             32 / 2 / 2
text hidden / layers            1536 / 28                  64 / 2
heads / kv heads / head_dim     12 / 2 / 128               4 / 2 / 16
mrope_section                   [16, 24, 24]               [2, 3, 3]
text intermediate               8960                       128
vocab (tokenizer / config)      151657 / 151936            ~1.9k / padded to 64
==============================  =========================  =============================
A 640x480 photo is resized to 168x140 px (10x12 patches): a 5x6 grid of merged tokens (30 image tokens) with the tiny settings.
"""

from __future__ import annotations

import pathlib

from . import _common
from .tokenizer import qwen2_tokenizer, vocab_size_for

MIRRORS = "Qwen/Qwen2-VL-2B-Instruct"

QWEN2_SPECIAL = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Same output as the real ChatML template, default system prompt included:
# "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
# "<|vision_start|><|image_pad|><|vision_end|>{text}<|im_end|>\n<|im_start|>assistant\n"
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'image' or 'image' in item or 'image_url' in item %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' or 'video' in item %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in item %}{{ item['text'] }}"
    "{% endif %}"
    "{% endfor %}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

MIN_PIXELS = 56 * 56  # as the real one
MAX_PIXELS = 28 * 28 * 36  # real: 28 * 28 * 16384


def build_parts(special: list[str]):
    """(tokenizer, image processor) shared by Qwen2-VL and Qwen2.5-VL.

    The processor object itself cannot be instantiated without torchvision in transformers 5 (its video processor is
    mandatory and torchvision-only), so the folder is written part by part in the real repos' layout:
    ``preprocessor_config.json`` (image processor, ``processor_class``), tokenizer files, chat template. The video
    processor is derived from ``preprocessor_config.json`` on load, as for the real checkpoints.
    """
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = qwen2_tokenizer(special, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = CHAT_TEMPLATE
    image_processor = Qwen2VLImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS},
        resample=3,
        **_common.rescale_normalize(),
        patch_size=14,
        temporal_patch_size=2,
        merge_size=2,
    )
    return tok, image_processor


class _Parts:
    """Duck-typed stand-in for a processor in ``_common.save``: writes the parts in the real (legacy) layout."""

    def __init__(self, tok, image_processor, processor_class: str):
        self.tokenizer, self.image_processor, self.processor_class = tok, image_processor, processor_class

    def save_pretrained(self, dest) -> None:
        import json
        import pathlib

        dest = pathlib.Path(dest)
        self.image_processor.save_pretrained(dest)
        cfg_path = dest / "preprocessor_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        cfg["processor_class"] = self.processor_class
        cfg["min_pixels"] = MIN_PIXELS
        cfg["max_pixels"] = MAX_PIXELS
        cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        self.tokenizer.save_pretrained(dest)
        tok_cfg_path = dest / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_path.read_text(encoding="utf-8"))
        tok_cfg["processor_class"] = self.processor_class
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def token_ids(tok) -> dict[str, int]:
    ids = {name: tok.convert_tokens_to_ids(t) for name, t in (
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    )}
    return ids


_PRESETS = {"tiny": dict(v_embed=32, v_depth=2, v_heads=2, t_hidden=64, t_inter=128, t_layers=2, t_heads=4, t_kv=2,
                         mrope=[2, 3, 3])}


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(_PRESETS))
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    p = _PRESETS[preset]
    tok, image_processor = build_parts(QWEN2_SPECIAL)
    processor = _Parts(tok, image_processor, "Qwen2VLProcessor")
    bos = tok.convert_tokens_to_ids("<|endoftext|>")
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    assert sum(p["mrope"]) * 2 == p["t_hidden"] // p["t_heads"]
    config = Qwen2VLConfig(
        text_config=dict(
            vocab_size=vocab_size_for(tok), hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
            num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], num_key_value_heads=p["t_kv"],
            hidden_act="silu", max_position_embeddings=32768, rms_norm_eps=1e-6, use_sliding_window=False,
            sliding_window=32768, max_window_layers=p["t_layers"], attention_dropout=0.0,
            rope_scaling={"type": "mrope", "mrope_section": p["mrope"]}, rope_theta=1_000_000.0,
            bos_token_id=bos, eos_token_id=eos, tie_word_embeddings=True,
        ),
        vision_config=dict(
            depth=p["v_depth"], embed_dim=p["v_embed"], hidden_size=p["t_hidden"], hidden_act="quick_gelu",
            mlp_ratio=4, num_heads=p["v_heads"], in_channels=3, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2,
        ),
        tie_word_embeddings=True,
        **token_ids(tok),
    )
    _common.set_float32(config)
    model = _common.instantiate(Qwen2VLForConditionalGeneration, config, seed)
    _common.save(
        dest, model, processor, family="qwen2_vl", preset=preset, seed=seed, mirrors=MIRRORS,
        generation=dict(bos_token_id=bos, eos_token_id=[eos, bos], pad_token_id=bos),
    )
