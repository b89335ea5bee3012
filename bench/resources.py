"""Files that ship inside the package: task specs and bundled data.

Both are found through importlib.resources, so a plain (non-editable) ``pip install .`` works
without the source tree. Task specs live in the repository's top-level ``tasks/`` folder, which
the build maps to the ``bench.specs`` package.
"""

from __future__ import annotations

import importlib.resources as ir
from pathlib import Path

BUNDLED_PREFIX = "bundled:"


def specs_dir() -> Path:
    return Path(str(ir.files("bench.specs")))


def assets_dir() -> Path:
    return Path(str(ir.files("bench") / "assets"))


def resolve_path(value: str, root: Path | None) -> Path:
    """``bundled:x/y`` -> the packaged asset; absolute paths stay; others are relative to ``root``."""
    if value.startswith(BUNDLED_PREFIX):
        return assets_dir() / value[len(BUNDLED_PREFIX):]
    path = Path(value).expanduser()
    if path.is_absolute() or root is None:
        return path
    return root / path
