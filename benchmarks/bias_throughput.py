"""Bias probes: PGD batched over images against one image at a time (on the same edits), and the seconds per probed
image of each edit kind, side by side in one run.

(1) The pixel edit's PGD (``steps`` sign steps in the L-inf ball, the scorer's resize inside the graph) on the same
    jobs twice: ``batch`` images per forward/backward pass, and one image at a time. Prints seconds per image for
    each, the speed-up, and how far apart the two edits are (they should agree up to float summation order).
(2) The whole probe, per image, as the runner runs a chunk (`process_chunk`: the scorer's reading, the edit, the
    questions before and after, both readings, the self-report, the rows), for each edit kind: ``pixel``,
    ``placebo`` (pixel space), ``embedding`` and ``placebo`` (embedding space, on the grounded model), ``pairs``
    (a counterfactual image, no edit). One characteristic, one template.

Scales:
- ``tiny`` (default): the planted-bias models (OWL-ViT 64 px / 16 patches, LLaVA 56 px / 16 image tokens) on 56 px
  generated portraits: the harness's own overhead dominates;
- ``bench``: the real shapes with random weights: OWL-ViT base/32 at 768 px (576 patches, 12 layers) as the
  scorer and the grounded model's detector, ``bench-llava-100m`` (576 image tokens, 110M-parameter language model)
  as the MLLM, on the bundled photos with people. Heavy on a CPU: use few images and steps.

    python benchmarks/bias_throughput.py [--scale tiny|bench] [--images 8] [--steps 50] [--batch 8] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def models(scale: str, folder: Path) -> dict[str, str]:
    """Folders of the scorer, the MLLM and the grounded trio at this scale."""
    from bench.models.tiny_adapter import build_cached, default_cache_dir

    if scale == "tiny":
        from bench.models.tiny import planted_bias as pb

        pb.build_owlvit(folder / "owl")
        pb.build_llava(folder / "llava")
        pb.build_projector(folder / "projector")
        return {"owl": str(folder / "owl"), "mllm": str(folder / "llava"), "projector": str(folder / "projector")}
    from bench.models.grounded import build_tiny_projector

    cache = default_cache_dir()
    owl, mllm = build_cached("owlvit", "bench", 0, cache), build_cached("llava", "bench", 0, cache)
    width = json.loads((owl / "config.json").read_text())["vision_config"]["hidden_size"]
    text = json.loads((mllm / "config.json").read_text())["text_config"]["hidden_size"]
    projector = build_tiny_projector(cache / f"projector-{mllm.name}-{owl.name}", width, text, 0)
    return {"owl": str(owl), "mllm": str(mllm), "projector": str(projector)}


def image_sets(scale: str, n: int, folder: Path) -> tuple[Path, Path]:
    """An image folder with attributes.csv (half "man", half "woman"), and a pairs folder of the same scenarios."""
    from PIL import Image, ImageOps

    images, pairs = folder / "images", folder / "pairs"
    images.mkdir(parents=True)
    lines = ["image,attribute"]
    if scale == "tiny":
        from bench.models.tiny import planted_bias as pb

        originals = [pb.make_image(0.2 if i % 2 else -0.2, i) for i in range(n)]
        counterparts = [pb.make_image(-0.2 if i % 2 else 0.2, i) for i in range(n)]
    else:
        from bench.resources import assets_dir

        names = ["person", "kite", "messi5", "grace_hopper", "astronaut", "basketball1"]
        photos = [Image.open(assets_dir() / "mini_coco" / "images" / f"{names[i % len(names)]}.jpg").convert("RGB")
                  for i in range(n)]
        originals, counterparts = photos, [ImageOps.mirror(p) for p in photos]
    for i, (image, other) in enumerate(zip(originals, counterparts)):
        source, target = ("woman", "man") if i % 2 else ("man", "woman")
        image.save(images / f"img{i}.png")
        lines.append(f"img{i}.png,{source}")
        (pairs / f"scene{i}").mkdir(parents=True)
        image.save(pairs / f"scene{i}" / f"{source}.png")
        other.save(pairs / f"scene{i}" / f"{target}.png")
    (folder / "attributes.csv").write_text("\n".join(lines) + "\n")
    return images, pairs


def make_task(name: str, dataset: dict, **params):
    from bench.spec import TaskSpec
    from bench.tasks.base import TaskContext
    from bench.tasks.bias import BiasTask

    values = {"characteristics": ["nurse"], "max_new_tokens": 4, "keep_images": 0, "margin": 0.05, **params}
    return BiasTask(TaskSpec(name, "bias", Path("benchmark"), dataset=dataset, params=values), TaskContext(seed=0))


def probe_seconds(adapter, task, edit: str) -> tuple[float, int]:
    """Seconds per probe (an image in one direction) of one chunk holding every sample of ``edit``, and the probes."""
    from bench.runner.plan import chunk_samples
    from bench.runner.worker import process_chunk

    samples = [s for s in task.samples() if s.data["edit"] == edit]
    (chunk,) = chunk_samples(task.name, samples, images_per_chunk=len(samples))
    adapter.free_memory()
    getattr(adapter, "_bias_state", None) and adapter._bias_state.person_boxes.clear()
    t0 = time.perf_counter()
    rows, _ = process_chunk(adapter, task, chunk, False)
    seconds = time.perf_counter() - t0
    probes = {(r["image_id"], r["direction"]) for r in rows if r.get("status") == "ok"}
    return seconds / max(len(probes), 1), len(probes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=("tiny", "bench"), default="tiny")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--steps", type=int, default=50, help="PGD steps")
    parser.add_argument("--batch", type=int, default=8, help="images per PGD batch in the batched run")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: library default)")
    args = parser.parse_args()

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from bench.models._grounded_engine import GroundedAdapter
    from bench.models._hf_engine import HFAdapter
    from bench.perturb.edits import EditContext, EditJob
    from bench.perturb.probes import load_axis
    from bench.perturb.request import EditSpec
    from bench.perturb.scorer import make_scorer
    from bench.registry import EDITS
    from PIL import Image

    eps = 8 / 255
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        parts = models(args.scale, tmp / "models")
        images, pairs = image_sets(args.scale, args.images, tmp / "data")
        print(f"scale {args.scale}: {args.images} images, PGD {args.steps} steps at eps 8/255, torch threads "
              f"{torch.get_num_threads()}; scorer {Path(parts['owl']).name}, MLLM {Path(parts['mllm']).name}")

        # (1) PGD batched against one image at a time, on the same jobs
        scorer = make_scorer(f"owlvit:{parts['owl']}")
        gender = load_axis("gender")
        pictures = [Image.open(p).convert("RGB") for p in sorted(images.glob("*.png"))]
        directions = [("woman", "man") if i % 2 else ("man", "woman") for i in range(len(pictures))]
        edit = EDITS.get("pixel")()
        timings, outcomes = {}, {}
        for label, batch in (("batched", args.batch), ("one at a time", 1)):
            spec = EditSpec("pixel", "pixel", eps, args.steps, batch=batch)
            jobs = [EditJob(f"img{i}", im, spec, gender, s, t) for i, (im, (s, t)) in enumerate(zip(pictures, directions))]
            edit.run(EditContext(None, scorer), jobs[:1])        # warm-up
            t0 = time.perf_counter()
            outcomes[label] = edit.run(EditContext(None, scorer), jobs)
            timings[label] = (time.perf_counter() - t0) / len(jobs)
        diffs = [np.abs(np.asarray(a.image).astype(int) - np.asarray(b.image).astype(int))
                 for a, b in zip(outcomes["batched"], outcomes["one at a time"])]
        print(f"(1) PGD, seconds per image: batched ({args.batch} per pass) {timings['batched']:.3f}, one at a time "
              f"{timings['one at a time']:.3f} -> {timings['one at a time'] / timings['batched']:.2f}x; the two edits "
              f"differ by at most {max(d.max() for d in diffs)}/255 on {np.mean([(d > 0).mean() for d in diffs]):.4%} "
              "of the values")

        # (2) seconds per probed image, per edit kind
        hf = HFAdapter(parts["mllm"], {}, device="cpu", batch_size=64, identity={})
        grounded = GroundedAdapter(parts["mllm"], parts["owl"], parts["projector"], {}, device="cpu", batch_size=64,
                                   identity={})
        folder = {"source": "image_folder", "images": str(images), "attributes": str(tmp / "data" / "attributes.csv")}
        scorer_name = f"owlvit:{parts['owl']}"
        pixel_task = make_task("pixel", folder, edits=["pixel", "placebo"], eps=[eps], steps=args.steps,
                               scorer=scorer_name, edit_batch=args.batch)
        embedding_task = make_task("embedding", folder, edits=["embedding", "placebo"], eps=[1.0])
        pairs_task = make_task("pairs", {"source": "pairs", "images": str(pairs)}, edits=["pairs"], scorer=None)
        kinds = [("pixel", hf, pixel_task, "pixel"), ("placebo (pixel space)", hf, pixel_task, "placebo"),
                 ("embedding (FGSM)", grounded, embedding_task, "embedding"),
                 ("placebo (embedding space)", grounded, embedding_task, "placebo"), ("pairs", hf, pairs_task, "pairs")]
        print("(2) seconds per probed image (scorer reading, edit, questions before and after, both readings, "
              "self-report, rows), each edit kind alone:")
        for label, adapter, task, edit in kinds:
            seconds, probes = probe_seconds(adapter, task, edit)
            print(f"    {label:26s} {seconds:8.3f} s/image over {probes} probes")


if __name__ == "__main__":
    main()
