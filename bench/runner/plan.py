"""Resolve a run before any work: tasks, samples, chunks, fingerprints, devices, model identity.

Everything that can be wrong with a configuration (unknown task or model, malformed YAML, missing
data) fails here, before a model is loaded or a file is written.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import RunConfig
from ..errors import ConfigError, DataError
from ..metrics.bootstrap import BootstrapConfig
from ..models.base import ModelFactory
from ..registry import MODELS, TASK_TYPES
from ..spec import TaskSpec, all_specs, load_spec_file, sha256_json
from ..tasks.base import Sample, TaskContext, TaskType
from ..validation import defaults
from .launchers import launcher_for
from .messages import Chunk, WorkUnit
from .store import RunStore, sample_hash


@dataclass
class TaskPlan:
    task: TaskType
    samples: list[Sample]
    chunks: list[Chunk]
    fingerprint: dict[str, Any]


@dataclass
class Plan:
    config: RunConfig
    factory: ModelFactory
    tasks: dict[str, TaskPlan]
    groups: dict[str, list[str]]
    run_name: str
    store: RunStore
    devices: list[str]
    missing_images: list[tuple[str, Sample]] = field(default_factory=list)

    @property
    def n_samples(self) -> int:
        return sum(len(tp.samples) for tp in self.tasks.values())


NEEDS = {
    "detect": "a model that detects from its own vision embedding (a grounded model, e.g. tiny-grounded or grounded)",
    "explain:ga": "gradient alignment, which only a grounded model offers (tiny-grounded or grounded)",
    "explain:white": "gradients or attention through the image, which LLaVA-1.5-style models and the grounded model "
                     "offer (other families run the black-box methods: occlusion, feature_ablation, random)",
    "explain:black": "a model whose answers can be scored for perturbed images",
    "embedding": "a shared vision embedding that its own detector reads, for the embedding edit (a grounded model: "
                 "tiny-grounded or grounded; other models take the pixel edit: edits=pixel,placebo)",
}


def resolve_specs(names: list[str]) -> list[TaskSpec]:
    """Task names, group names or spec file paths -> specs (a group expands to all its tasks)."""
    known = all_specs()
    groups: dict[str, list[str]] = {}
    for spec in known.values():
        if spec.group:
            groups.setdefault(spec.group, []).append(spec.name)
    out: dict[str, TaskSpec] = {}

    def add(spec: TaskSpec) -> None:
        if spec.name in out and out[spec.name].source != spec.source:
            raise ConfigError(f"--tasks: two task specs are named {spec.name!r}: {out[spec.name].source} and {spec.source}; "
                              "task names must be unique in a run")
        out[spec.name] = spec

    for name in names:
        if name.endswith((".yaml", ".yml")) or "/" in name or Path(name).is_dir():
            add(load_spec_file(Path(name)))
        elif name in known:
            add(known[name])
        elif name in groups:
            for member in sorted(groups[name]):
                add(known[member])
        else:
            import difflib

            close = difflib.get_close_matches(name, list(known) + list(groups), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else "; run `bench tasks` to list them"
            raise ConfigError(f"unknown task {name!r}{hint}")
    return list(out.values())


def parse_devices(text: str, single_worker: bool) -> list[str]:
    """cpu | cpu:N (N processes) | cuda:0,cuda:1 | auto (every visible GPU, else the CPU).

    ``single_worker``: the model spans devices itself (device_map=auto), so one worker only. A device this
    torch cannot use (CUDA on a CPU-only build, a GPU index past the last one, MPS off a Mac) is refused here,
    before any model is built."""
    text = text.strip()
    if text == "auto":
        import torch

        n = torch.cuda.device_count()
        if single_worker:
            return ["cuda" if n else "cpu"]
        devices = [f"cuda:{i}" for i in range(n)] or ["cpu"]
    elif m := re.fullmatch(r"cpu(?::(\d+))?", text):
        devices = ["cpu"] * int(m.group(1) or 1)
        if not devices:
            raise ConfigError("--devices: cpu:N needs N of at least 1")
    else:
        devices = [d.strip() for d in text.split(",") if d.strip()]
        for d in devices:
            if not re.fullmatch(r"cuda(:\d+)?|cpu|mps", d):
                raise ConfigError(f"--devices: cannot read {d!r} (use cpu, cpu:N, cuda:0,cuda:1 or auto)")
        check_devices_available(devices)
    if not devices:
        raise ConfigError("--devices: no device given")
    if single_worker and len(devices) > 1:
        raise ConfigError("--devices: with device_map=auto one worker spans every visible GPU; use --devices auto")
    return devices


def check_devices_available(devices: list[str]) -> None:
    wanted = [d for d in devices if d != "cpu"]
    if not wanted:
        return
    import torch

    n_cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    for d in wanted:
        if d.startswith("cuda"):
            if n_cuda == 0:
                build = "a CPU-only build of torch" if torch.version.cuda is None else "torch sees no CUDA device"
                raise ConfigError(f"--devices: {d} asked for, but {build} is installed here; use --devices cpu")
            index = int(d.partition(":")[2] or 0)
            if index >= n_cuda:
                raise ConfigError(f"--devices: {d} asked for, but only {n_cuda} CUDA device(s) are visible (cuda:0..cuda:{n_cuda - 1})")
        elif d == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError("--devices: mps asked for, but this torch has no usable MPS device; use --devices cpu")


RUN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
MAX_RUN_NAME = 120


def check_run_name(name: str) -> str:
    """A run name is one plain path component: no separators, not '.' or '..', not too long for a file name."""
    if not RUN_NAME_RE.fullmatch(name) or name in (".", ".."):
        raise ConfigError(f"--run-name: use letters, digits and . _ + - only, starting with a letter or digit, got {name!r}")
    if len(name) > MAX_RUN_NAME:
        raise ConfigError(f"--run-name: at most {MAX_RUN_NAME} characters, got {len(name)}")
    return name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def default_run_name(model: str, tasks: list[str], groups: dict[str, list[str]] | None = None) -> str:
    """``<model>__<tasks>``, where the tasks of a complete group are named by the group (``tiny-llava__pope_mini``)."""
    names: list[str] = []
    for task in tasks:
        group = next((g for g, members in (groups or {}).items() if task in members), None)
        label = group or task
        if label not in names:
            names.append(label)
    name = f"{_slug(model)}__{_slug('+'.join(names))}"
    if len(name) > 100:
        name = name[:80] + "-" + hashlib.sha256(name.encode()).hexdigest()[:12]
    return name


def resolve_run_name(config: RunConfig, model: str, tasks: list[str], groups: dict[str, list[str]]) -> str:
    """The run name: given, or the default; a folder made under the former default (the tasks' names joined, before
    groups named it) keeps resuming under its own name."""
    if config.run_name:
        return config.run_name
    name = default_run_name(model, tasks, groups)
    former = default_run_name(model, tasks)
    if former != name and (config.output / former / "manifest.json").exists() and not (config.output / name).exists():
        return former
    return name


def chunk_samples(task: str, samples: list[Sample], images_per_chunk: int) -> list[Chunk]:
    """All samples of one image stay together; chunks hold ``images_per_chunk`` images each."""
    by_image: dict[str, list[Sample]] = {}
    for sample in samples:
        by_image.setdefault(sample.group, []).append(sample)
    images = list(by_image.values())
    chunks = []
    for start in range(0, len(images), images_per_chunk):
        members = sorted((s for group in images[start:start + images_per_chunk] for s in group), key=lambda s: s.index)
        chunks.append(Chunk(task, len(chunks), members, sample_hash([s.id for s in members])))
    return chunks


def work_units(chunks: list[Chunk], groups: dict[str, str | None]) -> list[WorkUnit]:
    """Bundle the chunks that ask about the same images within one group of tasks (chunk k of each POPE split), so
    one worker gets all of an image's questions and its shared-prefix cache serves them all. Other chunks go
    alone. Units come in chunk order, round-robin over tasks."""
    bundles: dict[tuple, list[Chunk]] = {}
    for chunk in chunks:
        images = frozenset(s.group for s in chunk.samples)
        key = (groups.get(chunk.task) or f"task:{chunk.task}", images)
        bundles.setdefault(key, []).append(chunk)
    units = [WorkUnit(members) for members in bundles.values()]
    return sorted(units, key=lambda u: min(c.index for c in u.chunks))


def task_fingerprint(task: TaskType) -> dict[str, Any]:
    """The spec (with parameters set to their default left out, so typing a default changes nothing), the data
    files' checksums and the image folders' listings."""
    normalized = task.spec.normalized()
    default = defaults(task.Params)
    normalized["params"] = {k: v for k, v in normalized["params"].items() if k not in default or default[k] != v}
    spec_hash = sha256_json(normalized)
    data = task.data_fingerprint()
    return {"sha256": sha256_json({"spec": spec_hash, "data": data}), "spec_sha256": spec_hash, "data": data}


def build_tasks(config: RunConfig) -> list[TaskType]:
    specs = resolve_specs(config.tasks)
    context = TaskContext(config.data_root, config.seed, BootstrapConfig(config.bootstrap_resamples, config.seed))
    tasks = []
    used: set[str] = set()
    for spec in specs:
        cls = TASK_TYPES.get(spec.type)
        fields = set(cls.Params.__dataclass_fields__)
        overrides = {k: v for k, v in config.overrides.items() if k in fields}
        used |= set(overrides)
        tasks.append(cls(spec.with_params(overrides), context))
    unused = sorted(set(config.overrides) - used)
    if unused:
        raise ConfigError(f"--set: no selected task has a parameter '{unused[0]}'")
    return tasks


def make_plan(config: RunConfig, factory: ModelFactory | None = None) -> Plan:
    """``factory``: a model factory built by the caller (`bench.evaluate`'s in-memory model) instead of the one
    the registry builds from ``config.model``."""
    model_spec = config.model_spec
    if factory is None:
        factory = MODELS.get(model_spec.adapter)(model_spec)
    devices = launcher_for(config).devices(config.devices, single_worker=not factory.worker_devices_allowed())
    tasks = build_tasks(config)
    for task in tasks:
        missing = task.needs() - factory.capabilities()
        if missing:
            need = sorted(missing)[0]
            raise ConfigError(f"task {task.name} needs {NEEDS.get(need, need)}; {model_spec.display} cannot"
                              + (". For other models set grounding=external with a detector" if need == "detect" else ""))
    plans: dict[str, TaskPlan] = {}
    missing: list[tuple[str, Sample]] = []
    for task in tasks:
        samples = task.samples()
        if config.limit is not None:
            samples = samples[: config.limit]
        if not samples:
            raise DataError(f"task {task.name}: the dataset gave no samples ({task.spec.source})")
        exists: dict[str, bool] = {}
        missing += [(task.name, s) for s in samples if s.image.path is not None
                    and not exists.setdefault(s.image.path, Path(s.image.path).exists())]
        plans[task.name] = TaskPlan(task, samples, chunk_samples(task.name, samples, config.chunk_images), task_fingerprint(task))
    if len(missing) > config.max_errors:
        name, sample = missing[0]
        n_files = len({s.image.path for _, s in missing})
        more = f" ({n_files} images missing in all, {len(missing)} samples)" if n_files > 1 else ""
        raise DataError(f"task {name}: image file not found: {sample.image.path}{more}")
    groups: dict[str, list[str]] = {}
    for name, tp in plans.items():
        if tp.task.spec.group:
            groups.setdefault(tp.task.spec.group, []).append(name)
    complete = {g: members for g, members in groups.items() if set(members) >= set(_group_members(g))}
    run_name = check_run_name(resolve_run_name(config, model_spec.display, [t.name for t in tasks], complete))
    return Plan(config, factory, plans, complete, run_name, RunStore(config.output / run_name), devices, missing)


def _group_members(group: str) -> list[str]:
    return [s.name for s in all_specs().values() if s.group == group]
