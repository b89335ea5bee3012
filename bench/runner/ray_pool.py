"""A `WorkerPool` of Ray actors: the driver's dispatcher, its dynamic queue and its attempt cap stay as they are;
only the workers live elsewhere (any node of a Ray cluster).

Each actor loads the model once (`load_adapter`, after `build_tasks`), then computes the `WorkUnit`s it is sent
with `run_unit` and returns their messages (`ChunkDone` rows and artifacts as bytes): results travel through
Ray, so the cluster needs no shared filesystem, and only the driver writes the run folder.

- ``poll`` is a ``ray.wait`` over the outstanding calls, with the dispatcher's timeout.
- An actor that dies (killed, OOM-killed, its node lost) or whose result is lost becomes `WorkerLost`: the
  dispatcher re-queues its unit and starts a replacement while there is work left; a replacement waits for room.
- An actor not placed and started within ``ready_timeout`` (60 s; a cluster with no room for it) is abandoned as
  `WorkerLost`. Loading the model may then take as long as it needs (a first download of 7B weights does).
- A GPU actor holds ``num_gpus=1``; Ray sets its CUDA_VISIBLE_DEVICES to that one GPU, which torch then calls
  ``cuda:0``, so that is the device it loads on. Its Ready info records where it runs (`placement`: node, the
  GPU ids Ray gave it, CUDA_VISIBLE_DEVICES, pid), and the manifest keeps it per worker.
- An actor works in the driver's working directory when its node has that folder (Ray starts actors in the
  folder where `ray start` ran), so relative data paths read the same files as on the driver.
- Ray starts with the dashboard off and usage statistics off. ``ray.init`` installs its own SIGTERM handler;
  `connect` puts back the handler in place before, so the driver's SIGTERM still ends the run as ``interrupted``.
This module imports Ray: only the Ray launcher imports it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from typing import Any, Callable

import ray
from ray import exceptions as ray_errors

from ..errors import BenchError
from .messages import LoadFailed, Ready, UnitFailed, WorkerExit, WorkerLost, WorkUnit
from .pools import WorkerPool
from .worker import WorkerSetup, build_tasks, load_adapter, run_unit

log = logging.getLogger(__name__)

READY_TIMEOUT = 60.0
_started_here = False      # this process called ray.init (so it shuts Ray down when its pool closes)


def connect(address: str | None) -> None:
    """Connect to the cluster at ``address`` (``auto``, HOST:PORT) or start a local instance (None), with the
    dashboard and usage statistics off; a process already connected (it called ``ray.init``) stays as it is."""
    global _started_here
    if ray.is_initialized():
        return
    if address not in (None, "auto"):
        check_reachable(address)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    usage = os.environ.get("RAY_USAGE_STATS_ENABLED")
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    try:
        starts_local = address is None and not os.environ.get("RAY_ADDRESS")    # Ray's own variable names a cluster
        options: dict[str, Any] = {"include_dashboard": False} if starts_local else {}
        ray.init(address=address, logging_level=logging.WARNING, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        if address == "auto":
            raise BenchError("--ray-address auto: no running Ray cluster on this machine (start one with `ray start --head`, "
                             "or give --ray-address HOST:PORT)") from exc
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        text = str(exc).strip()
        raise BenchError(f"--launcher ray: could not reach {where}: {text.splitlines()[0] if text else type(exc).__name__}") from exc
    finally:
        if usage is None:
            os.environ.pop("RAY_USAGE_STATS_ENABLED", None)
        else:
            os.environ["RAY_USAGE_STATS_ENABLED"] = usage
        if main and previous is not None:
            signal.signal(signal.SIGTERM, previous)     # ray.init replaced it
    _started_here = True


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Something must answer at HOST:PORT (Ray itself retries an absent head for minutes)."""
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        raise BenchError(f"--ray-address {address}: nothing answers there ({exc.strerror or exc}); is the cluster's head "
                         "started (`ray start --head`) and is the port its GCS port (6379 by default)?") from exc


def disconnect() -> None:
    """Shut Ray down if this process started it (a local instance, or a connection made by `connect`)."""
    global _started_here
    if _started_here and ray.is_initialized():
        ray.shutdown()
    _started_here = False


def cluster_gpus() -> int:
    """GPUs in the cluster now (whole ones)."""
    return int(ray.cluster_resources().get("GPU", 0))


def placement() -> dict[str, Any]:
    """Where the calling actor runs: its node, the GPUs Ray gave it and what CUDA_VISIBLE_DEVICES says."""
    context = ray.get_runtime_context()
    return {"launcher": "ray", "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()], "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "pid": os.getpid(), "cwd": os.getcwd()}


class ActorWorker:
    """The worker inside a Ray actor: the same `load_adapter` and `run_unit` as a local worker process."""

    def __init__(self, setup: WorkerSetup, worker: int, gpu_device: str | None = None, cwd: str | None = None):
        self.setup, self.worker, self.gpu_device, self.cwd = setup, worker, gpu_device, cwd
        self.adapter = None
        self.tasks: dict = {}

    def ping(self) -> dict[str, Any]:
        return placement()

    def device(self) -> str:
        """The device to load on: this actor's one visible GPU is ``cuda:0`` (unless a test declares fake GPUs)."""
        if not self.setup.device.startswith("cuda"):
            return self.setup.device
        return self.gpu_device or "cuda:0"

    def load(self) -> Ready | LoadFailed:
        import dataclasses

        if self.cwd and os.path.isdir(self.cwd):
            os.chdir(self.cwd)      # relative data paths mean what they mean on the driver (Ray starts actors elsewhere)
        where = placement()
        setup = dataclasses.replace(self.setup, device=self.device())
        try:
            if setup.device.startswith("cuda"):
                import torch

                if not torch.cuda.is_available():
                    return LoadFailed(self.worker, f"Ray gave the actor on node {where['node_ip']} GPU(s) {where['gpu_ids']}, "
                                                   "but torch there sees no CUDA device (a CPU-only torch on that node?)")
            self.tasks = build_tasks(setup)
            self.adapter, info = load_adapter(setup, self.tasks)
        except BenchError as exc:
            return LoadFailed(self.worker, str(exc))
        except BaseException:  # noqa: BLE001 - report anything, with its traceback, to the driver
            return LoadFailed(self.worker, traceback.format_exc())
        return Ready(self.worker, {**info, "placement": where})

    def run(self, unit: WorkUnit) -> list[Any]:
        return list(run_unit(self.adapter, self.tasks, unit, self.setup.allow_errors, self.worker))


RemoteWorker = ray.remote(ActorWorker)


def _lost_reason(exc: BaseException) -> str:
    kind = type(exc).__name__
    text = str(exc).strip().splitlines()
    detail = next((line.strip() for line in text if "node" in line.lower() or "killed" in line.lower()
                   or "memory" in line.lower()), text[0].strip() if text else "")
    return f"its Ray actor was lost ({kind}: {detail[:200]})" if detail else f"its Ray actor was lost ({kind})"


class RayPool(WorkerPool):
    """One Ray actor per worker slot; results come back as the return values of the actors' calls.

    ``gpu_device``: see `RayLauncher` (tests only). ``ready_timeout``: seconds an actor may take to be placed and
    started before it is abandoned."""

    def __init__(self, setup_for: Callable[[int], WorkerSetup], address: str | None = None, *,
                 gpu_device: str | None = None, ready_timeout: float = READY_TIMEOUT):
        connect(address)
        self.setup_for = setup_for
        self.gpu_device = gpu_device
        self.ready_timeout = ready_timeout
        self._slots: dict[int, int] = {}
        self._actors: dict[int, Any] = {}
        self._calls: dict[Any, tuple[int, str, WorkUnit | None]] = {}     # outstanding ObjectRef -> (worker, call, unit)
        self._started: dict[int, float] = {}
        self._placed: set[int] = set()
        self._finished: set[int] = set()
        self._events: list[Any] = []

    def start(self, slot: int) -> int:
        worker = len(self._slots)
        self._slots[worker] = slot
        setup = self.setup_for(slot)
        gpu = setup.device.startswith("cuda")
        actor = RemoteWorker.options(num_cpus=max(1, setup.threads), num_gpus=1 if gpu else 0, max_restarts=0,
                                     max_task_retries=0).remote(setup, worker, self.gpu_device, os.getcwd())
        self._actors[worker] = actor
        self._started[worker] = time.monotonic()
        self._calls[actor.ping.remote()] = (worker, "ping", None)
        self._calls[actor.load.remote()] = (worker, "load", None)
        return worker

    def send(self, worker: int, unit: WorkUnit | None) -> None:
        if worker in self._finished:
            return
        if unit is None:
            self._events.append(self._drop(worker, WorkerExit(worker)))
            return
        self._calls[self._actors[worker].run.remote(unit)] = (worker, "run", unit)

    def poll(self, timeout: float) -> list[Any]:
        events, self._events = self._events, []
        refs = list(self._calls)
        if refs:
            ready, _ = ray.wait(refs, num_returns=1, timeout=0 if events else timeout)
            if ready:
                ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)    # all that are done by now
            for ref in ready:
                events += self._result(ref)
        elif not events:
            time.sleep(min(timeout, 0.05))
        now = time.monotonic()
        for worker, started in self._started.items():
            if worker not in self._placed and worker not in self._finished and now - started > self.ready_timeout:
                events.append(self._drop(worker, WorkerLost(worker, f"its Ray actor was not placed within {self.ready_timeout:.0f} s "
                                                                    "(no room for it in the cluster?)")))
        return events

    def _result(self, ref) -> list[Any]:
        worker, call, unit = self._calls.pop(ref)
        if worker in self._finished:
            return []
        try:
            value = ray.get(ref)
        except ray_errors.RayTaskError as exc:     # the call itself raised (the worker code reports its own errors)
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            if call == "run" and unit is not None:
                return [UnitFailed(worker, unit.key, error)]
            return [self._drop(worker, LoadFailed(worker, str(exc)))]
        except ray_errors.RayError as exc:         # the actor died, its node was lost, or its result was
            return [self._drop(worker, WorkerLost(worker, _lost_reason(exc)))]
        if call == "ping":
            self._placed.add(worker)
            return []
        if call == "load":
            return [self._drop(worker, value) if isinstance(value, LoadFailed) else value]
        return list(value)

    def _drop(self, worker: int, event: Any) -> Any:
        """Stop ``worker`` for good (ending its actor) and forget its outstanding calls; returns ``event``."""
        self._finished.add(worker)
        for ref in [r for r, (w, _, _) in self._calls.items() if w == worker]:
            del self._calls[ref]
        try:
            ray.kill(self._actors[worker], no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass
        return event

    def close(self) -> None:
        try:
            for worker in list(self._actors):
                if worker not in self._finished:
                    self._drop(worker, None)
        finally:
            self._calls.clear()
            disconnect()
