"""The pixel edit: projected gradient descent in [0, 1] pixel space under an L-inf budget eps.

For each image x0 (its ORIGINAL pixels, uint8 / 255) the edit delta minimises the scorer's attribute loss
(`scorer.attribute_loss`: class logits towards +1e6 for the target's queries and -1e6 for the source's) through the
scorer's differentiable call, whose resize to the scorer's input is inside the graph:

    delta <- delta - step * sign(grad)          (step: ``step_size``, default 2.5 eps / steps, Madry et al.)
    delta <- clip(delta, -eps, eps) * region    (region: 1 inside the largest person box, or everywhere)
    delta <- clip(x0 + delta, 0, 1) - x0

for ``steps`` steps (from 0, or from a seeded uniform point of the ball with ``random_start``). Then the edited image
is put on the 8-bit grid ROUNDING TOWARDS THE ORIGINAL (each value moves by a whole number of 1/255 steps, never
more than floor(255 eps)), so the L-inf bound holds exactly in the saved file; it is saved as PNG (lossless) and the
model is asked about the decoded PNG, which is also what the scorer reads again, through its normal PIL path.

Images are batched (``spec.batch`` per forward pass; each its own size: the scorer resizes each one in the graph
and stacks them). Each image's loss depends only on its own logits, so batching changes no image's gradient.
"""

from __future__ import annotations

import io
import time
import zlib

import numpy as np
import torch

from . import scorer as scoring
from .edits import EditJob, EditOutcome, batches

GRID_TOLERANCE = 1e-4   # in 1/255 units: float error must not cost a step that the budget allows


def to_tensor(image) -> torch.Tensor:
    """A PIL RGB image as float [3, H, W] in [0, 1] (uint8 / 255)."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255.0


def region_mask(shape: tuple[int, int], box: tuple[float, float, float, float] | None) -> torch.Tensor:
    """[1, H, W]: 1 at the pixels whose centre lies in ``box`` (x1, y1, x2, y2, original pixels), else 0; all 1
    without a box."""
    h, w = shape
    if box is None:
        return torch.ones(1, h, w)
    x1, y1, x2, y2 = box
    ys, xs = torch.arange(h) + 0.5, torch.arange(w) + 0.5
    inside = ((ys >= y1) & (ys <= y2))[:, None] & ((xs >= x1) & (xs <= x2))[None, :]
    return inside[None].float()


def job_seed(seed: int, key: str, source: str, target: str) -> int:
    """A seed for one image and direction, the same in every process (crc32, not Python's salted hash)."""
    return (int(seed) * 1_000_003 + zlib.crc32(f"{key}|{source}|{target}".encode())) % (2 ** 63)


def to_grid(x0: torch.Tensor, delta: torch.Tensor, eps: float) -> np.ndarray:
    """The edited image on the 8-bit grid, rounded towards the original: uint8 [H, W, 3].

    k0 = 255 x0 (whole numbers: x0 came from uint8); each value moves by sign(d) floor(|d|) steps, d = 255 delta,
    capped at floor(255 eps): so |k - k0| <= 255 eps everywhere, and the saved file keeps the bound exactly."""
    k0 = torch.round(x0.double() * 255.0)
    d = delta.double() * 255.0
    limit = np.floor(eps * 255.0 + GRID_TOLERANCE)
    steps = torch.sign(d) * torch.floor(d.abs() + GRID_TOLERANCE).clamp(max=limit)
    k = (k0 + steps).clamp(0, 255)
    return k.permute(1, 2, 0).to(torch.uint8).cpu().numpy()


def png_round_trip(pixels: np.ndarray):
    """(PNG bytes, the decoded RGB PIL image) of uint8 [H, W, 3]; PNG is lossless, so they hold the same values."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels, dtype=np.uint8)).save(buffer, format="PNG")
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        decoded.load()
        image = decoded.convert("RGB")
    return data, image


def sizes(original: np.ndarray, edited: np.ndarray) -> tuple[float, float]:
    """(L2, L-inf) of edited - original, in [0, 1] pixel units over every value (all pixels and channels)."""
    diff = (edited.astype(np.float64) - original.astype(np.float64)) / 255.0
    return float(np.sqrt((diff ** 2).sum())), float(np.abs(diff).max()) if diff.size else 0.0


def finish(job: EditJob, x0: torch.Tensor, delta: torch.Tensor, seconds: float) -> EditOutcome:
    """Project an edit onto the grid, save it as PNG, decode it, and measure it."""
    pixels = to_grid(x0, delta, job.spec.eps)
    data, image = png_round_trip(pixels)
    l2, linf = sizes(np.asarray(job.image.convert("RGB")), np.asarray(image))
    return EditOutcome(image=image, png=data, l2=l2, linf=linf, seconds=seconds)


def pgd_deltas(scorer, x0s: list[torch.Tensor], masks: list[torch.Tensor | None], weights: torch.Tensor,
               queries: list[str], eps: float, steps: int, step_size: float | None,
               starts: list[torch.Tensor] | None = None) -> list[torch.Tensor]:
    """PGD on a batch of images (each [3, H, W], its own size; a mask [1, H, W] or None for the whole image);
    returns the deltas (before the 8-bit grid). Every delta stays in the ball and keeps x0 + delta in [0, 1]."""
    device = torch.device(scorer.device)
    step = float(step_size) if step_size is not None else 2.5 * eps / max(steps, 1)
    x0s = [x.to(device) for x in x0s]
    masks = [None if m is None else m.to(device) for m in masks]
    deltas = []
    for x, m, start in zip(x0s, masks, starts or [None] * len(x0s)):
        d = torch.zeros_like(x) if start is None else start.to(device).clamp(-eps, eps)
        deltas.append(_project(d if m is None else d * m, x))
    for _ in range(steps):
        for d in deltas:
            d.requires_grad_(True)
        with torch.enable_grad():
            logits = scorer.logits([x + d for x, d in zip(x0s, deltas)], queries)
            loss = scoring.attribute_loss(logits.float(), weights).sum()
            grads = torch.autograd.grad(loss, deltas)
        with torch.no_grad():
            moved = []
            for x, d, g, m in zip(x0s, deltas, grads, masks):
                d = d.detach().sub_(g.sign_().mul_(step)).clamp_(-eps, eps)
                moved.append(_project(d if m is None else d.mul_(m), x))
            deltas = moved
    return [d.detach().cpu() for d in deltas]


def _project(delta: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """delta clipped so that x0 + delta stays in [0, 1]."""
    return torch.clamp(delta, min=-x0, max=1.0 - x0)


def pgd_edit(scorer, jobs: list[EditJob]) -> list[EditOutcome]:
    """The pixel edit of every job, ``spec.batch`` images per PGD batch (all jobs share one spec)."""
    if scorer is None:
        raise ValueError("the pixel edit needs a scorer")
    out: list[EditOutcome] = []
    for group in batches(jobs):
        spec = group[0].spec
        t0 = time.perf_counter()
        x0s = [to_tensor(job.image) for job in group]
        masks = [None if job.region is None else region_mask(tuple(x.shape[1:]), job.region) for x, job in zip(x0s, group)]
        axis = group[0].axis
        queries = list(axis.queries)
        weights = scoring.loss_weights(axis, queries, [(job.source, job.target) for job in group])
        starts = None
        if spec.random_start:
            starts = []
            for x, job in zip(x0s, group):
                gen = torch.Generator().manual_seed(job_seed(spec.seed, job.key, job.source, job.target))
                starts.append((torch.rand(x.shape, generator=gen) * 2 - 1) * spec.eps)
        deltas = pgd_deltas(scorer, x0s, masks, weights, queries, spec.eps, spec.steps, spec.step_size, starts)
        done = [finish(job, x, d, 0.0) for job, x, d in zip(group, x0s, deltas)]
        for outcome in done:
            outcome.seconds = (time.perf_counter() - t0) / len(group)
        out += done
    return out
