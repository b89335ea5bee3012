"""CHAIR object words and metrics, on hand-worked captions.

Every expected list and number below was worked out by hand from the reference's rules
(LisaAnne/Hallucination utils/chair.py), not produced by the code under test.
"""

from __future__ import annotations

import importlib.resources
import math
from pathlib import Path

import numpy as np
import pytest

from bench.metrics.chair import caption_counts, chair_metrics, metrics_from_counts
from bench.text import ChairVocabulary, Mention, default_vocabulary, tokenize
from bench.text.chair_words import OPERA_IGNORED_PHRASES, parse_synonyms

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="module")
def vocab() -> ChairVocabulary:
    return default_vocabulary()


# (caption, ground-truth categories, expected mentioned (repeats kept), expected hallucinated)
CASES = [
    # synonyms
    ("A man is riding a bike down the street.", {"person", "bicycle"}, ["person", "bicycle"], []),
    ("Two dogs and a puppy play with a frisbee.", {"dog"}, ["dog", "dog", "frisbee"], ["frisbee"]),
    ("A motorcycle, a motorbike and two scooters.", {"motorcycle"}, ["motorcycle"] * 3, []),
    ("An iPhone and a smartphone.", {"cell phone"}, ["cell phone", "cell phone"], []),
    # plurals and irregular plurals
    ("The children and their mothers feed the geese.", {"person"}, ["person", "person", "bird"], ["bird"]),
    ("Mice, knives and oxen.", set(), ["mouse", "knife", "cow"], ["mouse", "knife", "cow"]),
    ("Several people watch.", {"person"}, ["person"], []),
    ("A bus passes two buses and a minibus.", {"bus"}, ["bus", "bus", "bus"], []),
    ("A canoe and two canoes.", {"boat"}, ["boat", "boat"], []),
    ("Two collies and three doggies.", {"dog"}, ["dog", "dog"], []),
    ("The ties hang on the wall.", set(), ["tie"], ["tie"]),
    # two-word phrases win over their single words
    ("A traffic light, traffic lights and a stop sign.", {"traffic light"},
     ["traffic light", "traffic light", "stop sign"], ["stop sign"]),
    ("A teddy bear sits next to a bear.", {"teddy bear"}, ["teddy bear", "bear"], ["bear"]),
    ("A hot dog and a dog.", {"dog"}, ["hot dog", "dog"], ["hot dog"]),
    ("She talks on her cell phone near a fire hydrant.", {"cell phone", "fire hydrant"},
     ["cell phone", "fire hydrant"], []),
    ("A dining table with a tennis racket on it.", {"dining table"},
     ["dining table", "tennis racket"], ["tennis racket"]),
    ("A laptop computer with a mouse and a keyboard.", {"laptop", "mouse", "keyboard"},
     ["laptop", "mouse", "keyboard"], []),
    ("Sports balls and wine glasses.", set(), ["sports ball", "wine glass"], ["sports ball", "wine glass"]),
    # special cases: baby/adult animal, passenger jet/train, bow tie, toilet seat
    ("A baby elephant walks beside an adult giraffe.", {"elephant", "giraffe"}, ["elephant", "giraffe"], []),
    ("A baby sleeps next to a baby dog.", {"person", "dog"}, ["person", "dog"], []),
    ("A baby teddy bear.", {"teddy bear"}, ["person", "teddy bear"], ["person"]),
    ("A baby animal and a bear cub and a baby cub.", {"bear"}, ["bear"], []),
    ("A passenger jet and a passenger train; a passenger waits.", {"airplane", "train"},
     ["airplane", "train", "person"], ["person"]),
    ("A man wearing a bow tie and a bow.", {"person"}, ["person", "tie", "tie"], ["tie", "tie"]),
    ("A toilet seat and a seat.", {"toilet"}, ["toilet"], []),
    ("A bathroom with a toilet and two seats.", {"toilet"}, ["toilet"], []),
    ("A seat next to a urinal.", {"toilet"}, ["chair", "toilet"], ["chair"]),
    # repeats, capitalisation, punctuation, possessives
    ("A dog. A dog, and DOGS! Dog's bowl.", {"dog"}, ["dog", "dog", "dog", "dog", "bowl"], ["bowl"]),
    ("A MAN'S UMBRELLA; the giraffe's neck, the giraffes' heads.", {"person", "giraffe"},
     ["person", "umbrella", "giraffe", "giraffe"], ["umbrella"]),
    # words that must not match, and faithful limitations of the reference
    ("A hotdog stand beside a hot-dog cart and a teddy-bear.", set(), [], []),
    ("A man in an orange shirt.", {"person"}, ["person", "orange"], ["orange"]),
    ("A computer monitor on a desk.", {"tv"}, ["laptop", "tv", "dining table"], ["laptop", "dining table"]),
    ("A woman skiing on skis.", {"person", "skis"}, ["person", "skis"], []),
    ("A stove top oven.", {"oven"}, ["oven", "oven"], []),
    ("A batter stands at home plate near a bench.", {"bench"}, ["bench"], []),
    ("Cars and a truck near the train tracks.", {"car", "truck"}, ["car", "truck", "train"], ["train"]),
    # the motor bike / cheesecake whitespace quirks, fixed here
    ("A motor bike and a cheesecake.", {"motorcycle"}, ["motorcycle", "cake"], ["cake"]),
    ("There is nothing here.", {"cat"}, [], []),
]


@pytest.mark.parametrize("caption,gt,mentioned,hallucinated", CASES, ids=[c[0][:40] for c in CASES])
def test_hand_worked_caption(vocab, caption, gt, mentioned, hallucinated):
    score = vocab.score_caption(caption, gt)
    assert score.mentioned == mentioned
    assert score.hallucinated == hallucinated
    assert score.distinct_hallucinated == sorted(set(hallucinated))
    assert score.recalled == sorted(set(gt) & set(mentioned))
    assert score.gt == sorted(gt)


def test_enough_hand_worked_cases():
    assert len(CASES) >= 25


def test_mention_fields_and_positions(vocab):
    caption = "Two Passenger Jets, a dog and a toilet seat."
    assert tokenize(caption) == ["Two", "Passenger", "Jets", ",", "a", "dog", "and", "a", "toilet", "seat", "."]
    assert vocab.mentions(caption) == [
        Mention("Passenger Jets", "jet", "airplane", 1, 2),
        Mention("dog", "dog", "dog", 5, 1),
        Mention("toilet seat", "toilet", "toilet", 8, 2),
    ]
    score = vocab.score_caption(caption, {"dog"})
    assert score.words == ["jet", "dog", "toilet"]
    assert score.hallucinated_words == ["jet", "toilet"]
    # tokens: Two, Passenger Jets, ",", a, dog, and, a, toilet seat, "." -> 9 after merging
    assert score.n_words == 9


def test_len_counts_tokens_after_merging(vocab):
    # A | baby elephant | and | a | hot dog | .  -> 6 (8 tokens, two merged pairs)
    assert vocab.score_caption("A baby elephant and a hot dog.", {"elephant"}).n_words == 6
    # "dining table" is not merged (as the reference): A dining table . -> 4
    assert vocab.score_caption("A dining table.", {"dining table"}).n_words == 4


def test_puppy_and_synonym_lookup(vocab):
    assert vocab.category_of("puppy") == "dog"
    assert vocab.category_of("puppies") == "dog"
    assert vocab.category_of("bikes") == "bicycle"
    assert vocab.category_of("dining table") == "dining table"
    assert vocab.category_of("hotdog") is None
    assert len(vocab.categories) == 80 and len(set(vocab.categories)) == 80


def test_reference_parsing_keeps_the_quirks():
    ref = ChairVocabulary(reference_parsing=True)
    assert ref.categories_in("A motor bike, a cheesecake, an iPhone, a motorbike and a cake.") == ["motorcycle", "cake"]
    fixed = default_vocabulary()
    assert fixed.categories_in("A motor bike, a cheesecake, an iPhone.") == ["motorcycle", "cake", "cell phone"]


def test_opera_train_track_variant():
    opera = ChairVocabulary(ignored_phrases=OPERA_IGNORED_PHRASES)
    assert opera.categories_in("Cars and a truck near the train tracks.") == ["car", "truck"]
    assert opera.categories_in("A train on the tracks.") == ["train"]


def test_seat_is_dropped_only_with_toilet(vocab):
    assert vocab.categories_in("A seat and a chair.") == ["chair", "chair"]
    assert vocab.categories_in("Seats, and later a toilet.") == ["toilet"]  # any toilet, anywhere
    assert vocab.categories_in("Seats near a lavatory.") == ["chair", "toilet"]


def test_ground_truth(vocab):
    gt = vocab.ground_truth(["person", "dining table", "motorcycle"],
                            ["A man rides a motor bike.", "Two kids at a table with cakes and a baby dog."])
    assert gt == {"person", "dining table", "motorcycle", "cake", "dog"}
    with pytest.raises(ValueError):
        vocab.ground_truth(["unicorn"], [])


def test_score_rejects_non_canonical_gt(vocab):
    with pytest.raises(ValueError):
        vocab.score_caption("A dog.", {"puppy"})


# ---- metrics, computed by hand -------------------------------------------------------------

METRIC_CAPTIONS = [
    # 10 tokens; mentions person, bicycle, dog; dog hallucinated; recalled {person, bicycle} of 2
    ("A man rides a bike next to a dog.", {"person", "bicycle"}),
    # 9 tokens; mentions dog, dog, cat; cat hallucinated; recalled {dog} of 1
    ("Two dogs and a dog chase a cat!", {"dog"}),
    # 7 tokens, 6 items; mentions toilet, sink; none hallucinated; recalled 2 of 3
    ("A toilet seat and a sink.", {"toilet", "sink", "person"}),
    # 5 tokens; no mentions; recalled 0 of 1
    ("Nothing to see here.", {"cat"}),
]


@pytest.fixture(scope="module")
def metric_scores(vocab):
    return [vocab.score_caption(c, gt) for c, gt in METRIC_CAPTIONS]


def test_chair_metrics_by_hand(metric_scores):
    m = chair_metrics(metric_scores)
    assert m["CHAIR_i"] == pytest.approx(0.25)       # 2 / 8 mentions
    assert m["CHAIR_s"] == pytest.approx(0.5)        # 2 / 4 captions
    assert m["Recall"] == pytest.approx(0.7142857142857143)  # 5 / 7
    assert m["Len"] == pytest.approx(7.5)            # 30 / 4
    assert (m["n_captions"], m["n_mentions"], m["n_hallucinated_mentions"]) == (4, 8, 2)
    assert (m["n_hallucinated_captions"], m["n_gt"], m["n_recalled"]) == (2, 7, 5)


def test_counts_and_weighted_metrics(metric_scores):
    counts = caption_counts(metric_scores)
    assert counts["n_mentions"].tolist() == [3, 3, 2, 0]
    assert counts["n_hallucinated_mentions"].tolist() == [1, 1, 0, 0]
    assert counts["has_hallucination"].tolist() == [1, 1, 0, 0]
    assert counts["n_gt"].tolist() == [2, 1, 3, 1]
    assert counts["n_recalled"].tolist() == [2, 1, 2, 0]
    assert counts["n_words"].tolist() == [10, 9, 6, 5]
    w = np.array([[2, 0, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 1]], dtype=float)
    m = metrics_from_counts(counts, w)
    np.testing.assert_allclose(m["CHAIR_i"], [0.25, np.nan, np.nan, 0.25])
    np.testing.assert_allclose(m["CHAIR_s"], [0.5, 0.0, np.nan, 0.5])
    np.testing.assert_allclose(m["Recall"], [0.75, 0.0, np.nan, 5 / 7])
    np.testing.assert_allclose(m["Len"], [7.75, 5.0, np.nan, 7.5])
    one = metrics_from_counts(counts, np.array([1, 1, 1, 1]))
    assert one["CHAIR_i"].shape == (1,) and one["CHAIR_i"][0] == pytest.approx(0.25)
    with pytest.raises(ValueError):
        metrics_from_counts(counts, np.ones(3))


def test_metric_edge_cases(vocab):
    empty = chair_metrics([])
    assert all(math.isnan(empty[k]) for k in ("CHAIR_i", "CHAIR_s", "Recall", "Len"))
    none = chair_metrics([vocab.score_caption("Nothing here.", set())])
    assert math.isnan(none["CHAIR_i"]) and math.isnan(none["Recall"])
    assert none["CHAIR_s"] == 0.0 and none["Len"] == 3.0
    # plain dict rows (e.g. read back from JSON) are accepted too
    row = vocab.score_caption("A dog and a cat.", {"dog"}).to_dict()
    assert chair_metrics([row])["CHAIR_i"] == pytest.approx(0.5)


# ---- the packaged synonyms file ------------------------------------------------------------

def test_packaged_synonyms_parse():
    text = (importlib.resources.files("bench") / "assets/chair/synonyms.txt").read_text(encoding="utf-8")
    rows = parse_synonyms(text)
    assert len(rows) == 80
    motorcycle = next(r for r in rows if r[0] == "motorcycle")
    assert "motor bike" in motorcycle
    cake = next(r for r in rows if r[0] == "cake")
    assert "cheesecake" in cake
    raw = parse_synonyms(text, reference_parsing=True)
    assert " motor bike" in next(r for r in raw if r[0] == "motorcycle")


@pytest.mark.skipif(not (SHARED / "reference" / "chair" / "synonyms.txt").is_file(),
                    reason="shared reference folder not available")
def test_packaged_synonyms_byte_identical_to_reference():
    packaged = (importlib.resources.files("bench") / "assets/chair/synonyms.txt").read_bytes()
    assert packaged == (SHARED / "reference" / "chair" / "synonyms.txt").read_bytes()
