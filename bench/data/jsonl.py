"""JSON-lines files (one object per line), read with one-line errors naming the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

from ..errors import DataError


def read_jsonl(path: Path, required: tuple[str, ...], what: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-empty line; each object must have the ``required`` fields."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{what} not found: {path}")
    if path.is_dir():
        raise DataError(f"{what} {path} is a folder, not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from None
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: line {lineno} is not JSON: {exc.msg}") from None
        if not isinstance(item, dict):
            raise DataError(f"{path}: line {lineno} must be a JSON object with {', '.join(required)}")
        for field in required:
            if field not in item:
                raise DataError(f"{path}: line {lineno} is missing field '{field}'")
        yield lineno, item
