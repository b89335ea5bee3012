"""``bench run``: plan, (dry-run or) execute pending chunks, aggregate, refresh the leaderboard."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import RunConfig
from ..errors import BenchError, ResumeError
from ..results.aggregate import aggregate
from ..results.schema import SCHEMA_VERSION
from .execute import Progress, execute
from .plan import Plan, chunk_samples, make_plan

NOT_IN_RESUME_KEY = {"device_map", "cache_dir", "prefix_cache", "prefix_cache_size"}   # speed knobs, same outputs


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any] | None
    pending_chunks: int
    leaderboard: Path | None = None


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def code_version() -> dict[str, Any]:
    root = Path(__file__).resolve().parents[2]
    info: dict[str, Any] = {"bench": __version__}
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if commit.returncode == 0:
            dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=5)
            info.update(git_commit=commit.stdout.strip(), git_dirty=bool(dirty.stdout.strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "datasets", "pandas", "pyarrow", "numpy", "pycocotools",
                 "scikit-learn", "Pillow", "onnxruntime"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def resume_key(plan: Plan, identity: dict[str, Any]) -> dict[str, Any]:
    spec = plan.config.model_spec
    return {
        "model": {"spec": spec.display, "args": {k: v for k, v in sorted(spec.args.items()) if k not in NOT_IN_RESUME_KEY},
                  "identity": identity},
        "seed": plan.config.seed,
        "limit": plan.config.limit,
        "chunk_images": plan.config.chunk_images,
        "tasks": {name: {"fingerprint": tp.fingerprint["sha256"], "settings": tp.task.settings()} for name, tp in plan.tasks.items()},
    }


def check_resume(run_dir: Path, old: dict[str, Any], new: dict[str, Any]) -> None:
    def refuse(what: str, was: Any, now_: Any) -> None:
        raise ResumeError(f"{run_dir}: this run was made with a different {what} (was {was!r}, now {now_!r}); "
                          "use another --run-name, or delete the folder to start over")

    for field in ("model", "seed", "limit", "chunk_images"):
        if old.get(field) != new[field]:
            if field == "model":
                for part in ("spec", "args", "identity"):
                    if old["model"].get(part) != new["model"][part]:
                        refuse(f"model {part}", old["model"].get(part), new["model"][part])
            refuse(field, old.get(field), new[field])
    for name, task in new["tasks"].items():
        before = old.get("tasks", {}).get(name)
        if before is None:
            continue
        if before["settings"] != task["settings"]:
            changed = sorted(k for k in set(before["settings"]) | set(task["settings"]) if before["settings"].get(k) != task["settings"].get(k))
            refuse(f"setting '{changed[0]}' for task {name}", before["settings"].get(changed[0]), task["settings"].get(changed[0]))
        if before["fingerprint"] != task["fingerprint"]:
            refuse(f"fingerprint for task {name} (its spec or data changed)", before["fingerprint"], task["fingerprint"])


def describe_plan(plan: Plan, pending: int | None = None) -> str:
    config = plan.config
    lines = [f"run:      {plan.run_name} -> {plan.store.root}",
             f"model:    {config.model_spec.display} {config.model_spec.args or ''}".rstrip(),
             f"devices:  {', '.join(plan.devices)} (batch size {config.batch_size}, {config.chunk_images} images per chunk)",
             f"seed:     {config.seed}; max errors {config.max_errors}" + (f"; limit {config.limit}" if config.limit else "")]
    for name, tp in plan.tasks.items():
        done = len(plan.store.done_chunks(name))
        lines.append(f"task:     {name} ({tp.task.spec.type}) {len(tp.samples)} samples, {len({s.group for s in tp.samples})} images, "
                     f"{len(tp.chunks)} chunks ({done} done), fingerprint {tp.fingerprint['sha256'][:12]}")
        example = tp.task.prompt_text(tp.samples[0])
        if example is not None:
            lines.append(f"          first prompt: {example!r}")
    for group, members in plan.groups.items():
        lines.append(f"group:    {group} = {', '.join(members)}")
    if plan.missing_images:
        lines.append(f"missing:  {len(plan.missing_images)} image files (allowed by --max-errors {config.max_errors})")
    return "\n".join(lines)


def run(config: RunConfig, out=None) -> RunResult:
    out = out or sys.stdout
    plan = make_plan(config)
    store = plan.store
    if config.dry_run:
        print(describe_plan(plan), file=out)
        print("dry run: nothing loaded, nothing written", file=out)
        return RunResult(store.root, None, sum(len(tp.chunks) for tp in plan.tasks.values()))

    plan.factory.prepare()
    identity = plan.factory.identity()
    key = resume_key(plan, identity)
    started = now()
    if store.exists():
        manifest = store.read_manifest()
        check_resume(store.root, manifest.get("resume_key", {}), key)
        store.clean_partial()
        manifest["resume_key"]["tasks"].update(key["tasks"])
        manifest.setdefault("resumed", []).append(started)
    else:
        manifest = {"schema_version": SCHEMA_VERSION, "run_name": plan.run_name, "created": started, "resume_key": key}
    manifest.update(
        status="running", updated=started, command=sys.argv, config=config.to_json(), devices=plan.devices,
        model={"spec": config.model_spec.display, "args": config.model_spec.args, "identity": identity},
        environment={"packages": package_versions(), "platform": platform.platform(), "code": code_version()},
    )
    tasks_info = manifest.setdefault("tasks", {})
    for name, tp in plan.tasks.items():
        tasks_info[name] = {"type": tp.task.spec.type, "group": tp.task.spec.group, "source": str(tp.task.spec.source),
                            "spec": tp.task.spec.normalized(), "fingerprint": tp.fingerprint, "settings": tp.task.settings(),
                            "n_samples": len(tp.samples), "n_chunks": len(tp.chunks), **tp.task.manifest_extras()}
    store.write_manifest(manifest)
    for name, tp in plan.tasks.items():   # task preparation (e.g. detector ground truth), cached in the run folder
        tp.samples = tp.task.prepare(tp.samples, store.root / "tasks" / name)
        tp.chunks = chunk_samples(name, tp.samples, config.chunk_images)

    # Chunks go round-robin over tasks (chunk 0 of every task, then chunk 1, ...): tasks over the same images
    # (the POPE splits) then meet the same image close together, and an adapter can reuse its work on it.
    order = {name: i for i, name in enumerate(plan.tasks)}
    pending = sorted((c for name, tp in plan.tasks.items() for c in tp.chunks if c.index not in store.done_chunks(name)),
                     key=lambda c: (c.index, order[c.task]))
    progress = Progress(plan, total=sum(len(c.samples) for c in pending))
    progress.errors = _existing_errors(plan)
    examples = {name: text for name, tp in plan.tasks.items() if (text := tp.task.prompt_text(tp.samples[0])) is not None}
    t0 = time.time()
    try:
        if pending:
            workers = execute(plan, pending, progress, examples)
            manifest["workers"] = workers
            manifest["model"]["description"] = workers[0]["description"] if workers else None
            for name in examples:
                tasks_info[name]["prompt_as_sent"] = workers[0]["prompts"].get(name) if workers else None
    except BaseException as exc:
        manifest.update(status="interrupted" if isinstance(exc, KeyboardInterrupt) else "failed", updated=now(),
                        failure=str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        store.write_manifest(manifest)
        raise
    finally:
        progress.close()

    metrics = finish(plan, manifest)
    manifest.update(status="complete", updated=now(), finished=now())
    manifest.setdefault("times", []).append({"started": started, "seconds": round(time.time() - t0, 3),
                                             "samples": progress.done})
    store.write_manifest(manifest)
    board = None
    if config.write_leaderboard:
        from ..results.leaderboard import write_leaderboard

        board = write_leaderboard(config.output, config.leaderboard_path)
    return RunResult(store.root, metrics, len(pending), board)


def _existing_errors(plan: Plan) -> int:
    total = 0
    for name in plan.tasks:
        rows = plan.store.read_chunks(name)
        if rows is not None:
            total += int(rows["error"].notna().sum())
    if total > plan.config.max_errors:
        raise BenchError(f"{plan.store.root}: {total} samples already failed, more than --max-errors {plan.config.max_errors}")
    return total


def finish(plan: Plan, manifest: dict[str, Any]) -> dict[str, Any]:
    """Merge each task's chunks into rows.parquet and write metrics.json (both atomically)."""
    from .store import atomic_write_json, write_table

    rows = {}
    for name, tp in plan.tasks.items():
        table = plan.store.read_chunks(name)
        if table is None or len(table) != len(tp.samples):
            raise BenchError(f"{plan.store.root}: task {name} has {0 if table is None else len(table)} rows, expected {len(tp.samples)}")
        write_table(plan.store.rows_path(name), table, tp.task.row_schema())
        tp.task.write_extras(table, plan.store.rows_path(name).parent)
        rows[name] = table
    metrics = aggregate(plan.run_name, {n: tp.task for n, tp in plan.tasks.items()}, rows, plan.groups, manifest["model"])
    atomic_write_json(plan.store.metrics_path, metrics)
    return metrics
