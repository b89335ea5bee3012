"""A worker: loads the model once, then turns chunks of samples into rows and writes each chunk.

The same code runs in-process (one device) and in a spawned process per device. A sample that
fails (an unreadable image, a model error isolated to it) becomes an error row when errors are
allowed, and otherwise stops the run with a `SampleError` naming it; the chunk is then not written.
"""

from __future__ import annotations

import logging
import os
import queue
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.images import ImageLoadError, load_image
from ..errors import BenchError, SampleError
from ..models.base import DetectRequest, GenerateRequest, ImageInput, ModelAdapter, ScoreRequest
from ..spec import TaskSpec
from ..tasks.base import Sample, TaskContext, TaskType
from .plan import Chunk
from .store import RunStore, write_table

log = logging.getLogger(__name__)


def base_row(sample: Sample, error: str | None = None) -> dict[str, Any]:
    return {"sample_id": sample.id, "sample_index": sample.index, "image_id": sample.group,
            "image": sample.image.display, "error": error}


def _run_requests(adapter: ModelAdapter, requests: list) -> list:
    """Send a list of mixed requests to the adapter, batched by kind; answers in request order."""
    answers: list = [None] * len(requests)
    for kind, method in ((GenerateRequest, adapter.generate), (ScoreRequest, adapter.score),
                         (DetectRequest, adapter.detect_scores)):
        indices = [i for i, r in enumerate(requests) if isinstance(r, kind)]
        if indices:
            for i, answer in zip(indices, method([requests[i] for i in indices])):
                answers[i] = answer
    return answers


def process_chunk(adapter: ModelAdapter, task: TaskType, chunk: Chunk, allow_errors: bool) -> list[dict[str, Any]]:
    images: dict[str, ImageInput] = {}
    failures: dict[str, str] = {}
    for sample in chunk.samples:
        key = sample.image.key
        if key in images or key in failures:
            continue
        try:
            images[key] = ImageInput(key, load_image(sample.image))
        except ImageLoadError as exc:
            failures[key] = str(exc)
    errors: dict[str, str] = {s.id: failures[s.image.key] for s in chunk.samples if s.image.key in failures}
    if errors and not allow_errors:
        first = next(s for s in chunk.samples if s.id in errors)
        raise SampleError(f"{task.name}/{first.id}", first.image.display, errors[first.id])

    ok = [s for s in chunk.samples if s.id not in errors]
    per_sample = {s.id: task.requests(s, images[s.image.key]) for s in ok}
    flat = [(s.id, r) for s in ok for r in per_sample[s.id]]
    try:
        answers = _run_requests(adapter, [r for _, r in flat])
        by_sample: dict[str, list] = {s.id: [] for s in ok}
        for (sid, _), answer in zip(flat, answers):
            by_sample[sid].append(answer)
    except BenchError:
        raise
    except Exception as batch_error:  # isolate the failing sample(s): retry one sample at a time
        if len(ok) == 1 and not allow_errors:
            raise SampleError(f"{task.name}/{ok[0].id}", ok[0].image.display, _reason(batch_error)) from batch_error
        by_sample = {}
        for s in ok:
            try:
                by_sample[s.id] = _run_requests(adapter, per_sample[s.id])
            except BenchError:
                raise
            except Exception as exc:
                if not allow_errors:
                    raise SampleError(f"{task.name}/{s.id}", s.image.display, _reason(exc)) from exc
                errors[s.id] = _reason(exc)
        if len(errors) == len(chunk.samples) and len(ok) > 1:
            raise batch_error  # every sample fails alike: a broken model or a bug, not bad samples

    rows = []
    for sample in chunk.samples:
        if sample.id in errors:
            rows.append(base_row(sample, errors[sample.id]))
        else:
            rows.append({**base_row(sample), **task.row(sample, by_sample[sample.id])})
    return rows


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


@dataclass
class WorkerSetup:
    """Everything a worker process needs, picklable."""

    model_factory: Any
    device: str
    batch_size: int
    threads: int
    specs: dict[str, TaskSpec]
    context: TaskContext
    run_root: Path
    allow_errors: bool
    example_prompts: dict[str, str]


def build_task(spec: TaskSpec, context: TaskContext) -> TaskType:
    from ..registry import TASK_TYPES

    return TASK_TYPES.get(spec.type)(spec, context)


def run_chunk(adapter: ModelAdapter, task: TaskType, chunk: Chunk, store: RunStore, allow_errors: bool) -> tuple[int, int, str | None]:
    """Process and write one chunk; returns (rows, error rows, first error)."""
    rows = process_chunk(adapter, task, chunk, allow_errors)
    write_table(store.chunk_path(task.name, chunk.index), rows, task.row_schema())
    errors = [r for r in rows if r["error"]]
    first = f"{task.name}/{errors[0]['sample_id']} ({errors[0]['image']}): {errors[0]['error']}" if errors else None
    return len(rows), len(errors), first


def load_adapter(setup: WorkerSetup) -> tuple[ModelAdapter, dict[str, Any]]:
    import torch

    if setup.threads:
        torch.set_num_threads(setup.threads)
    adapter = setup.model_factory.load(setup.device, setup.batch_size)
    info = {"device": setup.device, "description": adapter.describe(),
            "prompts": {name: adapter.format_prompt(text) for name, text in setup.example_prompts.items()}}
    return adapter, info


def worker_main(setup: WorkerSetup, tasks_q, results_q, worker_id: int) -> None:
    """Entry point of a spawned worker process."""
    parent = os.getppid()
    try:
        adapter, info = load_adapter(setup)
        results_q.put(("ready", worker_id, info))
        tasks = {name: build_task(spec, setup.context) for name, spec in setup.specs.items()}
        store = RunStore(setup.run_root)
        while True:
            try:
                chunk = tasks_q.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:  # the main process died (e.g. SIGKILL): stop too
                    return
                continue
            if chunk is None:
                results_q.put(("exit", worker_id, None))
                return
            n, n_err, first = run_chunk(adapter, tasks[chunk.task], chunk, store, setup.allow_errors)
            results_q.put(("done", worker_id, (chunk.task, chunk.index, n, n_err, first)))
    except BenchError as exc:
        results_q.put(("error", worker_id, str(exc)))
    except BaseException:  # noqa: BLE001 - report anything, with its traceback, to the main process
        results_q.put(("crash", worker_id, traceback.format_exc()))
