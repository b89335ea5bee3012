"""Tiny OWL-ViT detector mirroring ``google/owlvit-base-patch32``.

Kept as in the real checkpoint: ``OwlViTForObjectDetection`` (CLIP-style text and vision towers, quick_gelu,
pre-LN, CLS token; class head and box head with the patch-grid position bias); OwlViTProcessor: image resized to a
square ``size`` x ``size`` (bicubic; the centre crop to the same size is a no-op), rescale, CLIP mean/std; CLIP BPE
tokenizer (lower-casing, ``</w>``), ``<|startoftext|>`` / ``<|endoftext|>`` as the two last ids (the text tower pools
at ``argmax(input_ids)``, i.e. at EOS), pad token ``"!"`` (id 0), queries padded to ``max_length`` 16 (= the text
tower's ``max_position_embeddings``).

==============================  =========================  ==================
what                            real                       tiny
==============================  =========================  ==================
image size / patch              768 / 32                   64 / 16
patch tokens (+ CLS)            576 (+1)                   16 (+1)
vision hidden / layers / heads  768 / 12 / 12              32 / 2 / 2
vision intermediate             3072                       64
text hidden / layers / heads    512 / 12 / 8               32 / 2 / 2
text intermediate               2048                       64
projection_dim                  512                        32
max_position_embeddings (text)  16                         16
vocab                           49408                      ~1.5k (exact)
==============================  =========================  ==================
"""

from __future__ import annotations

import pathlib

from . import _common
from .tokenizer import clip_tokenizer

MIRRORS = "google/owlvit-base-patch32"

_PRESETS = {"tiny": dict(image=64, patch=16, v_hidden=32, v_inter=64, v_layers=2, v_heads=2,
                         t_hidden=32, t_inter=64, t_layers=2, t_heads=2, proj=32),
            # the real model's shape (768 px, 576 patches, 12 layers), random weights: for speed benchmarks
            "bench": dict(image=768, patch=32, v_hidden=768, v_inter=3072, v_layers=12, v_heads=12,
                          t_hidden=512, t_inter=2048, t_layers=12, t_heads=8, proj=512)}


def build_processor(image: int):
    from transformers import OwlViTProcessor
    from transformers.models.owlvit.image_processing_pil_owlvit import OwlViTImageProcessorPil

    tok = clip_tokenizer(pad_token="!", model_max_length=16)
    image_processor = OwlViTImageProcessorPil(
        do_resize=True,
        size={"height": image, "width": image},
        resample=3,
        do_center_crop=True,
        crop_size={"height": image, "width": image},
        **_common.rescale_normalize(),
    )
    return OwlViTProcessor(image_processor=image_processor, tokenizer=tok)


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(_PRESETS))
    from transformers import OwlViTConfig, OwlViTForObjectDetection

    p = _PRESETS[preset]
    processor = build_processor(p["image"])
    tok = processor.tokenizer
    text = dict(
        vocab_size=len(tok), hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
        num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], max_position_embeddings=16,
        hidden_act="quick_gelu", layer_norm_eps=1e-5, pad_token_id=1,
        bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>"),
        eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
    )
    vision = dict(
        hidden_size=p["v_hidden"], intermediate_size=p["v_inter"], num_hidden_layers=p["v_layers"],
        num_attention_heads=p["v_heads"], image_size=p["image"], patch_size=p["patch"], num_channels=3,
        hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )
    config = OwlViTConfig(text_config=text, vision_config=vision, projection_dim=p["proj"],
                          logit_scale_init_value=2.6592, return_dict=True)
    _common.set_float32(config)
    model = _common.instantiate(OwlViTForObjectDetection, config, seed)
    _common.save(
        dest, model, processor, family="owlvit", preset=preset, seed=seed, mirrors=MIRRORS,
        notes={"patch_tokens": (p["image"] // p["patch"]) ** 2},
    )
