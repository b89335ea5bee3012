"""What the ONNX detector is told about its model: the `OnnxDetectorConfig` dataclass and its presets.

The config says how to feed the model (input name, layout, size, value scale, normalisation, stretch or
letterbox resize) and how to read its outputs (one packed [B, N, K] tensor or separate boxes / scores /
classes tensors, box format and units, class index offset, class names). It is built on the project's one
validation path: field types (``Literal`` for each enumeration) and ranges (`bench.validation.param`) are
checked by `bench.validation.parse_dataclass`; rules spanning fields live in ``__post_init__``. Every
problem is one `bench.errors.ConfigError` line naming the source and the field::

    my.yaml: detector field 'input_layout' must be one of 'NHWC', 'NCHW', got 'NWHC'

Presets for known models ship as ``bench/assets/detectors/<name>.yaml``; they never name the model file,
which the user always supplies. PyYAML is imported only when a YAML file is read; nothing here imports
onnxruntime (the runtime is `bench.detectors.onnx`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from ..errors import ConfigError
from ..validation import FieldValueError, param, parse_dataclass

__all__ = ["OnnxDetectorConfig", "BOX_COLUMNS", "field_error", "list_presets", "load_preset"]

InputLayout = Literal["NHWC", "NCHW"]
ChannelOrder = Literal["RGB", "BGR"]
ValueRange = Literal["0-255", "0-1"]
ResizeMode = Literal["stretch", "letterbox"]
LetterboxAlign = Literal["center", "top_left"]
Resample = Literal["bilinear", "bicubic", "nearest"]
OutputLayout = Literal["packed", "separate"]
BoxFormat = Literal["xyxy", "yxyx", "xywh", "cxcywh"]
BoxUnits = Literal["pixels", "normalized"]
Device = Literal["cpu", "cuda"]

# Column names of each box format (also the column order of a separate boxes tensor).
BOX_COLUMNS: dict[str, tuple[str, str, str, str]] = {
    "xyxy": ("x1", "y1", "x2", "y2"),
    "yxyx": ("y1", "x1", "y2", "x2"),
    "xywh": ("x", "y", "w", "h"),
    "cxcywh": ("cx", "cy", "w", "h"),
}
PACKED_OTHER_COLUMNS = ("score", "class", "_")  # "_" = a column to ignore
SEPARATE_OUTPUTS = ("boxes_output", "scores_output", "classes_output", "count_output")

SECTION = "detector"  # messages read "<source>: detector field 'x' ..."
PRESET_PACKAGE = "bench"
PRESET_DIR = ("assets", "detectors")
BUNDLED_PREFIX = "bundled:"  # same convention as bench.resources: a path under bench/assets/

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_DEFAULT_SOURCE = "OnnxDetectorConfig"


def field_error(source: str, field_name: str, message: str) -> ConfigError:
    """The one-line error for a field, worded as `parse_dataclass` words a broken cross-field rule."""
    return ConfigError(f"{source}: {SECTION} field {field_name!r}: {message}")


@dataclass(frozen=True)
class OnnxDetectorConfig:
    """How to run one ONNX detection model (see ``bench/assets/detectors/*.yaml`` for an example).

    Build it with `from_dict`, `from_yaml` or `from_preset`: they check every field and name the source in
    errors. Constructing it directly (typed Python values) runs only the rules of ``__post_init__``.

    Input:
      model            path of the .onnx file (required; never part of a preset).
      name             identifier; the detector is named ``"onnx:<name>"`` (default: the model file's stem).
      input_name       the image input (default: the model's first input).
      input_size       (H, W) fed to the model (default: the model's static input shape).
      mean, std        optional per-channel normalisation ``(x - mean) / std``, in value_range units
                       and in the model's channel order.
      resize           "stretch" (ignore the aspect ratio) or "letterbox" (keep it, pad with pad_value).
      letterbox_align  "center" or "top_left": where the resized image sits on the padded canvas.
      pad_value        letterbox padding, in 0-255 pixel units (before scaling / normalisation).
    Output:
      output_layout    "packed": one tensor [B, N, K] (or [N, K]) with one row per detection;
                       "separate": boxes [B, N, 4], scores [B, N] and classes [B, N] tensors
                       (or, without classes_output, per-class scores [B, N, C]: class = argmax).
      packed_columns   name of each of the K columns: the 4 box columns of box_format (see BOX_COLUMNS),
                       "score", "class", "_" (ignored). Default: box columns, then score, then class.
      count_output     optional [B] number of valid rows (as in TensorFlow detection models).
      box_format       "xyxy", "yxyx", "xywh" (x, y = top-left corner) or "cxcywh".
      box_units        "pixels" (of the model input, i.e. input_size) or "normalized" (0-1 of it).
      class_offset     the model's class index of labels[0] (1 when 0 is background; lower ones are dropped).
      labels           class names in index order; labels_file: where they came from (provenance).
      num_classes      optional: the model's number of classes; labels must match it.
    Runtime:
      batch_size       images per run when the model's batch dimension is dynamic.
      num_threads      onnxruntime intra-op threads (None: onnxruntime's default).
      device           "cpu" or "cuda" (falls back to CPU with a warning when CUDA is unavailable).
    """

    model: Path = param(doc="path of the .onnx file")
    labels: tuple[str, ...] = param(nonempty=True, items={"nonempty": True}, doc="class names, index order")
    name: str | None = param(None, nonempty=True)
    input_name: str | None = param(None, nonempty=True)
    input_layout: InputLayout = "NCHW"
    input_size: tuple[int, int] | None = param(None, items={"min": 1}, doc="[height, width]")
    channel_order: ChannelOrder = "RGB"
    value_range: ValueRange = "0-255"
    mean: tuple[float, float, float] | None = param(None, items={})
    std: tuple[float, float, float] | None = param(None, items={})
    resize: ResizeMode = "stretch"
    letterbox_align: LetterboxAlign = "center"
    pad_value: float = param(114.0, min=0, max=255)
    resample: Resample = "bilinear"
    output_layout: OutputLayout = "packed"
    packed_output: str | None = param(None, nonempty=True)
    packed_columns: tuple[str, ...] | None = None
    boxes_output: str | None = param(None, nonempty=True)
    scores_output: str | None = param(None, nonempty=True)
    classes_output: str | None = param(None, nonempty=True)
    count_output: str | None = param(None, nonempty=True)
    box_format: BoxFormat = "xyxy"
    box_units: BoxUnits = "pixels"
    class_offset: int = param(0, min=0, max=1)
    labels_file: str | None = param(None, nonempty=True)
    num_classes: int | None = param(None, min=1)
    score_threshold: float = param(0.25, doc="default minimum score (>=) of returned detections")
    batch_size: int = param(8, min=1)
    num_threads: int | None = param(None, min=1)
    device: Device = "cpu"
    source: str = field(default=_DEFAULT_SOURCE, repr=False, compare=False)

    # ------------------------------------------------------------------ rules spanning fields

    def __post_init__(self) -> None:
        """Normalise (lists to tuples, the model to a Path, the default name and packed columns) and check
        what field declarations cannot say; each broken rule is a `FieldValueError` naming its field."""
        put = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731  (frozen)
        model = Path(self.model).expanduser()
        if not model.is_file():
            raise FieldValueError("model", f"file not found: {model}")
        put("model", model)
        name = self.name or model.stem
        if not _NAME_RE.match(name):
            raise FieldValueError("name", f"{name!r} is not a valid identifier (letters, digits, _ . + -)")
        put("name", name)

        put("labels", tuple(label.strip() for label in self.labels))
        if self.num_classes is not None and len(self.labels) != self.num_classes:
            where = f" in {self.labels_file}" if self.labels_file else ""
            raise FieldValueError("labels", f"{len(self.labels)} class names{where} but the model has "
                                            f"num_classes={self.num_classes}")
        for fname, size, what in (("input_size", 2, "[height, width]"), ("mean", 3, "3 numbers (one per channel)"),
                                  ("std", 3, "3 numbers (one per channel)")):
            value = getattr(self, fname)
            if value is not None:
                if len(value) != size:
                    raise FieldValueError(fname, f"must be {what}, got {list(value)}")
                put(fname, tuple(value))
        if self.std is not None and 0 in self.std:
            raise FieldValueError("std", f"must not contain 0, got {list(self.std)}")
        self._check_outputs(put)

    def _check_outputs(self, put: Any) -> None:
        if self.output_layout == "separate":
            for fname in ("packed_output", "packed_columns"):
                if getattr(self, fname) is not None:
                    raise FieldValueError(fname, "only used with output_layout 'packed' (this config is 'separate')")
            for fname in ("boxes_output", "scores_output"):
                if getattr(self, fname) is None:
                    raise FieldValueError(fname, "required with output_layout 'separate'")
            return
        for fname in SEPARATE_OUTPUTS:
            if getattr(self, fname) is not None:
                raise FieldValueError(fname, "only used with output_layout 'separate' (this config is 'packed')")
        box_cols = BOX_COLUMNS[self.box_format]
        cols = tuple(box_cols + ("score", "class") if self.packed_columns is None else self.packed_columns)
        allowed = box_cols + PACKED_OTHER_COLUMNS
        for col in cols:
            if col not in allowed:
                raise FieldValueError("packed_columns", f"unknown column {col!r} for box_format {self.box_format!r} "
                                                        f"(allowed: {', '.join(allowed)})")
        for col in box_cols + ("score", "class"):
            if cols.count(col) != 1:
                raise FieldValueError("packed_columns", f"column {col!r} must appear exactly once, got {list(cols)}")
        put("packed_columns", cols)

    def error(self, field_name: str, message: str) -> ConfigError:
        """A one-line error about one of this config's fields, naming its source (used by the runtime)."""
        return field_error(self.source, field_name, message)

    # ------------------------------------------------------------------ building

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The fields a config file may set."""
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "source")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "<dict>", base_dir: Any = None) -> "OnnxDetectorConfig":
        """Build and check a config from plain data (e.g. parsed YAML); errors name ``source`` and the field.

        Relative ``model`` and ``labels`` paths are resolved against ``base_dir`` (a directory, or an
        ``importlib.resources`` Traversable; default: the current directory); ``bundled:detectors/x.txt``
        names a file shipped in bench/assets/. ``labels`` is an inline list of names or a file of one name
        per line (``labels_file`` is a synonym). Enumeration values are read case-insensitively, and one
        number stands for every entry of ``input_size`` / ``mean`` / ``std``."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: {SECTION} config must be a mapping of fields, got {type(d).__name__}")
        known = cls.field_names()
        for key in d:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"{source}: unknown {SECTION} field {key!r}{hint}")
        values = _normalise(dict(d))
        if values.get("model") is None:
            raise field_error(source, "model", "missing (the path of the .onnx file)")
        if not isinstance(values["model"], (str, Path)):
            raise field_error(source, "model", f"must be a file path, got {values['model']!r}")
        values["model"] = Path(str(_resolve_path(values["model"], base_dir)))
        _read_labels(values, source, base_dir, from_file_field="labels_file" if "labels_file" in d else "labels")
        return parse_dataclass(cls, {**values, "source": source}, source, SECTION)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "OnnxDetectorConfig":
        """Read a YAML config file; relative paths in it are relative to the file."""
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"detector config not found: {path}")
        d = _load_yaml(path.read_text(encoding="utf-8"), str(path))
        d.update(overrides)
        return cls.from_dict(d, source=str(path), base_dir=path.parent)

    @classmethod
    def from_preset(cls, preset: str, model: str | Path, **overrides: Any) -> "OnnxDetectorConfig":
        """A shipped preset plus the user's model path (relative to the current directory) and overrides."""
        d = load_preset(preset)
        if "model" in d:
            raise ConfigError(f"preset {preset!r}: presets must not name a model file")
        for k in ("labels", "labels_file"):  # the user's own files are relative to the current directory
            if isinstance(overrides.get(k), (str, Path)):
                overrides[k] = Path(overrides[k]).expanduser().absolute()
        if "labels" in overrides:
            d.pop("labels_file", None)
        if "labels_file" in overrides:
            d.pop("labels", None)
        d.update(overrides)
        d["model"] = Path(model).expanduser().absolute()
        return cls.from_dict(d, source=f"preset {preset!r}", base_dir=_preset_dir())

    def replace(self, **changes: Any) -> "OnnxDetectorConfig":
        return dataclasses.replace(self, **changes)


# --------------------------------------------------------------------------- reading plain values


def _normalise(values: dict[str, Any]) -> dict[str, Any]:
    """What config files may say more loosely than the field types: enumeration values in any case, and one
    number for a pair (input_size) or a per-channel triple (mean, std)."""
    hints = typing.get_type_hints(OnnxDetectorConfig)
    for key, value in values.items():
        options = typing.get_args(hints[key]) if typing.get_origin(hints[key]) is Literal else ()
        if isinstance(value, str) and options:
            values[key] = next((o for o in options if o.lower() == value.strip().lower()), value)
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if key == "input_size" and is_number:
            values[key] = [value, value]
        elif key in ("mean", "std") and is_number:
            values[key] = [value] * 3
    return values


def _read_labels(values: dict[str, Any], source: str, base_dir: Any, from_file_field: str) -> None:
    """``labels`` as a list of names: read from a file when ``labels`` / ``labels_file`` is a path."""
    labels, labels_file = values.get("labels"), values.get("labels_file")
    if labels is not None and labels_file is not None:
        raise field_error(source, "labels_file", "give either labels (a list or a file) or labels_file, not both")
    if isinstance(labels, (str, Path)):
        labels_file, labels = labels, None
    if labels_file is not None:
        if not isinstance(labels_file, (str, Path)):
            raise field_error(source, from_file_field, f"must be a file path, got {labels_file!r}")
        path = _resolve_path(labels_file, base_dir)
        if not path.is_file():
            raise field_error(source, from_file_field, f"labels file not found: {path}")
        try:
            labels = _parse_labels(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise field_error(source, from_file_field, f"{path}: {exc}") from None
        values["labels_file"] = str(path)
    if labels is None:
        raise field_error(source, "labels", "missing (an inline list of class names or a labels file path)")
    values["labels"] = labels


def _resolve_path(p: Any, base_dir: Any) -> Any:
    """A Path (or, under a resources Traversable base, a Traversable)."""
    text = str(p)
    if text.startswith(BUNDLED_PREFIX):  # a file shipped in bench/assets/, as elsewhere in bench
        return resources.files(PRESET_PACKAGE).joinpath("assets", *Path(text[len(BUNDLED_PREFIX):]).parts)
    path = Path(text).expanduser()
    if path.is_absolute() or base_dir is None:
        return path
    if isinstance(base_dir, (str, Path)):
        return Path(base_dir) / path
    return base_dir.joinpath(*path.parts)  # importlib.resources Traversable


def _parse_labels(text: str) -> tuple[str, ...]:
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, line in enumerate(lines):
        if not line:
            raise ValueError(f"line {i + 1} is empty (one class name per line, in index order)")
    if not lines:
        raise ValueError("no class names")
    return tuple(lines)


def _load_yaml(text: str, source: str) -> dict:
    import yaml

    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: invalid YAML: {' '.join(str(exc).split())}") from None
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: {SECTION} config must be a mapping of fields, got {type(d).__name__}")
    return d


# --------------------------------------------------------------------------- presets


def _preset_dir():
    return resources.files(PRESET_PACKAGE).joinpath(*PRESET_DIR)


def list_presets() -> list[str]:
    """Names of the shipped detector presets."""
    return sorted(p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict:
    """The raw mapping of a shipped preset (no model path; not yet checked)."""
    f = _preset_dir().joinpath(f"{name}.yaml")
    if not f.is_file():
        available = list_presets()
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(f"unknown detector preset {name!r} (available: {', '.join(available) or 'none'}){hint}")
    return _load_yaml(f.read_text(encoding="utf-8"), f"preset {name!r}")
