"""POPE question generation against questions worked out BY HAND from the reference generator's rules.

Hand-made set (dataset order; D has one object and is not eligible with min_objects=2):
  A: dog, cat, chair | B: dog, cat | C: person, dog, cat, bench | D: car | E: person, car, bus | F: car, dog, truck
random.Random(0).sample of the 5 eligible images gives the order E, F, A, B, C (Python's documented,
stable algorithm). Over those sampled images:
  images containing: dog 4, cat 3, person 2, car 2, bus 1, truck 1, chair 1, bench 1
    -> popular ranking: dog, cat, person, car, bus, truck, chair, bench (ties: first appearance)
  co-occurrence (images containing both), ties in first-seen order:
    person: car, bus, dog, cat, bench | car: person, bus, dog, truck | dog: cat(3), car, truck, chair, person, bench
    cat: dog(3), chair, person, bench
"""

import random

import pytest

from bench.errors import DataError
from bench.tasks import pope_sampling
from bench.tasks.pope_sampling import generate, with_article

DATA = [
    ("A", ["dog", "cat", "chair"]),
    ("B", ["dog", "cat"]),
    ("C", ["person", "dog", "cat", "bench"]),
    ("D", ["car"]),
    ("E", ["person", "car", "bus"]),
    ("F", ["car", "dog", "truck"]),
]
KW = dict(min_objects=2, max_positives=2, num_images=None, seed=0)

EXPECTED_POPULAR = [
    ("E", "person", "yes"), ("E", "dog", "no"), ("E", "car", "yes"), ("E", "cat", "no"),
    ("F", "car", "yes"), ("F", "cat", "no"), ("F", "dog", "yes"), ("F", "person", "no"),
    ("A", "dog", "yes"), ("A", "person", "no"), ("A", "cat", "yes"), ("A", "car", "no"),
    ("B", "dog", "yes"), ("B", "person", "no"), ("B", "cat", "yes"), ("B", "car", "no"),
    ("C", "person", "yes"), ("C", "car", "no"), ("C", "dog", "yes"), ("C", "bus", "no"),
]
EXPECTED_ADVERSARIAL = [
    ("E", "person", "yes"), ("E", "dog", "no"), ("E", "car", "yes"), ("E", "truck", "no"),
    ("F", "car", "yes"), ("F", "person", "no"), ("F", "dog", "yes"), ("F", "cat", "no"),
    ("A", "dog", "yes"), ("A", "car", "no"), ("A", "cat", "yes"), ("A", "person", "no"),
    ("B", "dog", "yes"), ("B", "car", "no"), ("B", "cat", "yes"), ("B", "chair", "no"),
    ("C", "person", "yes"), ("C", "car", "no"), ("C", "dog", "yes"), ("C", "truck", "no"),
]


def triples(items):
    return [(it.image, it.object, it.label) for it in items]


def test_sample_order_is_pythons_random_sample():
    eligible = [d for d in DATA if len(d[1]) >= 2]
    assert [k for k, _ in random.Random(0).sample(eligible, len(eligible))] == ["E", "F", "A", "B", "C"]


def test_popular_matches_hand_worked_questions():
    assert triples(generate(DATA, strategy="popular", **KW)) == EXPECTED_POPULAR


def test_adversarial_matches_hand_worked_questions():
    assert triples(generate(DATA, strategy="adversarial", **KW)) == EXPECTED_ADVERSARIAL


@pytest.mark.parametrize("strategy", ["random", "popular", "adversarial"])
def test_rules_hold_for_every_split(strategy):
    items = generate(DATA, strategy=strategy, **KW)
    objects = dict(DATA)
    assert [it.question_id for it in items] == list(range(1, len(items) + 1))
    assert [it.label for it in items] == ["yes", "no"] * (len(items) // 2)     # interleaved and balanced
    asked: dict[str, list[str]] = {}
    for it in items:
        asked.setdefault(it.image, []).append(it.object)
        if it.label == "no":
            assert it.object not in objects[it.image]                          # a negative is never present
        else:
            assert it.object in objects[it.image]
    for image, names in asked.items():
        assert len(names) == len(set(names))                                   # nothing asked twice per image
        assert [n for n in names if n in objects[image]] == objects[image][:2]  # positives: the first K
    assert "D" not in asked                                                    # fewer than min_objects


def test_splits_share_images_and_positives():
    positives = {s: [(i.image, i.object) for i in generate(DATA, strategy=s, **KW) if i.label == "yes"]
                 for s in ("random", "popular", "adversarial")}
    assert positives["random"] == positives["popular"] == positives["adversarial"]


def test_same_seed_same_questions_other_seed_other_order():
    a = generate(DATA, strategy="random", **KW)
    b = generate(DATA, strategy="random", **KW)
    assert a == b
    other = generate(DATA, strategy="random", **{**KW, "seed": 1})
    assert [i.image for i in other][::4] == ["B", "A", "F", "E", "C"]   # random.Random(1).sample order


def test_random_negatives_come_from_the_sampled_vocabulary():
    vocabulary = {o for k, objs in DATA if k != "D" for o in objs}
    for seed in range(20):
        for it in generate(DATA, strategy="random", **{**KW, "seed": seed}):
            assert it.object in vocabulary


def test_adversarial_falls_back_to_a_random_qualifying_object():
    data = [("X", ["dog", "cat"]), ("Y", ["car", "bus"]), ("Z", ["kite", "boat"])]
    for seed in range(10):
        items = generate(data, strategy="adversarial", min_objects=2, max_positives=2, num_images=None, seed=seed)
        objects = dict(data)
        for it in items:
            if it.label == "no":
                assert it.object not in objects[it.image]
        assert len(items) == 12


def test_vocabulary_too_small_is_an_error_not_a_hang():
    with pytest.raises(DataError, match="too small"):
        generate([("X", ["dog", "cat"]), ("Y", ["dog", "cat"])], strategy="random", min_objects=2,
                 max_positives=2, num_images=None, seed=0)


def test_too_few_eligible_images_is_an_error():
    with pytest.raises(DataError, match="needs 10 images with at least 2 objects, but the data has 5"):
        generate(DATA, strategy="random", min_objects=2, max_positives=2, num_images=10, seed=0)


def test_min_objects_one_keeps_single_object_images_with_one_pair():
    items = generate(DATA, strategy="popular", min_objects=1, max_positives=3, num_images=None, seed=0)
    d = [(i.object, i.label) for i in items if i.image == "D"]
    assert len(d) == 2 and d[0] == ("car", "yes") and d[1][1] == "no"
    assert sum(i.label == "yes" for i in items) == sum(i.label == "no" for i in items)


@pytest.mark.parametrize("obj, text", [
    ("umbrella", "Is there an umbrella in the image?"),
    ("orange", "Is there an orange in the image?"),
    ("elephant", "Is there an elephant in the image?"),
    ("hair drier", "Is there a hair drier in the image?"),
    ("dog", "Is there a dog in the image?"),
])
def test_article_is_corrected_and_the_template_is_left_alone(obj, text):
    assert with_article("Is there a {} in the image?", obj) == text
    assert "imange" not in with_article("Is there a {} in the image?", obj)


def test_questions_carry_the_corrected_text():
    items = generate([("X", ["umbrella", "dog"]), ("Y", ["apple", "cat"])], strategy="popular", min_objects=1,
                     max_positives=1, num_images=None, seed=0)
    for it in items:
        assert it.text == with_article("Is there a {} in the image?", it.object)
    assert pope_sampling.STRATEGIES == ("random", "popular", "adversarial")
