"""``bench.evaluate(model, processor, tasks, ...)``: evaluate a transformers model already in memory, e.g. inside a
training loop, through the SAME runner path as ``bench run`` (plan, tasks, worker code, rows, metrics), in this
process: no second copy of the model, no subprocess, no Ray.

``import bench`` stays light: ``bench.evaluate`` (this module's `evaluate`) is imported on first use, and this
module imports torch, pandas and transformers only when `evaluate` runs.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence


@dataclass
class Results:
    """What `evaluate` returns: each task's per-sample rows (as in its ``rows.parquet``), the metrics (the
    ``metrics.json`` dict) and, with ``output=``, the run folder."""

    rows: dict[str, Any]               # task name -> pandas.DataFrame
    metrics: dict[str, Any]
    run_dir: Path | None = None

    def value(self, name: str, metric: str | None = None) -> float | None:
        """The value of ``metric`` (default: the primary one) of task or group ``name``, as stored in metrics.json
        (fractions, tokens for lengths)."""
        entry = self.metrics.get("tasks", {}).get(name) or self.metrics.get("groups", {}).get(name)
        if entry is None:
            from .errors import ConfigError

            known = sorted({*self.metrics.get("tasks", {}), *self.metrics.get("groups", {})})
            raise ConfigError(f"no task or group {name!r} in these results; they hold {', '.join(known)}")
        return entry["metrics"][metric or entry["primary"]]["value"]


def evaluate(model: Any, processor: Any, tasks: str | Sequence[str], *, data_root: str | Path | None = None,
             output: str | Path | None = None, run_name: str | None = None, batch_size: int = 8,
             limit: int | None = None, seed: int = 0, set: dict[str, Any] | None = None,  # noqa: A002 - the CLI's --set
             answer_mode: str | None = None, bootstrap_resamples: int = 1000, progress: bool = False) -> Results:
    """Evaluate ``model`` (a transformers image-text-to-text model) with its ``processor`` on ``tasks`` (names,
    group names or spec files, as ``bench run --tasks``; a comma-separated string or a list), where the model is:
    its own device, dtype and weights, in this process.

    ``set``: task parameters (``--set``, with typed values); ``answer_mode``: ``--answer-mode``; the other keywords
    are those of ``bench run``. Without ``output`` the run goes to a temporary folder that is removed before this
    returns (also on error); with ``output`` it is a normal run folder ``output/<run_name>`` whose manifest records
    the model's identity (its config and a sha256 of its weights; cost: one read of the weights, see
    `bench.models.in_memory`). The default run name carries the first digits of that hash, so each state of the
    weights gets its own folder and evaluating the same weights again finds it finished. No leaderboard is
    refreshed (``bench leaderboard --results OUTPUT`` makes one).

    On exit, also on error, everything the evaluation touches is as it was: each module's ``training`` flag, each
    parameter's ``requires_grad``, every parameter's and buffer's device and dtype, the attention implementation,
    the generation config, the tokenizer's padding and truncation sides, torch's thread count and RNG states.
    """
    import torch

    from .config import RunConfig
    from .models.in_memory import InMemoryFactory
    from .runner.run import run
    from .runner.store import RunStore

    names = [t.strip() for t in tasks.split(",") if t.strip()] if isinstance(tasks, str) else [str(t) for t in tasks]
    overrides = dict(set or {})
    if answer_mode is not None:
        overrides["answer_mode"] = answer_mode
    with preserved_state(model, processor):
        factory = InMemoryFactory.over(model, processor)
        with _run_folder(output) as folder:
            config = RunConfig(model=factory.spec.display, tasks=names, devices=factory.device(), batch_size=batch_size,
                               limit=limit, run_name=run_name, output=folder, data_root=data_root, seed=seed,
                               overrides=overrides, write_leaderboard=False, progress=progress,
                               bootstrap_resamples=bootstrap_resamples, threads=torch.get_num_threads())
            result = run(config, factory=factory)
            store = RunStore(result.run_dir)
            rows = {name: store.read_rows(name) for name in store.read_manifest()["tasks"]}
    return Results(rows, result.metrics or {}, result.run_dir if output is not None else None)


@contextlib.contextmanager
def _run_folder(output: str | Path | None) -> Iterator[Path]:
    if output is not None:
        yield Path(output).expanduser()
        return
    with tempfile.TemporaryDirectory(prefix="bench-evaluate-") as folder:
        yield Path(folder)


@contextlib.contextmanager
def preserved_state(model: Any, processor: Any) -> Iterator[None]:
    """Within the block anything may change the model's modes and flags; on exit (also on error) they are put back:
    modules' ``training`` flags, parameters' ``requires_grad``, tensors' device and dtype (moved back if moved), the
    attention implementation, the generation config, the tokenizer's padding/truncation sides, torch's thread count
    and its CPU and CUDA RNG states."""
    import torch

    modes = [(module, module.training) for module in model.modules()]
    grads = [(param, param.requires_grad) for param in model.parameters()]
    placement = [(module, kind, name, tensor.device, tensor.dtype) for module in model.modules()
                 for kind in ("_parameters", "_buffers") for name, tensor in getattr(module, kind).items()
                 if tensor is not None]
    tokenizer = getattr(processor, "tokenizer", None)
    sides = {attr: getattr(tokenizer, attr) for attr in ("padding_side", "truncation_side") if hasattr(tokenizer, attr)}
    config = getattr(model, "config", None)
    attn = getattr(config, "_attn_implementation", None)
    generation = copy.deepcopy(getattr(model, "generation_config", None))
    threads = torch.get_num_threads()
    rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        with torch.no_grad():
            for module, kind, name, device, dtype in placement:
                tensor = getattr(module, kind).get(name)
                if tensor is not None and (tensor.device != device or tensor.dtype != dtype):
                    if kind == "_parameters":
                        tensor.data = tensor.data.to(device=device, dtype=dtype)
                    else:
                        module._buffers[name] = tensor.to(device=device, dtype=dtype)
        for module, flag in modes:
            module.training = flag
        for param, flag in grads:
            param.requires_grad_(flag)
        for attr, value in sides.items():
            setattr(tokenizer, attr, value)
        if config is not None and getattr(config, "_attn_implementation", None) != attn and hasattr(model, "set_attn_implementation"):
            model.set_attn_implementation(attn)
        if generation is not None and model.generation_config.to_dict() != generation.to_dict():
            model.generation_config = generation
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        torch.random.set_rng_state(rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)
