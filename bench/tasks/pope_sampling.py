"""POPE question generation, following the reference generator (RUCAIBox/POPE ``utils.py``/``main.py``).

Rules (method.md section 2), all statistics over the SAMPLED images only:
- images with at least ``min_objects`` distinct objects are eligible; ``num_images`` of them are drawn
  with ``random.sample`` (all of them, in a seeded shuffle, when ``num_images`` is None);
- the vocabulary is every object of the sampled images, in order of first appearance;
- per image, positives are the first ``max_positives`` of its object list; questions alternate
  positive, its negative, positive, its negative, ...; a negative is never present in the image and
  never repeats an object already asked about for that image;
- random: ``rng.choice`` over the vocabulary until one qualifies;
- popular: the vocabulary sorted by the number of sampled images containing each object, descending
  (ties keep first-appearance order); the first that qualifies;
- adversarial: for the positive just asked, the objects sorted by the number of sampled images that
  contain both, descending (ties keep first-seen order); the first that qualifies;
- popular and adversarial fall back to the random rule when nothing in their list qualifies.
Differences from the reference, on purpose: the draws are seeded (the reference used the unseeded
global ``random``), each split starts from the same seed (so the splits share images and
positives, as in the published files), a vocabulary too small to give a negative is an error rather
than an endless loop, and the article is corrected ("an" before a vowel) without the reference's
``template.replace("a", "an")`` that also turned "image" into "imange".
"""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

from ..errors import DataError

STRATEGIES = ("random", "popular", "adversarial")
_ARTICLE_BEFORE_SLOT = re.compile(r"\b(a|an|A|An) (\{\}|\{object\})")


@dataclass(frozen=True)
class PopeItem:
    question_id: int
    image: str          # the image's key (as given by the caller)
    object: str
    label: str          # "yes" | "no"
    text: str


def with_article(template: str, obj: str) -> str:
    """Fill the template's slot, choosing "an" before a vowel sound-letter and "a" otherwise."""
    article = "an" if obj[:1].lower() in "aeiou" else "a"

    def fix(match: re.Match) -> str:
        word = match.group(1)
        return (article.capitalize() if word[0].isupper() else article) + " " + match.group(2)

    text = _ARTICLE_BEFORE_SLOT.sub(fix, template, count=1)
    return text.replace("{object}", obj).replace("{}", obj, 1)


def _ranked_popular(images: Sequence[tuple[str, Sequence[str]]]) -> list[str]:
    counts: Counter = Counter()
    for _, objects in images:
        counts.update(dict.fromkeys(objects, 1))
    return [name for name, _ in sorted(counts.items(), key=lambda kv: kv[1], reverse=True)]


def _ranked_cooccurrence(images: Sequence[tuple[str, Sequence[str]]]) -> dict[str, list[str]]:
    co: dict[str, dict[str, int]] = {}
    for _, objects in images:
        for obj in objects:
            row = co.setdefault(obj, {})
            for other in objects:
                if other != obj:
                    row[other] = row.get(other, 0) + 1
    return {obj: [o for o, _ in sorted(row.items(), key=lambda kv: kv[1], reverse=True)] for obj, row in co.items()}


def generate(
    images: Sequence[tuple[str, Sequence[str]]],
    *,
    strategy: str,
    min_objects: int = 3,
    max_positives: int = 3,
    num_images: int | None = 500,
    seed: int = 0,
    template: str = "Is there a {} in the image?",
) -> list[PopeItem]:
    """``images``: (image key, distinct object names in annotation order), in dataset order."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown POPE negative strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    eligible = [(key, list(dict.fromkeys(objs))) for key, objs in images if len(set(objs)) >= min_objects]
    rng = random.Random(seed)
    n = len(eligible) if num_images is None else num_images
    if n > len(eligible):
        raise DataError(f"POPE needs {n} images with at least {min_objects} objects, but the data has {len(eligible)}")
    sampled = rng.sample(eligible, n)
    vocabulary = list(dict.fromkeys(obj for _, objs in sampled for obj in objs))
    popular = _ranked_popular(sampled)
    cooccur = _ranked_cooccurrence(sampled)

    items: list[PopeItem] = []

    def ask(key: str, obj: str, label: str) -> None:
        items.append(PopeItem(len(items) + 1, key, obj, label, with_article(template, obj)))

    for key, objects in sampled:
        asked: list[str] = []

        def qualifies(candidate: str) -> bool:
            return candidate not in asked and candidate not in objects

        def random_negative() -> str:
            if not any(qualifies(c) for c in vocabulary):
                raise DataError(f"POPE: no object left to ask as a negative for image {key} "
                                f"(vocabulary of {len(vocabulary)} objects is too small)")
            choice = rng.choice(vocabulary)
            while not qualifies(choice):
                choice = rng.choice(vocabulary)
            return choice

        for positive in objects[:max_positives]:
            asked.append(positive)
            ask(key, positive, "yes")
            if strategy == "random":
                negative = random_negative()
            else:
                ranked = popular if strategy == "popular" else cooccur.get(positive, [])
                negative = next((c for c in ranked if qualifies(c)), None) or random_negative()
            asked.append(negative)
            ask(key, negative, "no")
    return items
