"""POPE answer parsing (the official rule), metrics against hand-computed values and scikit-learn,
the yes-ratio from predictions, P(yes) from log-probabilities, and bootstrap intervals over images."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from bench.metrics.bootstrap import BootstrapConfig, ImageDraw, estimate, on_rows
from bench.metrics.classification import auroc, binary_metrics
from bench.tasks.pope import p_yes, parse_answer

# The official rule: text before the first '.', commas removed, split on ' ';
# "no" iff a word is exactly "No", "no" or "not".
PARSING = [
    ("Yes", "yes"),
    ("Yes.", "yes"),
    ("yes", "yes"),
    ("No", "no"),
    ("No.", "no"),
    ("no", "no"),
    ("No, there is not.", "no"),
    ("There is no dog", "no"),
    ("There is not a dog in the image.", "no"),
    ("not sure", "no"),
    ("Yes, a dog, not a cat.", "no"),          # "not" before the first '.'
    ("Yes, there is a dog. It is not a cat.", "yes"),   # "not" only after the first '.'
    ("Yes. No.", "yes"),
    ("", "yes"),                               # empty answers count as yes
    ("   ", "yes"),
    ("NO", "yes"),                             # case-sensitive, as the official script
    ("Not.", "yes"),                           # "Not" is not "not"
    ("Nope", "yes"),
    ("I don't think so", "yes"),
    ("no,there", "yes"),                       # commas are removed, not split on: "nothere"
    ("No,", "no"),
    ("  No  ", "no"),                          # surrounding whitespace stripped (as the LLaVA scripts do)
    ("There is a dog, no cat", "no"),
]


@pytest.mark.parametrize("text, expected", PARSING)
def test_official_parsing(text, expected):
    assert parse_answer(text) == expected


def test_parsing_has_enough_tricky_cases():
    assert len(PARSING) >= 15


def test_metrics_against_hand_computed_values():
    # labels:      y y y y n n n n n n   (yes = positive)
    # predictions: y y y n y y n n n n   -> TP 3, FN 1, FP 2, TN 4
    label = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    pred = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0], bool)
    m = {k: float(v[0]) for k, v in binary_metrics(pred, label).items()}
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * (3 / 5) * (3 / 4) / (3 / 5 + 3 / 4))   # = 2/3
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["yes_ratio"] == pytest.approx(5 / 10)    # predicted yes, not labelled yes (4/10)


def test_yes_ratio_comes_from_predictions_not_labels():
    label = np.array([1, 0, 1, 0], bool)               # balanced labels: a label-based ratio would be 0.5
    pred = np.array([1, 1, 1, 1], bool)
    assert binary_metrics(pred, label)["yes_ratio"][0] == 1.0
    assert binary_metrics(~pred, label)["yes_ratio"][0] == 0.0


def test_metrics_agree_with_scikit_learn():
    rng = np.random.default_rng(1)
    label, pred = rng.random(300) < 0.5, rng.random(300) < 0.4
    m = binary_metrics(pred, label)
    assert m["accuracy"][0] == pytest.approx(accuracy_score(label, pred))
    assert m["precision"][0] == pytest.approx(precision_score(label, pred))
    assert m["recall"][0] == pytest.approx(recall_score(label, pred))
    assert m["f1"][0] == pytest.approx(f1_score(label, pred))


def test_zero_division_is_zero_as_scikit_learn():
    label = np.array([1, 1, 0], bool)
    pred = np.array([0, 0, 0], bool)
    m = binary_metrics(pred, label)
    assert m["precision"][0] == 0.0 and m["recall"][0] == 0.0 and m["f1"][0] == 0.0


def test_weighted_metrics_equal_the_metrics_of_repeated_rows():
    label = np.array([1, 0, 1, 0, 1], bool)
    pred = np.array([1, 1, 0, 0, 1], bool)
    w = np.array([[2, 0, 1, 3, 1]])
    repeated = np.repeat(np.arange(5), w[0])
    for name, value in binary_metrics(pred, label, w).items():
        assert value[0] == pytest.approx(binary_metrics(pred[repeated], label[repeated])[name][0])


def test_auroc_against_scikit_learn_with_ties_and_weights():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 6, 400) / 5.0               # many ties
    label = rng.random(400) < 0.45
    weights = rng.integers(0, 4, (7, 400))
    ours = auroc(scores, label, weights)
    for row, w in zip(ours, weights):
        assert row == pytest.approx(roc_auc_score(label, scores, sample_weight=w))
    assert auroc(scores, label)[0] == pytest.approx(roc_auc_score(label, scores))
    assert math.isnan(auroc(scores, np.ones(400, bool))[0])


@pytest.mark.parametrize("lp_yes, lp_no, expected", [
    (math.log(0.3), math.log(0.1), 0.75),
    (math.log(0.1), math.log(0.3), 0.25),
    (-2.0, -2.0, 0.5),
    (-1000.0, -1.0, 0.0),
])
def test_p_yes_from_log_probabilities(lp_yes, lp_no, expected):
    assert p_yes(lp_yes, lp_no) == pytest.approx(expected, abs=1e-12)


def test_bootstrap_moves_all_rows_of_an_image_together():
    config = BootstrapConfig(resamples=200, seed=3)
    images = ["a", "a", "b", "b", "c", "c"]
    draw = ImageDraw(images, config)
    w = draw.row_weights(images)
    assert w.shape == (200, 6)
    assert np.array_equal(w[:, 0], w[:, 1]) and np.array_equal(w[:, 2], w[:, 3])
    assert np.all(w.sum(1) == 6)                          # 3 images drawn, 2 rows each


def test_bootstrap_interval_is_seeded_and_brackets_the_value():
    rng = np.random.default_rng(0)
    images = np.repeat([f"img{i}" for i in range(100)], 6)
    label = np.tile([1, 0], 300).astype(bool)
    pred = np.where(rng.random(600) < 0.8, label, ~label)
    stat = on_rows(lambda w: binary_metrics(pred, label, w)["accuracy"], images)
    config = BootstrapConfig(resamples=1000, seed=0)
    a = estimate(stat, ImageDraw(images, config), 0.95)
    b = estimate(stat, ImageDraw(images, config), 0.95)
    assert a == b
    assert a["ci_low"] < a["value"] < a["ci_high"]
    assert 0.02 < a["ci_high"] - a["ci_low"] < 0.15


def test_group_mean_uses_one_image_draw_across_splits(tmp_path):
    from bench.spec import TaskSpec
    from bench.tasks.base import TaskContext
    from bench.tasks.pope import PopeTask

    context = TaskContext(seed=0, bootstrap=BootstrapConfig(resamples=300, seed=0))
    tasks = [PopeTask(TaskSpec(f"t{i}", "pope", tmp_path / f"t{i}.yaml", "g",
                               dataset={"source": "coco", "annotations": "x", "images": "y"},
                               params={"negatives": "random", "answer_mode": "generate"}), context) for i in range(3)]
    rng = np.random.default_rng(5)
    frames = []
    for _ in tasks:
        labels = np.tile(["yes", "no"], 60)
        answers = np.where(rng.random(120) < 0.7, labels, np.where(labels == "yes", "no", "yes"))
        frames.append(pd.DataFrame({"image_id": np.repeat([str(i) for i in range(20)], 6), "label": labels, "gen_answer": answers}))
    group = PopeTask.group_metrics(tasks, frames)
    per_task = [t.metrics(f) for t, f in zip(tasks, frames)]
    for name in ("generate_f1", "generate_accuracy"):
        assert group[name]["value"] == pytest.approx(np.mean([m[name]["value"] for m in per_task]))
        assert group[name]["ci_low"] <= group[name]["value"] <= group[name]["ci_high"]
