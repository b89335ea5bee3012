"""Atomic file writes, and the one boundary that turns OS errors into one-line errors.

Every file the project writes goes through here: a temporary file beside the target, fsync, then
``os.replace``, so a reader sees the old file or the new one, never half of one. This module is
neutral: models, detectors, tasks, training and the runner all import it, and it imports none of them.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from .errors import BenchError

TMP_MARK = ".tmp-"


class WriteError(BenchError):
    """A file or folder could not be written (read-only, disk full, not a directory, name too long)."""


_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "file name too long",
    errno.EEXIST: "already exists and is not a folder",
    errno.EDQUOT: "disk quota exceeded",
}


def os_reason(exc: OSError) -> str:
    return _REASONS.get(exc.errno or -1, exc.strerror or type(exc).__name__)


@contextlib.contextmanager
def writing(path: Path | str, what: str = "write") -> Iterator[None]:
    """Turn an OSError raised inside into a one-line `WriteError` naming ``path``."""
    try:
        yield
    except WriteError:
        raise
    except OSError as exc:
        target = exc.filename if isinstance(exc.filename, str) and not Path(exc.filename).name.startswith(".") else path
        raise WriteError(f"cannot {what} {target}: {os_reason(exc)}") from None


def ensure_dir(path: Path | str) -> Path:
    path = Path(path)
    with writing(path, "create folder"):
        if path.exists() and not path.is_dir():
            raise WriteError(f"cannot create folder {path}: it is a file")
        path.mkdir(parents=True, exist_ok=True)
    return path


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    path = Path(path)
    ensure_dir(path.parent)
    tmp = _tmp_name(path)
    with writing(path):
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


def atomic_write_text(path: Path | str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path | str, data: Any) -> None:
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=False, default=str) + "\n").encode())


def parquet_bytes(rows, task_columns: list[tuple[str, str]], metadata: dict[str, str] | None = None) -> bytes:
    """Rows (a list of dicts, or a DataFrame whose NaNs mean null) as Parquet bytes, with the results schema
    and optional key-value ``metadata`` in the file footer."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .results.schema import arrow_schema

    schema = arrow_schema(task_columns)
    if metadata:
        schema = schema.with_metadata({k.encode(): v.encode() for k, v in metadata.items()})
    if isinstance(rows, list):
        table = pa.Table.from_pylist(rows, schema=schema)
    else:
        table = pa.Table.from_pandas(rows[[f.name for f in schema]], schema=schema, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue().to_pybytes()


def write_table(path: Path | str, rows, task_columns: list[tuple[str, str]], metadata: dict[str, str] | None = None) -> None:
    """Write rows as Parquet, atomically."""
    atomic_write_bytes(path, parquet_bytes(rows, task_columns, metadata))


def remove_temp_files(root: Path) -> int:
    """Remove temp files left by a process killed mid-write; returns how many."""
    removed = 0
    if root.is_dir():
        for tmp in root.rglob(f".*{TMP_MARK}*"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
    return removed


@dataclass(frozen=True)
class Artifact:
    """A file a task produces beside its rows (a PNG overlay, a saliency map, an edited image): its path
    relative to the task's folder in the run, and its bytes. Workers send these; the driver writes them."""

    path: str
    data: bytes

    def __post_init__(self):
        parts = Path(self.path).parts
        if not parts or Path(self.path).is_absolute() or ".." in parts:
            raise ValueError(f"artifact path must be relative and inside the task folder, got {self.path!r}")
