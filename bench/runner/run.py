"""``bench run``: plan, lock the run folder, compute the pending chunks, aggregate, refresh the leaderboard.

The manifest always tells how the run ended: ``running`` while a process holds the folder's lock, then
``complete``, ``failed`` (with the reason), or ``interrupted`` (Ctrl-C: exit 130; SIGTERM: exit 143). A run whose
process died without saying so (SIGKILL, a lost machine) is marked ``interrupted`` by the next invocation that
finds its lock free, before it resumes.
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import __version__
from ..config import RunConfig
from ..models.base import ModelFactory
from ..errors import BenchError, ConfigError
from ..io import WriteError, atomic_write_json, ensure_dir
from ..results.aggregate import aggregate
from ..results.schema import SCHEMA_VERSION
from ..spec import LISTINGS
from .dispatch import Dispatcher
from .messages import Chunk, ChunkDone
from .plan import Plan, chunk_samples, make_plan, work_units
from .launchers import launcher_for
from .progress import Progress
from .resume import check_effective, check_resume, effective_settings, resume_key, verify_chunks
from .signals import Terminated, terminate_as_exception
from .store import RunLock, RunStore, chunk_metadata, read_parquet
from .worker import WorkerSetup

log = logging.getLogger(__name__)

OOM_MARK = "OutOfMemoryError"


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any] | None
    pending_chunks: int
    leaderboard: Path | None = None
    already_finished: bool = False


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


def code_label(info: dict[str, Any]) -> str:
    """One string for a chunk's footer: the package version and, in a checkout, the commit."""
    label = f"bench {info['bench']}"
    if info.get("git_commit"):
        label += f" @ {info['git_commit'][:12]}" + ("+dirty" if info.get("git_dirty") else "")
    return label


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "datasets", "pandas", "pyarrow", "numpy", "pycocotools",
                 "scikit-learn", "scipy", "Pillow", "onnxruntime", "captum"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


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
        lines.append(f"missing:  {len({s.image.path for _, s in plan.missing_images})} image files, {len(plan.missing_images)} samples "
                     f"(allowed by --max-errors {config.max_errors})")
    return "\n".join(lines)


def check_destinations(config: RunConfig) -> None:
    """Where the run will write must be writable folders (and the leaderboard a file), checked before any work."""
    output = config.output
    for parent in [output, *output.parents]:
        if parent.exists():
            if not parent.is_dir():
                raise WriteError(f"--output {output}: {parent} is a file, not a folder")
            break
    if config.write_leaderboard and config.leaderboard_path.is_dir():
        raise ConfigError(f"--leaderboard {config.leaderboard_path}: is a folder; give the leaderboard file's path")


def run(config: RunConfig, out=None, err=None, factory: ModelFactory | None = None) -> RunResult:
    """``factory``: a model factory given by the caller (`bench.evaluate`: a model already in memory) in place of
    the one ``config.model`` names."""
    out, err = out or sys.stdout, err or sys.stderr
    plan = make_plan(config, factory)
    check_destinations(config)
    if config.dry_run:
        print(describe_plan(plan), file=out)
        print("dry run: nothing loaded, nothing written", file=out)
        return RunResult(plan.store.root, None, sum(len(tp.chunks) for tp in plan.tasks.values()))

    plan.factory.prepare()
    identity = plan.factory.identity()
    ensure_dir(config.output)
    lock = RunLock(plan.store.root).acquire()
    try:
        with terminate_as_exception():
            return Execution(plan, identity, out, err).run()
    finally:
        lock.release()


class Execution:
    """One invocation of a run, holding its folder's lock."""

    def __init__(self, plan: Plan, identity: dict[str, Any], out, err):
        self.plan, self.identity, self.out, self.err = plan, identity, out, err
        self.store: RunStore = plan.store
        self.config = plan.config
        self.key = resume_key(plan, identity)
        self.code = code_version()
        self.manifest: dict[str, Any] = {}
        self.effective: dict[str, Any] | None = None

    def warn(self, message: str) -> None:
        print(f"bench: warning: {message}", file=self.err)

    # -- the manifest ------------------------------------------------------------------------------------------
    def open_manifest(self, started: str) -> None:
        store, config = self.store, self.config
        finished_any = any(store.chunk_files(name) for name in self.plan.tasks)
        if store.exists():
            old = store.read_manifest()
            if old.get("status") == "running":    # its process died without a word: say so before resuming
                reason = "its process ended without saying so (killed, or its machine was lost)"
                old.setdefault("interruptions", []).append({"noticed": started, "last_update": old.get("updated"),
                                                            "reason": reason})
                old.update(status="interrupted", updated=started, failure=reason)
                store.write_manifest(old)
            if finished_any:
                check_resume(store.root, old.get("resume_key", {}), self.key, self.fingerprint_change_ok(old))
                self.manifest = old
                self.manifest.setdefault("resumed", []).append(started)
                self.effective = old.get("resume_key", {}).get("effective")
                self.manifest["resume_key"]["tasks"].update(self.key["tasks"])
            else:   # nothing was computed under the old settings (e.g. the model failed to load): start over
                self.manifest = {"schema_version": SCHEMA_VERSION, "run_name": self.plan.run_name, "created": old.get("created", started),
                                 "resume_key": self.key, "earlier_attempts": old.get("earlier_attempts", []) +
                                 [{k: old.get(k) for k in ("created", "updated", "status", "failure")}]}
        else:
            self.manifest = {"schema_version": SCHEMA_VERSION, "run_name": self.plan.run_name, "created": started,
                             "resume_key": self.key}
        if self.effective:
            self.plan.factory.pin(self.effective)
        self.manifest.update(
            status="running", updated=started, command=sys.argv, config=config.to_json(), devices=self.plan.devices,
            model={"spec": config.model_spec.display, "args": config.model_spec.args, "identity": self.identity,
                   **({"description": self.manifest["model"]["description"]} if self.manifest.get("model", {}).get("description") else {})},
            environment={"packages": package_versions(), "platform": platform.platform(), "code": self.code},
        )
        self.manifest["workers"] = []
        tasks_info = self.manifest.setdefault("tasks", {})
        for name, tp in self.plan.tasks.items():
            previous = tasks_info.get(name, {})
            tasks_info[name] = {"type": tp.task.spec.type, "group": tp.task.spec.group, "source": str(tp.task.spec.source),
                                "spec": tp.task.spec.normalized(), "fingerprint": tp.fingerprint, "settings": tp.task.settings(),
                                "n_samples": len(tp.samples), "n_chunks": len(tp.chunks), **tp.task.manifest_extras(),
                                **({"prompt_as_sent": previous["prompt_as_sent"]} if "prompt_as_sent" in previous else {})}
        store.write_manifest(self.manifest)
        self.record_listings()

    def record_listings(self) -> None:
        """Keep each image folder's listing (names and sizes), so a later --retry-errors can tell which files changed."""
        for name, tp in self.plan.tasks.items():
            for digest in _listing_hashes(tp.fingerprint.get("data")):
                path = self.store.task_dir(name) / "listings" / f"{digest}.json"
                if digest in LISTINGS and not path.exists():
                    atomic_write_json(path, LISTINGS[digest])

    def fingerprint_change_ok(self, old: dict[str, Any]) -> Callable[[str], bool]:
        """With --retry-errors, a task's data fingerprint may differ when only the image files of its error rows
        changed (the user fixed them)."""
        def ok(task: str) -> bool:
            if not self.config.retry_errors:
                return False
            before = old.get("tasks", {}).get(task, {}).get("fingerprint", {})
            now_ = self.plan.tasks[task].fingerprint
            if before.get("spec_sha256") != now_["spec_sha256"]:
                return False
            changed = _changed_files(before.get("data"), now_["data"], self.store.task_dir(task) / "listings")
            if changed is None:
                return False
            rows = self.store.read_chunks(task)
            failed = set() if rows is None else {Path(p).name for p in rows.loc[rows["error"].notna(), "image"]}
            if changed - failed:
                self.warn(f"task {task}: --retry-errors, but files other than those of its error rows changed "
                          f"({sorted(changed - failed)[0]}, ...)")
                return False
            return True
        return ok

    def end(self, status: str, failure: str | None = None, **extra: Any) -> None:
        self.manifest.update(status=status, updated=now(), **extra)
        if failure is not None:
            self.manifest["failure"] = failure
        else:
            self.manifest.pop("failure", None)
        try:
            self.store.write_manifest(self.manifest)
        except BenchError as exc:   # e.g. the disk is full: the next invocation marks the run interrupted
            self.warn(f"could not record status {status!r} in the manifest: {exc}")

    # -- the work ----------------------------------------------------------------------------------------------
    def pending_chunks(self) -> list[Chunk]:
        """Chunks with no file yet, and the error rows worth computing again: those that ran out of memory
        (always) and, with --retry-errors, every error row."""
        pending = []
        for name, tp in self.plan.tasks.items():
            done = self.store.done_chunks(name)
            retry_all = self.config.retry_errors
            rows = self.store.read_chunks(name) if done else None
            failed: dict[str, str] = {}
            if rows is not None:
                failed = {sid: e for sid, e in zip(rows["sample_id"], rows["error"]) if isinstance(e, str) and e}
            for chunk in tp.chunks:
                if chunk.index not in done:
                    pending.append(chunk)
                    continue
                redo = [s for s in chunk.samples if s.id in failed and (retry_all or OOM_MARK in failed[s.id])]
                if redo:
                    pending.append(Chunk(name, chunk.index, redo, chunk.sample_hash, partial=True))
        order = {name: i for i, name in enumerate(self.plan.tasks)}
        return sorted(pending, key=lambda c: (c.index, order[c.task]))

    def existing_errors(self, retried: set[str]) -> int:
        total = 0
        for name in self.plan.tasks:
            rows = self.store.read_chunks(name)
            if rows is not None:
                errors = rows[rows["error"].notna()]
                total += sum(1 for sid in errors["sample_id"] if f"{name}/{sid}" not in retried)
        if total > self.config.max_errors:
            raise BenchError(f"{self.store.root}: {total} samples already failed, more than --max-errors {self.config.max_errors}; "
                             "fix their files and rerun with --retry-errors to compute them again")
        return total

    def setup(self, slot: int, examples: dict[str, str], threads: int) -> WorkerSetup:
        first_task = next(iter(self.plan.tasks.values())).task
        return WorkerSetup(model_factory=self.plan.factory, device=self.plan.devices[slot], batch_size=self.config.batch_size,
                           threads=threads, specs={name: tp.task.spec for name, tp in self.plan.tasks.items()},
                           context=first_task.context, allow_errors=self.config.max_errors > 0, example_prompts=examples)

    def on_ready(self, info: dict[str, Any]) -> None:
        """A worker is loaded: its settings in effect must match the run's before its first chunk is accepted."""
        now_ = effective_settings(info)
        check_effective(self.store.root, self.effective, self.key["model"]["typed"], now_)
        self.manifest["resume_key"]["model"] = self.key["model"]      # typed arguments: recorded once they check out
        if self.effective is None:
            self.effective = now_
            self.manifest["resume_key"]["effective"] = now_
            self.plan.factory.pin(now_)
        self.manifest["workers"].append({"device": info["device"], **({"placement": info["placement"]} if "placement" in info else {})})
        self.manifest["model"]["description"] = info["description"]
        for name, text in info.get("prompts", {}).items():
            self.manifest["tasks"][name]["prompt_as_sent"] = text
        self.store.write_manifest(self.manifest)

    def on_done(self, done: ChunkDone, progress: Progress) -> None:
        task = self.plan.tasks[done.task].task
        self.store.commit_chunk(done.task, done.index, done.rows, done.artifacts, task.row_schema(),
                                chunk_metadata(done.sample_hash, code_label(self.code)), partial=done.partial)
        errors = [r for r in done.rows if r.get("error")]
        first = f"{done.task}/{errors[0]['sample_id']} ({errors[0]['image']}): {errors[0]['error']}" if errors else None
        progress.chunk_done(len(done.rows), len(errors), first)

    def run(self) -> RunResult:
        plan, store, config = self.plan, self.store, self.config
        started = now()
        self.open_manifest(started)
        t0 = time.time()
        progress = None
        try:
            report = verify_chunks(store, plan, str(SCHEMA_VERSION), code_label(self.code), self.warn)
            if report["set_aside"]:
                self.manifest.setdefault("set_aside", []).extend(report["set_aside"])
            if report["code_versions"]:
                seen = self.manifest.setdefault("code_versions_seen", [])
                seen += [c for c in report["code_versions"] if c not in seen]
            store.clean_partial()
            for name, tp in plan.tasks.items():   # task preparation (e.g. detector ground truth), cached in the run folder
                tp.samples = tp.task.prepare(tp.samples, store.task_dir(name))
                tp.chunks = chunk_samples(name, tp.samples, config.chunk_images)
            pending = self.pending_chunks()
            retried = {f"{c.task}/{s.id}" for c in pending if c.partial for s in c.samples}
            units = work_units(pending, {name: tp.task.spec.group for name, tp in plan.tasks.items()})
            progress = Progress(sum(len(c.samples) for c in pending), config.max_errors, plan.run_name, config.progress)
            progress.errors = self.existing_errors(retried)
            failed: dict[str, dict[str, Any]] = {}
            if units:
                failed = self.dispatch(units, progress)
            else:
                total = sum(len(tp.chunks) for tp in plan.tasks.values())
                print(f"{plan.run_name}: all {total} chunks were already finished; nothing to compute", file=self.out)
            if failed:
                first_key, first = next(iter(failed.items()))
                raise BenchError(f"{len(failed)} unit(s) of chunks failed after their attempts and are left for a resume "
                                 f"(first: {first_key}, {first['attempts']} attempt(s): {first['error']}); the other chunks finished")
            metrics = finish(plan, self.manifest)
        except KeyboardInterrupt:
            self.end("interrupted", "interrupted (Ctrl-C)")
            raise
        except Terminated as exc:
            self.end("interrupted", str(exc))
            raise
        except BaseException as exc:
            text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            self.end("failed", text)
            raise
        finally:
            if progress is not None:
                progress.close()
        times = self.manifest.setdefault("times", [])
        times.append({"started": started, "seconds": round(time.time() - t0, 3), "samples": progress.done})
        self.end("complete", finished=now())
        board = None
        if config.write_leaderboard:
            from ..results.leaderboard import write_leaderboard

            board = write_leaderboard(config.output, config.leaderboard_path, warn=self.warn)
        return RunResult(store.root, metrics, len(units), board, already_finished=not units)

    def dispatch(self, units, progress: Progress) -> dict[str, dict[str, Any]]:
        launcher = launcher_for(self.config)                      # local processes, or Ray actors
        n_slots = min(len(self.plan.devices), len(units))          # cpu:N is capped at the pending work
        threads = launcher.threads(self.plan.devices[:n_slots], self.config.threads)
        examples = {name: text for name, tp in self.plan.tasks.items() if (text := tp.task.prompt_text(tp.samples[0])) is not None}

        def setup_for(slot: int) -> WorkerSetup:
            return self.setup(slot, examples, threads)

        pool = launcher.pool(setup_for, n_slots)
        try:
            outcome = Dispatcher(pool, units, n_slots, on_ready=self.on_ready,
                                 on_done=lambda done: self.on_done(done, progress), on_progress=progress.advance).run()
        finally:
            pool.close()
        if outcome.lost_workers:
            self.manifest.setdefault("lost_workers", []).extend(outcome.lost_workers)
        if outcome.failed:
            self.manifest["failed_units"] = outcome.failed
        else:
            self.manifest.pop("failed_units", None)
        return outcome.failed


def _listing_hashes(data: Any) -> list[str]:
    if isinstance(data, dict):
        if set(data) >= {"files", "sha256"} and isinstance(data.get("files"), int):
            return [data["sha256"]]
        return [h for v in data.values() for h in _listing_hashes(v)]
    return []


def _changed_files(before: Any, now_: Any, listings: Path) -> set[str] | None:
    """Names of files that differ between two data fingerprints, when only image-folder listings differ (and the
    old listings were kept); None when anything else changed."""
    if before == now_:
        return set()
    if isinstance(before, dict) and isinstance(now_, dict):
        if set(before) >= {"files", "sha256"} and set(now_) >= {"files", "sha256"}:
            old_path = listings / f"{before['sha256']}.json"
            if not old_path.exists() or now_["sha256"] not in LISTINGS:
                return None
            import json

            old = {tuple(e) for e in json.loads(old_path.read_text())}
            new = {tuple(e) for e in LISTINGS[now_["sha256"]]}
            return {name for name, _ in old ^ new}
        if set(before) != set(now_):
            return None
        changed: set[str] = set()
        for key in before:
            part = _changed_files(before[key], now_[key], listings)
            if part is None:
                return None
            changed |= part
        return changed
    return None


def finish(plan: Plan, manifest: dict[str, Any]) -> dict[str, Any]:
    """Merge each task's chunks into rows.parquet and write metrics.json (both atomically). Every sample of the
    plan must be there exactly once."""
    from ..io import write_table

    rows = {}
    for name, tp in plan.tasks.items():
        table = plan.store.read_chunks(name)
        got = [] if table is None else [str(s) for s in table["sample_id"]]
        expected = [s.id for s in tp.samples]
        if sorted(got) != sorted(expected):
            missing = sorted(set(expected) - set(got))
            extra = sorted(set(got) - set(expected))
            what = (f"missing sample {missing[0]}" if missing else f"unexpected sample {extra[0]}" if extra
                    else "a sample appears twice")
            raise BenchError(f"{plan.store.chunk_dir(name)}: task {name} has {len(got)} rows for {len(expected)} samples "
                             f"({what}); rerun to recompute")
        write_table(plan.store.rows_path(name), table, tp.task.row_schema())
        tp.task.write_extras(table, plan.store.rows_path(name).parent)
        rows[name] = table
    metrics = aggregate(plan.run_name, {n: tp.task for n, tp in plan.tasks.items()}, rows, plan.groups, manifest["model"])
    atomic_write_json(plan.store.metrics_path, metrics)
    return metrics


__all__ = ["RunResult", "run", "finish", "describe_plan", "read_parquet"]
