"""Ways to start workers, behind one small interface (`WorkerPool`), all speaking the chunk protocol of
`messages.py`. The driver loop (`dispatch.py`) knows nothing else about them.

- `InProcessPool`: one worker in the driver's own process (one device): no process boundary at all.
- `ProcessPool`: one spawned process per device. Each has its own pipes, so a worker killed mid-message can
  corrupt nothing but its own channel; a process that dies is noticed through its sentinel.
A Ray pool (actors on a cluster) implements the same interface.
"""

from __future__ import annotations

import multiprocessing as mp
from abc import ABC, abstractmethod
from multiprocessing.connection import wait
from typing import Any, Callable

from ..errors import BenchError
from .messages import LoadFailed, Ready, WorkerExit, WorkerLost, WorkUnit
from .worker import WorkerSetup, build_tasks, load_adapter, run_unit, worker_main


class WorkerPool(ABC):
    """Starts workers, sends them units, and reports what they send back (and when one is lost).

    ``progress_sink(n)``, set by the driver, hears of samples finished inside running units where a pool cannot
    deliver `Progress` messages in time (the in-process pool computes a unit within one `poll`)."""

    progress_sink: Callable[[int], None] | None = None

    @abstractmethod
    def start(self, slot: int) -> int:
        """Start a worker for device slot ``slot``; returns its worker id (ids are never reused)."""

    @abstractmethod
    def send(self, worker: int, unit: WorkUnit | None) -> None:
        """Give ``worker`` a unit to compute (None: finish and exit)."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Any]:
        """The messages that arrived (`Ready`, `ChunkDone`, `UnitFailed`, `WorkerExit`, `WorkerLost`, ...)."""

    @abstractmethod
    def close(self) -> None:
        """Stop every worker (terminating those still running) and release resources."""

    def slot_of(self, worker: int) -> int:
        return self._slots[worker]


class InProcessPool(WorkerPool):
    """A single worker that runs in the driver's process: units are computed inside `poll`."""

    def __init__(self, setup_for: Callable[[int], WorkerSetup]):
        self.setup_for = setup_for
        self._slots: dict[int, int] = {}
        self._events: list[Any] = []
        self._unit: WorkUnit | None = None
        self._adapter = None
        self._tasks: dict = {}
        self._setup: WorkerSetup | None = None

    def start(self, slot: int) -> int:
        if self._slots:
            raise BenchError("the in-process pool runs one worker")
        worker = 0
        self._slots[worker] = slot
        self._setup = self.setup_for(slot)
        try:
            self._tasks = build_tasks(self._setup)
            self._adapter, info = load_adapter(self._setup, self._tasks)
        except BenchError as exc:
            self._events.append(LoadFailed(worker, str(exc)))
            return worker
        self._events.append(Ready(worker, info))
        return worker

    def send(self, worker: int, unit: WorkUnit | None) -> None:
        if unit is None:
            self._events.append(WorkerExit(worker))
        self._unit = unit

    def poll(self, timeout: float) -> list[Any]:
        if not self._events and self._unit is not None:
            unit, self._unit = self._unit, None
            self._events.extend(run_unit(self._adapter, self._tasks, unit, self._setup.allow_errors, 0, self.progress_sink))
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        if self._adapter is not None:
            self._adapter.close()
            self._adapter = None


class ProcessPool(WorkerPool):
    """One spawned process per worker, each with its own inbox and outbox pipe."""

    def __init__(self, setup_for: Callable[[int], WorkerSetup]):
        self.setup_for = setup_for
        self.ctx = mp.get_context("spawn")
        self._slots: dict[int, int] = {}
        self._procs: dict[int, Any] = {}
        self._inbox: dict[int, Any] = {}
        self._outbox: dict[int, Any] = {}
        self._finished: set[int] = set()

    def start(self, slot: int) -> int:
        worker = len(self._slots)
        self._slots[worker] = slot
        inbox_r, inbox_w = self.ctx.Pipe(duplex=False)
        outbox_r, outbox_w = self.ctx.Pipe(duplex=False)
        proc = self.ctx.Process(target=worker_main, args=(self.setup_for(slot), inbox_r, outbox_w, worker),
                                name=f"bench-worker-{worker}", daemon=True)
        proc.start()
        inbox_r.close()
        outbox_w.close()
        self._procs[worker], self._inbox[worker], self._outbox[worker] = proc, inbox_w, outbox_r
        return worker

    def send(self, worker: int, unit: WorkUnit | None) -> None:
        try:
            self._inbox[worker].send(unit)
        except (BrokenPipeError, OSError):
            pass   # it died: its sentinel reports it

    def poll(self, timeout: float) -> list[Any]:
        live = [w for w in self._procs if w not in self._finished]
        if not live:
            return []
        handles = {self._outbox[w]: w for w in live}
        sentinels = {self._procs[w].sentinel: w for w in live}
        ready = wait(list(handles) + list(sentinels), timeout)
        events: list[Any] = []
        for handle in ready:
            if handle in handles:
                events += self._drain(handles[handle])
        for handle in ready:
            worker = sentinels.get(handle)
            if worker is not None and worker not in self._finished:
                events += self._drain(worker)   # what it sent before it died still counts
                if worker not in self._finished:
                    self._finished.add(worker)
                    proc = self._procs[worker]
                    proc.join(timeout=5)
                    events.append(WorkerLost(worker, _exit_reason(proc.exitcode)))
        return events

    def _drain(self, worker: int) -> list[Any]:
        events = []
        conn = self._outbox[worker]
        try:
            while conn.poll():
                message = conn.recv()
                events.append(message)
                if isinstance(message, (WorkerExit, LoadFailed)):
                    self._finished.add(worker)
                    break
        except (EOFError, OSError, ValueError, ImportError, AttributeError) as exc:  # it died, perhaps mid-message
            if worker not in self._finished:
                self._finished.add(worker)
                proc = self._procs[worker]
                proc.join(timeout=5)
                reason = _exit_reason(proc.exitcode) if proc.exitcode is not None else f"its channel broke ({type(exc).__name__})"
                events.append(WorkerLost(worker, reason))
        return events

    def close(self) -> None:
        for worker, proc in self._procs.items():
            if proc.is_alive():
                self.send(worker, None)
        for proc in self._procs.values():
            proc.join(timeout=2)
        for proc in self._procs.values():
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs.values():
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
        for conn in list(self._inbox.values()) + list(self._outbox.values()):
            conn.close()


def _exit_reason(code: int | None) -> str:
    import signal

    if code is None:
        return "it stopped responding"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
