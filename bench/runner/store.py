"""The run folder on disk: manifest, chunk files, rows. Every write is atomic (temp file + rename)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ..results.schema import arrow_schema

CHUNK_RE = re.compile(r"^chunk-(\d{6})\.parquet$")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def write_table(path: Path, rows, task_columns: list[tuple[str, str]]) -> None:
    """Write rows (a list of dicts, or a DataFrame whose NaNs mean null) as Parquet, atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = arrow_schema(task_columns)
    if isinstance(rows, list):
        table = pa.Table.from_pylist(rows, schema=schema)
    else:
        table = pa.Table.from_pandas(rows[[f.name for f in schema]], schema=schema, preserve_index=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
            return json.loads(self.manifest_path.read_text())
        except FileNotFoundError:
            raise BenchError(f"{self.root}: not a run folder (no manifest.json)") from None
        except json.JSONDecodeError as exc:
            raise BenchError(f"{self.manifest_path}: unreadable manifest: {exc.msg}") from None

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        atomic_write_json(self.manifest_path, manifest)

    def chunk_dir(self, task: str) -> Path:
        return self.root / "tasks" / task / "chunks"

    def chunk_path(self, task: str, index: int) -> Path:
        return self.chunk_dir(task) / f"chunk-{index:06d}.parquet"

    def rows_path(self, task: str) -> Path:
        return self.root / "tasks" / task / "rows.parquet"

    def done_chunks(self, task: str) -> set[int]:
        folder = self.chunk_dir(task)
        if not folder.exists():
            return set()
        return {int(m.group(1)) for p in folder.iterdir() if (m := CHUNK_RE.match(p.name))}

    def clean_partial(self) -> int:
        """Remove temp files left by a run that was killed mid-write; returns how many."""
        removed = 0
        if self.root.exists():
            for tmp in self.root.rglob(".*.tmp-*"):
                tmp.unlink(missing_ok=True)
                removed += 1
        return removed

    def read_chunks(self, task: str):
        import pandas as pd

        files = sorted(self.chunk_dir(task).glob("chunk-*.parquet"))
        if not files:
            return None
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True).sort_values("sample_index", kind="stable").reset_index(drop=True)

    def read_rows(self, task: str):
        import pandas as pd

        path = self.rows_path(task)
        return pd.read_parquet(path) if path.exists() else self.read_chunks(task)
