"""Tiny LLaVA-1.5 mirroring ``llava-hf/llava-1.5-7b-hf``.

Kept as in the real checkpoint: ``LlavaForConditionalGeneration``; CLIP vision tower (quick_gelu, pre-LN, CLS token),
``vision_feature_layer=-2``, ``vision_feature_select_strategy="default"`` (CLS dropped), 2-layer GELU projector with
bias, Llama text model (RMSNorm 1e-5, rope_theta 1e4, untied embeddings), ``<image>`` as the first added token right
after the base vocabulary, ``<pad>`` right after it, vocab_size padded to a multiple of 64, processor
``num_additional_image_tokens=1``, ``patch_size=14``; CLIPImageProcessor: shortest-edge resize (bicubic), centre crop,
rescale 1/255, CLIP mean/std, convert RGB; chat template format ``USER: <image>\\n{text} ASSISTANT:``.

==============================  =========================  ==================  ===================
what                            real                       tiny                bench
==============================  =========================  ==================  ===================
image size / crop / shortest    336                        56                  336
patch size                      14                         14                  14
image tokens                    576                        16                  576
vision width / layers / heads   1024 / 24 / 16             32 / 2 / 2          64 / 2 / 2
vision MLP / projection_dim     4096 / 768                 64 / 32             128 / 64
text hidden / layers / heads    4096 / 32 / 32             64 / 2 / 4          768 / 12 / 12
text intermediate               11008                      128                 2048
vocab (tokenizer / config)      32002 / 32064              ~1.9k / padded 64   32064 / 32064
max_position_embeddings         4096                       4096                4096
==============================  =========================  ==================  ===================

The bench preset keeps the real vocabulary size (so its output head, 768 x 32064 = 24.6M parameters, costs what a
LLaVA-1.5-shaped head costs) and its tokenizer has exactly that many tokens: the ~1.7k trained pieces are followed
by generated word-pair pieces (``tokenizer.word_pair_pieces``), then ``<image>`` and ``<pad>`` as the last two ids.
So every id the random weights emit decodes to a real string (with a smaller tokenizer, ids past it decoded to
nothing and every generated text was empty).
"""

from __future__ import annotations

import pathlib

from . import _common
from .tokenizer import llama2_tokenizer, vocab_size_for

MIRRORS = "llava-hf/llava-1.5-7b-hf"

# Same output format as the real chat_template.json: "USER: <image>\n{text} ASSISTANT:" (images first, then text).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for item in message['content'] if item['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] if item['type'] == 'text' %}"
    "{% if message['role'] == 'assistant' %}{% generation %}{{ item['text'] + ' ' }}{% endgeneration %}"
    "{% else %}{{ item['text'] + ' ' }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

_PRESETS = {
    "tiny": dict(
        image=56, v_hidden=32, v_inter=64, v_layers=2, v_heads=2, v_proj=32,
        t_hidden=64, t_inter=128, t_layers=2, t_heads=4, vocab=None,
    ),
    "bench": dict(
        image=336, v_hidden=64, v_inter=128, v_layers=2, v_heads=2, v_proj=64,
        t_hidden=768, t_inter=2048, t_layers=12, t_heads=12, vocab=32064,
    ),
}


def build_processor(image: int, vocab: int | None = None):
    """The processor; ``vocab``: the tokenizer's total size (None: the trained vocabulary only)."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    tok = llama2_tokenizer(["<image>"], pad_token="<pad>", size=vocab)
    image_processor = CLIPImageProcessorPil(
        do_resize=True,
        size={"shortest_edge": image},
        resample=3,  # PIL bicubic
        do_center_crop=True,
        crop_size={"height": image, "width": image},
        **_common.rescale_normalize(),
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tok,
        patch_size=14,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
        chat_template=CHAT_TEMPLATE,
    )


def build_model(*, seed: int = 0, preset: str = "tiny", projector_hidden_act: str = "gelu"):
    """The random-weight model and its processor, in memory: (model, processor). The planted models start from it
    (``projector_hidden_act``: "relu" for the planted-saliency model)."""
    _common.check_preset(preset, tuple(_PRESETS))
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    p = _PRESETS[preset]
    processor = build_processor(p["image"], p["vocab"])
    tok = processor.tokenizer
    vocab = p["vocab"] or vocab_size_for(tok)
    assert vocab >= len(tok) and (p["vocab"] is None or vocab == len(tok))
    image_tokens = (p["image"] // 14) ** 2

    vision = CLIPVisionConfig(
        hidden_size=p["v_hidden"], intermediate_size=p["v_inter"], num_hidden_layers=p["v_layers"],
        num_attention_heads=p["v_heads"], image_size=p["image"], patch_size=14, projection_dim=p["v_proj"],
        hidden_act="quick_gelu", layer_norm_eps=1e-5, num_channels=3,
    )
    text = LlamaConfig(
        vocab_size=vocab, hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
        num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], num_key_value_heads=p["t_heads"],
        hidden_act="silu", max_position_embeddings=4096, rms_norm_eps=1e-5, rope_theta=10000.0,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=False,
    )
    config = LlavaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tok.convert_tokens_to_ids("<image>"), image_seq_length=image_tokens,
        projector_hidden_act=projector_hidden_act, vision_feature_select_strategy="default", vision_feature_layer=-2,
        multimodal_projector_bias=True, tie_word_embeddings=False, pad_token_id=tok.pad_token_id,
    )
    _common.set_float32(config)
    return _common.instantiate(LlavaForConditionalGeneration, config, seed), processor


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    model, processor = build_model(seed=seed, preset=preset)
    tok = processor.tokenizer
    image_tokens = model.config.image_seq_length
    _common.save(
        dest, model, processor, family="llava", preset=preset, seed=seed, mirrors=MIRRORS,
        generation=dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
        notes={"image_tokens": image_tokens},
    )
