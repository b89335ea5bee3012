"""The run folder on disk: manifest, chunk files, rows. Every write is atomic (temp file + rename)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ..io import atomic_write_bytes, atomic_write_json, remove_temp_files, write_table  # noqa: F401

CHUNK_RE = re.compile(r"^chunk-(\d{6})\.parquet$")


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
        return remove_temp_files(self.root)

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
