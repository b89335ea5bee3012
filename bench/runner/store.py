"""The run folder on disk: manifest, chunk files, artifacts, rows, and the lock that keeps one run in it.

Only the driver writes here. Every write is atomic (temp file + rename). A chunk commits in two steps, its
artifacts first and its Parquet file last, so a chunk file on disk means the chunk is complete. Each chunk's
Parquet footer records the hash of its sample ids, the code version and the schema version, which a resume
checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BenchError, DataError
from ..io import atomic_write_bytes, atomic_write_json, ensure_dir, remove_temp_files, write_table, writing
from ..results.schema import SCHEMA_VERSION

CHUNK_RE = re.compile(r"^chunk-(\d{6})\.parquet$")
META_PREFIX = "bench."


def sample_hash(sample_ids) -> str:
    """The identity of a chunk's membership: sha256 of its sorted sample ids."""
    return hashlib.sha256("\n".join(sorted(map(str, sample_ids))).encode()).hexdigest()


class RunLocked(BenchError):
    """Another bench process holds this run folder."""


class ChunkDamaged(Exception):
    """A chunk file that cannot be used (truncated, empty, not Parquet, or rows that are not its own)."""


@dataclass
class ChunkInfo:
    path: Path
    metadata: dict[str, str]
    sample_ids: list[str]


class RunLock:
    """An exclusive flock on ``<run>/.lock`` for as long as a run holds the folder."""

    def __init__(self, root: Path):
        self.path = Path(root) / ".lock"
        self.handle = None

    def acquire(self) -> "RunLock":
        import fcntl

        ensure_dir(self.path.parent)
        with writing(self.path, "lock"):
            handle = open(self.path, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunLocked(f"{self.path.parent}: another bench run is using this run folder ({holder}); "
                            "wait for it to end, or use another --run-name") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        self.handle = handle
        return self

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()   # closing drops the flock
            self.handle = None


class RunStore:
    def __init__(self, root: Path):
        self.root = Path(root)

    @property
    def manifest_path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.json"

    def exists(self) -> bool:
        return self.manifest_path.exists()

    def read_manifest(self) -> dict[str, Any]:
        try:
            data = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BenchError(f"{self.root}: not a run folder (no manifest.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{self.manifest_path}: unreadable manifest: {getattr(exc, 'msg', exc)}") from None
        except OSError as exc:
            raise DataError(f"{self.manifest_path}: cannot read the manifest: {exc.strerror}") from None
        if not isinstance(data, dict):
            raise DataError(f"{self.manifest_path}: a manifest must be a JSON object, got {type(data).__name__}")
        return data

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def task_dir(self, task: str) -> Path:
        return self.root / "tasks" / task

    def chunk_dir(self, task: str) -> Path:
        return self.task_dir(task) / "chunks"

    def chunk_path(self, task: str, index: int) -> Path:
        return self.chunk_dir(task) / f"chunk-{index:06d}.parquet"

    def rows_path(self, task: str) -> Path:
        return self.task_dir(task) / "rows.parquet"

    def chunk_files(self, task: str) -> dict[int, Path]:
        folder = self.chunk_dir(task)
        if not folder.is_dir():
            return {}
        return {int(m.group(1)): p for p in sorted(folder.iterdir()) if (m := CHUNK_RE.match(p.name))}

    def done_chunks(self, task: str) -> set[int]:
        return set(self.chunk_files(task))

    def clean_partial(self) -> int:
        """Remove temp files left by a run that was killed mid-write; returns how many."""
        return remove_temp_files(self.root)

    # -- writing a chunk ---------------------------------------------------------------------------------------
    def commit_chunk(self, task: str, index: int, rows: list[dict[str, Any]], artifacts: list, columns: list[tuple[str, str]],
                     metadata: dict[str, str], partial: bool = False) -> None:
        """Write a finished chunk: artifacts first, the Parquet file last (the commit marker). A ``partial`` chunk
        (retried error rows) replaces those rows in the existing file."""
        for artifact in artifacts:
            atomic_write_bytes(self.task_dir(task) / artifact.path, artifact.data)
        path = self.chunk_path(task, index)
        if partial and path.exists():
            redone = {r["sample_id"]: r for r in rows}
            import pyarrow.parquet as pq

            kept = [r for r in pq.read_table(path).to_pylist() if r["sample_id"] not in redone]
            rows = sorted(kept + list(redone.values()), key=lambda r: r["sample_index"])
        meta = {META_PREFIX + k: v for k, v in metadata.items()}
        write_table(path, rows, columns, meta)

    # -- reading -----------------------------------------------------------------------------------------------
    def chunk_info(self, path: Path) -> ChunkInfo:
        """The footer metadata and sample ids of a chunk file; `ChunkDamaged` when it cannot be read."""
        import pyarrow.parquet as pq

        try:
            handle = pq.ParquetFile(path)
            raw = handle.schema_arrow.metadata or {}
            ids = handle.read(columns=["sample_id"]).column("sample_id").to_pylist()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
            raise ChunkDamaged(f"unreadable ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        metadata = {k.decode()[len(META_PREFIX):]: v.decode() for k, v in raw.items() if k.decode().startswith(META_PREFIX)}
        return ChunkInfo(path, metadata, [str(i) for i in ids])

    def set_aside(self, path: Path, reason: str) -> Path:
        """Move a damaged or foreign chunk file out of the way (kept, not deleted), so it is recomputed."""
        stamp = dt.datetime.now().strftime("%Y%m%dT%H%M%S%f")
        target = self.root / "set_aside" / path.parent.parent.name / f"{path.name}.{stamp}"
        ensure_dir(target.parent)
        with writing(target, "move a damaged chunk to"):
            os.replace(path, target)
        atomic_write_bytes(target.with_name(target.name + ".why.txt"), (reason + "\n").encode())
        return target

    def read_chunks(self, task: str):
        import pandas as pd

        files = list(self.chunk_files(task).values())
        if not files:
            return None
        return pd.concat([read_parquet(f) for f in files], ignore_index=True).sort_values("sample_index", kind="stable").reset_index(drop=True)

    def read_rows(self, task: str):
        path = self.rows_path(task)
        return read_parquet(path) if path.exists() else self.read_chunks(task)


def read_parquet(path: Path, columns: list[str] | None = None):
    """A Parquet file as a DataFrame; a damaged file is a one-line `DataError` naming it."""
    import pandas as pd

    try:
        table = pd.read_parquet(path)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a damaged file
        raise DataError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
    missing = [c for c in columns or [] if c not in table.columns]
    if missing:
        raise DataError(f"{path}: rows lack column '{missing[0]}'")
    return table


def chunk_metadata(sample_ids_hash: str, code: str) -> dict[str, str]:
    return {"sample_hash": sample_ids_hash, "code_version": code, "schema_version": str(SCHEMA_VERSION)}
