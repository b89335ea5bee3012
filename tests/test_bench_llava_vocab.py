"""bench-llava-100m: its tokenizer has exactly the model's 32064-token vocabulary, so greedy text is a real string
(ids past a smaller tokenizer decoded to nothing, and every generated text was empty)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def bench_model():
    from bench.models.tiny.llava import build_model

    return build_model(preset="bench")


def test_vocabulary_and_tokenizer_agree_and_keep_the_llava_shape(bench_model):
    model, processor = bench_model
    tok = processor.tokenizer
    assert model.config.text_config.vocab_size == len(tok) == 32064            # LLaVA-1.5's padded vocabulary
    assert model.get_output_embeddings().weight.shape == (32064, 768)          # its 24.6M-parameter output head
    assert tok.convert_tokens_to_ids(["<image>", "<pad>"]) == [32062, 32063]
    assert model.config.image_token_index == 32062
    assert all(isinstance(t, str) and t for t in tok.convert_ids_to_tokens(list(range(len(tok)))))


def test_growing_the_vocabulary_leaves_the_tokenization_of_prompts_unchanged():
    from bench.models.tiny.llava import build_processor
    from bench.models.tiny.tokenizer import word_list

    small, grown = build_processor(56).tokenizer, build_processor(56, 32064).tokenizer
    texts = ["USER: <image>\nIs there a dog in the image?\nAnswer the question using a single word or phrase. ASSISTANT:",
             "Please describe this image in detail.", " ".join(word_list()), "Yes, there is a hot dog. No."]
    for text in texts:
        assert grown.tokenize(text) == small.tokenize(text)
        image = small.convert_tokens_to_ids("<image>")
        pairs = zip(small(text)["input_ids"], grown(text)["input_ids"])
        assert all(a == b for a, b in pairs if a != image)   # the trained pieces keep their ids; <image>/<pad> move


def test_greedy_text_is_a_real_string_from_inside_the_vocabulary(bench_model):
    from PIL import Image

    from bench.resources import assets_dir

    model, processor = bench_model
    image = Image.open(assets_dir() / "mini_coco" / "images" / "dog.jpg").convert("RGB")
    prompt = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Is there a dog in the image?"}]}],
        add_generation_prompt=True, tokenize=False)
    inputs = processor(images=image, text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1]:].tolist()
    assert len(new) == 2 and all(0 <= i < len(processor.tokenizer) for i in new)
    assert all(processor.tokenizer.convert_ids_to_tokens(i) is not None for i in new)
    assert processor.tokenizer.decode(new, skip_special_tokens=True).strip()
