"""A worker: loads the model once, then turns work units into rows and artifacts, which it sends to the driver.

The same code runs in the driver's process (one device) and in a worker process per device. A worker never
writes the run folder. A sample that fails (an unreadable image, a model error isolated to it) becomes an error
row when errors are allowed; otherwise its unit fails with a `SampleError` naming it and the driver decides
whether another attempt is worth it.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from ..data.images import ImageLoadError, load_image
from ..errors import BenchError, ConfigError, SampleError
from ..models.base import ImageInput, ModelAdapter, handle_requests
from ..spec import TaskSpec
from ..tasks.base import Sample, TaskContext, TaskType
from .messages import Chunk, ChunkDone, LoadFailed, Progress, Ready, UnitFailed, WorkerExit, WorkUnit

log = logging.getLogger(__name__)


class DataSampleError(SampleError):
    """A sample whose input cannot be read (another attempt gives the same answer)."""


def base_row(sample: Sample, error: str | None = None) -> dict[str, Any]:
    return {"sample_id": sample.id, "sample_index": sample.index, "image_id": sample.group,
            "image": sample.image.display, "error": error}


class ChunkProgress:
    """Turns the adapter's ``progress(done, total)`` within each call into whole samples of the chunk: a call over a
    share of the chunk's requests counts for that share of its samples."""

    def __init__(self, emit: Callable[[int], None], n_samples: int, n_requests: int):
        self.emit, self.n_samples, self.n_requests = emit, n_samples, max(1, n_requests)
        self.base = 0.0        # samples' worth of the calls already finished
        self.share = 0.0       # samples' worth of the current call
        self.sent = 0

    def call(self, n_requests: int) -> None:
        self.base += self.share
        self.share = self.n_samples * n_requests / self.n_requests

    def __call__(self, done: int, total: int) -> None:
        reached = int(self.base + self.share * done / max(1, total))
        if reached > self.sent:
            self.emit(reached - self.sent)
            self.sent = reached


def _run_requests(adapter: ModelAdapter, requests: list, progress: ChunkProgress | None = None) -> list:
    """Send a list of mixed requests to the adapter, batched by kind; answers in request order."""
    answers: list = [None] * len(requests)
    by_kind: dict[type, list[int]] = {}
    for i, request in enumerate(requests):
        by_kind.setdefault(type(request), []).append(i)
    for kind, indices in by_kind.items():
        if progress is not None:
            progress.call(len(indices))
        for i, answer in zip(indices, handle_requests(adapter, kind, [requests[i] for i in indices])):
            answers[i] = answer
    return answers


def process_chunk(adapter: ModelAdapter, task: TaskType, chunk: Chunk, allow_errors: bool,
                  emit: Callable[[int], None] | None = None) -> tuple[list[dict[str, Any]], list]:
    """The rows of a chunk (one per sample, in sample order) and the artifacts its task made. ``emit(n)`` hears of
    samples finished while the chunk runs (the live progress bar)."""
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
        raise DataSampleError(f"{task.name}/{first.id}", first.image.display, errors[first.id])

    ok = [s for s in chunk.samples if s.id not in errors]
    per_sample = {s.id: task.requests(s, images[s.image.key]) for s in ok}
    flat = [(s.id, r) for s in ok for r in per_sample[s.id]]
    progress = ChunkProgress(emit, len(ok), len(flat)) if emit is not None else None
    adapter.progress = progress
    try:
        answers = _run_requests(adapter, [r for _, r in flat], progress)
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

    adapter.progress = None
    rows, artifacts = [], []
    for sample in chunk.samples:
        if sample.id in errors:
            rows.append(base_row(sample, errors[sample.id]))
        else:
            row = {**base_row(sample), **task.row(sample, by_sample[sample.id])}
            rows.append(row)
            artifacts += task.artifacts(sample, by_sample[sample.id], row)
    return rows, artifacts


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".strip()


def run_unit(adapter: ModelAdapter, tasks: dict[str, TaskType], unit: WorkUnit, allow_errors: bool,
             worker: int, emit: Callable[[int], None] | None = None) -> Iterator[ChunkDone | UnitFailed]:
    """One message per finished chunk of the unit; a failure ends the unit (its finished chunks stay finished)."""
    for chunk in unit.chunks:
        try:
            rows, artifacts = process_chunk(adapter, tasks[chunk.task], chunk, allow_errors, emit)
        except DataSampleError as exc:
            yield UnitFailed(worker, unit.key, str(exc), retry=False)
            return
        except ConfigError as exc:
            yield UnitFailed(worker, unit.key, str(exc), retry=False, fatal=True)
            return
        except BenchError as exc:
            yield UnitFailed(worker, unit.key, str(exc))
            return
        except Exception as exc:  # noqa: BLE001 - a model error or a bug: report it; the driver retries
            log.debug("unit %s failed:\n%s", unit.key, traceback.format_exc())
            yield UnitFailed(worker, unit.key, f"{chunk.key}: {_reason(exc)}")
            return
        yield ChunkDone(worker, chunk.task, chunk.index, rows, artifacts, chunk.sample_hash, chunk.partial)


@dataclass
class WorkerSetup:
    """Everything a worker needs, picklable."""

    model_factory: Any
    device: str
    batch_size: int
    threads: int
    specs: dict[str, TaskSpec]
    context: TaskContext
    allow_errors: bool
    example_prompts: dict[str, str]


def build_task(spec: TaskSpec, context: TaskContext) -> TaskType:
    from ..registry import TASK_TYPES

    return TASK_TYPES.get(spec.type)(spec, context)


def build_tasks(setup: WorkerSetup) -> dict[str, TaskType]:
    return {name: build_task(spec, setup.context) for name, spec in setup.specs.items()}


def load_adapter(setup: WorkerSetup, tasks: dict[str, TaskType] | None = None) -> tuple[ModelAdapter, dict[str, Any]]:
    """Load the model; its description is a snapshot taken now, after the tasks' first-token word lists are
    resolved (and checked) against its tokenizer."""
    import torch

    if setup.threads:
        torch.set_num_threads(setup.threads)
    adapter = setup.model_factory.load(setup.device, setup.batch_size)
    word_sets = [w for task in (tasks or {}).values() for w in task.first_token_words()]
    if word_sets and hasattr(adapter, "prepare_words"):
        adapter.prepare_words(word_sets)
    info = {"device": setup.device, "description": adapter.describe(),
            "prompts": {name: adapter.format_prompt(text) for name, text in setup.example_prompts.items()}}
    return adapter, info


# -- worker processes ------------------------------------------------------------------------------------------


def exit_with_parent() -> None:
    """Make this process die with its parent: the kernel's parent-death signal where there is one (Linux), and
    a watchdog thread that polls the parent's pid everywhere (a SIGKILLed driver leaves no worker computing)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        import time

        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="bench-parent-watch", daemon=True).start()


def worker_main(setup: WorkerSetup, inbox, outbox, worker: int) -> None:
    """Entry point of a worker process: ``inbox`` gives units (None: stop); ``outbox`` takes messages."""
    exit_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)    # Ctrl-C is the driver's to handle; it stops the workers
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        tasks = build_tasks(setup)
        adapter, info = load_adapter(setup, tasks)
    except BenchError as exc:
        outbox.send(LoadFailed(worker, str(exc)))
        return
    except BaseException:  # noqa: BLE001 - report anything, with its traceback, to the driver
        outbox.send(LoadFailed(worker, traceback.format_exc()))
        return
    outbox.send(Ready(worker, info))
    while True:
        try:
            unit = inbox.recv()
        except (EOFError, OSError):
            return      # the driver is gone
        if unit is None:
            outbox.send(WorkerExit(worker))
            adapter.close()
            return
        emit = lambda n: outbox.send(Progress(worker, n))  # noqa: E731 - live progress, between batches
        for message in run_unit(adapter, tasks, unit, setup.allow_errors, worker, emit):
            outbox.send(message)
