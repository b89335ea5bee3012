"""Hugging Face ``datasets`` as a source: a hub name or a local folder, a split, and a column mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError

FIELDS = {"source", "path", "name", "split", "revision", "columns", "filter", "data_files"}


def dataset_spec(dataset: dict[str, Any], where: str, required_columns: tuple[str, ...]) -> dict[str, Any]:
    unknown = sorted(set(dataset) - FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown dataset field '{unknown[0]}' (allowed: {', '.join(sorted(FIELDS))})")
    if not isinstance(dataset.get("path"), str):
        raise ConfigError(f"{where}: dataset field 'path' (hub name or local folder) is required")
    columns = dataset.get("columns", {})
    if not isinstance(columns, dict):
        raise ConfigError(f"{where}: dataset field 'columns' must map roles to column names")
    missing = [c for c in required_columns if c not in columns]
    if missing:
        raise ConfigError(f"{where}: dataset field 'columns' is missing role '{missing[0]}' (needs {', '.join(required_columns)})")
    return {
        "path": dataset["path"],
        "name": dataset.get("name"),
        "split": dataset.get("split", "test"),
        "revision": dataset.get("revision"),
        "data_files": dataset.get("data_files"),
        "columns": columns,
        "filter": dataset.get("filter", {}),
    }


def open_dataset(spec: dict[str, Any]):
    """Returns (dataset, image column). A local folder made by ``save_to_disk`` is read directly."""
    import datasets

    path = spec["path"]
    try:
        local = Path(path)
        if local.is_dir() and (local / "state.json").exists():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[spec["split"]]
        else:
            ds = datasets.load_dataset(path, spec.get("name"), split=spec["split"], revision=spec.get("revision"),
                                       data_files=spec.get("data_files"))
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as exc:
        raise DataError(f"cannot open dataset {path!r} split {spec['split']!r}: {str(exc).splitlines()[0]}") from None
    for column in spec["columns"].values():
        if column not in ds.column_names:
            raise DataError(f"dataset {path!r} has no column {column!r} (columns: {', '.join(ds.column_names)})")
    return ds, spec["columns"].get("image", "image")


def dataset_key(spec: dict[str, Any]) -> str:
    return json.dumps({k: spec[k] for k in ("path", "name", "split", "revision", "data_files", "columns")}, sort_keys=True)


def fingerprint(ds) -> str:
    return getattr(ds, "_fingerprint", "") or ""
