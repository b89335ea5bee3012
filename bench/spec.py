"""Task specs: data-only YAML files, one per task, with ``include:`` for variants.

A spec file names its task (``task:``, equal to the file name), its task type (``type:``), an optional
``group`` (tasks whose metrics are also averaged together, e.g. the three POPE splits), and two
mappings that the task type validates: ``dataset`` and ``params``. ``include: other.yaml`` (or a list)
merges other files first, then this file's keys on top (mappings merge key by key, other values
are replaced). Files whose name starts with ``_`` are templates, not tasks.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from .errors import ConfigError
from .validation import read_yaml
from .resources import specs_dir

TOP_LEVEL_FIELDS = {"task", "type", "include", "group", "description", "dataset", "params"}


@dataclass(frozen=True)
class TaskSpec:
    name: str
    type: str
    source: Path
    group: str | None = None
    description: str = ""
    dataset: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def normalized(self) -> dict[str, Any]:
        """The spec as plain data, independent of where its file lives (used in fingerprints)."""
        return {
            "task": self.name,
            "type": self.type,
            "group": self.group,
            "dataset": self.dataset,
            "params": self.params,
        }

    def with_params(self, overrides: dict[str, Any]) -> "TaskSpec":
        params = dict(self.params)
        params.update(overrides)
        return TaskSpec(self.name, self.type, self.source, self.group, self.description, self.dataset, params)


def _read_yaml(path: Path) -> dict[str, Any]:
    data = read_yaml(path, "task spec")
    if data is None:
        raise ConfigError(f"{path}: empty task spec")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a task spec must be a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(data) - TOP_LEVEL_FIELDS)
    if unknown:
        raise ConfigError(f"{path}: unknown field '{unknown[0]}' (allowed: {', '.join(sorted(TOP_LEVEL_FIELDS))})")
    return data


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _resolve_includes(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(p.name for p in (*chain, path))
        raise ConfigError(f"{chain[0]}: include cycle: {cycle}")
    data = _read_yaml(path)
    includes = data.pop("include", None)
    if includes is None:
        return data
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: field 'include' must be a file name or a list of file names")
    merged: dict[str, Any] = {}
    for name in includes:
        merged = _deep_merge(merged, _resolve_includes(path.parent / name, (*chain, path)))
    return _deep_merge(merged, data)


def load_spec_file(path: Path) -> TaskSpec:
    """Load one spec file (with its includes) and check the generic fields."""
    data = _resolve_includes(Path(path))
    path = Path(path)
    for key, kind in (("task", str), ("type", str)):
        if key not in data:
            raise ConfigError(f"{path}: missing field '{key}'")
        if not isinstance(data[key], kind):
            raise ConfigError(f"{path}: field '{key}' must be a string")
    if data["task"] != path.stem:
        raise ConfigError(f"{path}: field 'task' is {data['task']!r} but the file is named {path.name!r}; they must match")
    for key in ("dataset", "params"):
        if not isinstance(data.get(key, {}), dict):
            raise ConfigError(f"{path}: field '{key}' must be a mapping")
    group = data.get("group")
    if group is not None and not isinstance(group, str):
        raise ConfigError(f"{path}: field 'group' must be a string")
    return TaskSpec(
        name=data["task"],
        type=data["type"],
        source=path,
        group=group,
        description=str(data.get("description", "")).strip(),
        dataset=dict(data.get("dataset", {})),
        params=dict(data.get("params", {})),
    )


def spec_files(directory: Path | None = None) -> dict[str, Path]:
    """Task name -> spec file, for every non-template YAML file in the (packaged) specs folder."""
    directory = directory or specs_dir()
    return {p.stem: p for p in sorted(directory.glob("*.yaml")) if not p.name.startswith("_")}


def all_specs(directory: Path | None = None) -> dict[str, TaskSpec]:
    return {name: load_spec_file(path) for name, path in spec_files(directory).items()}


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


LISTINGS: dict[str, list[tuple[str, int]]] = {}   # listing sha256 -> its entries, for this process


def listing_hash(directory: Path) -> dict[str, Any]:
    """A cheap fingerprint of an image folder: the names and sizes of its files (never their contents).
    The entries are kept in `LISTINGS` under the hash, so a run can record which files a later change touched."""
    entries = sorted(_scan(Path(directory)))
    digest = sha256_json(entries)
    LISTINGS[digest] = entries
    return {"files": len(entries), "sha256": digest}


def _scan(directory: Path):
    """(name, size) of each file; an entry that cannot be followed (a symlink loop, a dangling link) has size -1."""
    try:
        with os.scandir(directory) as it:
            for entry in it:
                try:
                    if entry.is_file():
                        yield entry.name, entry.stat().st_size
                except OSError:
                    yield entry.name, -1
    except OSError as exc:
        raise ConfigError(f"{directory}: cannot list the image folder: {exc.strerror or exc}") from None
