"""One validation path for every configuration: a dataclass whose fields declare their types and ranges.

Task params, dataset fields, model arguments and detector configs are all dataclasses. ``parse_dataclass``
builds one from plain values (YAML, or ``key=value`` text from the command line with ``coerce=True``), and
every problem is a one-line `ConfigError` naming where the values came from and the field::

    @dataclass
    class Params:
        max_new_tokens: int = param(128, min=1)
        eps: float = param(8 / 255, min=0, max=1, min_open=True)
        template: str = param("Is there a {} in the image?", contains="{}")
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import MISSING, dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Check:
    """What a field's value must satisfy beyond its type."""

    min: float | None = None
    max: float | None = None
    min_open: bool = False       # min itself is excluded
    max_open: bool = False
    contains: str | None = None  # a text that must appear in the value (e.g. "{}" in a template)
    nonempty: bool = False       # strings and lists
    items: "Check | None" = None  # the same checks on each item of a list

    def problem(self, value: Any) -> str | None:
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            if self.nonempty and not value:
                return "must not be empty"
            if self.items is not None:
                for item in value:
                    if (why := self.items.problem(item)) is not None:
                        return f"item {item!r} {why}"
            return None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if isinstance(value, float) and not math.isfinite(value):
                return "must be a finite number"
            if self.min is not None and (value < self.min or (self.min_open and value == self.min)):
                return f"must be {'greater than' if self.min_open else 'at least'} {self.min:g}"
            if self.max is not None and (value > self.max or (self.max_open and value == self.max)):
                return f"must be {'less than' if self.max_open else 'at most'} {self.max:g}"
        if isinstance(value, str):
            if self.nonempty and not value.strip():
                return "must not be empty"
            if self.contains is not None and self.contains not in value:
                return f"must contain {self.contains!r}"
        return None

    def describe(self) -> str:
        parts = []
        if self.min is not None:
            parts.append(f"{'>' if self.min_open else '>='} {self.min:g}")
        if self.max is not None:
            parts.append(f"{'<' if self.max_open else '<='} {self.max:g}")
        if self.contains is not None:
            parts.append(f"contains {self.contains!r}")
        return ", ".join(parts)


class FieldValueError(ValueError):
    """A rule spanning fields, broken: raised by a dataclass's ``__post_init__`` so that `parse_dataclass`
    names the field ("<where>: <section> field 'x': <message>") rather than only the section."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"field {field!r}: {message}")


def param(default: Any = MISSING, *, default_factory: Any = MISSING, doc: str = "", **checks: Any) -> Any:
    """A dataclass field with its checks (see `Check`) and a one-line description."""
    if "items" in checks and isinstance(checks["items"], dict):
        checks["items"] = Check(**checks["items"])
    metadata = {"check": Check(**checks), "doc": doc}
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def parse_dataclass(cls: type, values: dict[str, Any], where: str, section: str, *, coerce: bool = False,
                    field_word: str = "field") -> Any:
    """Build dataclass ``cls`` from ``values``, with one-line errors naming ``where`` and the field
    ("<where>: <section> field 'x' must be ...").

    ``coerce``: values are command-line text (``seed=3``): read them as the field's type first.
    ``field_word``: what a field is called in messages ("key" for ``--model-args``)."""
    what = f"{section} {field_word}".strip()
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: {section} must be a mapping of fields, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        raise ConfigError(f"{where}: unknown {what} '{unknown[0]}' (allowed: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    parsed = {}
    for name, value in values.items():
        expected = hints[name]
        if coerce and isinstance(value, str):
            value = _coerce(value, expected)
        if not _type_ok(value, expected):
            raise ConfigError(f"{where}: {what} '{name}' must be {_type_name(expected)}, got {value!r}")
        check = fields[name].metadata.get("check")
        if check is not None and (why := check.problem(value)) is not None:
            raise ConfigError(f"{where}: {what} '{name}' {why}, got {value!r}")
        parsed[name] = value
    missing = [n for n, f in fields.items() if n not in parsed and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise ConfigError(f"{where}: missing {what} '{missing[0]}'")
    try:
        return cls(**parsed)
    except FieldValueError as exc:
        raise ConfigError(f"{where}: {what} '{exc.field}': {exc.message}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {section or field_word}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def read_yaml(path, what: str) -> Any:
    """A YAML file's data (data-only: ``yaml.safe_load``), with one-line `ConfigError`s naming the file: not found, a
    folder, not UTF-8, unreadable, or malformed (with line and column). ``what`` names the file's kind in messages."""
    from pathlib import Path

    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a {what} file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what} file: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: malformed YAML{where}: {' '.join(str(problem).split())}") from None


def defaults(cls: type) -> dict[str, Any]:
    """Each field's default value (fields without one are left out)."""
    out = {}
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            out[f.name] = f.default
        elif f.default_factory is not MISSING:
            out[f.name] = f.default_factory()
    return out


def _coerce(text: str, expected: Any) -> Any:
    options = _flatten(expected)
    stripped = text.strip()
    if type(None) in options and stripped.lower() in ("none", "null", ""):
        return None
    if bool in options and stripped.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return stripped.lower() in ("true", "yes", "on", "1")
    if int in options:
        try:
            return int(stripped)
        except ValueError:
            pass
    if float in options:
        try:
            return float(stripped)
        except ValueError:
            pass
    return text


def _flatten(expected: Any) -> list[Any]:
    origin = typing.get_origin(expected)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return [t for arg in typing.get_args(expected) for t in _flatten(arg)]
    return [expected]


def _type_ok(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_type_ok(value, arg) for arg in typing.get_args(expected))
    if origin is typing.Literal:
        return any(value == a and type(value) is type(a) for a in typing.get_args(expected))
    if origin in (list, tuple):
        (item,) = typing.get_args(expected)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(_type_ok(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if expected is Any:
        return True
    if expected is type(None):
        return value is None
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True


def _type_name(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(expected))
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return " or ".join(_type_name(a) for a in typing.get_args(expected))
    if origin in (list, tuple):
        args = typing.get_args(expected)
        return f"a list of {_type_name(args[0])}" if args else "a list"
    if expected is type(None):
        return "null"
    return {"int": "an integer", "float": "a number", "str": "a string", "bool": "true or false",
            "dict": "a mapping"}.get(getattr(expected, "__name__", ""), getattr(expected, "__name__", str(expected)))
