"""Time per image of the grounded model with the shared embedding against recomputing it, side by side.

Model: the grounded pair at the reference's shapes with random weights, built offline: OWL-ViT
base/32 shape (768 px, 576 patch tokens, 12 layers) + a LLaVA-1.5-shaped MLLM (576 image tokens, a
110M-parameter language model) + a projector W (``--projector llava_mlp`` by default, ``deeper_mlp``
for the reference's 4-layer MLP of width 8192).
Per image, 6 POPE-style questions answered in score mode, and for each the detector's confidence for
its object:
  shared:     one OWL vision pass per image serves the 6 answers and the 6 detections (the adapter's
              caches start empty for every image);
  recomputed: the embedding (and the prompt prefix) recomputed for every question and again for every
              detection, as two separate models would.
Prints seconds per image for both, their ratio, and the number of OWL vision passes.

Run: python benchmarks/grounded_shared_embedding.py [--images N] [--projector deeper_mlp]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--projector", choices=["llava_mlp", "deeper_mlp"], default="llava_mlp")
    parser.add_argument("--repeats", type=int, default=2, help="best of N")
    args = parser.parse_args()

    import json

    import torch
    from PIL import Image

    from bench.models._grounded_engine import GroundedAdapter
    from bench.models.base import DetectRequest, ImageInput, ScoreRequest
    from bench.models.projector import ProjectorConfig, build, save
    from bench.models.tiny_adapter import build_cached, default_cache_dir
    from bench.resources import assets_dir

    cache = default_cache_dir()
    mllm = build_cached("llava", "bench", 0, cache)
    owl = build_cached("owlvit", "bench", 0, cache)
    width = json.loads((owl / "config.json").read_text())["vision_config"]["hidden_size"]
    text = json.loads((mllm / "config.json").read_text())["text_config"]["hidden_size"]
    proj = cache / f"bench-projector-{args.projector}-{mllm.name}-{owl.name}"
    if not (proj / "projector.json").exists():
        config = ProjectorConfig(args.projector, width, text, hidden_dim=8192)
        torch.manual_seed(0)
        save(proj, build(config), config)
    adapter = GroundedAdapter(str(mllm), str(owl), str(proj), {}, device="cpu", batch_size=8, identity={})
    n_params = lambda m: sum(p.numel() for p in m.parameters()) / 1e6  # noqa: E731
    print(f"OWL-ViT {n_params(adapter.owl):.0f}M parameters ({adapter.patches} patches), MLLM {n_params(adapter.model):.0f}M, "
          f"projector {args.projector} {n_params(adapter.projector):.1f}M; torch threads {torch.get_num_threads()}")

    names = ["dog.jpg", "giraffe.jpg", "person.jpg", "kite.jpg", "horses.jpg"][: args.images]
    objects = ["dog", "cat", "bicycle", "person", "car", "zebra"]
    words = (("yes", ("yes",)), ("no", ("no",)))
    images = [ImageInput(n, Image.open(assets_dir() / "mini_coco" / "images" / n).convert("RGB")) for n in names]

    def forget():
        adapter._embeddings.clear()
        adapter._prefixes.clear()

    def shared(image):
        forget()
        adapter.score([ScoreRequest(image, f"Is there a {o} in the image?", first_token_words=words) for o in objects])
        adapter.detect_scores([DetectRequest(image, (o,)) for o in objects])

    def recomputed(image):
        for o in objects:
            forget()
            adapter.score([ScoreRequest(image, f"Is there a {o} in the image?", first_token_words=words)])
            forget()
            adapter.detect_scores([DetectRequest(image, (o,))])

    shared(images[0])   # warm-up
    results = {}
    for name, fn in (("shared", shared), ("recomputed", recomputed)):
        best = float("inf")
        for _ in range(args.repeats):
            calls = adapter.vision_calls
            start = time.perf_counter()
            for image in images:
                fn(image)
            best = min(best, time.perf_counter() - start)
            passes = adapter.vision_calls - calls
        results[name] = best / len(images)
        print(f"{name:>10}: {results[name]:.2f} s per image ({passes // len(images)} OWL vision passes per image, "
              f"6 questions + 6 detections)")
    print(f"ratio: recomputing costs {results['recomputed'] / results['shared']:.1f}x the shared embedding")


if __name__ == "__main__":
    main()
