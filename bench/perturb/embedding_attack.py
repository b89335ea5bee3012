"""The embedding edit (method.md section 1): perturb the grounded model's shared embedding e so that its OWN
detector, reading e, sees the target attribute; the language model then reads the same edited e.

Loss: the MSE of the detector's class logits (every box) towards +1e6 for the target's queries and -1e6 for the
source's (`scorer.attribute_loss`). Two optimisers:
- ``fgsm`` (the reference): one step e' = e - eps * sign(grad) (the reference's lr 1 is eps 1);
- ``adam``: ``adam_steps`` Adam steps (lr ``adam_lr``) on delta, projected after each onto the L-inf ball of radius
  eps, so both spend the same budget (the reference's Adam variant ran 200 steps; its bound is not recorded).
Every coordinate of e moves (CLS and patches). Images are batched ``spec.batch`` at a time; each image's loss
depends only on its own logits. The edited e is returned; the engine hands it to the adapter under the edited
image's variant key (`GroundedAdapter.put_embedding`) before asking the questions.
"""

from __future__ import annotations

import time

import torch

from . import scorer as scoring
from .edits import EditJob, EditOutcome, batches


def _loss(adapter, e: torch.Tensor, weights: torch.Tensor, queries: list[str]) -> torch.Tensor:
    return scoring.attribute_loss(scoring.embedding_logits(adapter, e, queries).float(), weights).sum()


def attack(adapter, jobs: list[EditJob]) -> list[EditOutcome]:
    if not all(hasattr(adapter, name) for name in ("embedding", "detector_outputs", "put_embedding")):
        from ..errors import ConfigError

        raise ConfigError(f"{type(adapter).__name__} has no shared embedding for the embedding edit (use a grounded model)")
    adapter.owl.requires_grad_(False)
    out: list[EditOutcome] = []
    for group in batches(jobs):
        spec = group[0].spec
        t0 = time.perf_counter()
        axis = group[0].axis
        queries = list(axis.queries)
        weights = scoring.loss_weights(axis, queries, [(job.source, job.target) for job in group])
        e = torch.stack([adapter.embedding(job.key, job.image).detach().clone() for job in group])
        with torch.enable_grad():
            if spec.optimizer == "fgsm":
                e_var = e.clone().requires_grad_(True)
                (grad,) = torch.autograd.grad(_loss(adapter, e_var, weights, queries), e_var)
                delta = -spec.eps * torch.sign(grad)
            else:
                delta = torch.zeros_like(e, requires_grad=True)
                optimiser = torch.optim.Adam([delta], lr=spec.adam_lr)
                for _ in range(spec.adam_steps):
                    (grad,) = torch.autograd.grad(_loss(adapter, e + delta, weights, queries), delta)
                    delta.grad = grad
                    optimiser.step()
                    with torch.no_grad():
                        delta.clamp_(-spec.eps, spec.eps)
                delta = delta.detach()
        edited = (e + delta).detach()
        seconds = (time.perf_counter() - t0) / len(group)
        for i in range(len(group)):
            d = delta[i].double()
            out.append(EditOutcome(embedding=edited[i], l2=float(torch.linalg.vector_norm(d)), linf=float(d.abs().max()),
                                   seconds=seconds))
    return out
