"""Tiny offline model builders (bench.models.tiny): every family builds, loads through the ordinary transformers path
(PIL image-processor backend), formats prompts like the real checkpoint, runs a forward pass and greedy generation
on a real photo, and batches correctly with left padding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
from PIL import Image  # noqa: E402

from bench.models import tiny  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "Is there a dog in the image?"
VLM_FAMILIES = ["llava", "llava_next", "qwen2_vl", "qwen2_5_vl", "idefics3", "smolvlm", "paligemma"]

# The prompt each chat template must produce for [image, QUESTION] with add_generation_prompt=True: the real format.
EXPECTED_PROMPTS = {
    "llava": "USER: <image>\nIs there a dog in the image? ASSISTANT:",
    "llava_next": "[INST] <image>\nIs there a dog in the image? [/INST]",
    "qwen2_vl": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Is there a dog in the image?<|im_end|>\n<|im_start|>assistant\n"
    ),
    "idefics3": "<|begin_of_text|>User:<image>Is there a dog in the image?<end_of_utterance>\nAssistant:",
    "smolvlm": "<|im_start|>User:<image>Is there a dog in the image?<end_of_utterance>\nAssistant:",
}
EXPECTED_PROMPTS["qwen2_5_vl"] = EXPECTED_PROMPTS["qwen2_vl"]


# ---------------------------------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------------------------------


def _photos() -> list[Path]:
    for folder in (ROOT / "bench/assets/mini_coco/images", Path(__file__).resolve().parents[2] / "shared/data/photos"):
        if folder.is_dir():
            jpgs = sorted(folder.glob("*.jpg"))
            if jpgs:
                dog = folder / "dog.jpg"
                first = dog if dog.exists() else jpgs[0]
                return [first] + [p for p in jpgs if p != first]
    return []


@pytest.fixture(scope="session")
def images() -> list[Image.Image]:
    """Two different real photos (dog.jpg first when it exists), or generated images as a last resort."""
    paths = _photos()
    out = [Image.open(p).convert("RGB") for p in paths[:2]]
    while len(out) < 2:
        g = torch.Generator().manual_seed(len(out))
        arr = (torch.rand(480, 640, 3, generator=g) * 255).to(torch.uint8).numpy()
        out.append(Image.fromarray(arr, "RGB"))
    return out


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Build each family once per session (lazily); returns (path, seconds to build)."""
    root = tmp_path_factory.mktemp("tiny")
    cache: dict[str, tuple[Path, float]] = {}

    def get(family: str) -> tuple[Path, float]:
        if family not in cache:
            t = time.perf_counter()
            tiny.build(family, root / family, seed=0)
            cache[family] = (root / family, time.perf_counter() - t)
        return cache[family]

    return get


def _load(family: str, path: Path):
    """The product's loading path: AutoProcessor(backend="pil") + AutoModelForImageTextToText (detector: OwlViT)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, OwlViTForObjectDetection

    if family.startswith("qwen"):
        from transformers.utils import is_torchvision_available

        from bench.models._hf_processor import load_processor

        if not is_torchvision_available():
            # transformers 5: the Qwen-VL processors require a torchvision-only video processor.
            with pytest.raises(ImportError, match="Video processor"):
                AutoProcessor.from_pretrained(path, backend="pil")
        processor = load_processor(path, backend="pil")
    else:
        processor = AutoProcessor.from_pretrained(path, backend="pil")
    model_cls = OwlViTForObjectDetection if family == "owlvit" else AutoModelForImageTextToText
    model = model_cls.from_pretrained(path).eval()
    return processor, model


def _prompt(family: str, processor, question: str = QUESTION) -> str:
    if family == "paligemma":  # no chat template in the real repo: raw task prompt
        return f"answer en {question}"
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


# ---------------------------------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------------------------------


def test_registry_lists_families_and_rejects_unknown(tmp_path):
    assert set(tiny.FAMILIES) == set(VLM_FAMILIES) | {"owlvit"} | PLANTED
    assert set(tiny.MIRRORS) == set(tiny.FAMILIES)
    for target in tiny.FAMILIES.values():
        module, _, func = target.partition(":")
        assert module.startswith("bench.models.tiny.") and func == "build"
    with pytest.raises(ValueError, match="known: .*llava"):
        tiny.build("no_such_family", tmp_path / "x")
    with pytest.raises(ValueError, match="preset"):
        tiny.build("qwen2_vl", tmp_path / "y", preset="bench")  # only llava has the speed-benchmark preset
    assert not (tmp_path / "y").exists()


def test_package_import_is_light():
    code = "import sys, bench.models.tiny; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------------------
# every vision-language family
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_vlm_builds_loads_and_generates(family, built, images):
    path, build_s = built(family)
    stamp = json.loads((path / "bench_tiny.json").read_text())
    assert stamp["family"] == family and stamp["preset"] == "tiny" and stamp["seed"] == 0
    assert stamp["mirrors"] == tiny.MIRRORS[family]
    config = json.loads((path / "config.json").read_text())
    assert config["dtype"] == "float32"

    t = time.perf_counter()
    processor, model = _load(family, path)
    load_s = time.perf_counter() - t
    assert build_s + load_s < 30, (build_s, load_s)  # ~0.2 s warm (+3-5 s of imports for the first); loose for CI
    assert type(processor.image_processor).__name__.endswith("Pil")
    assert next(model.parameters()).dtype == torch.float32

    tok = processor.tokenizer
    assert tok.pad_token is not None
    assert model.config.get_text_config().vocab_size >= len(tok)

    prompt = _prompt(family, processor)
    if family in EXPECTED_PROMPTS:
        assert prompt == EXPECTED_PROMPTS[family]
    inputs = processor(images=[images[0]], text=[prompt], return_tensors="pt")
    ids = inputs["input_ids"][0]
    image_token_id = model.config.image_token_id
    n_image = int((ids == image_token_id).sum())
    assert n_image > 0

    if family == "llava":
        assert n_image == 16  # 56 px / patch 14 -> 4x4, CLS dropped ("default" strategy)
        assert tuple(inputs["pixel_values"].shape) == (1, 3, 56, 56)
    elif family.startswith("qwen"):
        assert n_image == int(inputs["image_grid_thw"].prod()) // 4  # spatial merge 2x2
        assert 4 <= n_image <= 36  # min/max_pixels keep a photo at a few dozen tokens
    elif family in ("idefics3", "smolvlm"):
        tiles = int(inputs["pixel_attention_mask"].flatten(2).any(-1).sum())
        assert n_image == tiles * processor.image_seq_len and n_image <= 100
    elif family == "paligemma":
        assert n_image == 16
        text = tok.decode(ids, skip_special_tokens=False)
        assert text == "<image>" * 16 + "<bos>answer en Is there a dog in the image?\n"

    with torch.no_grad():
        logits = model(**inputs).logits
        out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert tuple(logits.shape[:2]) == (1, ids.shape[0])
    assert torch.isfinite(logits).all()
    assert out.shape[1] > ids.shape[0] and out.shape[1] <= ids.shape[0] + 3


@pytest.mark.parametrize("family", VLM_FAMILIES)
def test_vlm_left_padded_batch_matches_single(family, built, images):
    path, _ = built(family)
    processor, model = _load(family, path)
    processor.tokenizer.padding_side = "left"
    questions = [QUESTION, "Describe the image in detail. Is there a cat or a person?"]
    prompts = [_prompt(family, processor, q) for q in questions]
    batch = processor(images=images[:2], text=prompts, return_tensors="pt", padding=True)
    mask = batch["attention_mask"]
    assert mask.shape[0] == 2 and bool((mask[:, -1] == 1).all())  # left padding: last column is real text
    assert int(mask[0].sum()) != int(mask[1].sum())  # different lengths, so one row is padded
    greedy = dict(max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True)
    with torch.no_grad():
        batch_out = model.generate(**batch, **greedy)
        batch_new = batch_out.sequences[:, batch["input_ids"].shape[1]:]
        for i in range(2):
            single = processor(images=[images[i]], text=[prompts[i]], return_tensors="pt")
            single_out = model.generate(**single, **greedy)
            # first-step logits (the prompt's last position) and the greedy continuation agree with the unbatched run
            torch.testing.assert_close(batch_out.logits[0][i], single_out.logits[0][0], rtol=1e-4, atol=1e-4)
            assert batch_new[i].tolist() == single_out.sequences[0, single["input_ids"].shape[1]:].tolist()


# ---------------------------------------------------------------------------------------------------------------------
# tokenizers
# ---------------------------------------------------------------------------------------------------------------------


# Hand-set models whose outputs depend on a known input (tests of saliency and bias); tested in their own files.
PLANTED = {name for name in tiny.FAMILIES if name.startswith("planted_")}


@pytest.mark.parametrize("family", [*VLM_FAMILIES, "owlvit"])
def test_yes_no_are_single_tokens(family, built):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(built(family)[0])
    prefix = tok("Answer:", add_special_tokens=False)["input_ids"]
    for word in ("Yes", "yes", "No", "no"):
        full = tok(f"Answer: {word}", add_special_tokens=False)["input_ids"]
        assert full[: len(prefix)] == prefix and len(full) == len(prefix) + 1, (word, tok.convert_ids_to_tokens(full))
        assert len(tok(word, add_special_tokens=False)["input_ids"]) == 1, word
    for name in ("dog", "dogs", "traffic", "people", "giraffe", "toothbrushes"):
        ids = tok(f"a {name}", add_special_tokens=False)["input_ids"]
        assert len(ids) == 2, (name, tok.convert_ids_to_tokens(ids))


def test_tokenizer_special_layouts(built):
    from transformers import AutoTokenizer

    llava = AutoTokenizer.from_pretrained(built("llava")[0])
    assert [llava.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<0x00>")] == [0, 1, 2, 3]
    assert llava.convert_tokens_to_ids("<pad>") == llava.convert_tokens_to_ids("<image>") + 1 == len(llava) - 1
    qwen = AutoTokenizer.from_pretrained(built("qwen2_vl")[0])
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    first = qwen.convert_tokens_to_ids(specials[0])
    assert [qwen.convert_tokens_to_ids(t) for t in specials] == [first, first + 1, first + 2]
    assert qwen.convert_tokens_to_ids("<|image_pad|>") == first + 12
    owl = AutoTokenizer.from_pretrained(built("owlvit")[0])
    assert owl.eos_token_id == len(owl) - 1 and owl.bos_token_id == len(owl) - 2 and owl.pad_token_id == 0


# ---------------------------------------------------------------------------------------------------------------------
# OWL-ViT detector
# ---------------------------------------------------------------------------------------------------------------------


def test_owlvit_detects(built, images):
    from transformers import AutoProcessor, OwlViTForObjectDetection, OwlViTProcessor

    path, _ = built("owlvit")
    processor = OwlViTProcessor.from_pretrained(path, backend="pil")
    auto = AutoProcessor.from_pretrained(path, backend="pil")
    assert type(auto).__name__ == "OwlViTProcessor"
    assert type(processor.image_processor).__name__ == "OwlViTImageProcessorPil"
    model = OwlViTForObjectDetection.from_pretrained(path).eval()
    queries = [["a photo of a dog", "a photo of a cat"]]
    inputs = processor(text=queries, images=images[0], return_tensors="pt")
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 64, 64)  # square resize, no effective centre crop
    assert tuple(inputs["input_ids"].shape) == (2, 16)  # padded to max_length 16 with "!"
    with torch.no_grad():
        outputs = model(**inputs, output_hidden_states=True)
        vision = model.owlvit.vision_model(pixel_values=inputs["pixel_values"])
    assert tuple(vision.last_hidden_state.shape[:2]) == (1, 17)  # 16 patches + CLS
    assert tuple(outputs.logits.shape) == (1, 16, 2)
    assert tuple(outputs.pred_boxes.shape) == (1, 16, 4)
    target = torch.tensor([images[0].size[::-1]])
    if hasattr(processor, "post_process_grounded_object_detection"):
        results = processor.post_process_grounded_object_detection(
            outputs, threshold=0.0, target_sizes=target, text_labels=queries
        )
    else:  # pragma: no cover - older transformers
        results = processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=target)
    assert len(results) == 1 and results[0]["boxes"].shape[-1] == 4 and len(results[0]["scores"]) == 16
    plain = processor.image_processor.post_process_object_detection(outputs, threshold=0.0, target_sizes=target)
    assert plain[0]["boxes"].shape == (16, 4)


# ---------------------------------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------------------------------


def _file_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


def test_builds_are_byte_identical_across_processes(built, tmp_path):
    families = ["llava", "owlvit", "qwen2_5_vl"]
    code = (
        "import sys, pathlib\nfrom bench.models import tiny\n"
        f"for f in {families!r}:\n    tiny.build(f, pathlib.Path(sys.argv[1]) / f, seed=0)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env, check=True, capture_output=True)
    for family in families:
        here, there = _file_bytes(built(family)[0]), _file_bytes(tmp_path / family)
        assert here.keys() == there.keys()
        for name in here:
            assert here[name] == there[name], f"{family}/{name} differs between two builds"


def test_seed_changes_weights_only(built, tmp_path):
    tiny.build("llava", tmp_path / "s1", seed=1)
    first, other = _file_bytes(built("llava")[0]), _file_bytes(tmp_path / "s1")
    assert first["model.safetensors"] != other["model.safetensors"]
    assert first["tokenizer.json"] == other["tokenizer.json"]
