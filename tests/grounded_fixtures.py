"""Constructions for the grounded-model tests (built offline, random weights)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def tiny_parts(cache: Path):
    from bench.models.tiny_adapter import build_cached

    return build_cached("llava", "tiny", 0, cache), build_cached("owlvit", "tiny", 0, cache)


def llava_on_owl_tower(owl_folder: Path, dest: Path) -> Path:
    """A tiny LLaVA whose vision tower IS the OWL-ViT vision tower (weights copied), features from the same
    layer (-2, CLS dropped), and whose image processor gives the same pixels as OWL's (square resize, no
    crop). A grounded model with W = this LLaVA's projector must then reproduce its logits."""
    import torch
    from transformers import (CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor,
                              OwlViTForObjectDetection)
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from bench.models.tiny.llava import CHAT_TEMPLATE
    from bench.models.tiny.tokenizer import llama2_tokenizer, vocab_size_for

    owl = OwlViTForObjectDetection.from_pretrained(owl_folder)
    ov = owl.config.vision_config
    tok = llama2_tokenizer(["<image>"], pad_token="<pad>")
    image_processor = CLIPImageProcessorPil(
        do_resize=True, size={"height": ov.image_size, "width": ov.image_size}, resample=3, do_center_crop=False,
        do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711], do_convert_rgb=True)
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=ov.patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               image_token="<image>", chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(hidden_size=ov.hidden_size, intermediate_size=ov.intermediate_size,
                              num_hidden_layers=ov.num_hidden_layers, num_attention_heads=ov.num_attention_heads,
                              image_size=ov.image_size, patch_size=ov.patch_size, hidden_act=ov.hidden_act,
                              layer_norm_eps=ov.layer_norm_eps)
    text = LlamaConfig(vocab_size=vocab_size_for(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.convert_tokens_to_ids("<image>"),
                         image_seq_length=(ov.image_size // ov.patch_size) ** 2, projector_hidden_act="gelu",
                         vision_feature_select_strategy="default", vision_feature_layer=-2, tie_word_embeddings=False,
                         pad_token_id=tok.pad_token_id)
    torch.manual_seed(1)
    llava = LlavaForConditionalGeneration(config).eval()
    state = {k.replace("pre_layernorm", "pre_layrnorm"): v for k, v in owl.owlvit.vision_model.state_dict().items()}
    missing, unexpected = llava.model.vision_tower.load_state_dict(state, strict=False)
    assert not unexpected and all("position_ids" in m for m in missing), (missing, unexpected)
    llava.save_pretrained(dest)
    processor.save_pretrained(dest)
    return dest


def projector_from_llava(llava_folder: Path, dest: Path) -> Path:
    """W = the LLaVA's own projector (Linear, GELU, Linear), saved as a llava_mlp projector."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from bench.models.projector import ProjectorConfig, build, save

    llava = LlavaForConditionalGeneration.from_pretrained(llava_folder)
    own = llava.model.multi_modal_projector
    config = ProjectorConfig("llava_mlp", own.linear_1.in_features, own.linear_2.out_features)
    module = build(config)
    with torch.no_grad():
        module[0].load_state_dict(own.linear_1.state_dict())
        module[2].load_state_dict(own.linear_2.state_dict())
    save(dest, module, config)
    return dest


def projector(dest: Path, in_dim: int, out_dim: int, kind: str = "llava_mlp") -> Path:
    from bench.models.projector import ProjectorConfig, build, save

    save(dest, build(ProjectorConfig(kind, in_dim, out_dim, hidden_dim=16)), ProjectorConfig(kind, in_dim, out_dim, hidden_dim=16))
    return dest


def owl_with_image_size(owl_folder: Path, dest: Path, image_size: int) -> Path:
    """The tiny OWL-ViT re-initialised at another input size (so another patch count)."""
    from transformers import OwlViTConfig, OwlViTForObjectDetection

    config = OwlViTConfig.from_pretrained(owl_folder)
    config.vision_config.image_size = image_size
    OwlViTForObjectDetection(config).save_pretrained(dest)
    for name in Path(owl_folder).iterdir():
        if name.name not in ("config.json", "model.safetensors"):
            shutil.copy(name, dest / name.name)
    path = dest / "processor_config.json"
    data = json.loads(path.read_text())
    data["image_processor"]["size"] = {"height": image_size, "width": image_size}
    data["image_processor"]["crop_size"] = {"height": image_size, "width": image_size}
    path.write_text(json.dumps(data))
    return dest
