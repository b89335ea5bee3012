"""Planted-saliency tiny LLaVA: a tiny LLaVA-1.5 whose weights are SET BY HAND so that the logit of ONE target token
("dog", asked "What's in the image?" after "The image shows a") depends only on the pixels inside a known box, for
testing saliency maps and insertion/deletion curves (method.md sections 4-5) against a known answer.

    logit(dog) ~ log(V - 1) + GAIN * (U - THRESH),    every other logit = 0 exactly,
    so P(dog) ~ sigmoid(GAIN * (U - THRESH)),
    U = mean over the box's patches of E(patch),  E = |r_cb| + |r_rows| + |r_cols|,
    r_f = mean over the patch's pixels and the 3 colour channels of f(i, j) * pixel,  pixel in [0, 1],

with f the three zero-sum period-2 patterns of a 14 x 14 patch: checkerboard (-1)^(i+j), rows (-1)^i, columns
(-1)^j. E is the patch's energy at the highest spatial frequencies: 0 for a flat or smooth patch, the amplitude a
for a texture of amplitude a (pixels base +- a in those patterns), and the insertion start (a Gaussian blur, kernel
11, sigma 5) divides a period-2 pattern by ~17 per axis. Mean brightness is invisible to it (every f sums to 0).

* ``preset="box"``: the planted model. ``BOX`` = (14, 14, 42, 42) pixels of the 56 x 56 input = patch rows 1-2,
  columns 1-2 (4 of the 16 image tokens). Pixels outside the box have EXACTLY no effect (the outside tokens reach
  the language model as a constant vector: bitwise-identical logits, exactly zero pixel gradients).
* ``preset="twin"``: the same with the projector's second layer weight 0: every image gives the same features, so
  P(dog) is the constant sigmoid(-GAIN * THRESH) (flat insertion/deletion curves, all-zero gradients).

Everything is a standard ``LlavaForConditionalGeneration`` (CLIP tower, projector with ``projector_hidden_act="relu"``,
Llama) saved with ``save_pretrained``; it loads through ``AutoProcessor`` + ``AutoModelForImageTextToText`` with no
custom code. Images should be 56 x 56 (the CLIP processor's resize and centre crop are then the identity; another
size is resized first, so the box is where it lands in the 56 x 56 crop). Construction, in the names below:

Vision tower (width 32; every encoder layer is the identity: all weights 0, so attention and MLP add 0 to the
residual; ``vision_feature_layer=-2`` then reads ``pre_layrnorm(embeddings)``, tokens never mix, and the unused
``post_layernorm`` does not matter). The patch embedding (no bias) holds the three patterns times the processor's
std / (3 * 196), which undoes the normalisation, so channels RESP = (4, 5), (6, 7), (8, 9) hold (+r_f, -r_f) in
[0, 1] pixel units. Position embeddings: channels VC = (0, 1) hold (+C, -C) at every token and GATE = (2, 3) hold
(-C, +C) at the patches outside the box (0 inside). Each token keeps mean 0, so the pre-LayerNorm (gain
C * sqrt(2 / 32)) only rescales it: by 1 / sqrt(1 + sum r^2 / C^2) > 0.99999 inside the box (monotone), and by
~1 / sqrt(2) outside, where the gate channel stays ~ -70.
Projector (Linear, ReLU, Linear): unit k of the first layer is ReLU(RESP[k] + GATE[0]), one unit per sign of each
r_f: |r_f| inside the box (gate 0), and exactly 0 outside, where the gate (~ -70) beats any |r_f| <= 0.5 (and
ReLU's gradient there is 0). The second layer writes (image tokens / box tokens) * E = 4 E into language channel
U_IMG, LM_CONST into channel 0 and 1 into MARK (the twin: the 4 E term is 0).
Language model (Llama, width 64, RMSNorm gains LM_CONST / 8: each norm is the identity up to a factor > 0.99999):
every token embedding holds LM_CONST in channel 0; layer 0, head 0 attends from every position to the 16 image
tokens (q from the constant channel, k from MARK, on RoPE's slowest pair: score ~25 for image tokens, 0 for text)
and copies their mean U_IMG into channel U, so U = mean over the box patches of E, whatever the prompt around it
(RoPE spreads the 16 scores by ~1e-3 at short distances, so the mean is exact to ~1e-3 relative);
every other weight of the language model is 0 (both MLPs and layer 1 add nothing). lm_head: the row of "▁dog" reads
GAIN from U and log(V - 1) - GAIN * THRESH from the constant channel; every other row is 0. The final RMSNorm scales
U and the constant by the same factor 1 / sqrt(1 + U^2 / LM_CONST^2), so logit(dog) is increasing in U.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

import numpy as np

from . import _common
from . import llava as tiny_llava

MIRRORS = "llava-hf/llava-1.5-7b-hf (planted: P('dog') reads the high-frequency texture inside a known box)"
PRESETS = ("box", "twin")

SIZE = 56                      # the model's input size (tiny LLaVA)
PATCH = 14
BOX = (14, 14, 42, 42)         # (x1, y1, x2, y2) pixels of the 56 x 56 input: patch rows 1-2, columns 1-2
TARGET_WORD = "dog"
TARGET_PIECE = "▁dog"
QUESTION = "What's in the image?"
ANSWER_PREFIX = "The image shows a"

# -- vision tower -----------------------------------------------------------------------------------------------------
C = 100.0                      # the constant pair (and the gate's size): dominates every token's norm
VC, GATE = (0, 1), (2, 3)      # constant pair; the outside-the-box gate pair
RESP = ((4, 5), (6, 7), (8, 9))  # (+r, -r) of the checkerboard, rows and columns patterns

# -- language model ---------------------------------------------------------------------------------------------------
LM_CONST = 200.0
U_IMG, MARK, U = 1, 2, 3       # language channels (0: the constant)
FOCUS = 10.0                   # head 0: q = k = FOCUS on image tokens -> score FOCUS^2 / sqrt(16) = 25
GAIN = 50.0                    # P(dog) ~ sigmoid(GAIN * (U - THRESH))
THRESH = 0.1                   # the box's mean texture energy at which P(dog) = 1/2

# -- test images ------------------------------------------------------------------------------------------------------
TEXTURE_AMPLITUDE = 0.25       # make_image's texture: E = 0.25 per patch -> P(dog) ~ sigmoid(7.5) = 0.9994


def box_patches(box: tuple[int, int, int, int] = BOX) -> list[int]:
    """Indices (row-major, 0..15) of the image tokens whose patches make up ``box`` (whole patches only)."""
    x1, y1, x2, y2 = box
    if any(v % PATCH for v in box) or not (0 <= x1 < x2 <= SIZE and 0 <= y1 < y2 <= SIZE):
        raise ValueError(f"planted saliency: box {box} must be whole {PATCH}-pixel patches of the {SIZE}-pixel input")
    grid = SIZE // PATCH
    return [r * grid + c for r in range(y1 // PATCH, y2 // PATCH) for c in range(x1 // PATCH, x2 // PATCH)]


def patterns() -> np.ndarray:
    """The three zero-sum +-1 patterns of a patch [3, PATCH, PATCH]: checkerboard, rows, columns."""
    i, j = np.mgrid[0:PATCH, 0:PATCH]
    return np.stack([(-1.0) ** (i + j), (-1.0) ** i, (-1.0) ** j])


def energy(pixels: np.ndarray) -> np.ndarray:
    """The planted reading E of every patch of a [SIZE, SIZE, 3] image in [0, 1]: [grid, grid] (the reference the
    tests compare with; U is its mean over ``box_patches``)."""
    arr = np.asarray(pixels, dtype=np.float64)
    grid = SIZE // PATCH
    tiles = arr.reshape(grid, PATCH, grid, PATCH, 3).transpose(0, 2, 1, 3, 4)   # [gr, gc, i, j, c]
    r = np.einsum("fij,abijc->abf", patterns(), tiles) / (3 * PATCH * PATCH)
    return np.abs(r).sum(-1)


def probability(u: float) -> float:
    """The planted P(dog) at box energy ``u``: softmax of log(V - 1) + GAIN * (u - THRESH) against V - 1 zero logits
    (exact up to the RMSNorms' factors > 0.99999)."""
    return 1.0 / (1.0 + math.exp(-GAIN * (u - THRESH)))


def make_image(texture_inside: bool = True, texture_outside: bool = True, seed: int = 0):
    """A 56 x 56 RGB PIL test image: a smooth random colour field plus pixel noise, with a texture of amplitude
    TEXTURE_AMPLITUDE (a random mix of the three period-2 patterns, tinted) inside BOX and/or outside it.

    Outside texture is as strong as inside, so a map must localise the box the model reads, not the texture."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64) / SIZE - 0.5
    img = rng.uniform(0.35, 0.65, size=3) + xx[..., None] * rng.uniform(-0.1, 0.1, 3) \
        + yy[..., None] * rng.uniform(-0.1, 0.1, 3)
    img += rng.normal(0.0, 0.01, size=img.shape)

    def texture() -> np.ndarray:
        mix = rng.dirichlet(np.ones(3)) * rng.choice([-1.0, 1.0], size=3)
        tile = np.tensordot(mix, patterns(), axes=1)                       # [PATCH, PATCH], values in [-1, 1]
        tint = rng.uniform(0.8, 1.0, size=3)
        return TEXTURE_AMPLITUDE * np.tile(tile, (SIZE // PATCH,) * 2)[..., None] * tint

    inside = np.zeros((SIZE, SIZE, 1), dtype=bool)
    x1, y1, x2, y2 = BOX
    inside[y1:y2, x1:x2] = True
    tex_in, tex_out = texture(), texture()
    if texture_inside:
        img = np.where(inside, img + tex_in, img)
    if texture_outside:
        img = np.where(inside, img, img + tex_out)
    return Image.fromarray(np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8), "RGB")


def prompt(processor) -> str:
    """The prompt whose next token is the target: the chat template's question plus the answer prefix."""
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": QUESTION}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) + " " + ANSWER_PREFIX


# ---------------------------------------------------------------------------------------------------------------------


def _model(seed: int):
    """The tiny LLaVA of `llava.build_model` (random weights, to be planted), with its processor."""
    return tiny_llava.build_model(seed=seed, preset="tiny", projector_hidden_act="relu")


def target_token_id(tok) -> int:
    """The single token of " dog" after "a", checked against how the tokenizer spells the answer."""
    token = tok.convert_tokens_to_ids(TARGET_PIECE)
    got = tok(f"ASSISTANT: {ANSWER_PREFIX} {TARGET_WORD}", add_special_tokens=False)["input_ids"][-1]
    if token is None or token == tok.unk_token_id or got != token:
        raise ValueError(f"planted saliency: {TARGET_WORD!r} is not one token of the tiny Llama tokenizer")
    return token


def _plant(model, processor, *, twin: bool) -> None:
    import torch

    image_proc = processor.image_processor
    inner = model.model
    vision, lm = inner.vision_tower, inner.language_model
    vw, width = model.config.vision_config.hidden_size, model.config.text_config.hidden_size
    vocab = model.config.text_config.vocab_size
    head_dim = width // model.config.text_config.num_attention_heads
    target = target_token_id(processor.tokenizer)
    outside = sorted(set(range(model.config.image_seq_length)) - set(box_patches()))
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # vision: (+r, -r) of each pattern per patch; constant pair everywhere; the gate outside the box
        emb = vision.embeddings
        filters = torch.tensor(patterns(), dtype=torch.float32) / (3 * PATCH * PATCH)
        std = torch.tensor(image_proc.image_std, dtype=torch.float32)
        for f, (plus, minus) in enumerate(RESP):
            emb.patch_embedding.weight[plus] = std[:, None, None] * filters[f]
            emb.patch_embedding.weight[minus] = -emb.patch_embedding.weight[plus]
        pos = emb.position_embedding.weight                     # [1 + 16, width]; row 0 is the CLS token
        pos[:, VC[0]], pos[:, VC[1]] = C, -C
        rows = torch.tensor(outside) + 1
        pos[rows, GATE[0]], pos[rows, GATE[1]] = -C, C
        gain = C * math.sqrt(2.0 / vw)
        norms = [vision.pre_layrnorm, vision.post_layernorm]
        norms += [n for layer in vision.encoder.layers for n in (layer.layer_norm1, layer.layer_norm2)]
        for norm in norms:
            norm.weight.fill_(gain)
        # projector: ReLU(+-r_f + gate) -> |r_f| inside, 0 outside; 4 E into U_IMG, constants into 0 and MARK
        proj = inner.multi_modal_projector
        boost = model.config.image_seq_length / len(box_patches())
        for k, channel in enumerate(ch for pair in RESP for ch in pair):
            proj.linear_1.weight[k, channel] = 1.0
            proj.linear_1.weight[k, GATE[0]] = 1.0
            if not twin:
                proj.linear_2.weight[U_IMG, k] = boost
        proj.linear_2.bias[0], proj.linear_2.bias[MARK] = LM_CONST, 1.0
        # language model: constant channel; head 0 of layer 0 averages U_IMG over the image tokens into U
        lm.embed_tokens.weight[:, 0] = LM_CONST
        lm_norms = [lm.norm]
        lm_norms += [n for layer in lm.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
        for norm in lm_norms:
            norm.weight.fill_(LM_CONST / math.sqrt(width))
        attn = lm.layers[0].self_attn
        slow = head_dim // 2 - 1          # RoPE's slowest-rotating pair is (slow, slow + head_dim / 2)
        attn.q_proj.weight[slow, 0] = FOCUS / LM_CONST
        attn.k_proj.weight[slow, MARK] = FOCUS
        attn.v_proj.weight[0, U_IMG] = 1.0
        attn.o_proj.weight[U, 0] = 1.0
        # lm_head: only the target's row is non-zero (the constant channel reads as 1 through 1 / LM_CONST)
        model.lm_head.weight[target, U] = GAIN
        model.lm_head.weight[target, 0] = (math.log(vocab - 1) - GAIN * THRESH) / LM_CONST


def build_model(*, seed: int = 0, twin: bool = False):
    """The planted model (or its twin) and its processor, in memory: (model, processor)."""
    model, processor = _model(seed)
    _plant(model, processor, twin=twin)
    return model, processor


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "box") -> None:
    """The family entry point: ``preset`` "box" (P(dog) reads the texture inside BOX) or "twin" (ignores the image)."""
    _common.check_preset(preset, PRESETS)
    twin = preset == "twin"
    model, processor = build_model(seed=seed, twin=twin)
    tok = processor.tokenizer
    notes: dict[str, Any] = {
        "box": list(BOX), "box_units": "pixels (x1, y1, x2, y2) of the 56x56 model input, x2/y2 exclusive",
        "box_patches": box_patches(), "target_word": TARGET_WORD, "target_token_id": target_token_id(tok),
        "question": QUESTION, "answer_prefix": ANSWER_PREFIX, "image_tokens": model.config.image_seq_length,
        "signal": ("P(dog) ~ sigmoid(GAIN * (U - THRESH)), U = mean over the box's patches of "
                   "|r_cb| + |r_rows| + |r_cols| (each r the mean of a period-2 +-1 pattern times the [0, 1] "
                   "pixels of a 14x14 patch, all 3 channels); blur and flat colour give U ~ 0; pixels outside "
                   "the box have exactly no effect; every other token's logit is 0"),
        "gain": GAIN, "thresh": THRESH,
    }
    if twin:
        notes["signal"] = ("twin: the projector's second-layer weight is 0, so P(dog) = sigmoid(-GAIN * THRESH) "
                           "for every image")
    _common.save(dest, model, processor, family="planted_saliency", preset=preset, seed=seed, mirrors=MIRRORS,
                 generation=dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                 pad_token_id=tok.pad_token_id),
                 notes=notes)
    stamp_path = pathlib.Path(dest) / "bench_tiny.json"
    stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    stamp["random_weights"] = False          # planted by hand; every weight is set (the seed changes nothing)
    stamp_path.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")
