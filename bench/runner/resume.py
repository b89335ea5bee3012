"""What makes a run folder resumable: the resume key, the settings in effect, and checks of the chunk files.

The key holds the settings that change outputs, as they are in effect, not only as typed. Typed model arguments
whose effect is only known after loading (dtype, attention implementation, image backend, hub revision) are
compared through the first worker's description: ``dtype`` left out on a CPU is float32, so a resume that types
``dtype=float32`` is the same run, and one with ``dtype=bfloat16`` is refused before its first chunk is accepted.
A hub model's commit is the one the worker actually loaded; a resume loads exactly that commit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..errors import ResumeError
from .store import ChunkDamaged, RunStore, sample_hash

SPEED_KNOBS = {"device_map", "cache_dir", "prefix_cache", "prefix_cache_size"}     # same outputs, other speed
EFFECTIVE_ARGS = {"dtype": "dtype", "attn_implementation": "attn_implementation", "image_backend": "image_backend",
                  "revision": "commit"}                                               # typed arg -> effective field
EFFECTIVE_FIELDS = ("dtype", "attn_implementation", "device_type", "image_backend", "commit")


def _without_hub_commit(identity: Any) -> Any:
    """A hub identity names repo and revision; its cached commit is unknown before a first download, so it is
    checked through the effective settings instead."""
    if isinstance(identity, dict):
        return {k: _without_hub_commit(v) for k, v in identity.items() if not (k == "commit" and identity.get("kind") == "hub")}
    return identity


def resume_key(plan, identity: dict[str, Any]) -> dict[str, Any]:
    spec = plan.config.model_spec
    args = {k: v for k, v in sorted(spec.args.items()) if k not in SPEED_KNOBS}
    return {
        "model": {"spec": spec.display, "args": {k: v for k, v in args.items() if k not in EFFECTIVE_ARGS},
                  "typed": {k: v for k, v in args.items() if k in EFFECTIVE_ARGS},
                  "identity": _without_hub_commit(identity)},
        "seed": plan.config.seed,
        "limit": plan.config.limit,
        "chunk_images": plan.config.chunk_images,
        "tasks": {name: {"fingerprint": tp.fingerprint["sha256"], "settings": tp.task.settings()} for name, tp in plan.tasks.items()},
    }


def effective_settings(info: dict[str, Any]) -> dict[str, Any]:
    """The settings in effect in a loaded worker, from its description."""
    d = info.get("description") or {}
    device = str(d.get("device", info.get("device", "")))
    return {"dtype": d.get("dtype"), "attn_implementation": d.get("attn_implementation"),
            "device_type": device.partition(":")[0] or None, "image_backend": d.get("image_backend"),
            "commit": d.get("commit")}


def refuse(run_dir: Path, what: str, was: Any, now: Any) -> None:
    raise ResumeError(f"{run_dir}: this run was made with a different {what} (was {was!r}, now {now!r}); "
                      "use another --run-name, or delete the folder to start over")


def check_resume(run_dir: Path, old: dict[str, Any], new: dict[str, Any],
                 fingerprint_ok: Callable[[str], bool] = lambda task: False) -> None:
    """Refuse a resume whose settings differ. ``fingerprint_ok(task)``: a changed fingerprint that is allowed (the
    changes are confined to the files of samples being recomputed)."""
    old_model, new_model = old.get("model", {}), new["model"]
    for part in ("spec", "args", "identity"):
        before = old_model.get(part)
        if part == "identity":
            before = _without_hub_commit(before)
        if part == "args" and "typed" not in old_model:     # a key written before typed args were split off
            before = {k: v for k, v in (before or {}).items() if k not in EFFECTIVE_ARGS}
        if before != new_model[part]:
            refuse(run_dir, f"model {part}", before, new_model[part])
    old_typed = old_model.get("typed", {})
    for name, value in new_model["typed"].items():           # both typed and different: refuse now, before loading
        if name in old_typed and old_typed[name] != value:
            refuse(run_dir, f"model argument '{name}'", old_typed[name], value)
    for field in ("seed", "limit", "chunk_images"):
        if old.get(field) != new[field]:
            refuse(run_dir, field, old.get(field), new[field])
    for name, task in new["tasks"].items():
        before = old.get("tasks", {}).get(name)
        if before is None:
            continue
        if before["settings"] != task["settings"]:
            changed = sorted(k for k in set(before["settings"]) | set(task["settings"]) if before["settings"].get(k) != task["settings"].get(k))
            refuse(run_dir, f"setting '{changed[0]}' for task {name}", before["settings"].get(changed[0]), task["settings"].get(changed[0]))
        if before["fingerprint"] != task["fingerprint"] and not fingerprint_ok(name):
            refuse(run_dir, f"fingerprint for task {name} (its spec or data changed)", before["fingerprint"], task["fingerprint"])


def check_effective(run_dir: Path, recorded: dict[str, Any] | None, typed: dict[str, str], now: dict[str, Any]) -> None:
    """A worker's settings in effect must equal the recorded ones (or, on a first run, each other)."""
    if not recorded:
        return
    for field in EFFECTIVE_FIELDS:
        if recorded.get(field) != now.get(field):
            refuse(run_dir, f"{field} in effect", recorded.get(field), now.get(field))


def verify_chunks(store: RunStore, plan, schema_version: str, code_version: str,
                  warn: Callable[[str], None]) -> dict[str, Any]:
    """Check every chunk file of the run against the plan before resuming.

    - a file that cannot be read (truncated, 0 bytes), or whose rows are not the chunk's and not a coherent chunk of
      their own (a foreign file: another chunk's copy, rows that do not match its footer), is set aside (moved to
      ``set_aside/``, named in a warning) and recomputed;
    - a coherent chunk (its rows match its footer's sample hash) that holds another sample set than the plan gives
      it means the run's samples changed: the resume is refused, naming it; so is another schema version;
    - another code version is a warning, recorded in the manifest.
    Returns {"set_aside": [...], "code_versions": [...]}."""
    report: dict[str, Any] = {"set_aside": [], "code_versions": []}
    for name, tp in plan.tasks.items():
        by_index = {c.index: c for c in tp.chunks}
        planned = {c.sample_hash for c in tp.chunks}
        for index, path in store.chunk_files(name).items():
            chunk = by_index.get(index)
            try:
                if chunk is None:
                    raise ChunkDamaged(f"task {name} has no chunk {index} in this run")
                info = store.chunk_info(path)
                meta = info.metadata
                if meta.get("schema_version", schema_version) != schema_version:
                    raise ResumeError(f"{path}: written with results schema version {meta['schema_version']}, this bench "
                                      f"writes version {schema_version}; use another --run-name")
                held = sample_hash(info.sample_ids)
                if held != chunk.sample_hash:
                    if meta.get("sample_hash") != held or held in planned:
                        raise ChunkDamaged(f"its {len(info.sample_ids)} rows are not this chunk's {len(chunk.samples)} samples")
                    raise ResumeError(f"{path}: this chunk holds a different sample set than the run now plans for it "
                                      f"(sample hash {held[:12]} != {chunk.sample_hash[:12]}); "
                                      "use another --run-name, or delete the folder to start over")
                code = meta.get("code_version")
                if code and code != code_version and code not in report["code_versions"]:
                    report["code_versions"].append(code)
                    warn(f"{path.parent}: chunks written by another code version ({code}; now {code_version}); "
                         "kept, and recorded in the manifest")
            except ChunkDamaged as exc:
                target = store.set_aside(path, str(exc))
                report["set_aside"].append({"file": str(path), "reason": str(exc), "moved_to": str(target)})
                warn(f"{path}: {exc}; set aside as {target} and recomputed")
    return report
