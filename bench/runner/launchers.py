"""Where workers run, behind one seam: a `Launcher` parses the device strings it owns, shares out CPU threads and
builds the `WorkerPool` the driver's dispatcher feeds. Every launcher speaks the chunk protocol of `messages.py`,
so the driver, its queue, its attempts and its commits are the same whichever is chosen.

- ``local`` (`LocalLauncher`): this machine; the driver's own process for one device, else one spawned process
  per device (`cpu`, `cpu:N`, `cuda:0,cuda:1`, `auto`).
- ``ray`` (`RayLauncher`): Ray actors on a cluster (`cpu:N` for N CPU actors, `auto` for one actor per GPU of
  the cluster). Ray is imported only here, and only when this launcher is used.
"""

from __future__ import annotations

import importlib.util
import os
import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError
from .pools import InProcessPool, ProcessPool, WorkerPool
from .worker import WorkerSetup

if TYPE_CHECKING:
    from ..config import RunConfig


class Launcher(ABC):
    """Starts the workers of a run somewhere."""

    name: str

    @abstractmethod
    def devices(self, text: str, single_worker: bool) -> list[str]:
        """The device of each worker slot, from ``--devices`` (refused in one line when this launcher cannot
        give it). ``single_worker``: the model spans devices itself (device_map=auto)."""

    @abstractmethod
    def threads(self, devices: list[str], requested: int | None) -> int:
        """Torch threads per worker for these slots (0: leave torch's default); ``requested``: ``--threads``."""

    @abstractmethod
    def pool(self, setup_for: Callable[[int], WorkerSetup], n: int) -> WorkerPool:
        """A pool for ``n`` worker slots; ``setup_for(slot)`` is what the worker of a slot needs."""


class LocalLauncher(Launcher):
    """Workers on this machine: in the driver's process for one slot, one spawned process per slot otherwise."""

    name = "local"

    def devices(self, text: str, single_worker: bool) -> list[str]:
        from .plan import parse_devices

        return parse_devices(text, single_worker)

    def threads(self, devices: list[str], requested: int | None) -> int:
        cpu_workers = sum(1 for d in devices if d == "cpu")     # the machine's cores, shared out among CPU workers
        return requested or (max(1, (os.cpu_count() or 1) // cpu_workers) if cpu_workers else 0)

    def pool(self, setup_for: Callable[[int], WorkerSetup], n: int) -> WorkerPool:
        return InProcessPool(setup_for) if n == 1 else ProcessPool(setup_for)


RAY_ADDRESS_RE = re.compile(r"auto|[A-Za-z0-9][A-Za-z0-9.-]*:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5}")


def check_ray_address(address: str | None) -> str | None:
    """``auto`` (the cluster this machine belongs to) or HOST:PORT of its head; None: start a local instance."""
    if address is None:
        return None
    address = address.strip()
    if not RAY_ADDRESS_RE.fullmatch(address) or (address != "auto" and not 0 < int(address.rpartition(":")[2]) < 65536):
        raise ConfigError(f"--ray-address: use auto or HOST:PORT of the cluster's head (e.g. 10.0.0.5:6379), got {address!r}")
    return address


class RayLauncher(Launcher):
    """Ray actors: one per GPU of the cluster (``auto``; each actor holds ``num_gpus=1``) or N CPU actors
    (``cpu:N``; each holds as many CPUs as it runs torch threads, one by default).

    ``address``: ``auto``, HOST:PORT, or None for a local instance (a program that called ``ray.init`` itself
    keeps its connection). ``gpu_device``: the device a GPU actor runs the model on. Leave it None: the actor's
    own GPU, which Ray makes its ``cuda:0``. It exists for tests only, which declare fake GPUs
    (``ray.init(num_gpus=2)``) that torch cannot see and pass ``"cpu"`` to run the model on the CPU while the
    scheduling, the visible-device bookkeeping and the rows are those of a GPU run.
    """

    name = "ray"

    def __init__(self, address: str | None = None, *, gpu_device: str | None = None, ready_timeout: float = 60.0):
        if importlib.util.find_spec("ray") is None:
            raise ConfigError("--launcher ray needs Ray, an optional extra: pip install 'mllm-bench[ray]' "
                              "(from a checkout: pip install -e '.[ray]')")
        self.address = check_ray_address(address)
        self.gpu_device = gpu_device
        self.ready_timeout = ready_timeout

    def devices(self, text: str, single_worker: bool) -> list[str]:
        text = text.strip()
        if m := re.fullmatch(r"cpu(?::(\d+))?", text):
            n = int(m.group(1) or 1)
            if n < 1:
                raise ConfigError("--devices: cpu:N needs N of at least 1")
            if single_worker and n > 1:
                raise ConfigError("--devices: with device_map=auto one worker spans its devices; use --devices cpu")
            return ["cpu"] * n
        if text == "auto":
            if single_worker:
                raise ConfigError("--launcher ray runs one actor per GPU; device_map=auto (one model over several "
                                  "GPUs) needs --launcher local")
            from .ray_pool import cluster_gpus, connect

            connect(self.address)
            n = cluster_gpus()
            if n == 0:
                raise ConfigError("--devices auto: the Ray cluster has no GPU; use --devices cpu:N for N CPU actors")
            return ["cuda"] * n
        if re.fullmatch(r"(cuda(:\d+)?|mps)(\s*,\s*(cuda(:\d+)?|mps))*", text):
            raise ConfigError(f"--devices {text}: with --launcher ray, Ray places one actor per GPU anywhere in the "
                              "cluster, so GPUs are not named; use --devices auto (every GPU) or cpu:N (N CPU actors)")
        raise ConfigError(f"--devices: cannot read {text!r} with --launcher ray (use auto or cpu:N)")

    def threads(self, devices: list[str], requested: int | None) -> int:
        # A CPU actor holds one CPU of the cluster per thread; GPU actors keep torch's default unless asked.
        return requested or (1 if any(d == "cpu" for d in devices) else 0)

    def pool(self, setup_for: Callable[[int], WorkerSetup], n: int) -> WorkerPool:
        from .ray_pool import RayPool

        return RayPool(setup_for, self.address, gpu_device=self.gpu_device, ready_timeout=self.ready_timeout)


# launcher name -> how to build it from the run's configuration (tests replace the "ray" entry to pass a
# `RayLauncher` test-only argument; nothing else reads it)
LAUNCHERS: dict[str, Callable[["RunConfig"], Launcher]] = {
    "local": lambda config: LocalLauncher(),
    "ray": lambda config: RayLauncher(config.ray_address),
}


def launcher_for(config: "RunConfig") -> Launcher:
    """The launcher the run's configuration names (``--launcher``)."""
    build = LAUNCHERS.get(config.launcher)
    if build is None:
        raise ConfigError(f"--launcher: use one of {', '.join(LAUNCHERS)}, got {config.launcher!r}")
    return build(config)
