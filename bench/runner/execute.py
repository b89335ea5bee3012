"""Dispatch pending chunks through a dynamic work queue to one worker per device.

One device runs in this process; several devices run one spawned process each, pulling chunks
from a shared queue as they finish (so a fast device takes more). Progress is a tqdm bar in
samples/s with an ETA. Error rows are counted across workers against ``--max-errors``.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass
from typing import Any

from ..errors import BenchError, RunAborted
from .plan import Chunk, Plan
from .worker import WorkerSetup, build_task, load_adapter, run_chunk, worker_main


@dataclass
class Progress:
    """Counts errors across workers and drives the progress bar."""

    plan: Plan
    total: int
    done: int = 0
    errors: int = 0
    first_error: str | None = None
    bar: Any = None

    def __post_init__(self):
        if self.plan.config.progress and self.total:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="sample", desc=self.plan.run_name[:40], dynamic_ncols=True)

    def chunk_done(self, task: str, index: int, n: int, n_errors: int, first: str | None) -> None:
        self.done += n
        self.errors += n_errors
        self.first_error = self.first_error or first
        if self.bar is not None:
            self.bar.update(n)
        if self.errors > self.plan.config.max_errors:
            raise RunAborted(f"{self.errors} samples failed, more than --max-errors {self.plan.config.max_errors}; "
                             f"first: {self.first_error}. Finished chunks are kept; fix the data and rerun to resume")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def worker_threads(devices: list[str]) -> int:
    cpu_workers = sum(1 for d in devices if d == "cpu")
    if cpu_workers == 0:
        return 0
    return max(1, (os.cpu_count() or 1) // cpu_workers)


def make_setup(plan: Plan, device: str, example_prompts: dict[str, str]) -> WorkerSetup:
    config = plan.config
    first_task = next(iter(plan.tasks.values())).task
    return WorkerSetup(
        model_factory=plan.factory, device=device, batch_size=config.batch_size, threads=worker_threads(plan.devices),
        specs={name: tp.task.spec for name, tp in plan.tasks.items()}, context=first_task.context,
        run_root=plan.store.root, allow_errors=config.max_errors > 0, example_prompts=example_prompts,
    )


def execute(plan: Plan, pending: list[Chunk], progress: Progress, example_prompts: dict[str, str]) -> list[dict[str, Any]]:
    """Run ``pending`` chunks; returns each worker's info (device, model description, prompts)."""
    if len(plan.devices) == 1:
        return _execute_here(plan, pending, progress, example_prompts)
    return _execute_processes(plan, pending, progress, example_prompts)


def _execute_here(plan: Plan, pending: list[Chunk], progress: Progress, example_prompts: dict[str, str]) -> list[dict[str, Any]]:
    setup = make_setup(plan, plan.devices[0], example_prompts)
    adapter, info = load_adapter(setup)
    tasks = {name: build_task(spec, setup.context) for name, spec in setup.specs.items()}
    try:
        for chunk in pending:
            n, n_err, first = run_chunk(adapter, tasks[chunk.task], chunk, plan.store, setup.allow_errors)
            progress.chunk_done(chunk.task, chunk.index, n, n_err, first)
    finally:
        adapter.close()
    return [info]


def _execute_processes(plan: Plan, pending: list[Chunk], progress: Progress, example_prompts: dict[str, str]) -> list[dict[str, Any]]:
    ctx = mp.get_context("spawn")
    tasks_q, results_q = ctx.Queue(), ctx.Queue()
    for chunk in pending:
        tasks_q.put(chunk)
    workers = []
    for worker_id, device in enumerate(plan.devices):
        tasks_q.put(None)  # one stop marker per worker, after all chunks
        proc = ctx.Process(target=worker_main, args=(make_setup(plan, device, example_prompts), tasks_q, results_q, worker_id),
                           name=f"bench-worker-{worker_id}", daemon=True)
        proc.start()
        workers.append(proc)
    infos: list[dict[str, Any]] = []
    alive = set(range(len(workers)))
    try:
        while alive:
            try:
                kind, worker_id, payload = results_q.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i in alive if not workers[i].is_alive()]
                if dead:
                    raise BenchError(f"worker {dead[0]} ({plan.devices[dead[0]]}) died (exit code {workers[dead[0]].exitcode}); "
                                     "finished chunks are kept; rerun to resume")
                continue
            if kind == "ready":
                infos.append(payload)
            elif kind == "done":
                progress.chunk_done(*payload)
            elif kind == "exit":
                alive.discard(worker_id)
            elif kind == "error":
                raise BenchError(payload)
            elif kind == "crash":
                raise RuntimeError(f"worker {worker_id} ({plan.devices[worker_id]}) crashed:\n{payload}")
    finally:
        for proc in workers:
            if proc.is_alive():
                proc.terminate()
        for proc in workers:
            proc.join(timeout=10)
        tasks_q.cancel_join_thread()
        results_q.cancel_join_thread()
    time.sleep(0)  # let queue feeder threads wind down
    return infos
