"""The chunk protocol between the driver and its workers: what a worker is sent and what it sends back.

Workers never write the run folder. A worker turns a `WorkUnit` (one or more chunks about the same images)
into a `ChunkDone` per chunk, carrying the rows and any artifacts (PNG overlays, maps, edited images) as bytes;
the driver writes them atomically, artifacts first and the chunk's Parquet last, as the commit marker. So a
launcher that starts workers elsewhere (another process, another machine) needs no shared filesystem.
Every message is a small picklable dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..io import Artifact
from ..tasks.base import Sample


@dataclass
class Chunk:
    """The samples of one task about a few whole images: the unit of resume (one Parquet file)."""

    task: str
    index: int
    samples: list[Sample]
    sample_hash: str = ""       # hash of the chunk's full membership (sample ids), recorded in its Parquet
    partial: bool = False       # only some samples (error rows being retried): merged into the existing file

    @property
    def key(self) -> str:
        return f"{self.task}/{self.index}"


@dataclass
class WorkUnit:
    """Chunks about the same images (the tasks of a group, e.g. the POPE splits), sent to one worker together so
    its shared-prefix cache serves every question about an image."""

    chunks: list[Chunk]

    @property
    def key(self) -> str:
        return "+".join(c.key for c in self.chunks)

    @property
    def n_samples(self) -> int:
        return sum(len(c.samples) for c in self.chunks)


@dataclass
class Ready:
    worker: int
    info: dict[str, Any]          # device, the adapter's description (a snapshot taken at load), prompts as sent


@dataclass
class ChunkDone:
    worker: int
    task: str
    index: int
    rows: list[dict[str, Any]]
    artifacts: list[Artifact] = field(default_factory=list)
    sample_hash: str = ""
    partial: bool = False

    @property
    def key(self) -> str:
        return f"{self.task}/{self.index}"

    @property
    def n_errors(self) -> int:
        return sum(1 for r in self.rows if r.get("error"))


@dataclass
class UnitFailed:
    """A unit raised. ``retry``: worth another attempt (a model error, a crash); False for a problem with the
    data or the configuration that another attempt cannot fix."""

    worker: int
    unit: str
    error: str
    retry: bool = True
    fatal: bool = False           # stops the run (a configuration error every unit would hit)


@dataclass
class Progress:
    """Samples finished inside a unit that is still running (for a live progress bar)."""

    worker: int
    n: int


@dataclass
class WorkerExit:
    worker: int


@dataclass
class WorkerLost:
    """A worker that died without saying so (SIGKILL, segfault, OOM-kill) or never became ready."""

    worker: int
    reason: str


@dataclass
class LoadFailed:
    """A worker could not load the model: a configuration error, fatal for the run."""

    worker: int
    error: str
