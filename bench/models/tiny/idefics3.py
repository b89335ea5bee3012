"""Tiny Idefics3 mirroring ``HuggingFaceM4/Idefics3-8B-Llama3``.

Kept as in the real checkpoint: ``Idefics3ForConditionalGeneration``; SigLIP-style vision tower (gelu_pytorch_tanh,
LayerNorm 1e-6, no CLS), pixel-shuffle connector with ``scale_factor`` 2 then a linear projection; Llama-3 text model
(GQA 4:1, rope_theta 5e5, untied); Idefics3ImageProcessor: resize to ``longest_edge`` = 4 x the vision size (LANCZOS),
image splitting into vision-size tiles plus a global view, pad, rescale, mean/std 0.5; the prompt expansion
``<fake_token_around_image><row_r_col_c><image>*n ... <fake_token_around_image><global-img><image>*n
<fake_token_around_image>`` with ``image_seq_len`` = (size/patch)^2 / scale^2; Llama-3 byte-level tokenizer (adds
``<|begin_of_text|>``, pad ``<|reserved_special_token_0|>``) with the three Idefics3 tokens appended after the Llama-3
special block (``<row_r_col_c>`` / ``<global-img>`` stay plain text: the real vocabulary is 128256 + these
three tokens); chat format
``<|begin_of_text|>User:<image>{text}<end_of_utterance>\\nAssistant:``.

==============================  =============================  =====================================
what                            real                           tiny
==============================  =============================  =====================================
vision image / patch            364 / 14                       56 / 14
image_seq_len (per tile)        169                            4
size.longest_edge / tile size   1456 / 364                     224 / 56
vision hidden / layers / heads  1152 / 27 / 16                 32 / 2 / 2
vision intermediate             4304                           64
text hidden / layers            4096 / 32                      64 / 2
heads / kv heads                32 / 8                         4 / 1
text intermediate               14336                          128
vocab (tokenizer / config)      128259 / 128259                ~1.9k / padded to 64
==============================  =============================  =====================================
A 640x480 photo becomes 224x168: 4x3 tiles + the global view = 13 x 4 = 52 ``<image>`` tokens.

Note: the chat template starts with ``<|begin_of_text|>`` *and* the Llama-3 tokenizer prepends it again, so a
templated prompt tokenised with default settings starts with two BOS tokens (as with the real checkpoint).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field

from . import _common
from .tokenizer import gpt2_tokenizer, llama3_tokenizer, vocab_size_for

MIRRORS = "HuggingFaceM4/Idefics3-8B-Llama3"

IDEFICS3_TEMPLATE_BOS = "<|begin_of_text|>"


def chat_template(prefix: str) -> str:
    """The Idefics3 / SmolVLM format: ``{prefix}User:<image>{text}<end_of_utterance>\\nAssistant:``."""
    return (
        prefix
        + "{% for message in messages %}"
        "{{ message['role'] | capitalize }}"
        "{% if message['content'] is string %}{{ ': ' + message['content'] }}{% else %}"
        "{% if message['content'][0]['type'] == 'image' %}{{ ':' }}{% else %}{{ ': ' }}{% endif %}"
        "{% for item in message['content'] %}"
        "{% if item['type'] == 'text' %}{{ item['text'] }}"
        "{% elif item['type'] == 'image' %}{{ '<image>' }}{% endif %}"
        "{% endfor %}{% endif %}"
        "<end_of_utterance>\n"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
    )


@dataclass(frozen=True)
class Spec:
    family: str
    mirrors: str
    image: int
    patch: int
    scale_factor: int
    v_hidden: int = 32
    v_inter: int = 64
    v_layers: int = 2
    v_heads: int = 2
    t_hidden: int = 64
    t_inter: int = 128
    t_layers: int = 2
    t_heads: int = 4
    t_kv: int = 1
    rope_theta: float = 500000.0
    max_positions: int = 8192
    tokenizer: str = "llama3"  # or "smollm2"
    template_prefix: str = IDEFICS3_TEMPLATE_BOS
    extras: dict = field(default_factory=dict)


SPECS = {
    "tiny": Spec(family="idefics3", mirrors=MIRRORS, image=56, patch=14, scale_factor=2),
}

ROW_COL_TOKENS = [f"<row_{r}_col_{c}>" for r in range(1, 7) for c in range(1, 7)]


def _tokenizer(spec: Spec):
    if spec.tokenizer == "llama3":
        tok = llama3_tokenizer(
            ["<fake_token_around_image>", "<image>", "<end_of_utterance>"],
            pad_token="<|reserved_special_token_0|>",
        )
        generation = dict(
            bos=tok.convert_tokens_to_ids("<|begin_of_text|>"),
            eos=[tok.convert_tokens_to_ids("<|end_of_text|>"), tok.convert_tokens_to_ids("<end_of_utterance>")],
            pad=tok.pad_token_id,
        )
        return tok, generation
    if spec.tokenizer == "smollm2":
        head = [
            "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<repo_name>", "<reponame>", "<file_sep>", "<filename>",
            "<gh_stars>", "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>",
            "<jupyter_text>", "<jupyter_code>", "<jupyter_output>", "<jupyter_script>", "<empty_output>",
        ]
        extra = [("<global-img>", True), *((t, True) for t in ROW_COL_TOKENS),
                 ("<fake_token_around_image>", True), ("<image>", True), ("<end_of_utterance>", True)]
        tok = gpt2_tokenizer(
            head, extra,
            bos_token="<|im_start|>", eos_token="<end_of_utterance>", pad_token="<|im_end|>",
            unk_token="<|endoftext|>", model_max_length=8192, clean_up_tokenization_spaces=False,
        )
        generation = dict(
            bos=tok.convert_tokens_to_ids("<|im_start|>"),
            eos=[tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<end_of_utterance>")],
            pad=tok.pad_token_id,
        )
        return tok, generation
    raise ValueError(spec.tokenizer)


def build_processor(spec: Spec):
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    tok, generation = _tokenizer(spec)
    image_processor = Idefics3ImageProcessorPil(
        do_convert_rgb=True,
        do_resize=True,
        size={"longest_edge": 4 * spec.image},
        resample=1,  # PIL LANCZOS, as the real ones
        do_image_splitting=True,
        max_image_size={"longest_edge": spec.image},
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
        do_pad=True,
    )
    image_seq_len = (spec.image // spec.patch) ** 2 // spec.scale_factor**2
    processor = Idefics3Processor(
        image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len,
        chat_template=chat_template(spec.template_prefix),
    )
    return processor, generation, image_seq_len


def build_spec(dest: pathlib.Path, spec: Spec, *, seed: int, preset: str) -> None:
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration

    processor, gen, image_seq_len = build_processor(spec)
    tok = processor.tokenizer
    assert (spec.image // spec.patch) % spec.scale_factor == 0
    vocab = vocab_size_for(tok)
    text = dict(
        model_type="llama", vocab_size=vocab, hidden_size=spec.t_hidden, intermediate_size=spec.t_inter,
        num_hidden_layers=spec.t_layers, num_attention_heads=spec.t_heads, num_key_value_heads=spec.t_kv,
        hidden_act="silu", max_position_embeddings=spec.max_positions, rms_norm_eps=1e-5,
        rope_theta=spec.rope_theta, bos_token_id=gen["bos"], eos_token_id=gen["eos"][0],
        pad_token_id=gen["pad"], tie_word_embeddings=False,
    )
    vision = dict(
        hidden_size=spec.v_hidden, intermediate_size=spec.v_inter, num_hidden_layers=spec.v_layers,
        num_attention_heads=spec.v_heads, num_channels=3, image_size=spec.image, patch_size=spec.patch,
        hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    )
    config = Idefics3Config(
        text_config=text, vision_config=vision, scale_factor=spec.scale_factor,
        image_token_id=tok.convert_tokens_to_ids("<image>"), tie_word_embeddings=False, pad_token_id=gen["pad"],
        use_cache=True,
    )
    _common.set_float32(config)
    model = _common.instantiate(Idefics3ForConditionalGeneration, config, seed)
    _common.save(
        dest, model, processor, family=spec.family, preset=preset, seed=seed, mirrors=spec.mirrors,
        generation=dict(bos_token_id=gen["bos"], eos_token_id=gen["eos"], pad_token_id=gen["pad"]),
        notes={"image_seq_len_per_tile": image_seq_len},
    )


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "tiny") -> None:
    _common.check_preset(preset, tuple(SPECS))
    build_spec(dest, SPECS[preset], seed=seed, preset=preset)
