"""One typed registry for everything that is looked up by name.

Task types, model adapters, detectors and metrics register themselves with a decorator in their
own module. `load_plugins()` imports the plugin packages (their modules keep heavy imports inside
functions, so this stays cheap). Duplicate names are rejected; unknown names are answered with the
closest known ones.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from typing import Callable, Generic, Iterator, TypeVar

from .errors import ConfigError

T = TypeVar("T")

PLUGIN_PACKAGES = ("bench.tasks", "bench.models", "bench.detectors", "bench.explain.methods", "bench.perturb.edits")


class Registry(Generic[T]):
    """Name -> object, for one kind of thing (``kind`` names it in error messages)."""

    def __init__(self, kind: str, base: type | None = None):
        self.kind = kind
        self.base = base
        self._entries: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def add(item: T) -> T:
            if name in self._entries and self._entries[name] is not item:
                raise ValueError(f"duplicate {self.kind} name {name!r}: already registered by {self._entries[name]!r}")
            if self.base is not None and isinstance(item, type) and not issubclass(item, self.base):
                raise TypeError(f"{self.kind} {name!r} must subclass {self.base.__name__}, got {item!r}")
            self._entries[name] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        if name not in self._entries:
            load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        close = difflib.get_close_matches(name, list(self._entries), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(self._entries)) or 'none'}"
        return f"unknown {self.kind} {name!r}{hint}"

    def __contains__(self, name: str) -> bool:
        load_plugins()
        return name in self._entries

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def items(self) -> Iterator[tuple[str, T]]:
        load_plugins()
        return iter(sorted(self._entries.items()))


_loaded = False


def load_plugins() -> None:
    """Import every module of the plugin packages once, so their decorators run."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package_name in PLUGIN_PACKAGES:
        package = importlib.import_module(package_name)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{package_name}.{info.name}")


TASK_TYPES: Registry = Registry("task type")
MODELS: Registry = Registry("model")
DETECTORS: Registry = Registry("detector")
SALIENCY_METHODS: Registry = Registry("saliency method")
EDITS: Registry = Registry("edit")   # bias probes: what an edit changes (bench/perturb/edits/)
