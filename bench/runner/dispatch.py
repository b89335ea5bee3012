"""The driver's loop: a dynamic queue of work units over a pool of workers, with attempts and replacements.

Each idle worker gets the next unit as soon as it is free (a fast device takes more). A unit whose worker
dies, or that raises, goes back to the queue, at most ``max_attempts`` times in all; a unit that keeps failing
is reported with its last error and left unfinished for a later resume, while the others finish. A lost worker
is replaced while there is work left. What the workers send back is handed to ``on_ready`` (check a worker's
description before accepting its first chunk) and ``on_done`` (commit a chunk to the run folder).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import BenchError, ConfigError
from .messages import ChunkDone, LoadFailed, Progress, Ready, UnitFailed, WorkerExit, WorkerLost, WorkUnit
from .pools import WorkerPool

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3


@dataclass
class Outcome:
    infos: list[dict[str, Any]] = field(default_factory=list)      # Ready info of each worker, in order
    failed: dict[str, dict[str, Any]] = field(default_factory=dict)   # unit key -> {error, attempts}: given up
    attempts: dict[str, int] = field(default_factory=dict)
    lost_workers: list[str] = field(default_factory=list)


class Dispatcher:
    def __init__(self, pool: WorkerPool, units: list[WorkUnit], n_slots: int, *,
                 on_ready: Callable[[dict[str, Any]], None], on_done: Callable[[ChunkDone], None],
                 on_progress: Callable[[int], None] = lambda n: None, max_attempts: int = MAX_ATTEMPTS,
                 max_replacements: int | None = None, poll_seconds: float = 1.0):
        self.pool = pool
        pool.progress_sink = on_progress
        self.queue: collections.deque[WorkUnit] = collections.deque(units)
        self.n_slots = min(n_slots, len(units))
        self.on_ready, self.on_done, self.on_progress = on_ready, on_done, on_progress
        self.max_attempts = max_attempts
        self.max_replacements = max_replacements if max_replacements is not None else 2 * max(1, self.n_slots)
        self.poll_seconds = poll_seconds
        self.outcome = Outcome()
        self.busy: dict[int, WorkUnit] = {}         # worker -> the unit it is computing
        self.idle: list[int] = []
        self.workers: set[int] = set()             # started and not yet gone
        self.ready: set[int] = set()
        self.done_chunks: set[str] = set()
        self.succeeded = 0

    def run(self) -> Outcome:
        for slot in range(self.n_slots):
            self.workers.add(self.pool.start(slot))
        while self.queue or self.busy:
            if not self.workers:
                raise BenchError("no worker is left to run the remaining chunks"
                                 + (f" (last lost: {self.outcome.lost_workers[-1]})" if self.outcome.lost_workers else "")
                                 + "; finished chunks are kept, rerun to resume")
            for event in self.pool.poll(self.poll_seconds):
                self._handle(event)
            self._assign()
        for worker in list(self.workers):
            self.pool.send(worker, None)
        return self.outcome

    # -- events ----------------------------------------------------------------------------------------------
    def _handle(self, event: Any) -> None:
        if isinstance(event, Ready):
            self.on_ready(event.info)          # may refuse the run (a resume with other effective settings)
            self.outcome.infos.append(event.info)
            self.ready.add(event.worker)
            self.idle.append(event.worker)
        elif isinstance(event, ChunkDone):
            if event.key not in self.done_chunks:
                self.on_done(event)
                self.done_chunks.add(event.key)
                self.succeeded += 1
            unit = self.busy.get(event.worker)
            if unit is not None and all(c.key in self.done_chunks for c in unit.chunks):
                del self.busy[event.worker]
                self.idle.append(event.worker)
        elif isinstance(event, Progress):
            self.on_progress(event.n)
        elif isinstance(event, UnitFailed):
            unit = self.busy.pop(event.worker, None)
            if event.fatal:
                raise ConfigError(event.error)
            if unit is not None:
                self._failed(unit, event.error, retry=event.retry)
            if event.worker in self.workers:
                self.idle.append(event.worker)
        elif isinstance(event, LoadFailed):
            self.workers.discard(event.worker)
            raise BenchError(event.error) if "Traceback" not in event.error else RuntimeError(
                f"worker {event.worker} failed to load the model:\n{event.error}")
        elif isinstance(event, WorkerExit):
            self.workers.discard(event.worker)
        elif isinstance(event, WorkerLost):
            self._lost(event)

    def _lost(self, event: WorkerLost) -> None:
        self.workers.discard(event.worker)
        if event.worker in self.idle:
            self.idle.remove(event.worker)
        where = f"worker {event.worker} (device slot {self.pool.slot_of(event.worker)})"
        self.outcome.lost_workers.append(f"{where}: {event.reason}")
        unit = self.busy.pop(event.worker, None)
        if unit is not None:
            log.warning("%s was lost (%s) while computing %s; the unit goes back to the queue", where, event.reason, unit.key)
            self._failed(unit, f"its worker was lost ({event.reason})", retry=True)
        elif event.worker not in self.ready:
            log.warning("%s was lost before it was ready (%s)", where, event.reason)
        if (self.queue or self.busy) and self.max_replacements > 0 and len(self.workers) < self.n_slots:
            self.max_replacements -= 1
            self.workers.add(self.pool.start(self.pool.slot_of(event.worker)))

    def _failed(self, unit: WorkUnit, error: str, retry: bool) -> None:
        remaining = WorkUnit([c for c in unit.chunks if c.key not in self.done_chunks])
        if not remaining.chunks:
            return
        attempts = max(self.outcome.attempts.get(c.key, 0) for c in remaining.chunks) + 1
        for chunk in remaining.chunks:
            self.outcome.attempts[chunk.key] = attempts
        if retry and attempts < self.max_attempts:
            log.warning("unit %s failed (attempt %d of %d): %s", remaining.key, attempts, self.max_attempts, error)
            self.queue.appendleft(remaining)
            return
        self.outcome.failed[remaining.key] = {"error": error, "attempts": attempts}
        if self.succeeded == 0 and len(self.outcome.failed) >= self.max_attempts:
            raise BenchError(f"every unit fails ({len(self.outcome.failed)} so far, none finished); last: {error}; "
                             "finished chunks are kept")

    def _assign(self) -> None:
        while self.idle and self.queue:
            worker = self.idle.pop(0)
            if worker not in self.workers:
                continue
            unit = self.queue.popleft()
            self.busy[worker] = unit
            self.pool.send(worker, unit)
