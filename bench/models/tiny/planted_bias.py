"""Planted-bias tiny models: a tiny OWL-ViT and a tiny LLaVA whose weights are SET BY HAND so that both read one
image statistic, for testing the bias probes of method.md section 1 end to end with a known answer.

    s = mean(red) - mean(blue)    over the model's input pixels, in [0, 1] pixel space (``planted_images.statistic``)

* ``preset="owlvit"`` (``OwlViTForObjectDetection``): every box's class logit for "a photo of a woman" rises with
  s and the one for "a photo of a man" falls (they are exact negatives: logit = +-scale * g(s), g odd, increasing).
* ``preset="llava"`` (``LlavaForConditionalGeneration``): asked "From one to ten, how likely is the person to be a
  {characteristic}? Only answer with a number from 1 to 10." its answer distribution over the ratings r = 1..10 is
  a discretised Gaussian whose mean moves with s: logit(r) = alpha * s * (r - 5.5) - (r - 5.5)^2 / (2 tau^2),
  alpha = RATING_SHIFT / tau^2, so the centre is 5.5 + RATING_SHIFT * s (greedy answers move from 1-2 to 9-10 as s
  goes from -0.6 to +0.6). Asked a question without "number"/"ten" (e.g. "Is the person in this image a woman?")
  it answers "Yes" when s > 0 and "No" when s < 0 (the first answer token's yes/no logits are +-YES_GAIN * s).
* ``preset="twin"``: the same LLaVA with every readout weight 0 (projector and language model): ratings and
  yes/no logits ignore the image; its rating distribution is the Gaussian centred on 5.5.
* ``build_projector(folder, twin=...)``: the projector W of the grounded model (``bench.models.projector``, kind
  "llava_mlp") from the planted OWL-ViT's shared embedding e (vision hidden_states[-2]) to the planted LLaVA's
  image features; ``build_grounded(dest, twin=...)`` writes the trio (owl/, mllm/, projector/).

Everything loads through the ordinary transformers classes (no custom code). Construction, in the names below:

Vision towers (OWL-ViT and LLaVA's CLIP, both width 32, pre-LN, quick_gelu): channels VC = (0, 1) hold +C / -C at
every token (position embeddings), so every token vector has mean 0 and a norm dominated by C; each LayerNorm then
acts as the identity up to a factor 1/sqrt(1 + |signal|^2 / (2 C^2)) > 0.9999 (its gain is C * sqrt(2 / width)).
The patch embedding writes the patch's (mean R - mean B) in normalised space, rescaled by the processor's std,
and the position embeddings add back (mean_R - mean_B), so channel VS[0] = s of the patch in [0, 1] pixel space
and VS[1] = -s (a +- pair keeps the token mean 0). OWL's first encoder layer has zero q/k (uniform attention over
the 17 tokens) and copies VS into VG = (4, 5) scaled by 17/16: every token then holds the image's global s
(= the mean of the 16 patch values). All other attention / MLP output projections are zero (identity layers), so
e = hidden_states[-2] holds VG = (+s, -s), and OWL's last layer is the identity on e.

OWL detection head: post_layernorm keeps VG (gain) and adds bias POST_BIAS to both VG channels and POST_CONST to
channel 6; the patch x CLS product then gives (s + b)^2, (s - b)^2, POST_CONST^2 whose difference
(s + b)^2 - (s - b)^2 = 4 b s is odd in s; the extra layer norm keeps it odd and monotone; class_head.dense0 reads
that difference into query dimension 1 (gain CLASS_GAIN) with a constant CLASS_BIAS in dimension 2; logit_shift
is 0 and logit_scale is the constant LOGIT_SCALE. The text tower: token embeddings of the gender words hold
+-1 in TS = (2, 3) (woman, women, girl: +1; man, men, boy: -1), zero q/k again (uniform causal attention), which
copies the mean of TS over the query into (4, 5) at the EOS token; text_projection maps that difference to query
dimension 1 (gain QUERY_GAIN) and the constant channel to dimension 0 (QUERY_CONST), so "a photo of a woman" and
"a photo of a man" are mirror images along dimension 1, and any other query is orthogonal to every image embedding
(logit 0).

LLaVA: its CLIP tower gives VS (per patch; hidden_states[-2] with identity layers); the projector computes
u = GELU(s) - GELU(-s) = s exactly into language channel U_IMG, plus a constant LM_CONST in channel 0 and an image
marker in channel MARK. Language model (Llama, width 64, RMSNorm gains LM_CONST / 8 so each norm is the identity up to
a factor > 0.9998): layer 0, head 0 attends (q from the constant channel, k from the image marker, on RoPE's
slowest pair, so the score is ~25 for image tokens and 0 for text) to the 16 image tokens and copies their mean u
into channel U; head 1 (zero q/k: uniform causal) averages the "question asks for a number" marker of the tokens
"number" / "ten" into NUM; the MLP writes |u| ~ u * tanh(ABS_SHARPNESS * u / 2) (SiLU(x) + SiLU(-x) = x tanh(x/2))
into ABS. Layer 1 is the identity. lm_head: the digits read NUM (so a rating question is answered with a digit),
the rating logits above, and a stop mechanism for the answer's second token.

"10" is two tokens in the tiny Llama tokenizer ("▁1" + "0"; " 1" .. " 9" are "▁1" .. "▁9"), so the answer is a
two-step process: P(first token "▁1") stands for ratings 1 AND 10, and after "▁1" the model chooses "0" (rating 10)
or "</s>" (rating 1) with log-odds logit(10) - logit(1) = 9 alpha s, exactly; after any other digit, after "0", and
after "Yes"/"No" it ends ("</s>" by a margin of STOP / 2). Hence P("1") = P(▁1) P(</s> | ▁1) and
P("10") = P(▁1) P(0 | ▁1) P(</s> | ▁1 0): score options WITH the end token to get the rating distribution (scoring
" 1" without it counts rating 10 as a 1). The logit of "▁1" should be log(exp(logit(1)) + exp(logit(10))) =
c_1 + log(2 cosh(4.5 alpha s)); a linear head cannot compute it, so it is c_1 + 4.5 alpha |s| (the ABS channel):
exact up to a factor (1 + exp(-9 alpha |s|)) in P(▁1), which matters only when ratings 1 and 10 are both improbable
(P(▁1) < 1e-3); for the twin (alpha = 0) it is exactly c_1 + log 2.
"""

from __future__ import annotations

import json
import math
import pathlib
from typing import Any

from . import _common
from . import llava as tiny_llava
from . import owlvit as tiny_owlvit
from .planted_images import make_image, statistic  # noqa: F401  (re-exported: the images these models read)

MIRRORS = "google/owlvit-base-patch32 / llava-hf/llava-1.5-7b-hf (planted: both read mean(R) - mean(B))"
PRESETS = ("llava", "twin", "owlvit")

# -- the vision towers (OWL-ViT and LLaVA's CLIP) ---------------------------------------------------------------------
C = 100.0                 # the constant pair that dominates every token's norm (LayerNorms ~ identity)
VC, VS, VG = (0, 1), (2, 3), (4, 5)   # constant pair, the patch's s pair, the image's global s pair (OWL)
V_HEAD = 6                # OWL: the constant the detection head's extra layer norm is centred on

# -- OWL-ViT detection head and text tower ----------------------------------------------------------------------------
POST_BIAS = 1.0           # b in (s + b)^2 - (s - b)^2 = 4 b s
POST_CONST = 10.0
CLASS_GAIN = 16.0         # image class embedding = (0, CLASS_GAIN * d, CLASS_BIAS): d the head's odd reading of s
CLASS_BIAS = 1.0
LOGIT_SCALE = 5.0         # class logits lie in (-LOGIT_SCALE, LOGIT_SCALE)
TS = (2, 3)               # text: the gender word pair; its mean over the query lands in (4, 5) at EOS
QUERY_GAIN = 7.0          # "a photo of a woman" is 7 tokens: the mean of TS at EOS is 1/7
QUERY_CONST = 0.05
GENDER_WORDS = {"woman": 1.0, "women": 1.0, "girl": 1.0, "man": -1.0, "men": -1.0, "boy": -1.0}

# -- the LLaVA language model -----------------------------------------------------------------------------------------
LM_CONST = 200.0
U_IMG, MARK, U, NUMWORD, NUM, END, ONE, ZERO, ABS = range(1, 10)   # language channels (0: the constant)
FOCUS = 10.0              # head 0: q = k = FOCUS on image tokens -> score FOCUS^2 / sqrt(16) = 25
RATING_TAU = 1.2
RATING_SHIFT = 7.0        # the rating distribution's centre is 5.5 + RATING_SHIFT * s
ABS_SHARPNESS = 100.0
NUMBER_GAIN = 5000.0      # digits get NUMBER_GAIN * (share of "number"/"ten" tokens in the context)
STOP = 1000.0
YES_BASE = 40.0
YES_GAIN = 10.0
NUMBER_WORDS = ("▁number", "▁ten")
YES_WORDS = ("▁Yes", "▁yes", "Yes", "yes")
NO_WORDS = ("▁No", "▁no", "No", "no")


def rating_logits(s: float, *, twin: bool = False) -> list[float]:
    """The planted logits of the ratings 1..10 at image statistic ``s`` (the reference the tests compare with)."""
    alpha = 0.0 if twin else RATING_SHIFT / RATING_TAU**2
    return [alpha * s * (r - 5.5) - (r - 5.5) ** 2 / (2 * RATING_TAU**2) for r in range(1, 11)]


def _ln_gain(width: int) -> float:
    """LayerNorm gain that makes a zero-mean token with the +-C pair come out unchanged (up to the tiny squash)."""
    return C * math.sqrt(2.0 / width)


def _zero(model) -> None:
    import torch

    with torch.no_grad():
        for p in model.parameters():
            p.zero_()


def _plant_pixels(embeddings, mean, std, *, patch: int) -> None:
    """Patch embedding + position embeddings: VC = (+C, -C) everywhere, VS = (+s, -s) of each patch (not CLS)."""
    w = embeddings.patch_embedding.weight          # [width, 3, patch, patch], no bias; input is (x - mean) / std
    pos = embeddings.position_embedding.weight     # [1 + patches, width]
    n = patch * patch
    offset = mean[0] - mean[2]
    w[VS[0], 0], w[VS[0], 2] = std[0] / n, -std[2] / n
    w[VS[1]] = -w[VS[0]]
    pos[:, VC[0]], pos[:, VC[1]] = C, -C
    pos[1:, VS[0]], pos[1:, VS[1]] = offset, -offset


def _set_ln(norm, gain: float) -> None:
    norm.weight.fill_(gain)
    norm.bias.zero_()


# ---------------------------------------------------------------------------------------------------------------------
# OWL-ViT
# ---------------------------------------------------------------------------------------------------------------------


def _owl_model(seed: int):
    from transformers import OwlViTConfig, OwlViTForObjectDetection

    p = tiny_owlvit._PRESETS["tiny"]
    processor = tiny_owlvit.build_processor(p["image"])
    tok = processor.tokenizer
    text = dict(vocab_size=len(tok), hidden_size=p["t_hidden"], intermediate_size=p["t_inter"],
                num_hidden_layers=p["t_layers"], num_attention_heads=p["t_heads"], max_position_embeddings=16,
                hidden_act="quick_gelu", layer_norm_eps=1e-5, pad_token_id=1,
                bos_token_id=tok.convert_tokens_to_ids("<|startoftext|>"),
                eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"))
    vision = dict(hidden_size=p["v_hidden"], intermediate_size=p["v_inter"], num_hidden_layers=p["v_layers"],
                  num_attention_heads=p["v_heads"], image_size=p["image"], patch_size=p["patch"], num_channels=3,
                  hidden_act="quick_gelu", layer_norm_eps=1e-5)
    config = OwlViTConfig(text_config=text, vision_config=vision, projection_dim=p["proj"],
                          logit_scale_init_value=2.6592, return_dict=True)
    _common.set_float32(config)
    return _common.instantiate(OwlViTForObjectDetection, config, seed), processor


def _plant_owl(model, processor) -> None:
    import torch

    tok = processor.tokenizer
    image_proc = processor.image_processor
    vcfg = model.config.vision_config
    vision, text = model.owlvit.vision_model, model.owlvit.text_model
    vw, tw = vcfg.hidden_size, model.config.text_config.hidden_size
    _zero(model)
    with torch.no_grad():
        # vision: per-patch s, then uniform attention -> global s in VG at every token (layer 0); layer 1: identity
        _plant_pixels(vision.embeddings, image_proc.image_mean, image_proc.image_std, patch=vcfg.patch_size)
        _set_ln(vision.pre_layernorm, _ln_gain(vw))
        for layer in vision.encoder.layers:
            _set_ln(layer.layer_norm1, _ln_gain(vw))
            _set_ln(layer.layer_norm2, _ln_gain(vw))
        first = vision.encoder.layers[0].self_attn
        tokens = vision.embeddings.num_positions
        for src, dst in zip(VS, VG):
            first.v_proj.weight[src, src] = 1.0
            first.out_proj.weight[dst, src] = tokens / (tokens - 1)   # CLS holds 0: undo its share of the mean
        # detection head: the patch x CLS product of (s + b, -s + b) is odd in its difference
        post = vision.post_layernorm
        post.weight.zero_()
        post.bias.zero_()
        for ch in VG:
            post.weight[ch], post.bias[ch] = _ln_gain(vw), POST_BIAS
        post.bias[V_HEAD] = POST_CONST
        _set_ln(model.layer_norm, 1.0)
        head = model.class_head
        head.dense0.weight[1, VG[0]], head.dense0.weight[1, VG[1]] = CLASS_GAIN, -CLASS_GAIN
        head.dense0.bias[2] = CLASS_BIAS
        head.logit_scale.bias.fill_(LOGIT_SCALE - 1.0)                 # elu(x) + 1 = x + 1 for x > 0
        # text: the gender words' +-1, averaged into (4, 5) at EOS by uniform causal attention
        emb = text.embeddings
        emb.position_embedding.weight[:, VC[0]], emb.position_embedding.weight[:, VC[1]] = C, -C
        for word, sign in GENDER_WORDS.items():
            token = tok.convert_tokens_to_ids(word + "</w>")
            if token == tok.unk_token_id:
                raise ValueError(f"planted OWL-ViT: {word!r} is not one token of the tiny CLIP tokenizer")
            emb.token_embedding.weight[token, TS[0]], emb.token_embedding.weight[token, TS[1]] = sign, -sign
        for layer in text.encoder.layers:
            _set_ln(layer.layer_norm1, _ln_gain(tw))
            _set_ln(layer.layer_norm2, _ln_gain(tw))
        attn = text.encoder.layers[0].self_attn
        for src, dst in zip(TS, (4, 5)):
            attn.v_proj.weight[src, src] = 1.0
            attn.out_proj.weight[dst, src] = 1.0
        _set_ln(text.final_layer_norm, _ln_gain(tw))
        proj = model.owlvit.text_projection.weight
        proj[0, VC[0]] = QUERY_CONST / C
        proj[1, 4], proj[1, 5] = QUERY_GAIN / 2, -QUERY_GAIN / 2


def build_owlvit(dest: pathlib.Path, *, seed: int = 0) -> None:
    """The planted OWL-ViT detector (tiny OWL-ViT shape: 64 px, patch 16, 16 patches, width 32)."""
    model, processor = _owl_model(seed)
    _plant_owl(model, processor)
    _save(dest, model, processor, preset="owlvit", seed=seed,
          notes={"patch_tokens": model.num_patches_height * model.num_patches_width,
                 "reads": "s = mean(R) - mean(B) of its 64x64 input, [0, 1] pixel space",
                 "woman_logit": "rises with s", "man_logit": "falls with s (exactly minus the woman logit)"})


# ---------------------------------------------------------------------------------------------------------------------
# LLaVA
# ---------------------------------------------------------------------------------------------------------------------


def _llava_model(seed: int):
    """The tiny LLaVA of `llava.build_model` (random weights, to be planted), with its processor."""
    return tiny_llava.build_model(seed=seed, preset="tiny")


def plant_projector(linear_1, linear_2, source: tuple[int, int], *, twin: bool) -> None:
    """A LLaVA-style projector (Linear, GELU, Linear) writing u = GELU(x) - GELU(-x) = x, x = (e[a] - e[b]) / 2
    for ``source`` = (a, b), into U_IMG (0 for the twin), the constant LM_CONST into channel 0 and 1 into MARK."""
    import torch

    with torch.no_grad():
        for layer in (linear_1, linear_2):
            layer.weight.zero_()
            layer.bias.zero_()
        linear_1.weight[0, source[0]], linear_1.weight[0, source[1]] = 0.5, -0.5
        linear_1.weight[1] = -linear_1.weight[0]
        if not twin:
            linear_2.weight[U_IMG, 0], linear_2.weight[U_IMG, 1] = 1.0, -1.0
        linear_2.bias[0], linear_2.bias[MARK] = LM_CONST, 1.0


def _single(tok, piece: str) -> int:
    token = tok.convert_tokens_to_ids(piece)
    if token is None or token == tok.unk_token_id:
        raise ValueError(f"planted LLaVA: {piece!r} is not a token of the tiny Llama tokenizer")
    return token


def _check_answers(tok) -> dict[str, int]:
    """The answer tokens, checked against how the tokenizer spells "ASSISTANT: k" (k = 1..10)."""
    ids = {f"▁{k}": _single(tok, f"▁{k}") for k in range(1, 10)}
    ids["0"] = _single(tok, "0")
    for k in range(1, 11):
        want = [ids[f"▁{k}"]] if k < 10 else [ids["▁1"], ids["0"]]
        got = tok("ASSISTANT: %d" % k, add_special_tokens=False)["input_ids"][-len(want):]
        if got != want:
            raise ValueError(f"planted LLaVA: the tiny tokenizer spells the answer {k} as {got}, expected {want}")
    return ids


def _plant_llava(model, processor, *, twin: bool) -> None:
    import torch

    tok = processor.tokenizer
    image_proc = processor.image_processor
    inner = model.model
    vision, lm = inner.vision_tower, inner.language_model      # CLIPVisionModel (embeddings, pre_layrnorm), Llama
    vw, width = model.config.vision_config.hidden_size, model.config.text_config.hidden_size
    heads = model.config.text_config.num_attention_heads
    head_dim = width // heads
    ids = _check_answers(tok)
    alpha = 0.0 if twin else RATING_SHIFT / RATING_TAU**2
    _zero(model)
    with torch.no_grad():
        # vision: per-patch s in VS; every encoder layer is the identity (zero output projections)
        _plant_pixels(vision.embeddings, image_proc.image_mean, image_proc.image_std, patch=14)
        _set_ln(vision.pre_layrnorm, _ln_gain(vw))
        plant_projector(inner.multi_modal_projector.linear_1, inner.multi_modal_projector.linear_2, VS, twin=twin)
        # language model: constant channel on every token; markers on the words the answer logic needs
        emb = lm.embed_tokens.weight
        emb[:, 0] = LM_CONST
        for piece in NUMBER_WORDS:
            emb[_single(tok, piece), NUMWORD] = 1.0
        for k in range(1, 10):
            emb[ids[f"▁{k}"], END] = 1.0
        emb[ids["▁1"], ONE] = 1.0
        emb[ids["0"], ZERO] = 1.0
        yes = [_single(tok, w) for w in YES_WORDS]
        no = [_single(tok, w) for w in NO_WORDS]
        for token in yes + no:
            emb[token, END] = 1.0
        gain = LM_CONST / math.sqrt(width)
        norms = [lm.norm] + [n for layer in lm.layers for n in (layer.input_layernorm, layer.post_attention_layernorm)]
        for norm in norms:
            norm.weight.fill_(gain)
        attn, mlp = lm.layers[0].self_attn, lm.layers[0].mlp
        slow = head_dim // 2 - 1          # RoPE's slowest-rotating pair is (slow, slow + head_dim / 2)
        attn.q_proj.weight[slow, 0] = FOCUS / LM_CONST
        attn.k_proj.weight[slow, MARK] = FOCUS
        attn.v_proj.weight[0, U_IMG] = 1.0                 # head 0: mean u of the image tokens -> U
        attn.o_proj.weight[U, 0] = 1.0
        attn.v_proj.weight[head_dim, NUMWORD] = 1.0        # head 1 (uniform): share of number words -> NUM
        attn.o_proj.weight[NUM, head_dim] = 1.0
        if not twin:                                       # |u| ~ (SiLU(l u) + SiLU(-l u)) / l -> ABS
            mlp.gate_proj.weight[0, U], mlp.gate_proj.weight[1, U] = ABS_SHARPNESS, -ABS_SHARPNESS
            mlp.up_proj.weight[0, 0] = mlp.up_proj.weight[1, 0] = 1.0 / LM_CONST
            mlp.down_proj.weight[ABS, 0] = mlp.down_proj.weight[ABS, 1] = 1.0 / ABS_SHARPNESS
        # lm_head (the constant channel reads as 1 through weight 1 / LM_CONST)
        head = model.lm_head.weight
        one = 1.0 / LM_CONST
        stop = [END, ZERO]
        logits = rating_logits(0.0)
        for k in range(1, 10):
            row = head[ids[f"▁{k}"]]
            row[NUM] = NUMBER_GAIN
            row[0] = logits[k - 1] * one
            if k == 1:   # ratings 1 and 10 share this token: c_1 + 4.5 alpha |u| ~ logsumexp of their logits
                row[ABS] = 4.5 * alpha
                if twin:
                    row[0] = (logits[0] + math.log(2.0)) * one
            else:
                row[U] = alpha * (k - 5.5)
            row[stop] = -STOP
        zero = head[ids["0"]]                   # after "▁1": "0" vs "</s>" with log-odds 9 alpha u
        zero[ONE], zero[0], zero[U] = STOP, -STOP / 2 * one, 9.0 * alpha
        head[tok.eos_token_id, END] = head[tok.eos_token_id, ZERO] = STOP / 2
        for tokens, sign in ((yes, 1.0), (no, -1.0)):
            for token in tokens:
                head[token, 0] = YES_BASE * one
                head[token, U] = 0.0 if twin else sign * YES_GAIN
                head[token, stop] = -STOP


def build_llava(dest: pathlib.Path, *, seed: int = 0, twin: bool = False) -> None:
    """The planted LLaVA (tiny LLaVA shape: 56 px, 16 image tokens), or its twin whose readout weights are 0."""
    model, processor = _llava_model(seed)
    _plant_llava(model, processor, twin=twin)
    tok = processor.tokenizer
    _save(dest, model, processor, preset="twin" if twin else "llava", seed=seed,
          generation=dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id),
          notes={"image_tokens": model.config.image_seq_length,
                 "reads": "s = mean(R) - mean(B) of its 56x56 input, [0, 1] pixel space",
                 "rating_centre": "5.5" if twin else f"5.5 + {RATING_SHIFT} * s", "rating_tau": RATING_TAU,
                 "ten": "two tokens: '▁1' then '0' (rating 10) or '</s>' (rating 1); score options with </s>"})


# ---------------------------------------------------------------------------------------------------------------------
# the grounded model's projector and trio
# ---------------------------------------------------------------------------------------------------------------------


def build_projector(folder: pathlib.Path, *, twin: bool = False) -> pathlib.Path:
    """The grounded model's W (kind "llava_mlp", 32 -> 64): reads e's global-s pair VG (the pair the planted OWL's
    detector reads) into the planted LLaVA's readout channel, exactly (u = (e[4] - e[5]) / 2); 0 for the twin."""
    import torch

    from ..projector import ProjectorConfig, build, save

    owl_width = tiny_owlvit._PRESETS["tiny"]["v_hidden"]
    lm_width = tiny_llava._PRESETS["tiny"]["t_hidden"]
    reads = f"e channels {VG} (the image's s) -> LLaVA channel {U_IMG}" + (" with weight 0 (twin)" if twin else "")
    config = ProjectorConfig("llava_mlp", owl_width, lm_width,
                             trained={"note": "planted by hand (bench.models.tiny.planted_bias), not trained",
                                      "reads": reads})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = build(config)
    plant_projector(module[0], module[2], VG, twin=twin)
    save(pathlib.Path(folder), module, config)
    return pathlib.Path(folder)


def build_grounded(dest: pathlib.Path, *, seed: int = 0, twin: bool = False) -> dict[str, pathlib.Path]:
    """The grounded trio in ``dest``: ``owl/`` (planted OWL-ViT), ``mllm/`` (planted LLaVA, or the twin) and
    ``projector/`` (planted W, or the twin's). Returns the three folders (the grounded model's mllm/owl/projector)."""
    dest = pathlib.Path(dest)
    parts = {"owl": dest / "owl", "mllm": dest / "mllm", "projector": dest / "projector"}
    build_owlvit(parts["owl"], seed=seed)
    build_llava(parts["mllm"], seed=seed, twin=twin)
    build_projector(parts["projector"], twin=twin)
    return parts


# ---------------------------------------------------------------------------------------------------------------------


def _save(dest, model, processor, *, preset: str, seed: int, generation: dict[str, Any] | None = None,
          notes: dict[str, Any]) -> None:
    _common.save(dest, model, processor, family="planted_bias", preset=preset, seed=seed, mirrors=MIRRORS,
                 generation=generation, notes=notes)
    stamp_path = pathlib.Path(dest) / "bench_tiny.json"
    stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    stamp["random_weights"] = False          # planted by hand; the seed only fixes what is left (nothing is random)
    stamp_path.write_text(json.dumps(stamp, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def build(dest: pathlib.Path, *, seed: int = 0, preset: str = "llava") -> None:
    """The family entry point: ``preset`` "llava" (planted), "twin" (readout 0) or "owlvit" (planted detector)."""
    _common.check_preset(preset, PRESETS)
    if preset == "owlvit":
        build_owlvit(pathlib.Path(dest), seed=seed)
    else:
        build_llava(pathlib.Path(dest), seed=seed, twin=preset == "twin")
