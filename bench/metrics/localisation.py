"""Localisation of saliency maps against ground-truth boxes: pointing game, energy, MaxBoxAccV2.

Conventions shared by every function here:

- A map is [H, W] on the ORIGINAL image's pixel grid (the caller resizes it first). Pixel (r, c)
  covers the square [c, c+1] x [r, r+1]; its centre is (c + 0.5, r + 0.5) in (x, y).
- A box is (x1, y1, x2, y2), float, in the same continuous pixel coordinates (COCO's x, y, w, h
  gives x2 = x + w). A box list per image may be empty; crowd boxes are ground truth like any other.
- A "ground-truth pixel" is one whose CENTRE lies in some box, borders included:
  x1 <= c + 0.5 <= x2 and y1 <= r + 0.5 <= y2. A box that holds no pixel centre marks no pixel.
- ``valid`` (optional [H, W] bool): pixels the processor cropped away have no saliency; they are
  left out of every metric (never a maximum, no mass, never in a thresholded mask).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

THRESHOLDS = np.arange(0, 1, 0.01)
IOU_DELTAS = (0.3, 0.5, 0.7)
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _prepare(saliency: np.ndarray, valid: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    saliency = np.asarray(saliency, dtype=float)
    if saliency.ndim != 2:
        raise ValueError(f"saliency must be [H, W], got shape {saliency.shape}")
    valid = np.ones(saliency.shape, bool) if valid is None else np.asarray(valid, dtype=bool)
    if valid.shape != saliency.shape:
        raise ValueError(f"valid mask shape {valid.shape} != map shape {saliency.shape}")
    if not valid.any():
        raise ValueError("no valid pixel in the map")
    if not np.isfinite(saliency[valid]).all():
        raise ValueError("saliency has non-finite values on valid pixels")
    return saliency, valid


def _boxes(boxes: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=float).reshape(-1, 4)
    if (boxes[:, 2] < boxes[:, 0]).any() or (boxes[:, 3] < boxes[:, 1]).any():
        raise ValueError("boxes must be (x1, y1, x2, y2) with x2 >= x1 and y2 >= y1")
    return boxes


def _pixel_ranges(boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[n, 4] inclusive index ranges (c0, r0, c1, r1) of the pixel centres in each box, clipped to
    the image; a range with c0 > c1 or r0 > r1 is empty."""
    h, w = shape
    c0 = np.clip(np.ceil(boxes[:, 0] - 0.5), 0, None)
    r0 = np.clip(np.ceil(boxes[:, 1] - 0.5), 0, None)
    c1 = np.clip(np.floor(boxes[:, 2] - 0.5), None, w - 1)
    r1 = np.clip(np.floor(boxes[:, 3] - 0.5), None, h - 1)
    return np.stack([c0, r0, c1, r1], axis=1).astype(np.int64)


def boxes_mask(boxes: Sequence[Sequence[float]] | np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """[H, W] bool: the ground-truth pixels (centre inside some box) of a box list."""
    ranges = _pixel_ranges(_boxes(boxes), shape)
    rows, cols = np.arange(shape[0]), np.arange(shape[1])
    in_rows = (rows[None] >= ranges[:, 1:2]) & (rows[None] <= ranges[:, 3:4])   # [n, H]
    in_cols = (cols[None] >= ranges[:, 0:1]) & (cols[None] <= ranges[:, 2:3])   # [n, W]
    return (in_rows[:, :, None] & in_cols[:, None, :]).any(axis=0)


def saliency_peak(saliency: np.ndarray, valid: np.ndarray | None = None) -> tuple[int, int] | None:
    """(row, col) of the map's maximum over valid pixels, or None for a constant map.

    Ties: the FIRST maximal pixel in raster order (numpy's argmax, as common pointing-game code
    does). We prefer it to "any maximal pixel hits", which would reward flat plateaus, and to a
    random pick, which would make the game non-deterministic. A map whose valid pixels are all
    equal has no peak (every pixel is a maximum): None, which the pointing game counts as a miss.
    """
    saliency, valid = _prepare(saliency, valid)
    values = saliency[valid]
    if values.max() == values.min():
        return None
    flat = int(np.argmax(np.where(valid, saliency, -np.inf)))
    return divmod(flat, saliency.shape[1])


def pointing_game(saliency: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray,
                  tolerance: float = 15.0, valid: np.ndarray | None = None) -> bool:
    """Hit when some ground-truth pixel's centre lies within ``tolerance`` px (Euclidean, borders
    included) of the centre of the map's peak (see ``saliency_peak`` for ties).

    Misses: a constant map (no peak), an empty box list, boxes that hold no pixel centre.
    ``tolerance=0`` asks for the peak itself to be a ground-truth pixel.
    """
    peak = saliency_peak(saliency, valid)
    if peak is None:
        return False
    ranges = _pixel_ranges(_boxes(boxes), np.shape(saliency))
    ranges = ranges[(ranges[:, 0] <= ranges[:, 2]) & (ranges[:, 1] <= ranges[:, 3])]
    r, c = peak
    dx = np.maximum(np.maximum(ranges[:, 0] - c, c - ranges[:, 2]), 0)  # distance to nearest column in range
    dy = np.maximum(np.maximum(ranges[:, 1] - r, r - ranges[:, 3]), 0)
    return bool((dx ** 2 + dy ** 2 <= tolerance ** 2).any())


def energy_in_boxes(saliency: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray,
                    valid: np.ndarray | None = None) -> float:
    """Share of the map's mass on ground-truth pixels (the union of the boxes, no double count).

    Negative values are clipped at 0 first (they are evidence against, not mass); mass is summed
    over valid pixels only. NaN when no valid pixel has positive saliency (nothing to share).
    """
    saliency, valid = _prepare(saliency, valid)
    mass = np.where(valid, np.clip(saliency, 0, None), 0.0)
    total = mass.sum()
    if total <= 0:
        return float("nan")
    return float(mass[boxes_mask(boxes, saliency.shape)].sum() / total)


def normalise_map(saliency: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Min-max normalise the valid pixels to [0, 1]; invalid pixels become 0. A constant map becomes
    all zeros (as wsolevaluation's ``normalize_scoremap``), so no threshold selects any pixel."""
    saliency, valid = _prepare(saliency, valid)
    lo, hi = saliency[valid].min(), saliency[valid].max()
    if hi == lo:
        return np.zeros(saliency.shape)
    return np.where(valid, (saliency - lo) / (hi - lo), 0.0)


def component_boxes(mask: np.ndarray) -> np.ndarray:
    """[k, 4] boxes (x1, y1, x2, y2) around EVERY 8-connected component of a bool mask, on pixel
    edges: a component spanning columns c0..c1 gets x1 = c0, x2 = c1 + 1. 8-connectivity because
    wsolevaluation traces OpenCV contours, which follow 8-connected foreground."""
    labels, _ = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    slices = ndimage.find_objects(labels)
    return np.array([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in slices], dtype=float).reshape(-1, 4)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[n, m] IoU of boxes in continuous coordinates: area = (x2 - x1) * (y2 - y1), no +1.

    wsolevaluation treats integer boxes as pixel-inclusive and adds 1 to widths; its inclusive
    box [c0, c1] is our [c0, c1 + 1], so the two agree on pixel boxes. A zero union gives IoU 0.
    """
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def reference_boxes(mask: np.ndarray) -> np.ndarray:
    """[k, 4] boxes as wsolevaluation draws them (OpenCV ``findContours(RETR_TREE)`` then
    ``boundingRect``), in our continuous coordinates, for ``like_reference`` mode.

    RETR_TREE returns hole contours too: every 4-connected background component that does not
    touch the image border is a hole, and its contour runs over the foreground pixels around it, so
    its box is the hole's box grown by one pixel each side. The reference then writes the box as
    (x, y, min(x + w, W - 1), min(y + h, H - 1)) and reads it as pixel-inclusive: one pixel wider
    and taller than the contour, except at the border. An empty mask gives its box (0, 0, 0, 0),
    i.e. pixel (0, 0). (Checked against OpenCV 4 on random masks while writing this: same boxes.)
    """
    h, w = mask.shape
    rects = [[s[1].start, s[0].start, s[1].stop, s[0].stop]
             for s in ndimage.find_objects(ndimage.label(mask, structure=_EIGHT_CONNECTED)[0])]
    background, _ = ndimage.label(~mask)
    on_border = set(np.unique(np.r_[background[0], background[-1], background[:, 0], background[:, -1]]).tolist())
    rects += [[s[1].start - 1, s[0].start - 1, s[1].stop + 1, s[0].stop + 1]
              for k, s in enumerate(ndimage.find_objects(background), 1) if k not in on_border]
    if not rects:
        return np.array([[0.0, 0.0, 1.0, 1.0]])
    r = np.array(rects, dtype=float)
    r[:, 2] = np.minimum(r[:, 2], w - 1) + 1
    r[:, 3] = np.minimum(r[:, 3], h - 1) + 1
    return r


def best_iou_per_threshold(saliency: np.ndarray, boxes: Sequence[Sequence[float]] | np.ndarray,
                           thresholds: np.ndarray = THRESHOLDS, valid: np.ndarray | None = None,
                           like_reference: bool = False) -> np.ndarray:
    """[T]: for each threshold t, the best IoU between the boxes of every connected component of
    ``normalised map > t`` and every ground-truth box (0 when either set is empty).

    The comparison is STRICT, as the reference (OpenCV ``THRESH_BINARY`` keeps ``src > thresh``):
    at t = 0 the map's minimum is excluded, and a constant map (all zeros after normalisation)
    yields no box and IoU 0 at every threshold.

    ``like_reference=True`` reproduces wsolevaluation's box drawing for comparison with published
    figures: 8-bit values (``floor(255 s) > floor(255 t)``) and ``reference_boxes`` (hole boxes,
    boxes one pixel larger, the box of pixel (0, 0) for an empty mask). It cannot reproduce the
    reference's resizing to 224 x 224 or its truncation of ground-truth boxes to integers: pass
    maps and boxes already prepared that way (an inclusive integer box [x0, x1] is our [x0, x1 + 1]).
    By default we box only the components, on their exact pixel edges: a hole is a region of LOW
    saliency and should not count as a prediction.
    """
    norm = normalise_map(saliency, valid)
    valid = np.ones(norm.shape, bool) if valid is None else np.asarray(valid, bool)
    gt = _boxes(boxes)
    thresholds = np.asarray(thresholds, dtype=float)
    if like_reference:
        norm = np.floor(norm * 255)
        thresholds = np.floor(thresholds * 255 * (norm.max() > 0))  # reference: int(t * max of 8-bit map)
    draw = reference_boxes if like_reference else component_boxes
    best = np.zeros(thresholds.size)
    if gt.shape[0] == 0:
        return best
    for i, t in enumerate(thresholds):
        predicted = draw((norm > t) & valid)
        if predicted.shape[0]:
            best[i] = box_iou(predicted, gt).max()
    return best


def best_iou_matrix(maps: Sequence[np.ndarray], boxes: Sequence[Sequence[Sequence[float]]],
                    thresholds: np.ndarray = THRESHOLDS, valids: Sequence[np.ndarray | None] | None = None,
                    like_reference: bool = False) -> np.ndarray:
    """[n_images, T] best IoU per image and threshold: compute once, then bootstrap for free."""
    if len(maps) != len(boxes):
        raise ValueError(f"{len(maps)} maps but {len(boxes)} box lists")
    valids = [None] * len(maps) if valids is None else valids
    rows = [best_iou_per_threshold(m, b, thresholds, v, like_reference)
            for m, b, v in zip(maps, boxes, valids)]
    return np.array(rows, dtype=float).reshape(len(maps), np.size(thresholds))


def box_accuracy(best_iou: np.ndarray, delta: float, weights: np.ndarray | None = None) -> np.ndarray:
    """[B, T]: weighted share of images whose best IoU at each threshold is >= delta.
    ``weights`` [B, n_images] are bootstrap counts (None: every image once, B = 1)."""
    best_iou = np.asarray(best_iou, dtype=float)
    w = np.ones((1, best_iou.shape[0])) if weights is None else np.atleast_2d(weights).astype(float)
    return (w @ (best_iou >= delta)) / w.sum(axis=1, keepdims=True)


def maxboxacc_from_iou(best_iou: np.ndarray, weights: np.ndarray | None = None,
                       deltas: Sequence[float] = IOU_DELTAS) -> np.ndarray:
    """[B] MaxBoxAccV2: mean over IoU deltas of the best DATASET-level box accuracy over thresholds
    (one threshold shared by all images, chosen per delta). ``deltas=(0.5,)`` gives MaxBoxAcc."""
    return np.mean([box_accuracy(best_iou, d, weights).max(axis=1) for d in deltas], axis=0)
