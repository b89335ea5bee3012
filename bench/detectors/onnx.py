"""A closed-set object detector that runs any ONNX model, described by a config.

The config (:class:`OnnxDetectorConfig`) says how to feed the model (input
name, layout, size, value scale, normalisation, stretch or letterbox resize)
and how to read its outputs (one packed [B, N, K] tensor or separate boxes /
scores / classes tensors, box format and units, class index offset, class
names).  Presets for known models ship as YAML files in
``bench/assets/detectors/``; the model file itself is always supplied by the
user::

    det = OnnxDetector.from_preset("centernet_mbv3_coco80", model="path/to/model.onnx")
    [dets] = det.detect([PIL.Image.open("dog.jpg")], queries=["dog"])

onnxruntime is imported only when an :class:`OnnxDetector` is created, and
PyYAML only when a YAML file is read.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError as _BenchConfigError
from .base import Detections, resolve_queries

__all__ = [
    "ConfigError",
    "OnnxDetectorConfig",
    "OnnxDetector",
    "list_presets",
    "load_preset",
]

# --------------------------------------------------------------------------- constants

INPUT_LAYOUTS = ("NHWC", "NCHW")
CHANNEL_ORDERS = ("RGB", "BGR")
VALUE_RANGES = ("0-255", "0-1")
RESIZE_MODES = ("stretch", "letterbox")
LETTERBOX_ALIGNS = ("center", "top_left")
RESAMPLES = ("bilinear", "bicubic", "nearest")
OUTPUT_LAYOUTS = ("packed", "separate")
BOX_FORMATS = ("xyxy", "yxyx", "xywh", "cxcywh")
BOX_UNITS = ("pixels", "normalized")
DEVICES = ("cpu", "cuda")

# Canonical column names of each box format (also the order of a separate boxes tensor).
BOX_COLUMNS = {
    "xyxy": ("x1", "y1", "x2", "y2"),
    "yxyx": ("y1", "x1", "y2", "x2"),
    "xywh": ("x", "y", "w", "h"),
    "cxcywh": ("cx", "cy", "w", "h"),
}
PACKED_OTHER_COLUMNS = ("score", "class", "_")  # "_" = a column to ignore

PRESET_PACKAGE = "bench"
BUNDLED_PREFIX = "bundled:"  # same convention as bench.resources: a path under bench/assets/
PRESET_DIR = ("assets", "detectors")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_DEFAULT_SOURCE = "OnnxDetectorConfig"


class ConfigError(_BenchConfigError, ValueError):
    """A bad detector config; the message is one line naming the source and the field.
    A :class:`bench.errors.ConfigError` (the CLI prints it as one line) and a ValueError."""


class _FieldError(ConfigError):
    def __init__(self, field_name: str, msg: str, source: str = _DEFAULT_SOURCE):
        self.field_name = field_name
        self.msg = msg
        super().__init__(f"{source}: field {field_name!r}: {msg}")


# --------------------------------------------------------------------------- config


def _enum(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if isinstance(value, str):
        for a in allowed:
            if value.strip().lower() == a.lower():
                return a
    raise _FieldError(
        name, f"expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}"
    )


def _int(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise _FieldError(name, f"expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise _FieldError(name, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _float(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise _FieldError(name, f"expected a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise _FieldError(name, f"expected a finite number, got {value!r}")
    return float(value)


def _opt_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _FieldError(name, f"expected a non-empty string, got {value!r}")
    return value


def _triple(name: str, value: Any) -> tuple[float, float, float] | None:
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value] * 3
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 3:
        raise _FieldError(name, f"expected 3 numbers (one per channel), got {value!r}")
    return tuple(_float(name, v) for v in value)  # type: ignore[return-value]


@dataclass(frozen=True)
class OnnxDetectorConfig:
    """How to run one ONNX detection model.  See the module docstring and
    ``bench/assets/detectors/*.yaml`` for examples.

    Input:
      model            path of the .onnx file (required; never part of a preset).
      name             identifier; the detector is named ``"onnx:<name>"`` (default: the model file's stem).
      input_name       the image input (default: the model's first input).
      input_layout     "NHWC" or "NCHW".
      input_size       (H, W) fed to the model (default: the model's static input shape).
      channel_order    "RGB" or "BGR".
      value_range      "0-255" or "0-1": pixel values before normalisation.
      mean, std        optional per-channel normalisation ``(x - mean) / std``, in value_range units
                       and in the model's channel order.
      resize           "stretch" (resize to input_size, ignoring aspect ratio) or
                       "letterbox" (keep aspect ratio, pad with pad_value).
      letterbox_align  "center" or "top_left": where the resized image sits on the padded canvas.
      pad_value        letterbox padding value, in 0-255 pixel units (before scaling / normalisation).
      resample         "bilinear", "bicubic" or "nearest".
    Output:
      output_layout    "packed": one tensor [B, N, K] (or [N, K]) with one row per detection;
                       "separate": boxes [B, N, 4], scores [B, N] and classes [B, N] tensors
                       (or, without classes_output, per-class scores [B, N, C]: class = argmax).
      packed_output    the packed tensor's name (default: the model's first output).
      packed_columns   name of each of the K columns: the 4 box columns of box_format
                       (x1 y1 x2 y2 / x y w h / cx cy w h), "score", "class", "_" (ignored).
                       Default: box columns in box_format order, then score, then class.
      boxes_output, scores_output, classes_output, count_output
                       tensor names for the separate layout (count_output: optional [B]
                       number of valid rows, as in TensorFlow detection models).
      box_format       "xyxy", "yxyx", "xywh" (x, y = top-left corner) or "cxcywh".
      box_units        "pixels" (of the model input, i.e. input_size) or "normalized" (0-1 of it).
      class_offset     the model's class index of labels[0] (0, or 1 when 0 is background;
                       indices below the offset are dropped).
      labels           class names, index order (from an inline list or a labels file).
      labels_file      where the labels came from (provenance only, once resolved).
      num_classes      optional: the model's number of classes; labels must match it.
      score_threshold  default minimum score (>=) of returned detections.
    Runtime:
      batch_size       images per run when the model's batch dimension is dynamic.
      num_threads      onnxruntime intra-op threads (None: onnxruntime's default).
      device           "cpu" or "cuda" (falls back to CPU with a warning when CUDA is unavailable).
    """

    model: Path
    labels: tuple[str, ...]
    name: str | None = None
    input_name: str | None = None
    input_layout: str = "NCHW"
    input_size: tuple[int, int] | None = None
    channel_order: str = "RGB"
    value_range: str = "0-255"
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    resize: str = "stretch"
    letterbox_align: str = "center"
    pad_value: float = 114.0
    resample: str = "bilinear"
    output_layout: str = "packed"
    packed_output: str | None = None
    packed_columns: tuple[str, ...] | None = None
    boxes_output: str | None = None
    scores_output: str | None = None
    classes_output: str | None = None
    count_output: str | None = None
    box_format: str = "xyxy"
    box_units: str = "pixels"
    class_offset: int = 0
    labels_file: str | None = None
    num_classes: int | None = None
    score_threshold: float = 0.25
    batch_size: int = 8
    num_threads: int | None = None
    device: str = "cpu"
    source: str = field(default=_DEFAULT_SOURCE, repr=False, compare=False)

    # ------------------------------------------------------------------ validation

    def __post_init__(self) -> None:
        try:
            self._validate()
        except _FieldError as e:
            if self.source != _DEFAULT_SOURCE:
                raise _FieldError(e.field_name, e.msg, self.source) from None
            raise

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def _validate(self) -> None:
        s = self._set
        if not isinstance(self.model, (str, Path)) or not str(self.model):
            raise _FieldError("model", f"expected a path, got {self.model!r}")
        model = Path(self.model).expanduser()
        if not model.is_file():
            raise _FieldError("model", f"detector model not found: {model}")
        s("model", model)

        name = _opt_str("name", self.name) or model.stem
        if not _NAME_RE.match(name):
            raise _FieldError(
                "name", f"{name!r} is not a valid identifier (letters, digits, _ . + -)"
            )
        s("name", name)
        s("input_name", _opt_str("input_name", self.input_name))
        s("input_layout", _enum("input_layout", self.input_layout, INPUT_LAYOUTS))

        size = self.input_size
        if size is not None:
            if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
                size = (size, size)
            if isinstance(size, (str, bytes)) or not isinstance(size, Sequence) or len(size) != 2:
                raise _FieldError("input_size", f"expected [height, width], got {size!r}")
            size = tuple(_int("input_size", v, 1) for v in size)
        s("input_size", size)

        s("channel_order", _enum("channel_order", self.channel_order, CHANNEL_ORDERS))
        s("value_range", _enum("value_range", self.value_range, VALUE_RANGES))
        s("mean", _triple("mean", self.mean))
        std = _triple("std", self.std)
        if std is not None and any(v == 0 for v in std):
            raise _FieldError("std", f"must not contain 0, got {list(std)}")
        s("std", std)
        s("resize", _enum("resize", self.resize, RESIZE_MODES))
        s("letterbox_align", _enum("letterbox_align", self.letterbox_align, LETTERBOX_ALIGNS))
        s("pad_value", _float("pad_value", self.pad_value))
        s("resample", _enum("resample", self.resample, RESAMPLES))

        s("output_layout", _enum("output_layout", self.output_layout, OUTPUT_LAYOUTS))
        s("box_format", _enum("box_format", self.box_format, BOX_FORMATS))
        s("box_units", _enum("box_units", self.box_units, BOX_UNITS))
        for f in ("packed_output", "boxes_output", "scores_output", "classes_output", "count_output"):
            s(f, _opt_str(f, getattr(self, f)))

        box_cols = BOX_COLUMNS[self.box_format]
        if self.output_layout == "packed":
            for f in ("boxes_output", "scores_output", "classes_output", "count_output"):
                if getattr(self, f) is not None:
                    raise _FieldError(f, "only used with output_layout 'separate' (this config is 'packed')")
            cols = self.packed_columns
            if cols is None:
                cols = box_cols + ("score", "class")
            if isinstance(cols, (str, bytes)) or not isinstance(cols, Sequence):
                raise _FieldError("packed_columns", f"expected a list of column names, got {cols!r}")
            cols = tuple(cols)
            allowed = set(box_cols) | set(PACKED_OTHER_COLUMNS)
            for c in cols:
                if c not in allowed:
                    raise _FieldError(
                        "packed_columns",
                        f"unknown column {c!r} for box_format {self.box_format!r} "
                        f"(allowed: {', '.join(box_cols + PACKED_OTHER_COLUMNS)})",
                    )
            for c in box_cols + ("score", "class"):
                if cols.count(c) != 1:
                    raise _FieldError(
                        "packed_columns",
                        f"column {c!r} must appear exactly once, got {list(cols)}",
                    )
            s("packed_columns", cols)
        else:
            if self.packed_output is not None or self.packed_columns is not None:
                bad = "packed_output" if self.packed_output is not None else "packed_columns"
                raise _FieldError(bad, "only used with output_layout 'packed' (this config is 'separate')")
            for f in ("boxes_output", "scores_output"):
                if getattr(self, f) is None:
                    raise _FieldError(f, "required with output_layout 'separate'")

        s("class_offset", _int("class_offset", self.class_offset, 0))
        if self.class_offset > 1:
            raise _FieldError("class_offset", f"expected 0 or 1, got {self.class_offset}")

        labels = self.labels
        if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence):
            raise _FieldError("labels", f"expected a list of class names, got {type(labels).__name__}")
        labels = tuple(labels)
        if not labels:
            raise _FieldError("labels", "no class names given")
        for i, lab in enumerate(labels):
            if not isinstance(lab, str) or not lab.strip():
                raise _FieldError("labels", f"entry {i} is not a non-empty string: {lab!r}")
        s("labels", tuple(lab.strip() for lab in labels))
        s("labels_file", _opt_str("labels_file", self.labels_file))
        if self.num_classes is not None:
            s("num_classes", _int("num_classes", self.num_classes, 1))
            if len(self.labels) != self.num_classes:
                where = f" in {self.labels_file}" if self.labels_file else ""
                raise _FieldError(
                    "labels",
                    f"{len(self.labels)} class names{where} but the model has "
                    f"num_classes={self.num_classes}",
                )

        s("score_threshold", _float("score_threshold", self.score_threshold))
        s("batch_size", _int("batch_size", self.batch_size, 1))
        if self.num_threads is not None:
            s("num_threads", _int("num_threads", self.num_threads, 1))
        s("device", _enum("device", self.device, DEVICES))

    # ------------------------------------------------------------------ loading

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls) if f.name != "source")

    @classmethod
    def from_dict(
        cls,
        d: Mapping[str, Any],
        source: str = "<dict>",
        base_dir: Any = None,
    ) -> "OnnxDetectorConfig":
        """Build and validate a config from plain data (e.g. parsed YAML).

        ``source`` names where ``d`` came from, for error messages.  Relative
        ``model`` and ``labels`` file paths are resolved against ``base_dir``
        (a directory Path or an ``importlib.resources`` Traversable; default:
        the current directory).  ``labels`` is an inline list of names, or a
        path to a file of one name per line (``labels_file`` is a synonym;
        ``bundled:detectors/coco80_labels.txt`` names a file shipped in bench/assets/).
        Every error is a :class:`ConfigError` whose one-line message names
        ``source`` and the offending field.
        """

        def err(field_name: str, msg: str) -> ConfigError:
            return _FieldError(field_name, msg, source)

        if not isinstance(d, Mapping):
            raise ConfigError(f"{source}: expected a mapping of config fields, got {type(d).__name__}")
        known = cls.field_names()
        for k in d:
            if k not in known:
                close = difflib.get_close_matches(str(k), known, n=1, cutoff=0.6)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise ConfigError(f"{source}: unknown field {k!r}{hint}")
        kw = dict(d)
        if kw.get("model") is None:
            raise err("model", "missing (the path of the .onnx file)")

        if not isinstance(kw["model"], (str, Path)):
            raise err("model", f"expected a path, got {kw['model']!r}")
        kw["model"] = _resolve_path(kw["model"], base_dir)

        labels = kw.pop("labels", None)
        labels_file = kw.pop("labels_file", None)
        if labels is not None and labels_file is not None:
            raise err("labels_file", "give either labels (a list or a file) or labels_file, not both")
        if isinstance(labels, (str, Path)):
            labels_file, labels = labels, None
        if labels_file is not None:
            fname = "labels_file" if "labels_file" in d else "labels"
            if not isinstance(labels_file, (str, Path)):
                raise err(fname, f"expected a file path, got {labels_file!r}")
            path = _resolve_path(labels_file, base_dir)
            if not path.is_file():
                raise err(fname, f"labels file not found: {path}")
            try:
                labels = _parse_labels(path.read_text(encoding="utf-8"))
            except ValueError as e:
                raise err(fname, f"{path}: {e}") from None
            kw["labels_file"] = str(path)
        if labels is None:
            raise err("labels", "missing (an inline list of class names or a labels file path)")
        kw["labels"] = labels
        return cls(**kw, source=source)

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
        """A shipped preset (``bench/assets/detectors/<preset>.yaml``) plus the
        user's model path (relative to the current directory) and overrides."""
        d = load_preset(preset)
        if "model" in d:
            raise ConfigError(f"preset {preset!r}: presets must not name a model file")
        for k in ("labels", "labels_file"):  # the user's own files are relative to the current directory
            if isinstance(overrides.get(k), (str, Path)):
                overrides[k] = Path(overrides[k]).expanduser().absolute()
        if "labels" in overrides and "labels_file" in d:
            del d["labels_file"]
        if "labels_file" in overrides and "labels" in d:
            del d["labels"]
        d.update(overrides)
        d["model"] = Path(model).expanduser().absolute()
        return cls.from_dict(d, source=f"preset {preset!r}", base_dir=_preset_dir())

    def replace(self, **changes: Any) -> "OnnxDetectorConfig":
        return dataclasses.replace(self, **changes)


def _resolve_path(p: Any, base_dir: Any) -> Any:
    """A Path (or, under a resources Traversable base, a Traversable)."""
    p_str = str(p)
    if p_str.startswith(BUNDLED_PREFIX):  # a file shipped in bench/assets/, as elsewhere in bench
        return resources.files(PRESET_PACKAGE).joinpath("assets", *Path(p_str[len(BUNDLED_PREFIX):]).parts)
    path = Path(p_str).expanduser()
    if path.is_absolute() or base_dir is None:
        return path
    if isinstance(base_dir, (str, Path)):
        return Path(base_dir) / path
    return base_dir.joinpath(*path.parts)  # importlib.resources Traversable


def _parse_labels(text: str) -> tuple[str, ...]:
    lines = [ln.strip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    for i, ln in enumerate(lines):
        if not ln:
            raise ValueError(f"line {i + 1} is empty (one class name per line, in index order)")
    if not lines:
        raise ValueError("no class names")
    return tuple(lines)


def _load_yaml(text: str, source: str) -> dict:
    try:
        import yaml
    except ImportError as e:  # pragma: no cover
        raise ImportError("PyYAML is needed to read detector configs (pip install pyyaml)") from e
    try:
        d = yaml.safe_load(text)
    except yaml.YAMLError as e:
        msg = " ".join(str(e).split())
        raise ConfigError(f"{source}: invalid YAML: {msg}") from None
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: expected a mapping of config fields, got {type(d).__name__}")
    return d


def _preset_dir():
    return resources.files(PRESET_PACKAGE).joinpath(*PRESET_DIR)


def list_presets() -> list[str]:
    """Names of the shipped detector presets."""
    return sorted(
        p.name[: -len(".yaml")] for p in _preset_dir().iterdir() if p.name.endswith(".yaml")
    )


def load_preset(name: str) -> dict:
    """The raw mapping of a shipped preset (no model path; not yet validated)."""
    f = _preset_dir().joinpath(f"{name}.yaml")
    if not f.is_file():
        avail = list_presets()
        close = difflib.get_close_matches(name, avail, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        raise ConfigError(
            f"unknown detector preset {name!r} (available: {', '.join(avail) or 'none'}){hint}"
        )
    return _load_yaml(f.read_text(encoding="utf-8"), f"preset {name!r}")


# --------------------------------------------------------------------------- detector


@dataclass(frozen=True)
class _Geometry:
    """Maps model-input pixels back to the original image: x_orig = (x - pad_x) / scale_x."""

    width: int  # original image
    height: int
    scale_x: float
    scale_y: float
    pad_x: float
    pad_y: float


_RESAMPLE = {"bilinear": 2, "bicubic": 3, "nearest": 0}  # PIL.Image.Resampling values

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
}


def _static(dim: Any) -> int | None:
    return int(dim) if isinstance(dim, (int, np.integer)) and dim > 0 else None


class OnnxDetector:
    """A :class:`~bench.detectors.base.Detector` running an ONNX model with onnxruntime."""

    def __init__(self, config: OnnxDetectorConfig):
        import onnxruntime as ort

        self.config = cfg = config
        self.name = f"onnx:{cfg.name}"
        self.labels = cfg.labels
        self.vocabulary: tuple[str, ...] | None = tuple(dict.fromkeys(cfg.labels))

        def err(field_name: str, msg: str) -> ConfigError:
            return _FieldError(field_name, msg, cfg.source)

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if cfg.num_threads is not None:
            opts.intra_op_num_threads = cfg.num_threads
            opts.inter_op_num_threads = 1
        providers = ["CPUExecutionProvider"]
        if cfg.device == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
            else:
                warnings.warn(
                    f"{self.name}: device 'cuda' asked for, but onnxruntime has no "
                    "CUDAExecutionProvider here; running on CPU",
                    RuntimeWarning,
                    stacklevel=2,
                )
        try:
            self.session = ort.InferenceSession(str(cfg.model), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            msg = " ".join(str(e).split())
            raise err("model", f"onnxruntime cannot load {cfg.model}: {msg}") from None
        self.providers = tuple(self.session.get_providers())

        # ---- input
        inputs = {i.name: i for i in self.session.get_inputs()}
        in_name = cfg.input_name or self.session.get_inputs()[0].name
        if in_name not in inputs:
            raise err("input_name", f"model has no input {in_name!r} (inputs: {', '.join(inputs)})")
        inp = inputs[in_name]
        others = [n for n in inputs if n != in_name]
        if others:
            raise err("input_name", f"model has other inputs this detector cannot feed: {', '.join(others)}")
        self.input_name = in_name
        if inp.type not in _ORT_DTYPES:
            raise err("input_name", f"input {in_name!r} has unsupported type {inp.type}")
        self.input_dtype = _ORT_DTYPES[inp.type]
        if self.input_dtype == np.uint8 and (cfg.value_range != "0-255" or cfg.mean or cfg.std):
            raise err("value_range", "a uint8 model input takes 0-255 values without mean/std")
        shape = list(inp.shape)
        if len(shape) != 4:
            raise err("input_name", f"input {in_name!r} has rank {len(shape)}, expected 4 (an image batch)")
        c_axis, hw_axes = (3, (1, 2)) if cfg.input_layout == "NHWC" else (1, (2, 3))
        c = _static(shape[c_axis])
        if c is not None and c != 3:
            other = "NCHW" if cfg.input_layout == "NHWC" else "NHWC"
            hint = f" (is it {other}?)" if _static(shape[{3: 1, 1: 3}[c_axis]]) == 3 else ""
            raise err(
                "input_layout",
                f"{cfg.input_layout} does not match the model input shape {shape}: "
                f"{c} channels, expected 3{hint}",
            )
        model_hw = (_static(shape[hw_axes[0]]), _static(shape[hw_axes[1]]))
        if cfg.input_size is not None:
            for got, want in zip(model_hw, cfg.input_size):
                if got is not None and got != want:
                    raise err(
                        "input_size",
                        f"{list(cfg.input_size)} does not match the model input shape {shape} ({cfg.input_layout})",
                    )
            self.input_size = cfg.input_size
        elif None in model_hw:
            raise err("input_size", f"required: the model input shape {shape} has no static height/width")
        else:
            self.input_size = model_hw  # type: ignore[assignment]
        batch = _static(shape[0])
        if batch is not None and batch != 1:
            raise err("input_name", f"model input has a fixed batch size of {batch}; only 1 or dynamic is supported")
        self.batched = batch is None

        # ---- outputs
        outputs = {o.name: o for o in self.session.get_outputs()}

        def need(field_name: str, name: str | None) -> str | None:
            if name is not None and name not in outputs:
                raise err(field_name, f"model has no output {name!r} (outputs: {', '.join(outputs)})")
            return name

        if cfg.output_layout == "packed":
            self._packed = need("packed_output", cfg.packed_output or self.session.get_outputs()[0].name)
            pshape = list(outputs[self._packed].shape)
            k = _static(pshape[-1]) if pshape else None
            if len(pshape) not in (2, 3) or (k is not None and k != len(cfg.packed_columns)):
                raise err(
                    "packed_columns",
                    f"{len(cfg.packed_columns)} columns {list(cfg.packed_columns)} do not match "
                    f"the packed output {self._packed!r} of shape {pshape}",
                )
            self._fetch = [self._packed]
        else:
            self._boxes = need("boxes_output", cfg.boxes_output)
            self._scores = need("scores_output", cfg.scores_output)
            self._classes = need("classes_output", cfg.classes_output)
            self._count = need("count_output", cfg.count_output)
            self._fetch = [n for n in (self._boxes, self._scores, self._classes, self._count) if n]
            if self._classes is None:
                sshape = list(outputs[self._scores].shape)
                n_cls = _static(sshape[-1]) if sshape else None
                if n_cls is not None:
                    if n_cls - cfg.class_offset != len(cfg.labels):
                        raise err(
                            "labels",
                            f"{len(cfg.labels)} class names but the model's per-class scores "
                            f"{self._scores!r} {sshape} cover {n_cls - cfg.class_offset} classes "
                            f"(class_offset {cfg.class_offset})",
                        )

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_preset(cls, preset: str, model: str | Path, **overrides: Any) -> "OnnxDetector":
        return cls(OnnxDetectorConfig.from_preset(preset, model, **overrides))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "OnnxDetector":
        return cls(OnnxDetectorConfig.from_yaml(path, **overrides))

    def __repr__(self) -> str:
        return f"OnnxDetector({self.name!r}, model={str(self.config.model)!r}, providers={list(self.providers)})"

    # ------------------------------------------------------------------ preprocessing

    def preprocess(self, images: Sequence[Any]) -> tuple[np.ndarray, list[_Geometry]]:
        """The model input batch for ``images`` and, per image, how to map boxes back."""
        cfg = self.config
        H, W = self.input_size
        arrays, geoms = [], []
        for img in images:
            img = img if img.mode == "RGB" else img.convert("RGB")
            w, h = img.size
            if w < 1 or h < 1:
                raise ValueError(f"{self.name}: empty image of size {w}x{h}")
            resample = _RESAMPLE[cfg.resample]
            if cfg.resize == "stretch":
                arr = np.asarray(img.resize((W, H), resample=resample), dtype=np.float32)
                geom = _Geometry(w, h, W / w, H / h, 0.0, 0.0)
            else:
                s = min(W / w, H / h)
                nw = min(W, max(1, round(w * s)))
                nh = min(H, max(1, round(h * s)))
                px, py = ((W - nw) // 2, (H - nh) // 2) if cfg.letterbox_align == "center" else (0, 0)
                arr = np.full((H, W, 3), cfg.pad_value, dtype=np.float32)
                arr[py : py + nh, px : px + nw] = np.asarray(
                    img.resize((nw, nh), resample=resample), dtype=np.float32
                )
                geom = _Geometry(w, h, nw / w, nh / h, float(px), float(py))
            arrays.append(arr)
            geoms.append(geom)
        x = np.stack(arrays) if arrays else np.zeros((0, H, W, 3), np.float32)  # NHWC, 0-255, RGB
        if cfg.channel_order == "BGR":
            x = x[..., ::-1]
        if self.input_dtype == np.uint8:
            x = np.clip(np.rint(x), 0, 255)
        else:
            if cfg.value_range == "0-1":
                x = x / np.float32(255.0)
            if cfg.mean is not None:
                x = x - np.asarray(cfg.mean, np.float32)
            if cfg.std is not None:
                x = x / np.asarray(cfg.std, np.float32)
        if cfg.input_layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=self.input_dtype), geoms

    # ------------------------------------------------------------------ inference

    def _raw(self, x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Run the model on a batch; per image: boxes [N, 4] in box_format, scores [N], class indices [N]."""
        cfg = self.config
        outs = self.session.run(self._fetch, {self.input_name: x})
        B = x.shape[0]

        def per_image(a: np.ndarray, rank: int, what: str) -> np.ndarray:
            a = np.asarray(a)
            if a.ndim == rank - 1 and B == 1:
                a = a[None]
            if a.ndim != rank or a.shape[0] != B:
                raise ConfigError(
                    f"{cfg.source}: {self.name}: output {what} has shape {list(a.shape)}, expected {rank} dims "
                    f"with batch {B}; check output_layout and the output names"
                )
            return a

        res = []
        if cfg.output_layout == "packed":
            p = per_image(outs[0], 3, repr(self._packed))
            cols = cfg.packed_columns
            if p.shape[-1] != len(cols):
                raise ConfigError(
                    f"{cfg.source}: field 'packed_columns': packed output has {p.shape[-1]} columns, config names {len(cols)}"
                )
            box_idx = [cols.index(c) for c in BOX_COLUMNS[cfg.box_format]]
            si, ci = cols.index("score"), cols.index("class")
            for b in range(B):
                res.append((p[b][:, box_idx], p[b][:, si], p[b][:, ci]))
            return res

        it = iter(outs)
        boxes = per_image(next(it), 3, repr(self._boxes))
        scores = np.asarray(next(it))
        classes = per_image(next(it), 2, repr(self._classes)) if self._classes else None
        count = np.asarray(next(it)).reshape(-1) if self._count else None
        if classes is None:
            scores = per_image(scores, 3, repr(self._scores))
            if scores.shape[-1] - cfg.class_offset != len(self.labels):
                raise ConfigError(
                    f"{cfg.source}: field 'labels': per-class scores have {scores.shape[-1]} classes, "
                    f"labels {len(self.labels)} (class_offset {cfg.class_offset})"
                )
            # class index offset: columns below the offset (background) never win.
            sc = scores[..., cfg.class_offset :]
            classes = sc.argmax(-1) + cfg.class_offset
            scores = np.take_along_axis(sc, (classes - cfg.class_offset)[..., None], -1)[..., 0]
        else:
            scores = per_image(scores, 2, repr(self._scores))
        if boxes.shape[-1] != 4 or boxes.shape[1] != scores.shape[1] or classes.shape[1] != scores.shape[1]:
            raise ConfigError(
                f"{cfg.source}: {self.name}: outputs disagree: boxes {list(boxes.shape)}, scores {list(scores.shape)}, "
                f"classes {list(classes.shape)}"
            )
        for b in range(B):
            n = scores.shape[1] if count is None else int(min(count[b], scores.shape[1]))
            res.append((boxes[b][:n], scores[b][:n], classes[b][:n]))
        return res

    def _to_xyxy_input_pixels(self, boxes: np.ndarray) -> np.ndarray:
        cfg = self.config
        H, W = self.input_size
        b = boxes.astype(np.float64)
        if cfg.box_units == "normalized":
            b = b * np.array([W, H, W, H] if cfg.box_format != "yxyx" else [H, W, H, W], np.float64)
        if cfg.box_format == "xyxy":
            x1, y1, x2, y2 = b.T
        elif cfg.box_format == "yxyx":
            y1, x1, y2, x2 = b.T
        elif cfg.box_format == "xywh":
            x1, y1 = b[:, 0], b[:, 1]
            x2, y2 = x1 + b[:, 2], y1 + b[:, 3]
        else:  # cxcywh
            x1, x2 = b[:, 0] - b[:, 2] / 2, b[:, 0] + b[:, 2] / 2
            y1, y2 = b[:, 1] - b[:, 3] / 2, b[:, 1] + b[:, 3] / 2
        return np.stack([x1, y1, x2, y2], axis=1)

    def _postprocess(
        self,
        raw: tuple[np.ndarray, np.ndarray, np.ndarray],
        geom: _Geometry,
        threshold: float,
        keep_labels: tuple[str, ...] | None,
    ) -> Detections:
        cfg = self.config
        boxes, scores, classes = raw
        scores = np.asarray(scores, np.float32).reshape(-1)
        keep = scores >= np.float32(threshold)
        boxes, scores = np.asarray(boxes)[keep].reshape(-1, 4), scores[keep]
        cls_idx = np.rint(np.asarray(classes, np.float64).reshape(-1)[keep]).astype(np.int64) - cfg.class_offset
        if len(cls_idx) and cls_idx.max() >= len(self.labels):
            raise ConfigError(
                f"{cfg.source}: field 'labels': the model ({self.name}) produced class index {int(cls_idx.max()) + cfg.class_offset}, "
                f"but there are only {len(self.labels)} labels (class_offset {cfg.class_offset}); "
                "check labels and class_offset"
            )
        fg = cls_idx >= 0  # below the offset: background
        xyxy = self._to_xyxy_input_pixels(boxes[fg])
        scores, cls_idx = scores[fg], cls_idx[fg]
        # undo resize / letterbox, then clip to the image
        xyxy[:, [0, 2]] = (xyxy[:, [0, 2]] - geom.pad_x) / geom.scale_x
        xyxy[:, [1, 3]] = (xyxy[:, [1, 3]] - geom.pad_y) / geom.scale_y
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, geom.width)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, geom.height)
        ok = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # drop boxes with nothing inside the image
        labels = [self.labels[i] for i in cls_idx]
        if keep_labels is not None:
            wanted = set(keep_labels)
            ok &= np.array([lab in wanted for lab in labels], dtype=bool)
        order = [i for i in np.argsort(-scores, kind="stable") if ok[i]]
        return Detections(
            xyxy[order].astype(np.float32),
            scores[order],
            tuple(labels[i] for i in order),
        )

    def detect(
        self,
        images: Sequence[Any],
        queries: Sequence[str] | None = None,
        *,
        score_threshold: float | None = None,
    ) -> list[Detections]:
        """One :class:`Detections` per image (boxes in original image pixels, clipped
        to the image, sorted by descending score), keeping scores >= the threshold
        (default: the config's ``score_threshold``) and, with ``queries``, only those classes."""
        from PIL import Image

        if isinstance(images, Image.Image):
            raise TypeError(f"{self.name}: detect() takes a list of images, not a single image")
        images = list(images)
        for i, im in enumerate(images):
            if not isinstance(im, Image.Image):
                raise TypeError(f"{self.name}: image {i} is a {type(im).__name__}, not a PIL image")
        keep_labels = resolve_queries(queries, self.vocabulary or (), self.name)
        thr = self.config.score_threshold if score_threshold is None else float(score_threshold)
        step = self.config.batch_size if self.batched else 1
        out: list[Detections] = []
        for start in range(0, len(images), step):
            chunk = images[start : start + step]
            x, geoms = self.preprocess(chunk)
            for raw, geom in zip(self._raw(x), geoms):
                out.append(self._postprocess(raw, geom, thr, keep_labels))
        return out
