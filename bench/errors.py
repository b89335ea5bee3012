"""User-facing errors.

A `BenchError` is a problem with the user's input or environment (a wrong configuration, a missing file,
a sample that cannot be read). The CLI prints it as one line and exits with status 2; anything else is a
bug and keeps its traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """An error the user can fix; printed as one line, no traceback."""


class ConfigError(BenchError):
    """Wrong configuration: unknown names, malformed YAML, bad arguments."""


class DataError(BenchError):
    """Missing or malformed data: annotation files, image folders, question files."""


class ResumeError(BenchError):
    """An existing run folder was made with different settings."""


class SampleError(BenchError):
    """One sample could not be processed (a corrupt image, say)."""

    def __init__(self, sample_id: str, source: str, reason: str):
        self.sample_id = sample_id
        self.source = source
        self.reason = reason
        super().__init__(f"sample {sample_id} ({source}): {reason}")


class RunAborted(BenchError):
    """The run stopped early; finished chunks are kept for a resume."""
