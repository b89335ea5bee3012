"""The bias probes as data: attribute axes, characteristics and question templates (YAML under
``bench/assets/bias/``, or the user's own files).

- axes (``axes.yaml``): ``axes: {<axis>: {report, description, attributes: {<attribute>: {queries: [...]}}}}``.
  An attribute's ``queries`` are what the open-vocabulary scorer looks for ("a photo of a {query}"); ``report`` is
  the yes/no question that asks the MLLM itself ("Is the person in this image a {attribute}?").
- characteristics (``characteristics.yaml``): ``lists: {<name>: [word, ...]}``.
- templates (``templates.yaml``): ``default`` (the paper's question) and at most 4 ``paraphrases``, each with the
  slot ``{characteristic}``.

Every problem is a one-line `ConfigError` naming the file (and the axis, attribute or item). Filling a slot writes
"an" for "a" before a word that starts with a vowel letter (as the POPE questions do), so "a engineer" never appears.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..resources import assets_dir
from ..validation import read_yaml

SLOT = "{characteristic}"
ATTRIBUTE_SLOT = "{attribute}"
MAX_PARAPHRASES = 4
_ARTICLE = re.compile(r"\b([Aa]n?)(\s+)(\{characteristic\}|\{attribute\})")


def bias_assets() -> Path:
    return assets_dir() / "bias"


@dataclass(frozen=True)
class Attribute:
    name: str
    queries: tuple[str, ...]


@dataclass(frozen=True)
class Axis:
    """One attribute axis: its attributes (each with the scorer's queries) and the self-report question."""

    name: str
    attributes: tuple[Attribute, ...]
    report: str = "Is the person in this image a {attribute}?"
    description: str = ""

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.attributes)

    @property
    def queries(self) -> tuple[str, ...]:
        """Every query of every attribute, once, in order (what the scorer is asked on each image)."""
        return tuple(dict.fromkeys(q for a in self.attributes for q in a.queries))

    def attribute(self, name: str, where: str = "") -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        close = difflib.get_close_matches(name, list(self.names), n=2, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{where + ': ' if where else ''}unknown attribute {name!r} of axis {self.name} "
                          f"(its attributes: {', '.join(self.names)}){hint}")

    def match(self, label: str) -> str | None:
        """The attribute a free-form label names ("Woman", "old_person", "old-person"), or None."""
        wanted = " ".join(re.split(r"[\s_\-]+", str(label).strip().lower()))
        for name in self.names:
            if " ".join(name.lower().split()) == wanted:
                return name
        return None

    def report_question(self, attribute: str) -> str:
        return fill(self.report, attribute, ATTRIBUTE_SLOT)

    def directions(self) -> list[tuple[str, str]]:
        """Every ordered pair (source, target) of distinct attributes, in the axis's order."""
        return [(a, b) for a in self.names for b in self.names if a != b]

    def parse_direction(self, text: str, where: str = "") -> tuple[str, str]:
        """``"man->woman"`` -> ("man", "woman"), both attributes of this axis."""
        source, sep, target = str(text).partition("->")
        if not sep:
            raise ConfigError(f"{where + ': ' if where else ''}direction {text!r} must read '<source>-><target>', "
                              f"e.g. {self.names[0]}->{self.names[1]}")
        source, target = self.attribute(source.strip(), where).name, self.attribute(target.strip(), where).name
        if source == target:
            raise ConfigError(f"{where + ': ' if where else ''}direction {text!r} goes from an attribute to itself")
        return source, target


def fill(template: str, word: str, slot: str = SLOT) -> str:
    """The template with its slot filled; "a"/"an" right before the slot follows the word's first letter."""
    article = "an" if word[:1].lower() in "aeiou" else "a"

    def fix(match: re.Match) -> str:
        if match.group(3) != slot:
            return match.group(0)
        return (article.capitalize() if match.group(1)[0].isupper() else article) + match.group(2) + slot

    return _ARTICLE.sub(fix, template).replace(slot, word)


def direction_name(source: str, target: str) -> str:
    return f"{source}->{target}"


def cell_name(direction: str, characteristic: str) -> str:
    """A cell's name in metric names: ``man->woman:nurse`` (no "|": names and labels end up in Markdown tables)."""
    return f"{direction}:{characteristic}"


# -- files ---------------------------------------------------------------------------------------------------------


def _mapping(data: Any, path: Path, where: str, keys: set[str], required: set[str] = frozenset()) -> dict:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {where} must be a mapping, got {type(data).__name__}")
    unknown = sorted(str(k) for k in data if k not in keys)
    if unknown:
        raise ConfigError(f"{path}: {where}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(keys))})")
    missing = sorted(required - set(data))
    if missing:
        raise ConfigError(f"{path}: {where}: missing key '{missing[0]}'")
    return data


def _text(value: Any, path: Path, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: {where} must be non-empty text, got {value!r}")
    return " ".join(value.split())


def load_axes(path: str | Path | None = None) -> dict[str, Axis]:
    """Every axis of an axes file (default: the bundled ``axes.yaml``)."""
    path = Path(path).expanduser() if path else bias_assets() / "axes.yaml"
    data = _mapping(read_yaml(path, "axes"), path, "the file", {"axes"}, {"axes"})
    axes_data = data["axes"]
    if not isinstance(axes_data, dict) or not axes_data:
        raise ConfigError(f"{path}: 'axes' must map axis names to their attributes")
    axes = {}
    for name, entry in axes_data.items():
        where = f"axis {name}"
        entry = _mapping(entry, path, where, {"attributes", "report", "description"}, {"attributes"})
        attributes_data = entry["attributes"]
        if not isinstance(attributes_data, dict) or len(attributes_data) < 2:
            raise ConfigError(f"{path}: {where}: 'attributes' must map at least two attribute names to their queries")
        attributes = []
        for attr_name, attr in attributes_data.items():
            attr_where = f"{where}, attribute {attr_name}"
            label = _text(attr_name, path, f"{where}: an attribute name")
            attr = _mapping(attr, path, attr_where, {"queries"}, {"queries"})
            queries = attr["queries"]
            if not isinstance(queries, list) or not queries:
                raise ConfigError(f"{path}: {attr_where}: 'queries' must be a non-empty list of phrases")
            attributes.append(Attribute(label, tuple(_text(q, path, f"{attr_where}: a query") for q in queries)))
        report = _text(entry.get("report", Axis.report), path, f"{where}: 'report'")
        if ATTRIBUTE_SLOT not in report:
            raise ConfigError(f"{path}: {where}: 'report' must contain {ATTRIBUTE_SLOT}")
        description = str(entry.get("description") or "").strip()
        labels = [a.name for a in attributes]
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{path}: {where}: two attributes share a name")
        axes[str(name)] = Axis(str(name), tuple(attributes), report, description)
    return axes


def load_axis(name: str, path: str | Path | None = None, where: str = "") -> Axis:
    """One axis by name; an unknown name lists the known ones."""
    axes = load_axes(path)
    if name not in axes:
        close = difflib.get_close_matches(name, list(axes), n=2, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{where + ': ' if where else ''}unknown axis {name!r} (known: {', '.join(sorted(axes))}){hint}")
    return axes[name]


def load_characteristics(path: str | Path | None = None) -> dict[str, list[str]]:
    """The named lists of a characteristics file (default: the bundled one)."""
    path = Path(path).expanduser() if path else bias_assets() / "characteristics.yaml"
    data = _mapping(read_yaml(path, "characteristics"), path, "the file", {"lists"}, {"lists"})
    lists = data["lists"]
    if not isinstance(lists, dict) or not lists:
        raise ConfigError(f"{path}: 'lists' must map list names to lists of characteristics")
    out = {}
    for name, words in lists.items():
        if not isinstance(words, list) or not words:
            raise ConfigError(f"{path}: list {name} must be a non-empty list of characteristics")
        out[str(name)] = list(dict.fromkeys(_text(w, path, f"list {name}: an item") for w in words))
    return out


def resolve_characteristics(value: str | list[str], path: str | Path | None = None, where: str = "") -> list[str]:
    """A list name of the characteristics file, or an explicit list of characteristics."""
    if isinstance(value, str):
        lists = load_characteristics(path)
        if value not in lists:
            raise ConfigError(f"{where + ': ' if where else ''}unknown characteristics list {value!r} "
                              f"(known: {', '.join(sorted(lists))}; or give a list of words)")
        return lists[value]
    words = [" ".join(str(w).split()) for w in value]
    if not words or not all(words):
        raise ConfigError(f"{where + ': ' if where else ''}characteristics must be non-empty words")
    return list(dict.fromkeys(words))


def load_templates(path: str | Path | None = None) -> list[str]:
    """[default, paraphrase 1, ...] of a templates file (default: the bundled one); each holds the slot once."""
    path = Path(path).expanduser() if path else bias_assets() / "templates.yaml"
    data = _mapping(read_yaml(path, "templates"), path, "the file", {"default", "paraphrases"}, {"default"})
    paraphrases = data.get("paraphrases") or []
    if not isinstance(paraphrases, list):
        raise ConfigError(f"{path}: 'paraphrases' must be a list of templates")
    if len(paraphrases) > MAX_PARAPHRASES:
        raise ConfigError(f"{path}: at most {MAX_PARAPHRASES} paraphrases, got {len(paraphrases)}")
    templates = [_text(data["default"], path, "'default'")] + [_text(t, path, f"paraphrase {i + 1}")
                                                             for i, t in enumerate(paraphrases)]
    return check_templates(templates, str(path))


def check_templates(templates: list[str], where: str) -> list[str]:
    for i, template in enumerate(templates):
        if template.count(SLOT) != 1:
            raise ConfigError(f"{where}: template {i + 1} must hold the slot {SLOT} exactly once: {template!r}")
    if len(templates) > MAX_PARAPHRASES + 1:
        raise ConfigError(f"{where}: at most {MAX_PARAPHRASES + 1} templates (the default and {MAX_PARAPHRASES} "
                          f"paraphrases), got {len(templates)}")
    return templates
