"""Insertion/deletion curves for one target on `bench-llava-100m` (a LLaVA-1.5-shaped model: 336 px, 576 image tokens,
a 110M-parameter language model), built three ways on the same map in one run:

(a) the published MLLM saliency code's loop: one forward per step at batch size 1, the processor re-run on a PIL
    image each step, full logits;
(b) this harness's path (`bench.explain.faithfulness.pixel_curves` through the seam: variants built as tensors in
    the model-input pixel space, batched, the text prepared once, only the target's logits computed);
(c) a bare batched forward over the same variants (pixel values ready, `logits_to_keep`): the bound for (b).
It also prints the seconds per map of each method and the share of (b)'s time spent outside forward passes.

    python benchmarks/saliency_throughput.py [--steps 64] [--batch-size 16] [--methods random,gradient,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class ForwardClock:
    """Seconds spent inside the model's forward (and, for gradient methods, the backward it starts is outside)."""

    def __init__(self, model):
        self.model, self.seconds, self.calls = model, 0.0, 0
        self.original = model.forward

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return self.original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - t0
                self.calls += 1

        import functools

        self.timed = functools.wraps(self.original)(timed)

    def __enter__(self):
        self.seconds, self.calls = 0.0, 0
        self.model.forward = self.timed
        return self

    def __exit__(self, *exc):
        self.model.forward = self.original


def main() -> None:
    import numpy as np
    import torch
    from PIL import Image

    from bench.explain import engine
    from bench.explain.faithfulness import pixel_curves
    from bench.explain.request import ExplainConfig, TargetSpec
    from bench.metrics.curves import deletion_images, insertion_images, pixel_order, step_masks
    from bench.explain.methods.base import baseline_pixels
    from bench.models.base import ImageInput, ModelSpec
    from bench.registry import MODELS, SALIENCY_METHODS
    from bench.resources import assets_dir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--methods", default="random,gradient,integrated_gradients,attention")
    parser.add_argument("--ig-steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    adapter = MODELS.get("bench-llava-100m")(ModelSpec("bench-llava-100m", None, {})).load(args.device, args.batch_size)
    model = adapter.model
    seam = engine.seam_of(adapter)
    image = ImageInput("dog", Image.open(assets_dir() / "mini_coco" / "images" / "dog.jpg").convert("RGB"))
    prepared = seam.prepare(image, TargetSpec("Please describe this image in detail.", "given", "A brown", "dog"))
    config = ExplainConfig(steps=args.steps, ig_steps=args.ig_steps)
    saliency = np.random.default_rng(0).random(prepared.space.grid)      # the same map for all three ways
    n_variants = 2 * (args.steps + 1)
    print(f"bench-llava-100m on {args.device}, {torch.get_num_threads()} threads; one target, {args.steps} steps "
          f"(insertion + deletion = {n_variants} images of {prepared.space.size[0]} px), batch size {args.batch_size}")

    # the variants, as every way sees them
    space = prepared.space
    order = pixel_order(space.grid_to_input(saliency), 0)
    rank, ks = step_masks(order, space.size, args.steps)
    original = prepared.pixels.permute(1, 2, 0)
    blurred = baseline_pixels(prepared, "blur", config).permute(1, 2, 0)
    rank_t, ks_t = torch.from_numpy(rank), torch.from_numpy(ks)
    variants = torch.cat([insertion_images(original, blurred, rank_t, ks_t),
                          deletion_images(original, blurred, rank_t, ks_t)]).permute(0, 3, 1, 2).contiguous()
    positions = list(prepared.target_positions)
    target = prepared.target_ids[0]
    text = adapter.format_prompt("Please describe this image in detail.") + " A brown"

    # (a) one forward per step at batch size 1, the processor re-run on a PIL image, full logits
    pil = [Image.fromarray((v.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for v in variants]
    t0 = time.perf_counter()
    probs_a = []
    with torch.no_grad():
        for im in pil:
            enc = adapter.processor(images=[im], text=[text], return_tensors="pt")
            enc = {k: v.to(adapter.device) for k, v in enc.items()}
            logits = model(**enc).logits
            probs_a.append(float(torch.softmax(logits[0, -1].float(), -1)[target]))
    seconds_a = time.perf_counter() - t0

    # (b) this harness
    with ForwardClock(model) as clock:
        t0 = time.perf_counter()
        curves = pixel_curves(seam, prepared, saliency, config, 0)
        seconds_b = time.perf_counter() - t0
        forward_b = clock.seconds
    probs_b = np.array(curves["curves"]["insertion"] + curves["curves"]["deletion"])

    # (c) a bare batched forward over the same variants
    values = seam.normalise(variants, space).to(adapter.device, model.dtype)
    ids = prepared.input_ids.to(adapter.device)
    keep = torch.tensor(positions, device=adapter.device)
    t0 = time.perf_counter()
    probs_c = []
    with torch.no_grad():
        for start in range(0, n_variants, args.batch_size):
            batch = values[start:start + args.batch_size]
            logits = model(input_ids=ids.expand(len(batch), -1), pixel_values=batch, logits_to_keep=keep).logits
            probs_c += torch.softmax(logits[:, 0].float(), -1)[:, target].tolist()
    seconds_c = time.perf_counter() - t0

    print(f"(a) published loop:    {seconds_a:7.2f} s  ({seconds_a / n_variants * 1000:.0f} ms per image)")
    print(f"(b) this harness:      {seconds_b:7.2f} s  = {seconds_a / seconds_b:.2f}x (a); "
          f"{100 * (1 - forward_b / seconds_b):.1f}% of it outside forward passes")
    print(f"(c) bare batched:      {seconds_c:7.2f} s  ; (b) / (c) = {seconds_b / seconds_c:.3f}")
    print(f"    curves agree: max |(b) - (c)| = {np.abs(probs_b - np.array(probs_c)).max():.2e}; "
          f"max |(b) - (a)| = {np.abs(probs_b - np.array(probs_a)).max():.2e} (a: 8-bit images)")

    print("seconds per map (the map only, without its curves):")
    for name in args.methods.split(","):
        method = SALIENCY_METHODS.get(name)()
        with ForwardClock(model) as clock:
            t0 = time.perf_counter()
            method.compute(seam, prepared, config, 0)
            seconds = time.perf_counter() - t0
        print(f"  {name:<22} {seconds:7.2f} s  ({clock.calls} forward calls, {100 * (1 - clock.seconds / seconds):.0f}% "
              f"outside forwards, backward passes included there)")


if __name__ == "__main__":
    main()
