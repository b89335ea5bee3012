"""Saliency metrics against hand computations: curves, localisation, map similarity."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage, stats

from bench.metrics.curves import (auc, deletion_images, gaussian_blur, insertion_images, normalised_curve,
                                  pixel_order, step_masks)
from bench.metrics.localisation import (THRESHOLDS, best_iou_matrix, best_iou_per_threshold, box_accuracy, box_iou,
                                        boxes_mask, component_boxes, energy_in_boxes, maxboxacc_from_iou,
                                        pointing_game, reference_boxes, saliency_peak)
from bench.metrics.map_similarity import map_entropy, spearman_abs, ssim


# ---------------------------------------------------------------- insertion / deletion

def test_auc_trapezoid_by_hand():
    assert auc([0.0, 1.0]) == pytest.approx(0.5)
    # trapezoids of width 1/3: (1 + .5)/2/3 + (.5 + .25)/2/3 + (.25 + 0)/2/3 = 1.25 / 3
    assert auc([1.0, 0.5, 0.25, 0.0]) == pytest.approx(1.25 / 3)
    assert auc([0.2, 0.2, 0.2]) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        auc([1.0])


def test_normalised_curves_by_hand():
    insertion = normalised_curve([0.2, 0.5, 0.8], p_original=0.8, p_baseline=0.2)
    np.testing.assert_allclose(insertion, [0.0, 0.5, 1.0])
    assert auc(insertion) == pytest.approx(0.5)
    deletion = normalised_curve([0.9, 0.5, 0.3, 0.1], p_original=0.9, p_baseline=0.1)
    np.testing.assert_allclose(deletion, [1.0, 0.5, 0.25, 0.0])
    assert auc(deletion) == pytest.approx(1.25 / 3)
    # overshoot is kept, not clipped: (0.9 - 0.5) / (0.7 - 0.5) = 2
    np.testing.assert_allclose(normalised_curve([0.9], 0.7, 0.5), [2.0])
    assert normalised_curve([0.3, 0.3], p_original=0.3, p_baseline=0.3 + 1e-7) is None
    assert normalised_curve([0.3, 0.3], p_original=0.3, p_baseline=float("nan")) is None


def test_pixel_order_descending_with_seeded_ties():
    saliency = np.array([[3.0, 1.0, 1.0], [1.0, 2.0, 0.0]])
    order = pixel_order(saliency, seed=0)
    assert order[0] == 0 and order[1] == 4 and order[-1] == 5       # 3, then 2, ..., 0 last
    assert sorted(order[2:5]) == [1, 2, 3]                           # the three tied 1.0 pixels
    np.testing.assert_array_equal(order, pixel_order(saliency, seed=0))
    tie_orders = {tuple(pixel_order(saliency, seed=s)[2:5]) for s in range(30)}
    assert len(tie_orders) > 1                                      # seeds do move the ties ...
    assert {tuple(pixel_order(saliency, seed=s)[[0, 1, 5]]) for s in range(30)} == {(0, 4, 5)}  # ... only them


def test_pixel_order_leaves_out_invalid_pixels():
    saliency = np.array([[3.0, 9.0], [1.0, 2.0]])
    valid = np.array([[True, False], [True, True]])
    np.testing.assert_array_equal(pixel_order(saliency, seed=1, valid=valid), [0, 3, 2])


def test_step_masks_schedule_by_hand():
    order = np.array([0, 3, 2, 1])
    rank, ks = step_masks(order, (2, 2), steps=3)
    np.testing.assert_array_equal(rank, [[0, 3], [2, 1]])
    np.testing.assert_array_equal(ks, [0, 1, 3, 4])                 # round(0, 1.33, 2.67, 4)
    _, ks = step_masks(np.array([0, 1]), (1, 2), steps=4)
    np.testing.assert_array_equal(ks, [0, 1, 1, 2, 2])              # 0, .5, 1, 1.5, 2: halves round up
    rank, ks = step_masks(np.array([0, 3, 2]), (2, 2), steps=3)     # pixel 1 invalid
    assert rank[0, 1] == 3 and ks[-1] == 3 and not (rank < ks[-1])[0, 1]
    _, ks = step_masks(np.arange(224 * 224), (224, 224), steps=224)  # RISE: 224 pixels per step
    np.testing.assert_array_equal(np.diff(ks), 224)


def test_insertion_and_deletion_images():
    original = np.arange(1, 5, dtype=float).reshape(2, 2, 1) / 4     # [[.25, .5], [.75, 1]]
    blurred = np.zeros((2, 2, 1))
    rank, ks = step_masks(np.array([3, 0, 1, 2]), (2, 2), steps=4)
    ins = insertion_images(original, blurred, rank, ks)
    assert ins.shape == (5, 2, 2, 1)
    np.testing.assert_allclose(ins[0], blurred)
    np.testing.assert_allclose(ins[1, :, :, 0], [[0, 0], [0, 1]])
    np.testing.assert_allclose(ins[2, :, :, 0], [[0.25, 0], [0, 1]])
    np.testing.assert_allclose(ins[4], original)
    colour = np.array([0.5])
    dele = deletion_images(original, colour, rank, ks[1:3])          # a batch: steps 1 and 2
    np.testing.assert_allclose(dele[0, :, :, 0], [[0.25, 0.5], [0.75, 0.5]])
    np.testing.assert_allclose(dele[1, :, :, 0], [[0.5, 0.5], [0.75, 0.5]])


def test_invalid_pixels_stay_as_base_image():
    original = np.ones((2, 2, 3))
    rank, ks = step_masks(pixel_order(np.ones((2, 2)), 0, valid=np.array([[1, 0], [1, 1]], bool)), (2, 2), 3)
    ins = insertion_images(original, np.zeros((2, 2, 3)), rank, ks)
    dele = deletion_images(original, np.zeros(3), rank, ks)
    assert (ins[:, 0, 1] == 0).all() and (dele[:, 0, 1] == 1).all()
    assert (ins[-1].sum(-1) == [[3, 0], [3, 3]]).all()


def test_images_are_torch_agnostic():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    original, blurred = rng.random((4, 5, 3)), rng.random((4, 5, 3))
    rank, ks = step_masks(pixel_order(rng.random((4, 5)), 0), (4, 5), 5)
    expected = insertion_images(original, blurred, rank, ks)
    got = insertion_images(*(torch.from_numpy(x) for x in (original, blurred, rank, ks)))
    np.testing.assert_allclose(got.numpy(), expected)


def test_curve_end_to_end_by_hand():
    # 1 x 4 image, the "model" scores the value of pixel 0; saliency puts pixel 0 first.
    original, blurred = np.ones((1, 4, 1)), np.zeros((1, 4, 1))
    rank, ks = step_masks(pixel_order(np.array([[4.0, 3.0, 2.0, 1.0]]), 0), (1, 4), 4)
    scores = insertion_images(original, blurred, rank, ks)[:, 0, 0, 0]
    np.testing.assert_allclose(scores, [0, 1, 1, 1, 1])
    assert auc(normalised_curve(scores, 1.0, 0.0)) == pytest.approx(3.5 / 4)  # (4 - 0 - .5) / 4


def test_gaussian_blur_matches_scipy():
    image = np.random.default_rng(3).random((20, 24, 3))
    expected = ndimage.gaussian_filter(image, sigma=(5, 5, 0), truncate=1.0)   # radius int(1.0*5+.5) = 5: 11 taps
    np.testing.assert_allclose(gaussian_blur(image, kernel=11, sigma=5), expected, atol=1e-12)
    np.testing.assert_allclose(gaussian_blur(np.full((9, 9, 3), 0.3)), 0.3)     # reflect keeps flat images flat
    impulse = np.zeros((21, 21, 1))
    impulse[10, 10] = 1
    taps = np.exp(-np.arange(-5, 6) ** 2 / 50.0)
    np.testing.assert_allclose(gaussian_blur(impulse)[5:16, 5:16, 0], np.outer(taps, taps) / taps.sum() ** 2)


# ---------------------------------------------------------------- localisation

def test_boxes_mask_uses_pixel_centres():
    mask = boxes_mask([[0.5, 0.5, 2.5, 1.5]], (4, 4))  # centres .5, 1.5, 2.5 in x; .5, 1.5 in y
    expected = np.zeros((4, 4), bool)
    expected[0:2, 0:3] = True
    np.testing.assert_array_equal(mask, expected)
    assert not boxes_mask([[0.6, 0.6, 1.4, 1.4]], (4, 4)).any()      # holds no centre
    assert not boxes_mask([[0.6, 0.0, 1.4, 4.0]], (4, 4)).any()      # no column centre in [0.6, 1.4]
    np.testing.assert_array_equal(boxes_mask([[1.4, 0.0, 1.6, 4.0]], (4, 4)).sum(axis=0), [0, 4, 0, 0])
    assert not boxes_mask(np.zeros((0, 4)), (4, 4)).any()


def _peak_map(row: int, col: int, shape=(40, 40)) -> np.ndarray:
    saliency = np.zeros(shape)
    saliency[row, col] = 1.0
    return saliency


def test_pointing_game_tolerance_by_hand():
    s = _peak_map(20, 20)
    assert pointing_game(s, [[30, 0, 40, 40]])                  # nearest GT column 30: 10 px away
    assert not pointing_game(s, [[30, 0, 40, 40]], tolerance=5)
    assert not pointing_game(s, [[36, 0, 40, 40]])              # 16 px
    assert pointing_game(s, [[35.5, 0, 40, 40]])                # centre 35.5 of pixel 35: 15 px, border counts
    assert not pointing_game(s, [[35.6, 0, 40, 40]])            # first centre 36.5: 16 px
    assert pointing_game(s, [[30, 30, 40, 40]])                 # corner pixel (30, 30): sqrt(200) = 14.1
    assert not pointing_game(s, [[31, 31, 40, 40]])             # first centre 31.5 -> pixel 31: 15.6
    assert pointing_game(s, [[20.2, 20.2, 20.8, 20.8]], tolerance=0)  # the peak's centre (20.5, 20.5) inside
    assert not pointing_game(s, [])


def test_pointing_game_crowd_box_counts():
    s = _peak_map(5, 5)
    regular, crowd = [35, 35, 40, 40], [0, 0, 12, 12]
    assert not pointing_game(s, [regular])
    assert pointing_game(s, [regular, crowd])


def test_pointing_game_ties_and_constant_map():
    s = np.zeros((40, 40))
    s[5, 5] = s[30, 30] = 1.0
    assert saliency_peak(s) == (5, 5)                          # first maximum in raster order
    assert pointing_game(s, [[4, 4, 7, 7]], tolerance=0)
    assert not pointing_game(s, [[29, 29, 32, 32]], tolerance=0)
    assert saliency_peak(np.full((8, 8), 0.3)) is None
    assert not pointing_game(np.full((8, 8), 0.3), [[0, 0, 8, 8]])  # covers the whole image: still a miss
    valid = np.ones((40, 40), bool)
    valid[:10] = False                                         # the (5, 5) maximum is cropped away
    assert saliency_peak(s, valid) == (30, 30)


def test_energy_in_boxes_by_hand():
    s = np.zeros((4, 4))
    s[0, 0], s[3, 3], s[1, 1] = 2.0, 1.0, -5.0                # the negative pixel is clipped to 0
    assert energy_in_boxes(s, [[0, 0, 2, 2]]) == pytest.approx(2 / 3)
    assert energy_in_boxes(s, [[0, 0, 2, 2], [0, 0, 1, 1]]) == pytest.approx(2 / 3)  # union, no double count
    assert energy_in_boxes(s, [[0, 0, 2, 2], [3, 3, 4, 4]]) == pytest.approx(1.0)
    assert energy_in_boxes(s, []) == 0.0
    assert math.isnan(energy_in_boxes(np.zeros((4, 4)), [[0, 0, 2, 2]]))
    assert math.isnan(energy_in_boxes(-np.ones((4, 4)), [[0, 0, 2, 2]]))
    valid = np.ones((4, 4), bool)
    valid[3, 3] = False
    assert energy_in_boxes(s, [[0, 0, 2, 2]], valid=valid) == pytest.approx(1.0)


def test_box_iou_and_components():
    # 1 / 7, as wsolevaluation's inclusive (0, 0, 1, 1) vs (1, 1, 2, 2) with its +1 areas
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3]])[0, 0] == pytest.approx(1 / 7)
    assert box_iou([[0, 0, 1, 1]], [[2, 2, 3, 3]])[0, 0] == 0.0
    assert box_iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0                    # zero union
    mask = np.zeros((6, 6), bool)
    mask[0, 0] = mask[1, 1] = True                             # diagonal neighbours: one 8-connected component
    mask[4:6, 3:6] = True
    np.testing.assert_array_equal(component_boxes(mask), [[0, 0, 2, 2], [3, 4, 6, 6]])
    assert component_boxes(np.zeros((3, 3), bool)).shape == (0, 4)


def _two_blobs(blob2: float = 0.555) -> np.ndarray:
    s = np.zeros((10, 10))
    s[1:3, 1:3] = 1.0                                          # a decoy blob, the maximum
    s[6:9, 5:9] = blob2                                        # the object: box (5, 6, 9, 9)
    return s


def _dataset():
    a = _two_blobs()
    b = np.full((10, 10), 0.7)                                 # constant
    c = np.zeros((10, 10))
    c[0:4, 0:4] = 1.0                                          # 16 px vs GT (0, 0, 4, 2): IoU 8/16
    d = np.zeros((10, 10))
    d[2:6, 2:6] = 1.0                                          # 16 px vs crowd box (2, 2, 6, 8): IoU 16/24
    boxes = [[[5, 6, 9, 9]], [[0, 0, 10, 10]], [[0, 0, 4, 2]], [[7, 7, 10, 10], [2, 2, 6, 8]]]
    return [a, b, c, d], boxes


def test_best_iou_two_blobs_each_component_boxed():
    best = best_iou_per_threshold(_two_blobs(), [[5, 6, 9, 9]])
    # t < 0.555 (t = 0.00 ... 0.55, 56 thresholds): both blobs, the second boxed exactly; then only the decoy
    np.testing.assert_allclose(best, [1.0] * 56 + [0.0] * 44)
    # one box around the whole mask would give (4 * 3) / (8 * 8) = 0.1875, never 1
    assert box_iou([[1, 1, 9, 9]], [[5, 6, 9, 9]])[0, 0] == pytest.approx(0.1875)


def test_best_iou_strict_threshold_and_reference_quantisation():
    s = _two_blobs(blob2=0.501)
    float_best = best_iou_per_threshold(s, [[5, 6, 9, 9]])
    ref_best = best_iou_per_threshold(s, [[5, 6, 9, 9]], like_reference=True)
    assert float_best[50] == 1.0            # 0.501 > 0.50
    assert ref_best[50] == 0.0              # floor(255 * .501) = 127, not > floor(255 * .5) = 127
    np.testing.assert_allclose(ref_best[:50], 12 / 20)  # reference box one pixel larger: (5, 6, 10, 10), area 20
    np.testing.assert_allclose(best_iou_per_threshold(np.full((5, 5), 2.0), [[0, 0, 5, 5]]), 0.0)  # constant map


def test_reference_mode_boxes_holes():
    ring = np.zeros((12, 12))
    ring[2:10, 2:10] = 1.0
    ring[4:8, 4:8] = 0.0                                      # a 4 x 4 hole of low saliency
    gt = [[3, 3, 10, 10]]
    # ours: the ring's own box (2, 2, 10, 10), IoU 49 / 64
    np.testing.assert_allclose(best_iou_per_threshold(ring, gt), 49 / 64)
    # reference: ring box (2, 2, 11, 11) and the hole's contour box (3, 3, 10, 10), which matches
    np.testing.assert_allclose(best_iou_per_threshold(ring, gt, like_reference=True), 1.0)
    np.testing.assert_array_equal(reference_boxes(ring > 0.5), [[2, 2, 11, 11], [3, 3, 10, 10]])
    np.testing.assert_array_equal(reference_boxes(np.zeros((4, 4), bool)), [[0, 0, 1, 1]])
    edge = np.zeros((4, 4), bool)
    edge[2:4, 2:4] = True                                     # at the border: no extra pixel
    np.testing.assert_array_equal(reference_boxes(edge), [[2, 2, 4, 4]])


def test_maxboxacc_v2_by_hand_with_bootstrap_weights():
    maps, boxes = _dataset()
    best = best_iou_matrix(maps, boxes)
    assert best.shape == (4, 100)
    np.testing.assert_allclose(best[1], 0.0)
    np.testing.assert_allclose(best[2], 0.5)
    np.testing.assert_allclose(best[3], 2 / 3)
    # delta .3 and .5: A, C, D at t <= .55 -> 3/4; delta .7: only A -> 1/4
    np.testing.assert_allclose(box_accuracy(best, 0.5)[0, [0, 55, 56, 99]], [0.75, 0.75, 0.5, 0.5])
    np.testing.assert_allclose(maxboxacc_from_iou(best), [(0.75 + 0.75 + 0.25) / 3])
    np.testing.assert_allclose(maxboxacc_from_iou(best, deltas=(0.5,)), [0.75])
    weights = np.array([[1, 1, 1, 1], [2, 0, 0, 1]])          # second draw: A twice, D once
    np.testing.assert_allclose(maxboxacc_from_iou(best, weights), [1.75 / 3, (1 + 1 + 2 / 3) / 3])


def test_maxboxacc_one_threshold_for_the_dataset():
    e = np.zeros((10, 10))
    e[0:2, 0:2], e[0:2, 2:8] = 1.0, 0.255                     # object = the whole 2 x 8 strip
    f = np.zeros((10, 10))
    f[0:2, 0:2], f[0:2, 2:8] = 1.0, 0.755                     # object = the 2 x 2 peak only
    best = best_iou_matrix([e, f], [[[0, 0, 8, 2]], [[0, 0, 2, 2]]])
    np.testing.assert_allclose(best[0], [1.0] * 26 + [0.25] * 74)
    np.testing.assert_allclose(best[1], [0.25] * 76 + [1.0] * 24)
    np.testing.assert_allclose(maxboxacc_from_iou(best, deltas=(0.5,)), [0.5])  # not 1: no shared threshold
    assert THRESHOLDS.size == 100 and THRESHOLDS[-1] == pytest.approx(0.99)


# ---------------------------------------------------------------- map similarity

def test_spearman_abs():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    b = np.array([[-1.0, 3.0], [2.0, -4.0]])                  # |b| ranks 1 3 2 4: 1 - 6 * 2 / (4 * 15) = 0.8
    assert spearman_abs(a, b) == pytest.approx(0.8)
    assert spearman_abs(a, -a) == pytest.approx(1.0)
    assert math.isnan(spearman_abs(a, np.full((2, 2), -3.0)))
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(8, 8)), rng.normal(size=(8, 8))
    assert spearman_abs(x, y) == pytest.approx(stats.spearmanr(np.abs(x).ravel(), np.abs(y).ravel())[0])


def _gauss_window() -> np.ndarray:
    g = np.exp(-np.arange(-5, 6) ** 2 / (2 * 1.5 ** 2))
    return np.outer(g, g) / g.sum() ** 2


def _ssim_direct(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. with explicit 11 x 11 windows at every interior pixel (maps already in [0, 1])."""
    w, c1, c2, values = _gauss_window(), 0.01 ** 2, 0.03 ** 2, []
    for r in range(5, x.shape[0] - 5):
        for c in range(5, x.shape[1] - 5):
            px, py = x[r - 5:r + 6, c - 5:c + 6], y[r - 5:r + 6, c - 5:c + 6]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cxy = (w * (px - mx) * (py - my)).sum()
            values.append((2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_properties_and_direct_computation():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:24, 0:24]
    smooth = np.exp(-((yy - 12) ** 2 + (xx - 10) ** 2) / 40.0)
    noisy = smooth + 0.3 * rng.normal(size=smooth.shape)
    assert ssim(smooth, smooth) == pytest.approx(1.0)
    assert ssim(smooth, 5 * smooth + 2) == pytest.approx(1.0)        # min-max normalised first
    assert ssim(smooth, noisy) == pytest.approx(ssim(noisy, smooth))
    assert ssim(smooth, noisy) < 0.8
    assert ssim(smooth, smooth + 0.05 * rng.normal(size=smooth.shape)) > ssim(smooth, noisy)
    norm = lambda z: (z - z.min()) / (z.max() - z.min())
    assert ssim(smooth, noisy) == pytest.approx(_ssim_direct(norm(smooth), norm(noisy)), abs=1e-12)
    with pytest.raises(ValueError):
        ssim(np.ones((10, 10)), np.ones((10, 10)))


def test_ssim_hand_case_one_window():
    x = np.zeros((11, 11))
    x[5, 5] = 1.0                               # one window; the other map is constant (normalised to 0)
    wc = _gauss_window()[5, 5]
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = c1 * c2 / ((wc ** 2 + c1) * (wc - wc ** 2 + c2))  # mu_x = wc, var_x = wc - wc^2
    assert ssim(x, np.full((11, 11), 4.0)) == pytest.approx(expected)


def test_ssim_matches_scikit_image_when_installed():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(2)
    a, b = rng.random((30, 26)), rng.random((30, 26))
    norm = lambda z: (z - z.min()) / (z.max() - z.min())
    expected = metrics.structural_similarity(norm(a), norm(b), gaussian_weights=True, sigma=1.5,
                                             use_sample_covariance=False, data_range=1.0)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-10)


def test_map_entropy_by_hand():
    s = np.array([[1.0, 1.0], [2.0, 0.0]])                    # p = .25 .25 .5 0: H = 1.5 ln 2
    assert map_entropy(s, normalised=False) == pytest.approx(1.5 * math.log(2))
    assert map_entropy(s) == pytest.approx(0.75)                # / ln 4
    assert map_entropy(np.array([[1.0, 1.0], [2.0, -3.0]])) == pytest.approx(0.75)  # negatives clipped
    assert map_entropy(np.ones((5, 7))) == pytest.approx(1.0)
    assert map_entropy(_peak_map(2, 3, (5, 5))) == 0.0
    assert math.isnan(map_entropy(np.zeros((3, 3))))
    valid = np.array([[True, True], [True, False]])
    assert map_entropy(np.array([[1.0, 1.0], [1.0, 9.0]]), valid=valid) == pytest.approx(1.0)


def test_reference_mode_matches_opencv_when_installed():
    """wsolevaluation's box drawing (8-bit threshold, RETR_TREE contours, x + w clipped to W - 1,
    inclusive +1 IoU), re-expressed with OpenCV, against ``like_reference=True``."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for _ in range(10):
        s = ndimage.gaussian_filter(rng.random((48, 48)), 3)
        s = (s - s.min()) / (s.max() - s.min())
        x0, y0 = rng.integers(0, 30, 2)
        gt = np.array([x0, y0, x0 + rng.integers(6, 18), y0 + rng.integers(6, 18)])  # inclusive pixels
        q = (s * 255).astype(np.uint8)
        expected = []
        for t in THRESHOLDS:
            _, mask = cv2.threshold(q, int(t * q.max()), 255, cv2.THRESH_BINARY)
            contours = cv2.findContours(mask, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
            rects = [cv2.boundingRect(c) for c in contours] or [(0, 0, 0, 0)]
            boxes = np.array([[x, y, min(x + w, 47), min(y + h, 47)] for x, y, w, h in rects], float)
            expected.append(box_iou(boxes + [0, 0, 1, 1], [gt + [0, 0, 1, 1]]).max())  # inclusive -> edges
        got = best_iou_per_threshold(s, [gt + [0, 0, 1, 1]], like_reference=True)
        np.testing.assert_allclose(got, expected, atol=1e-12)
