"""A closed-set object detector that runs any ONNX model with onnxruntime: the runtime.

How to feed the model and read its outputs is an `OnnxDetectorConfig` (`bench.detectors.onnx_config`,
which also holds the presets shipped in ``bench/assets/detectors/``); the model file itself is always
supplied by the user::

    det = OnnxDetector.from_preset("centernet_mbv3_coco80", model="path/to/model.onnx")
    [dets] = det.detect([PIL.Image.open("dog.jpg")], queries=["dog"])

Here: the session (onnxruntime is imported only when an `OnnxDetector` is created, and the config is
checked against the model's inputs and outputs), preprocessing, decoding the outputs, and mapping boxes
back to original image pixels. Every configuration problem is a one-line `bench.errors.ConfigError`
naming the config's source and the field.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError
from .base import Detections, resolve_queries
from .onnx_config import BOX_COLUMNS, OnnxDetectorConfig, list_presets, load_preset

__all__ = ["OnnxDetector", "OnnxDetectorConfig", "list_presets", "load_preset"]


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
        self.config = config
        self.name = f"onnx:{config.name}"
        self.labels = config.labels
        self.vocabulary: tuple[str, ...] | None = tuple(dict.fromkeys(config.labels))
        self.session = self._open_session()
        self.providers = tuple(self.session.get_providers())
        self._bind_input()
        self._bind_outputs()

    def _open_session(self) -> Any:
        import onnxruntime as ort

        cfg = self.config
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
                warnings.warn(f"{self.name}: device 'cuda' asked for, but onnxruntime has no "
                              "CUDAExecutionProvider here; running on CPU", RuntimeWarning, stacklevel=3)
        try:
            return ort.InferenceSession(str(cfg.model), sess_options=opts, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types
            raise cfg.error("model", f"onnxruntime cannot load {cfg.model}: {' '.join(str(e).split())}") from None

    def _bind_input(self) -> None:
        """Check the config against the model's image input: name, type, layout, size, batch."""
        cfg, err = self.config, self.config.error
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
            raise err("input_layout", f"{cfg.input_layout} does not match the model input shape {shape}: "
                                      f"{c} channels, expected 3{hint}")
        model_hw = (_static(shape[hw_axes[0]]), _static(shape[hw_axes[1]]))
        if cfg.input_size is not None:
            for got, want in zip(model_hw, cfg.input_size):
                if got is not None and got != want:
                    raise err("input_size", f"{list(cfg.input_size)} does not match the model input shape "
                                            f"{shape} ({cfg.input_layout})")
            self.input_size = cfg.input_size
        elif None in model_hw:
            raise err("input_size", f"required: the model input shape {shape} has no static height/width")
        else:
            self.input_size = model_hw  # type: ignore[assignment]
        batch = _static(shape[0])
        if batch is not None and batch != 1:
            raise err("input_name", f"model input has a fixed batch size of {batch}; only 1 or dynamic is supported")
        self.batched = batch is None

    def _bind_outputs(self) -> None:
        """Check the config against the model's outputs and choose the tensors to fetch."""
        cfg, err = self.config, self.config.error
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
                raise err("packed_columns", f"{len(cfg.packed_columns)} columns {list(cfg.packed_columns)} do not "
                                            f"match the packed output {self._packed!r} of shape {pshape}")
            self._fetch = [self._packed]
            return
        self._boxes = need("boxes_output", cfg.boxes_output)
        self._scores = need("scores_output", cfg.scores_output)
        self._classes = need("classes_output", cfg.classes_output)
        self._count = need("count_output", cfg.count_output)
        self._fetch = [n for n in (self._boxes, self._scores, self._classes, self._count) if n]
        if self._classes is None:
            sshape = list(outputs[self._scores].shape)
            n_cls = _static(sshape[-1]) if sshape else None
            if n_cls is not None and n_cls - cfg.class_offset != len(cfg.labels):
                raise err("labels", f"{len(cfg.labels)} class names but the model's per-class scores "
                                    f"{self._scores!r} {sshape} cover {n_cls - cfg.class_offset} classes "
                                    f"(class_offset {cfg.class_offset})")

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
                raise cfg.error("packed_columns", f"packed output has {p.shape[-1]} columns, config names {len(cols)}")
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
                raise cfg.error("labels", f"per-class scores have {scores.shape[-1]} classes, "
                                          f"labels {len(self.labels)} (class_offset {cfg.class_offset})")
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
            raise cfg.error("labels", f"the model ({self.name}) produced class index "
                                      f"{int(cls_idx.max()) + cfg.class_offset}, but there are only {len(self.labels)} "
                                      f"labels (class_offset {cfg.class_offset}); check labels and class_offset")
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
