"""Tiny LLaVA-NeXT mirroring ``llava-hf/llava-v1.6-mistral-7b-hf``.

Kept as in the real checkpoint: ``LlavaNextForConditionalGeneration``; CLIP vision tower (quick_gelu),
``vision_feature_layer=-2``, select strategy "default", 2-layer GELU projector, learned ``image_newline``;
"anyres" tiling with ``image_grid_pinpoints`` (the real list, scaled by the same factor as the base image);
LlavaNextImageProcessor flags (shortest-edge resize, centre crop of the base view, pad, bicubic, CLIP mean/std);
Mistral text model (GQA 4:1, rope_theta 1e6, no sliding window, untied); Llama-2/Mistral SentencePiece-style
tokenizer with ``<image>`` then ``<pad>`` after the base vocabulary; chat format ``[INST] <image>\\n{text} [/INST]``.

==============================  ======================================  ====================================
what                            real                                    tiny
==============================  ======================================  ====================================
base image / crop / patch       336 / 336 / 14                          56 / 56 / 14
image_grid_pinpoints            [[336,672],[672,336],[672,672],         [[56,112],[112,56],[112,112],
                                 [1008,336],[336,1008]]                   [168,56],[56,168]]
tokens per tile                 576                                     16
vision width / layers / heads   1024 / 24 / 16                          32 / 2 / 2
text hidden / layers            4096 / 32                               64 / 2
heads / kv heads / head_dim     32 / 8 / 128                            4 / 1 / 16
text intermediate               14336                                   128
vocab (tokenizer / config)      32002 / 32064                           ~1.9k / padded to 64
==============================  ======================================  ====================================
"""

from __future__ import annotations

import pathlib

from . import _common
from .tokenizer import llama2_tokenizer, vocab_size_for

MIRRORS = "llava-hf/llava-v1.6-mistral-7b-hf"
REAL_BASE = 336
REAL_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]

# Output format of the real template: "[INST] <image>\n{text} [/INST]" (images first, then the text).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>\n' + (message['content'] if message['content'] is string else message['content'][0]['text'])"
    " + '\n<</SYS>>\n\n' }}"
    "{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] if item['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] if item['type'] == 'text' %}{{ item['text'] }}{% endfor %}"
    "{% endif %}"
    "{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% if message['content'] is string %}{{ ' ' + message['content'] + '</s>' }}{% else %}"
    "{% for item in message['content'] if item['type'] == 'text' %}"
    "{% generation %}{{ ' ' + item['text'] + '</s>' }}{% endgeneration %}{% endfor %}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
)

_PRESETS = {"tiny": dict(image=56, v_hidden=32, v_inter=64, v_layers=2, v_heads=2, t_hidden=64, t_inter=128,
                         t_layers=2, t_heads=4, t_kv=1)}


def build_processor(image: int):
    from transformers import LlavaNextProcessor
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

    scale = image / REAL_BASE
    pinpoints = [[round(h * scale), round(w * scale)] for h, w in REAL_PINPOINTS]
    tok = llama2_tokenizer(["<image>"], pad_token="<pad>", model_max_length=32768)
    image_processor = LlavaNextImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": image},
        image_grid_pinpoints=pinpoints,
        resample=3,
        do_center_crop=True,
        crop_size={"height": image, "width": image},
        **_common.rescale_normalize(),
        do_pad=True,
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=CHAT_TEMPLATE,
    )
    return processor, pinpoints


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(_PRESETS))
    from transformers import CLIPVisionConfig, LlavaNextConfig, LlavaNextForConditionalGeneration, MistralConfig

    p = _PRESETS[preset]
    processor, pinpoints = build_processor(p["image"])
    tok = processor.tokenizer
    vocab = vocab_size_for(tok)
    vision = CLIPVisionConfig(
        hidden_size=p["v_hidden"], intermediate_size=p["v_inter"], num_hidden_layers=p["v_layers"],
        num_attention_heads=p["v_heads"], image_size=p["image"], patch_size=14, projection_dim=p["v_hidden"],
        hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    text = MistralConfig(
        vocab_size=vocab, hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
        num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], num_key_value_heads=p["t_kv"],
        head_dim=p["t_hidden"] // p["t_heads"], hidden_act="silu", max_position_embeddings=32768,
        rms_norm_eps=1e-5, rope_theta=1_000_000.0, sliding_window=None,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
        image_grid_pinpoints=pinpoints, image_seq_length=(p["image"] // 14) ** 2, projector_hidden_act="gelu",
        vision_feature_select_strategy="default", vision_feature_layer=-2, multimodal_projector_bias=True,
        tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
    )
    _common.set_float32(config)
    model = _common.instantiate(LlavaNextForConditionalGeneration, config, seed)
    _common.save(
        dest, model, processor, family="llava_next", preset=preset, seed=seed, mirrors=MIRRORS,
        generation=dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
    )
