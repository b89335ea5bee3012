"""Tests for bench.detectors (the Detector protocol and the ONNX detector).

Tiny ONNX models are built here with onnx.helper: they output known detections
(Constant nodes, plus 0 * ReduceMean(input) so the input is really consumed), or
statistics of their input.  The real shared CenterNet model is used when
``shared/models/`` sits beside the repository (skipped otherwise).
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bench.detectors import Detections, Detector, resolve_queries  # noqa: E402
from bench.detectors.onnx import OnnxDetector  # noqa: E402
from bench.detectors.onnx_config import (  # noqa: E402
    BOX_COLUMNS,
    OnnxDetectorConfig,
    list_presets,
    load_preset,
)
from bench.errors import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_MODEL = SHARED / "models" / "centernet_mbv3_coco80.onnx"
LABELS3 = ["cat", "dog", "traffic light"]

# --------------------------------------------------------------------------- tiny model builders


def _const(name: str, arr: np.ndarray):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(arr), name + "_v"))


def _save(tmp_path: Path, nodes, inputs, outputs, name: str) -> Path:
    graph = helper.make_graph(nodes, name, inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


def _input(layout: str, size: tuple[int, int], dynamic_batch: bool, elem=TensorProto.FLOAT):
    H, W = size
    b = "batch" if dynamic_batch else 1
    shape = [b, H, W, 3] if layout == "NHWC" else [b, 3, H, W]
    return helper.make_tensor_value_info("images", elem, shape)


def _zero_nodes(elem=TensorProto.FLOAT):
    """z = 0 * mean(images), shape [B, 1, 1]: ties every output to the input."""
    nodes = []
    src = "images"
    if elem != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["images"], ["images_f"], to=TensorProto.FLOAT))
        src = "images_f"
    nodes += [
        helper.make_node("ReduceMean", [src], ["m"], axes=[1, 2, 3], keepdims=1),
        _const("shape_b11", np.array([-1, 1, 1], np.int64)),
        helper.make_node("Reshape", ["m", "shape_b11"], ["m3"]),
        _const("zero", np.array(0.0, np.float32)),
        helper.make_node("Mul", ["m3", "zero"], ["z"]),
    ]
    return nodes


def packed_model(tmp_path, rows, *, layout="NHWC", size=(320, 416), dynamic_batch=False,
                 elem=TensorProto.FLOAT, name="packed") -> Path:
    rows = np.asarray(rows, np.float32)[None]  # [1, K, C]
    nodes = _zero_nodes(elem) + [_const("rows", rows), helper.make_node("Add", ["z", "rows"], ["dets"])]
    out = helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["batch" if dynamic_batch else 1, rows.shape[1], rows.shape[2]])
    return _save(tmp_path, nodes, [_input(layout, size, dynamic_batch, elem)], [out], name)


def separate_model(tmp_path, boxes, scores, classes=None, *, per_class_scores=None, count=None,
                   layout="NHWC", size=(320, 416), dynamic_batch=False, int_classes=False,
                   name="separate") -> Path:
    b = "batch" if dynamic_batch else 1
    k = len(boxes)
    nodes = _zero_nodes() + [
        _const("boxes_c", np.asarray(boxes, np.float32)[None]),
        helper.make_node("Add", ["z", "boxes_c"], ["det_boxes"]),
        _const("shape_b1", np.array([-1, 1], np.int64)),
        helper.make_node("Reshape", ["z", "shape_b1"], ["z2"]),
    ]
    outputs = [helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [b, k, 4])]
    if per_class_scores is not None:
        pcs = np.asarray(per_class_scores, np.float32)
        nodes += [_const("scores_c", pcs[None]), helper.make_node("Add", ["z", "scores_c"], ["det_scores"])]
        outputs.append(helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [b, k, pcs.shape[1]]))
    else:
        nodes += [_const("scores_c", np.asarray(scores, np.float32)[None]),
                  helper.make_node("Add", ["z2", "scores_c"], ["det_scores"])]
        outputs.append(helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [b, k]))
    if classes is not None:
        nodes += [_const("classes_c", np.asarray(classes, np.float32)[None]),
                  helper.make_node("Add", ["z2", "classes_c"], ["classes_f"])]
        if int_classes:
            nodes.append(helper.make_node("Cast", ["classes_f"], ["det_classes"], to=TensorProto.INT64))
        else:
            nodes.append(helper.make_node("Identity", ["classes_f"], ["det_classes"]))
        outputs.append(helper.make_tensor_value_info(
            "det_classes", TensorProto.INT64 if int_classes else TensorProto.FLOAT, [b, k]))
    if count is not None:
        nodes += [_const("shape_b", np.array([-1], np.int64)), helper.make_node("Reshape", ["z", "shape_b"], ["z1"]),
                  _const("count_c", np.array([count], np.float32)), helper.make_node("Add", ["z1", "count_c"], ["det_count"])]
        outputs.append(helper.make_tensor_value_info("det_count", TensorProto.FLOAT, [b]))
    return _save(tmp_path, nodes, [_input(layout, size, dynamic_batch)], outputs, name)


def channel_mean_model(tmp_path, *, layout="NHWC", size=(64, 96), dynamic_batch=True, name="stats") -> Path:
    """Three detections per image (classes 0, 1, 2) whose scores are the per-channel means of the input."""
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    mask = np.zeros((1, 3, 6), np.float32)
    mask[0, :, 4] = 1.0
    base = np.zeros((1, 3, 6), np.float32)
    base[0, :, :4] = [0, 0, 10, 10]
    base[0, :, 5] = [0, 1, 2]
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["cm"], axes=axes, keepdims=0),  # [B, 3]
        _const("shape_b31", np.array([-1, 3, 1], np.int64)),
        helper.make_node("Reshape", ["cm", "shape_b31"], ["cm3"]),
        _const("mask", mask), _const("base", base),
        helper.make_node("Mul", ["cm3", "mask"], ["scored"]),
        helper.make_node("Add", ["scored", "base"], ["dets"]),
    ]
    out = helper.make_tensor_value_info("dets", TensorProto.FLOAT, ["batch" if dynamic_batch else 1, 3, 6])
    return _save(tmp_path, nodes, [_input(layout, size, dynamic_batch)], [out], name)


# --------------------------------------------------------------------------- geometry used to build expectations

IMAGE_SIZES = [(640, 480), (300, 451), (512, 512)]  # (width, height)
MODEL_SIZE = (320, 416)  # (H, W): deliberately not square


def forward(resize: str, w: int, h: int, size=MODEL_SIZE):
    """(scale_x, scale_y, pad_x, pad_y) from original pixels to model input pixels."""
    H, W = size
    if resize == "stretch":
        return W / w, H / h, 0, 0
    s = min(W / w, H / h)
    nw, nh = round(w * s), round(h * s)
    return nw / w, nh / h, (W - nw) // 2, (H - nh) // 2


def encode(xyxy: np.ndarray, box_format: str, units: str, size=MODEL_SIZE) -> np.ndarray:
    x1, y1, x2, y2 = np.asarray(xyxy, np.float64).T
    if box_format == "xyxy":
        b = np.stack([x1, y1, x2, y2], 1)
    elif box_format == "yxyx":
        b = np.stack([y1, x1, y2, x2], 1)
    elif box_format == "xywh":
        b = np.stack([x1, y1, x2 - x1, y2 - y1], 1)
    else:
        b = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
    if units == "normalized":
        H, W = size
        b = b / (np.array([H, W, H, W]) if box_format == "yxyx" else np.array([W, H, W, H]))
    return b


def scene(w: int, h: int):
    """Original-pixel boxes (as the model should see them) and what the detector must return."""
    boxes = np.array([
        [0.10 * w, 0.20 * h, 0.50 * w, 0.70 * h],   # plain
        [0.60 * w, 0.10 * h, 0.95 * w, 0.40 * h],   # plain
        [-0.10 * w, 0.50 * h, 0.30 * w, 1.20 * h],  # sticks out left and bottom: clipped
        [0, 0, w, h],                               # the whole image
    ])
    scores = np.array([0.9, 0.6, 0.7, 0.4], np.float32)
    classes = np.array([1, 0, 2, 1])
    expected = boxes.copy()
    expected[:, [0, 2]] = expected[:, [0, 2]].clip(0, w)
    expected[:, [1, 3]] = expected[:, [1, 3]].clip(0, h)
    return boxes, scores, classes, expected


def to_model(boxes, resize, w, h):
    sx, sy, px, py = forward(resize, w, h)
    m = np.asarray(boxes, np.float64).copy()
    m[:, [0, 2]] = m[:, [0, 2]] * sx + px
    m[:, [1, 3]] = m[:, [1, 3]] * sy + py
    return m


def sorted_expectation(scores, classes, expected, threshold=0.0):
    order = np.argsort(-scores, kind="stable")
    order = [i for i in order if scores[i] >= threshold]
    return expected[order], scores[order], tuple(LABELS3[classes[i]] for i in order)


def image(w: int, h: int, color=(120, 60, 200)) -> Image.Image:
    return Image.new("RGB", (w, h), color)


# --------------------------------------------------------------------------- box mapping


@pytest.mark.parametrize("resize", ["stretch", "letterbox"])
@pytest.mark.parametrize("output_layout", ["packed", "separate"])
@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("box_format,units", [
    ("xyxy", "pixels"), ("xyxy", "normalized"), ("cxcywh", "pixels"), ("cxcywh", "normalized"),
    ("xywh", "pixels"), ("yxyx", "normalized"),
])
def test_boxes_come_back_in_original_pixels(tmp_path, resize, output_layout, layout, box_format, units):
    for w, h in IMAGE_SIZES:
        boxes, scores, classes, expected = scene(w, h)
        enc = encode(to_model(boxes, resize, w, h), box_format, units)
        common = dict(model=None, labels=LABELS3, input_layout=layout, resize=resize, box_format=box_format,
                      box_units=units, score_threshold=0.0, output_layout=output_layout)
        if output_layout == "packed":
            # column order shuffled on purpose: class, score, then the box, then an ignored column
            rows = np.concatenate([classes[:, None], scores[:, None], enc, np.full((4, 1), 7.0)], 1)
            path = packed_model(tmp_path, rows, layout=layout, name=f"p{w}x{h}")
            cfg = dict(common, packed_columns=["class", "score", *BOX_COLUMNS[box_format], "_"])
        else:
            path = separate_model(tmp_path, enc, scores, classes, layout=layout, name=f"s{w}x{h}",
                                  int_classes=(w == 300))
            cfg = dict(common, boxes_output="det_boxes", scores_output="det_scores", classes_output="det_classes")
        cfg["model"] = path
        det = OnnxDetector(OnnxDetectorConfig.from_dict(cfg, source=f"test {w}x{h}"))
        assert det.input_size == MODEL_SIZE
        [d] = det.detect([image(w, h)])
        exp_boxes, exp_scores, exp_labels = sorted_expectation(scores, classes, expected)
        assert d.labels == exp_labels, (w, h)
        np.testing.assert_allclose(d.scores, exp_scores, rtol=0, atol=1e-6)
        np.testing.assert_allclose(d.boxes, exp_boxes, rtol=0, atol=2e-3, err_msg=f"{w}x{h}")
        assert d.boxes.dtype == np.float32 and d.scores.dtype == np.float32


def test_letterbox_drops_boxes_in_the_padding_and_batches(tmp_path):
    # A dynamic-batch model: one batch holds images of different sizes; each gets its own mapping.
    # Model-space boxes are fixed, so the expectation is the inverse mapping, per image.
    H, W = MODEL_SIZE
    m_boxes = np.array([[100, 100, 300, 200], [0, 0, W, H], [0, 0, 3, 3]], np.float64)
    path = packed_model(tmp_path, np.concatenate([m_boxes, [[0.9], [0.8], [0.7]], [[0], [1], [2]]], 1),
                        dynamic_batch=True)
    det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NHWC",
                                          resize="letterbox", score_threshold=0.0, batch_size=2))
    assert det.batched
    images = [image(w, h) for w, h in IMAGE_SIZES] + [image(40, 400)]
    out = det.detect(images)
    assert len(out) == 4
    for (w, h), d in zip(IMAGE_SIZES + [(40, 400)], out):
        sx, sy, px, py = forward("letterbox", w, h)
        exp = m_boxes.copy()
        exp[:, [0, 2]] = ((exp[:, [0, 2]] - px) / sx).clip(0, w)
        exp[:, [1, 3]] = ((exp[:, [1, 3]] - py) / sy).clip(0, h)
        keep = (exp[:, 2] > exp[:, 0]) & (exp[:, 3] > exp[:, 1])
        np.testing.assert_allclose(d.boxes, exp[keep], atol=2e-3)
        # the whole model canvas maps to exactly the whole image
        np.testing.assert_allclose(d.boxes[1], [0, 0, w, h], atol=1e-3)
        # the 3x3 box in the top-left corner lies in the padding (4 px or more here): dropped
        assert min(px, py) == 0 and max(px, py) >= 4
        assert d.labels == ("cat", "dog")


def test_count_output_and_per_class_scores(tmp_path):
    boxes = np.array([[10, 10, 50, 50], [20, 20, 80, 90], [0, 0, 4, 4]], np.float32)
    # per-class scores with a background column 0 (class_offset 1)
    pcs = np.array([[0.99, 0.1, 0.8, 0.0], [0.0, 0.2, 0.1, 0.6], [0.0, 0.9, 0.0, 0.0]], np.float32)
    path = separate_model(tmp_path, boxes, None, per_class_scores=pcs, count=2)
    det = OnnxDetector(OnnxDetectorConfig.from_dict(dict(
        model=path, labels=LABELS3, input_layout="NHWC", output_layout="separate",
        boxes_output="det_boxes", scores_output="det_scores", count_output="det_count",
        class_offset=1, score_threshold=0.0, resize="stretch")))
    [d] = det.detect([image(416, 320)])  # same size as the model input: identity mapping
    assert d.labels == ("dog", "traffic light")  # third row beyond count; background never wins
    np.testing.assert_allclose(d.scores, [0.8, 0.6], atol=1e-6)
    np.testing.assert_allclose(d.boxes, boxes[:2], atol=1e-4)
    with pytest.raises(ConfigError, match=r"^<dict>: detector field 'labels': 2 class names .* cover 3 classes"):
        OnnxDetector(OnnxDetectorConfig.from_dict(dict(
            model=path, labels=LABELS3[:2], input_layout="NHWC", output_layout="separate",
            boxes_output="det_boxes", scores_output="det_scores", class_offset=1)))


def test_class_offset_one_drops_background(tmp_path):
    rows = [[0, 0, 10, 10, 0.9, 0], [0, 0, 20, 20, 0.8, 1], [0, 0, 30, 30, 0.7, 3]]
    path = packed_model(tmp_path, rows)
    det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NHWC",
                                          class_offset=1, score_threshold=0.0))
    [d] = det.detect([image(416, 320)])
    assert d.labels == ("cat", "traffic light")


# --------------------------------------------------------------------------- input tensor


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
@pytest.mark.parametrize("value_range,mean,std,bgr,expect", [
    ("0-255", None, None, False, (120, 60, 200)),
    ("0-1", None, None, False, (120 / 255, 60 / 255, 200 / 255)),
    ("0-1", (0.5, 0.5, 0.5), (0.25, 0.5, 1.0), False, ((120 / 255 - .5) / .25, (60 / 255 - .5) / .5, 200 / 255 - .5)),
    ("0-255", (100, 50, 0), None, True, (100, 10, 120)),  # BGR: channel 0 is blue
])
def test_model_receives_configured_layout_and_values(tmp_path, layout, value_range, mean, std, bgr, expect):
    path = channel_mean_model(tmp_path, layout=layout)
    det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout=layout, value_range=value_range,
                                          mean=mean, std=std, channel_order="BGR" if bgr else "RGB",
                                          score_threshold=-1e9))
    img_a, img_b = image(300, 451, (120, 60, 200)), image(50, 40, (10, 20, 30))
    da, db = det.detect([img_a, img_b])  # one batch; each image keeps its own statistics
    got = {lab: s for lab, s in zip(da.labels, da.scores)}
    np.testing.assert_allclose([got["cat"], got["dog"], got["traffic light"]], expect, rtol=1e-5, atol=1e-4)
    assert db.max_score("cat") != da.max_score("cat")

    x, _ = det.preprocess([img_a])
    assert x.shape == ((1, 64, 96, 3) if layout == "NHWC" else (1, 3, 64, 96))
    assert x.dtype == np.float32


def test_letterbox_input_canvas(tmp_path):
    path = channel_mean_model(tmp_path, layout="NCHW", size=(100, 200))
    det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NCHW",
                                          resize="letterbox", value_range="0-1", pad_value=0))
    img = Image.new("RGB", (100, 100), (255, 255, 255))  # square into a 100x200 canvas: 50 px pad each side
    x, [g] = det.preprocess([img])
    assert x.shape == (1, 3, 100, 200)
    assert np.all(x[0, :, :, :50] == 0) and np.all(x[0, :, :, 150:] == 0)
    assert np.allclose(x[0, :, :, 50:150], 1.0)
    assert (g.scale_x, g.scale_y, g.pad_x, g.pad_y) == (1.0, 1.0, 50.0, 0.0)
    det_tl = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NCHW",
                                             resize="letterbox", letterbox_align="top_left", pad_value=0))
    x, [g] = det_tl.preprocess([img])
    assert np.all(x[0, :, :, 100:] == 0) and np.allclose(x[0, :, :, :100], 255)


def test_uint8_input_and_grayscale_image(tmp_path):
    path = packed_model(tmp_path, [[1, 2, 3, 4, 0.5, 2]], elem=TensorProto.UINT8, size=(20, 30))
    det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NHWC"))
    x, _ = det.preprocess([Image.new("L", (30, 20), 77)])
    assert x.dtype == np.uint8 and x.shape == (1, 20, 30, 3) and np.all(x == 77)
    [d] = det.detect([Image.new("L", (60, 40), 77)])
    assert d.labels == ("traffic light",)
    np.testing.assert_allclose(d.boxes, [[2, 4, 6, 8]], atol=1e-5)


# --------------------------------------------------------------------------- thresholds and queries


@pytest.fixture
def three_class(tmp_path):
    rows = [[0, 0, 100, 100, 0.9, 1], [10, 10, 50, 50, 0.5, 0], [20, 20, 60, 60, 0.2, 2], [5, 5, 9, 9, 0.35, 1]]
    path = packed_model(tmp_path, rows)
    return OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NHWC", score_threshold=0.3))


def test_score_threshold_and_queries(three_class):
    det = three_class
    img = image(416, 320)
    [d] = det.detect([img])
    assert d.labels == ("dog", "cat", "dog") and d.scores.tolist() == pytest.approx([0.9, 0.5, 0.35])
    [d] = det.detect([img], score_threshold=0.0)
    assert len(d) == 4 and d.max_score("traffic light") == pytest.approx(0.2)
    [d] = det.detect([img], queries=["Dog"])  # case-insensitive, returned as vocabulary names
    assert d.labels == ("dog", "dog")
    [d] = det.detect([img], queries=["traffic   light", "cat"])
    assert d.labels == ("cat",)
    [d] = det.detect([img], queries=["traffic light"], score_threshold=0.1)
    assert d.labels == ("traffic light",)
    assert det.detect([]) == []


def test_query_errors(three_class):
    img = image(416, 320)
    with pytest.raises(ValueError, match=r"query 'dgo' is not in its closed vocabulary .*close matches: 'dog'") as e:
        three_class.detect([img], queries=["dgo"])
    assert "onnx:packed" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ValueError, match=r"query 'giraffe' .*no close match"):
        three_class.detect([img], queries=["cat", "giraffe"])
    with pytest.raises(ValueError, match="empty query list"):
        three_class.detect([img], queries=[])
    with pytest.raises(TypeError, match="not a single string"):
        three_class.detect([img], queries="dog")
    with pytest.raises(TypeError, match="list of images"):
        three_class.detect(img)
    assert resolve_queries(None, LABELS3) is None


# --------------------------------------------------------------------------- config errors


def _one_line_error(exc_info) -> str:
    assert type(exc_info.value) is ConfigError  # the project's one configuration error, no subclass
    msg = str(exc_info.value)
    assert "\n" not in msg
    return msg


def test_config_errors(tmp_path):
    path = packed_model(tmp_path, [[0, 0, 1, 1, 0.5, 0]])
    ok = dict(model=str(path), labels=LABELS3, input_layout="NHWC")
    OnnxDetectorConfig.from_dict(ok, source="ok.yaml")

    with pytest.raises(ConfigError) as e:
        OnnxDetectorConfig.from_dict(dict(ok, input_layuot="NHWC"), source="my.yaml")
    assert _one_line_error(e) == "my.yaml: unknown detector field 'input_layuot' (did you mean 'input_layout'?)"

    with pytest.raises(ConfigError) as e:
        OnnxDetectorConfig.from_dict(dict(ok, input_layout="NWHC"), source="my.yaml")
    assert _one_line_error(e) == "my.yaml: detector field 'input_layout' must be one of 'NHWC', 'NCHW', got 'NWHC'"

    missing = tmp_path / "nope" / "model.onnx"
    with pytest.raises(ConfigError) as e:
        OnnxDetectorConfig.from_dict(dict(ok, model=str(missing)), source="my.yaml")
    assert _one_line_error(e) == f"my.yaml: detector field 'model': file not found: {missing}"

    with pytest.raises(ConfigError, match=r"^my.yaml: detector field 'model': missing"):
        OnnxDetectorConfig.from_dict({"labels": LABELS3}, source="my.yaml")

    with pytest.raises(ConfigError) as e:
        OnnxDetectorConfig.from_dict(dict(ok, labels="labels_missing.txt"), source="my.yaml", base_dir=tmp_path)
    assert _one_line_error(e) == f"my.yaml: detector field 'labels': labels file not found: {tmp_path / 'labels_missing.txt'}"

    (tmp_path / "three.txt").write_text("cat\ndog\ntraffic light\n")
    with pytest.raises(ConfigError) as e:
        OnnxDetectorConfig.from_dict(dict(ok, labels_file="three.txt", labels=None, num_classes=80),
                                     source="my.yaml", base_dir=tmp_path)
    assert "my.yaml: detector field 'labels': 3 class names in" in _one_line_error(e)
    assert "num_classes=80" in str(e.value)

    (tmp_path / "holes.txt").write_text("cat\n\ndog\n")
    with pytest.raises(ConfigError, match=r"^my.yaml: detector field 'labels': .*holes.txt: line 2 is empty"):
        OnnxDetectorConfig.from_dict(dict(ok, labels="holes.txt"), source="my.yaml", base_dir=tmp_path)

    bad_values = [
        (dict(box_format="xyxy", packed_columns=["x1", "y1", "x2", "y2", "score"]), "packed_columns", "'class' must appear exactly once"),
        (dict(box_format="cxcywh", packed_columns=["x1", "y1", "x2", "y2", "score", "class"]), "packed_columns", "unknown column 'x1'"),
        (dict(value_range="0-256"), "value_range", "must be one of '0-255', '0-1', got '0-256'"),
        (dict(resize="crop"), "resize", "must be one of 'stretch', 'letterbox'"),
        (dict(input_size=[512]), "input_size", "must be [height, width]"),
        (dict(class_offset=2), "class_offset", "must be at most 1"),
        (dict(std=[1, 0, 1]), "std", "must not contain 0"),
        (dict(score_threshold="high"), "score_threshold", "must be a number"),
        (dict(labels=[]), "labels", "must not be empty"),
        (dict(output_layout="separate"), "boxes_output", "required with output_layout 'separate'"),
        (dict(boxes_output="b"), "boxes_output", "only used with output_layout 'separate'"),
        (dict(name="has space"), "name", "not a valid identifier"),
        (dict(device="tpu"), "device", "must be one of 'cpu', 'cuda'"),
    ]
    for change, fname, text in bad_values:
        with pytest.raises(ConfigError) as e:
            OnnxDetectorConfig.from_dict(dict(ok, **change), source="my.yaml")
        msg = _one_line_error(e)
        assert re.match(rf"my\.yaml: detector field '{fname}'[ :]", msg), msg
        assert text in msg, msg

    more_bad = [
        (dict(pad_value=300), "pad_value", "must be at most 255, got 300"),
        (dict(score_threshold=float("nan")), "score_threshold", "must be a finite number"),
        (dict(labels=["cat", "  "]), "labels", "item '  ' must not be empty"),
        (dict(mean=[1, 2]), "mean", "must be 3 numbers (one per channel), got [1, 2]"),
        (dict(batch_size=0), "batch_size", "must be at least 1, got 0"),
        (dict(num_threads=True), "num_threads", "must be an integer or null, got True"),
        (dict(model=5), "model", "must be a file path, got 5"),
        (dict(packed_output="dets", output_layout="separate", boxes_output="b", scores_output="s"),
         "packed_output", "only used with output_layout 'packed'"),
    ]
    for change, fname, text in more_bad:
        with pytest.raises(ConfigError) as e:
            OnnxDetectorConfig.from_dict(dict(ok, **change), source="my.yaml")
        msg = _one_line_error(e)
        assert re.match(rf"my\.yaml: detector field '{fname}'[ :]", msg) and text in msg, msg
    with pytest.raises(ConfigError) as e:  # the source is set by the loader, never by the file
        OnnxDetectorConfig.from_dict(dict(ok, source="elsewhere"), source="my.yaml")
    assert _one_line_error(e) == "my.yaml: unknown detector field 'source'"


def test_config_files_may_be_loose(tmp_path):
    # enumeration values in any case, one number for a pair or a triple: read as the canonical values
    path = packed_model(tmp_path, [[0, 0, 1, 1, 0.5, 0]])
    cfg = OnnxDetectorConfig.from_dict(dict(model=str(path), labels=[" cat ", "dog"], input_layout=" nhwc",
                                            channel_order="bgr", box_format="CXCYWH", device="CUDA",
                                            input_size=320, mean=0.5, std=2))
    assert (cfg.input_layout, cfg.channel_order, cfg.box_format, cfg.device) == ("NHWC", "BGR", "cxcywh", "cuda")
    assert cfg.input_size == (320, 320) and cfg.mean == (0.5, 0.5, 0.5) and cfg.std == (2, 2, 2)
    assert cfg.labels == ("cat", "dog") and cfg.packed_columns == ("cx", "cy", "w", "h", "score", "class")
    assert cfg.name == "packed" and cfg.model == Path(path)
    # typed construction checks the rules spanning fields too, as a ValueError naming the field
    with pytest.raises(ValueError, match=r"^field 'std': must not contain 0"):
        OnnxDetectorConfig(model=path, labels=LABELS3, std=(1.0, 0.0, 1.0))
    # the package's ConfigError is the project's one configuration error
    import bench.detectors
    import bench.errors
    assert bench.detectors.ConfigError is bench.errors.ConfigError is ConfigError


def test_config_errors_against_the_model(tmp_path):
    path = packed_model(tmp_path, [[0, 0, 1, 1, 0.5, 0]], layout="NCHW", size=(32, 48))
    ok = dict(model=path, labels=LABELS3, input_layout="NCHW")
    det = OnnxDetector(OnnxDetectorConfig.from_dict(ok))
    assert det.input_size == (32, 48) and det.input_name == "images" and not det.batched

    cases = [
        (dict(input_layout="NHWC"), "input_layout", "does not match the model input shape [1, 3, 32, 48]: 48 channels, expected 3 (is it NCHW?)"),
        (dict(input_size=[48, 32]), "input_size", "[48, 32] does not match the model input shape"),
        (dict(input_name="pixels"), "input_name", "model has no input 'pixels' (inputs: images)"),
        (dict(packed_output="boxes"), "packed_output", "model has no output 'boxes' (outputs: dets)"),
        (dict(packed_columns=["x1", "y1", "x2", "y2", "score", "class", "_"]), "packed_columns", "do not match the packed output"),
    ]
    for change, fname, text in cases:
        with pytest.raises(ConfigError) as e:
            OnnxDetector(OnnxDetectorConfig.from_dict(dict(ok, **change), source="cfg.yaml"))
        msg = _one_line_error(e)
        assert msg.startswith(f"cfg.yaml: detector field '{fname}': ") and text in msg, msg

    # a class index beyond the labels is caught when it shows up
    path = packed_model(tmp_path, [[0, 0, 1, 1, 0.5, 5]], name="cls5")
    det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NHWC"))
    with pytest.raises(ConfigError, match=r"^OnnxDetectorConfig: detector field 'labels': the model \(onnx:cls5\) produced class index 5, but there are only 3 labels"):
        det.detect([image(10, 10)])


def test_yaml_file_and_runtime_options(tmp_path):
    sub = tmp_path / "cfg"
    sub.mkdir()
    path = packed_model(sub, [[0, 0, 208, 160, 0.5, 1]])
    (sub / "names.txt").write_text("cat\ndog\ntraffic light")
    (sub / "det.yaml").write_text(
        "name: tiny\nlabels: names.txt\ninput_layout: NHWC\nnum_threads: 1\nmodel: packed.onnx\n"
    )
    (sub / "coco.yaml").write_text(
        "labels: bundled:detectors/coco80_labels.txt\nnum_classes: 80\ninput_layout: NHWC\nmodel: packed.onnx\n"
    )
    coco = OnnxDetectorConfig.from_yaml(sub / "coco.yaml")
    assert len(coco.labels) == 80 and coco.labels[16] == "dog" and coco.name == "packed"
    det = OnnxDetector.from_yaml(sub / "det.yaml")
    assert det.name == "onnx:tiny" and det.vocabulary == tuple(LABELS3)
    assert det.config.labels_file == str(sub / "names.txt")
    [d] = det.detect([image(832, 640)])
    np.testing.assert_allclose(d.boxes, [[0, 0, 416, 320]], atol=1e-3)
    assert isinstance(det, Detector)

    (sub / "bad.yaml").write_text("labels: names.txt\ninput_layout: [NHWC\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: invalid YAML"):
        OnnxDetectorConfig.from_yaml(sub / "bad.yaml")

    import onnxruntime as ort
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            det = OnnxDetector(OnnxDetectorConfig(model=path, labels=LABELS3, input_layout="NHWC", device="cuda"))
        assert det.providers == ("CPUExecutionProvider",)
        assert any("CUDAExecutionProvider" in str(w.message) for w in caught)


def test_presets_ship_without_a_model():
    assert "centernet_mbv3_coco80" in list_presets()
    p = load_preset("centernet_mbv3_coco80")
    assert "model" not in p and p["input_layout"] == "NHWC" and p["num_classes"] == 80
    with pytest.raises(ConfigError, match=r"unknown detector preset 'centernet_mbv3' .*did you mean 'centernet_mbv3_coco80'"):
        load_preset("centernet_mbv3")


def test_preset_with_a_stand_in_model(tmp_path):
    # The preset's layout, with a stand-in model that has the real model's input/output names and shapes.
    nodes = _zero_nodes() + [_const("rows", np.array([[[10, 20, 266, 276, 0.8, 16]]], np.float32)),
                             helper.make_node("Add", ["z", "rows"], ["tower_0/detections:0"])]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["tower_0/images:0"], ["images"])] + nodes, "standin",
        [helper.make_tensor_value_info("tower_0/images:0", TensorProto.FLOAT, [1, 512, 512, 3])],
        [helper.make_tensor_value_info("tower_0/detections:0", TensorProto.FLOAT, [1, 1, 6])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "standin.onnx"))
    det = OnnxDetector.from_preset("centernet_mbv3_coco80", model=tmp_path / "standin.onnx")
    assert det.name == "onnx:centernet_mbv3_coco80" and len(det.vocabulary) == 80
    [d] = det.detect([image(1024, 256)])
    assert d.labels == ("dog",)
    np.testing.assert_allclose(d.boxes, [[20, 10, 532, 138]], atol=1e-3)
    with pytest.raises(ConfigError, match=r"^preset 'centernet_mbv3_coco80': detector field 'model': file not found: "):
        OnnxDetector.from_preset("centernet_mbv3_coco80", model=tmp_path / "missing.onnx")


# --------------------------------------------------------------------------- Detections and the package


def test_detections_helpers():
    d = Detections(np.array([[0, 0, 1, 1], [1, 1, 2, 2], [2, 2, 3, 3]]), [0.2, 0.9, 0.5], ("cat", "dog", "cat"))
    assert d.boxes.dtype == np.float32 and len(d) == 3
    assert d.max_score("cat") == pytest.approx(0.5) and d.max_score("zebra") == 0.0
    f = d.filter(0.5)
    assert f.labels == ("dog", "cat") and f.boxes.tolist() == [[1, 1, 2, 2], [2, 2, 3, 3]]
    assert d.only(["cat"]).scores.tolist() == pytest.approx([0.2, 0.5])
    assert len(Detections.empty()) == 0 and Detections.empty().max_score("cat") == 0.0
    assert len(d.filter(2.0)) == 0 and d.filter(2.0).boxes.shape == (0, 4)
    with pytest.raises(ValueError):
        d.boxes[0, 0] = 5
    with pytest.raises(Exception):
        d.labels = ()
    with pytest.raises(ValueError, match="must be equal"):
        Detections(np.zeros((2, 4)), [0.1], ("a", "b"))


def test_package_import_is_light():
    code = ("import sys, bench.detectors as d; "
            "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules, 'heavy import'; "
            "d.OnnxDetectorConfig; assert 'onnxruntime' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})


# --------------------------------------------------------------------------- the real shared model

needs_real_model = pytest.mark.skipif(not REAL_MODEL.is_file(), reason=f"shared model absent: {REAL_MODEL}")


def _photo(name: str) -> Image.Image:
    for d in (REPO / "bench/assets/mini_coco/images", SHARED / "data/photos"):
        if (d / name).is_file():
            return Image.open(d / name).convert("RGB")
    pytest.skip(f"photo {name} not found")


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


@pytest.fixture(scope="module")
def real_detector():
    if not REAL_MODEL.is_file():
        pytest.skip(f"shared model absent: {REAL_MODEL}")
    return OnnxDetector.from_preset("centernet_mbv3_coco80", model=REAL_MODEL, num_threads=2)


@needs_real_model
def test_real_model_dog(real_detector):
    img = _photo("dog.jpg")
    w, h = img.size
    [d] = real_detector.detect([img])
    assert d.max_score("dog") > 0.3 and "bicycle" in d.labels
    [dogs] = real_detector.detect([img], queries=["dog"])
    assert set(dogs.labels) == {"dog"}
    x1, y1, x2, y2 = dogs.boxes[0]
    # the dog sits on the porch in the lower-left of the photo (hand-labelled: 108,183 - 258,450 in 640x480)
    assert (x1 + x2) / 2 < w / 2 and (y1 + y2) / 2 > h / 2
    assert _iou(dogs.boxes[0], (108, 183, 258, 450)) > 0.7
    assert x2 < 0.5 * w and y2 > 0.8 * h


@needs_real_model
def test_real_model_giraffe_and_zebra(real_detector):
    img = _photo("giraffe.jpg")
    [d] = real_detector.detect([img], queries=["giraffe", "zebra", "dog"])
    assert d.max_score("giraffe") > 0.3 and d.max_score("zebra") > 0.3 and d.max_score("dog") == 0.0
    giraffe = d.boxes[d.labels.index("giraffe")]
    zebra = d.boxes[d.labels.index("zebra")]
    # hand-labelled in the 500x500 photo: giraffe 165,28 - 450,440; zebra 248,205 - 420,432
    assert _iou(giraffe, (165, 28, 450, 440)) > 0.7
    assert _iou(zebra, (248, 205, 420, 432)) > 0.5
    # the zebra stands lower-right, in front of the giraffe's legs, and is much smaller
    assert (zebra[0] + zebra[2]) / 2 > (giraffe[0] + giraffe[2]) / 2
    assert zebra[1] > giraffe[1] + 100
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    assert area(zebra) < 0.5 * area(giraffe)


@needs_real_model
def test_real_model_matches_the_documented_recipe(real_detector):
    # README: RGB 0-255, simply resized to 512x512, NHWC; rows x1 y1 x2 y2 score class in 512x512 pixels.
    import onnxruntime as ort

    img = _photo("dog.jpg")
    w, h = img.size
    sess = ort.InferenceSession(str(REAL_MODEL), providers=["CPUExecutionProvider"])
    x = np.asarray(img.resize((512, 512), Image.BILINEAR), np.float32)[None]
    rows = sess.run(None, {"tower_0/images:0": x})[0][0]
    rows = rows[rows[:, 4] >= 0.3]
    expected = rows[:, :4] * np.array([w / 512, h / 512, w / 512, h / 512])
    [d] = real_detector.detect([img])
    np.testing.assert_allclose(d.boxes, np.clip(expected, 0, [w, h, w, h]), atol=1e-3)
    labels = (REPO / "bench/assets/detectors/coco80_labels.txt").read_text().split("\n")
    assert d.labels == tuple(labels[int(c)] for c in rows[:, 5])
