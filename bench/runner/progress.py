"""The run's progress bar (samples/s, ETA) and its error count against ``--max-errors``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import RunAborted


@dataclass
class Progress:
    total: int
    max_errors: int
    label: str = ""
    show: bool = True
    done: int = 0
    errors: int = 0
    first_error: str | None = None
    bar: Any = None
    _inside: int = 0      # samples reported by units still running (counted again when their chunk arrives)

    def __post_init__(self):
        if self.show and self.total:
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="sample", desc=self.label[:40], dynamic_ncols=True, smoothing=0.1)

    def advance(self, n: int) -> None:
        """Samples finished inside a running unit (before its chunk is committed)."""
        self._inside += n
        if self.bar is not None:
            self.bar.update(n)

    def chunk_done(self, n: int, n_errors: int, first: str | None) -> None:
        counted = min(self._inside, n)
        self._inside -= counted
        self.done += n
        self.errors += n_errors
        self.first_error = self.first_error or first
        if self.bar is not None and n > counted:
            self.bar.update(n - counted)
        if self.errors > self.max_errors:
            raise RunAborted(f"{self.errors} samples failed, more than --max-errors {self.max_errors}; "
                             f"first: {self.first_error}. Finished chunks are kept; fix the data and rerun to resume")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
