"""Answers `ExplainRequest`s: each (image, target) is prepared once for all the methods asked about it, each method
makes its map, and the map's insertion/deletion curves are scored in batches.

`bench/explain/request.py` registers `explain` as the handler of `ExplainRequest`
(`bench.models.base.register_handler`), so the runner passes these requests to the adapter like any other kind,
knowing nothing of saliency.
"""

from __future__ import annotations

import time

import numpy as np

from ..errors import ConfigError
from ..registry import SALIENCY_METHODS
from .faithfulness import pixel_curves, token_curves
from .request import ExplainRequest, ExplainResult
from .targets import TargetAbsent


def seam_of(adapter):
    """The adapter's explanation seam (``adapter.explain_seam()``), made once per adapter."""
    seam = getattr(adapter, "_explain_seam", None)
    if seam is None:
        make = getattr(adapter, "explain_seam", None)
        if make is None:
            raise ConfigError(f"{type(adapter).__name__} cannot be explained (it offers no explanation seam)")
        seam = adapter._explain_seam = make()
    return seam


def method_kinds(names) -> dict[str, str]:
    return {name: SALIENCY_METHODS.get(name).kind for name in names}


def explain(adapter, requests: list[ExplainRequest]) -> list[ExplainResult]:
    seam = seam_of(adapter)
    results: list[ExplainResult | None] = [None] * len(requests)
    groups: dict[tuple, list[int]] = {}
    for i, request in enumerate(requests):
        groups.setdefault((request.image.cache_key, request.target.key, request.config.grid), []).append(i)
    for indices in groups.values():
        first = requests[indices[0]]
        try:
            prepared = seam.prepare(first.image, first.target, first.config)
        except TargetAbsent as absent:
            for i in indices:
                results[i] = ExplainResult("absent", requests[i].method, reason=str(absent))
            continue
        for i in indices:
            results[i] = explain_one(seam, prepared, requests[i])
    return results  # type: ignore[return-value]


def explain_one(seam, prepared, request: ExplainRequest) -> ExplainResult:
    method = SALIENCY_METHODS.get(request.method)()
    if method.kind not in seam.kinds:
        raise ConfigError(f"saliency method {request.method} ({method.kind}) is not available for this model "
                          f"(it offers: {', '.join(sorted(seam.kinds))})")
    config, seed = request.config, request.sample_seed
    t0 = time.perf_counter()
    saliency = np.asarray(method.compute(seam, prepared, config, seed), dtype=float)
    seconds = time.perf_counter() - t0
    position = prepared.target_positions[0] if prepared.target_positions else -1   # -1: the black-box path does not know
    result = ExplainResult("ok", request.method, prepared.target_text, prepared.target_ids, position,
                           grid=prepared.space.grid, saliency=saliency, space=prepared.space.to_dict(), seconds=seconds,
                           caption=prepared.caption, category=prepared.extra.get("category"))
    for part in [pixel_curves(seam, prepared, saliency, config, seed)] + (
            [token_curves(seam, prepared, saliency, config, seed)] if config.token_space and "white" in seam.kinds else []):
        result.curves.update(part["curves"])
        result.scores.update(part["scores"])
    if config.sanity:
        result.sanity = sanity_cascade(seam, prepared, method, saliency, config, seed)
    return result


def sanity_cascade(seam, prepared, method, saliency: np.ndarray, config, seed: int) -> dict:
    """The cascading model-parameter randomisation test (Adebayo et al. 2018): the map again after randomising the
    model from its output head down, step by step (seeded), compared with the original map by the Spearman rank
    correlation of absolute values (on the patch grid) and by SSIM (on the model-input pixels). The weights are
    restored after each step."""
    from ..metrics.map_similarity import spearman_abs, ssim

    if not hasattr(seam, "cascade"):
        raise ConfigError("the randomisation test needs a white-box seam (LLaVA-style or grounded models)")
    space = prepared.space
    steps, rho, similarity = [], [], []
    for k, (name, modules) in enumerate(seam.cascade()):
        with seam.randomised(modules, seed=config.seed * 7919 + k):
            other = np.asarray(method.compute(seam, prepared, config, seed), dtype=float)
        steps.append(name)
        rho.append(float(spearman_abs(saliency, other)))
        similarity.append(float(ssim(space.grid_to_input(saliency), space.grid_to_input(other))))
    return {"steps": steps, "spearman": rho, "ssim": similarity}

