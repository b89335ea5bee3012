"""The placebo: random sign noise of the main edit's budget, in its space (the control every change is compared with).

- pixel space: each value of the original image moves by +-eps (a seeded random sign), inside the same region as the
  main edit, clipped to [0, 1], then saved exactly as the pixel edit is (8-bit grid rounding towards the original,
  PNG round trip), so the two differ only in the direction of their change;
- embedding space: e' = e + eps * random sign, each coordinate of the shared embedding (the reference's FGSM step
  with a random sign in place of the gradient's).
The seed is the run's seed with the image and its direction (`pgd.job_seed`), so a resume draws the same noise.
"""

from __future__ import annotations

import time

import torch

from .edits import EditJob, EditOutcome
from .pgd import finish, job_seed, region_mask, to_tensor


def random_sign(shape, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, tuple(shape), generator=gen).float() * 2.0 - 1.0


def placebo(adapter, jobs: list[EditJob]) -> list[EditOutcome]:
    out = []
    for job in jobs:
        t0 = time.perf_counter()
        spec = job.spec
        seed = job_seed(spec.seed, job.key, job.source, job.target)
        if spec.space == "pixel":
            x0 = to_tensor(job.image)
            delta = random_sign(x0.shape, seed) * spec.eps * region_mask(tuple(x0.shape[1:]), job.region)
            outcome = finish(job, x0, (x0 + delta).clamp(0.0, 1.0) - x0, 0.0)
        elif spec.space == "embedding":
            e = adapter.embedding(job.key, job.image).detach().clone()
            delta = random_sign(e.shape, seed).to(e.device, e.dtype) * spec.eps
            outcome = EditOutcome(embedding=e + delta, l2=float(torch.linalg.vector_norm(delta.double())),
                                  linf=float(delta.abs().max()))
        else:
            raise ValueError(f"the placebo has no {spec.space!r} space")
        outcome.seconds = time.perf_counter() - t0
        out.append(outcome)
    return out
