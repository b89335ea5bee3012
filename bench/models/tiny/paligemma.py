"""Tiny PaliGemma mirroring ``google/paligemma-3b-mix-224``.

Kept as in the real checkpoint: ``PaliGemmaForConditionalGeneration``; SigLIP vision tower without pooling head
(``vision_use_head=False``), linear projector, Gemma text model (MQA: 1 kv head, gelu_pytorch_tanh, RMSNorm 1e-6,
tied embeddings, embeddings scaled by sqrt(hidden)), prefix-LM attention over image + prompt; SiglipImageProcessor
(square resize, bicubic, rescale, mean/std 0.5) with ``image_seq_length``; Gemma SentencePiece-style tokenizer
(<pad>=0, <eos>=1, <bos>=2, <unk>=3, no dummy prefix, byte fallback), the 1024 ``<locXXXX>`` and 128 ``<segXXX>``
tokens then ``<image>`` after the base vocabulary; the PaliGemmaProcessor prompt layout
``<image>*n <bos>{prompt}\\n``. The real repo ships no chat template, so none is written: use raw prompts such as
``"answer en Is there a dog in the image?"``.

==============================  =========================  ====================================
what                            real                       tiny
==============================  =========================  ====================================
image size / patch              224 / 14                   56 / 14
image tokens                    256                        16
vision hidden / layers / heads  1152 / 27 / 16             32 / 2 / 2
vision intermediate             4304                       64
projection_dim / text hidden    2048 / 2048                64 / 64
text layers / heads / kv        18 / 8 / 1                 2 / 4 / 1
head_dim / intermediate         256 / 16384                16 / 128
vocab (tokenizer / config)      257153 / 257216            ~3.1k / padded to 64
==============================  =========================  ====================================
"""

from __future__ import annotations

import pathlib

from . import _common
from .tokenizer import gemma_tokenizer, vocab_size_for

MIRRORS = "google/paligemma-3b-mix-224"

LOC_SEG_TOKENS = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)]

_PRESETS = {"tiny": dict(image=56, v_hidden=32, v_inter=64, v_layers=2, v_heads=2, t_hidden=64, t_inter=128,
                         t_layers=2, t_heads=4, t_kv=1)}


def build_processor(image: int):
    from transformers import PaliGemmaProcessor
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    tok = gemma_tokenizer(extra_tokens=LOC_SEG_TOKENS, extra_special=["<image>"])
    image_seq_length = (image // 14) ** 2
    image_processor = SiglipImageProcessorPil(
        do_resize=True,
        size={"height": image, "width": image},
        resample=3,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    image_processor.image_seq_length = image_seq_length
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tok)
    return processor, image_seq_length


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(_PRESETS))
    from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

    p = _PRESETS[preset]
    processor, image_tokens = build_processor(p["image"])
    tok = processor.tokenizer
    vocab = vocab_size_for(tok)
    ids = dict(bos_token_id=tok.convert_tokens_to_ids("<bos>"), eos_token_id=tok.convert_tokens_to_ids("<eos>"),
               pad_token_id=tok.convert_tokens_to_ids("<pad>"))
    text = dict(
        model_type="gemma", vocab_size=vocab, hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
        num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], num_key_value_heads=p["t_kv"],
        head_dim=p["t_hidden"] // p["t_heads"], hidden_activation="gelu_pytorch_tanh", max_position_embeddings=8192,
        rms_norm_eps=1e-6, rope_theta=10000.0, num_image_tokens=image_tokens, tie_word_embeddings=True, **ids,
    )
    vision = dict(
        model_type="siglip_vision_model", hidden_size=p["v_hidden"], intermediate_size=p["v_inter"],
        num_hidden_layers=p["v_layers"], num_attention_heads=p["v_heads"], image_size=p["image"], patch_size=14,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6, vision_use_head=False, num_image_tokens=image_tokens,
    )
    config = PaliGemmaConfig(
        vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
        vocab_size=vocab, projection_dim=p["t_hidden"], hidden_size=p["t_hidden"], tie_word_embeddings=True, **ids,
    )
    _common.set_float32(config)
    model = _common.instantiate(PaliGemmaForConditionalGeneration, config, seed)
    _common.save(
        dest, model, processor, family="paligemma", preset=preset, seed=seed, mirrors=MIRRORS,
        generation=dict(**ids),
        notes={"image_tokens": image_tokens, "chat_template": None},
    )
