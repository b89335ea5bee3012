"""Speed of the CHAIR caption scorer on 5,000 synthetic detailed captions (40-80 words each).

Captions are built deterministically (seeded) from sentence templates and the CHAIR vocabulary,
with plurals, two-word phrases, special cases and some objects absent from the image, so that the
matcher does realistic work. Prints captions/s for a cold pass (fresh matcher, empty word cache)
and a warm pass, plus the resulting CHAIR metrics as a sanity check.

    python benchmarks/chair_scorer_speed.py [--n 5000] [--seed 0]

(with bench installed, or from the repository root with PYTHONPATH=.)
"""

from __future__ import annotations

import argparse
import random
import time

from bench.metrics.chair import chair_metrics
from bench.text.chair_words import ChairVocabulary

OPENERS = [
    "The image shows {a} in a busy city street on a sunny afternoon.",
    "In this picture, we can see {a} standing near the center of the frame.",
    "This photograph captures {a} in a cozy indoor setting with warm light.",
    "The scene depicts {a} outdoors, surrounded by trees and a clear blue sky.",
]
MIDDLES = [
    "Next to it, there are {n} {pl} arranged neatly on the ground.",
    "A {s} can be seen in the background, partially hidden behind {a}.",
    "On the left side of the image, {a} is resting close to some {pl}.",
    "Several {pl} are visible, and one of them is placed right beside {a}.",
    "There is also {a}, which adds a lively and colorful touch to the scene.",
    "Further away, a baby {animal} and an adult {animal} walk along the path.",
    "A passenger {vehicle} passes by while people wait patiently on the side.",
    "The {s}'s shadow falls across the table, and a man in an orange shirt looks on.",
    "Overall, the {s} and the {pl} make the composition feel balanced and calm.",
]
CLOSERS = [
    "The overall atmosphere of the image is peaceful and inviting.",
    "It seems to be a typical day, with everyone going about their activities.",
    "The lighting suggests that the photo was taken in the late afternoon.",
]
NUMBERS = ["two", "three", "several", "many", "a few"]
PLURAL = {"person": "people", "mouse": "mice", "knife": "knives", "bus": "buses", "sheep": "sheep",
          "skis": "skis", "scissors": "scissors", "child": "children", "man": "men", "woman": "women"}


def plural(word: str) -> str:
    if word in PLURAL:
        return PLURAL[word]
    if word.endswith(("s", "sh", "ch", "x")):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def build_dataset(vocab: ChairVocabulary, n: int, seed: int):
    rng = random.Random(seed)
    rows = vocab.rows
    animals = ["dog", "cat", "horse", "elephant", "giraffe", "zebra", "bird", "cow", "sheep", "bear"]
    items = []
    for _ in range(n):
        present = rng.sample(rows, rng.randint(2, 6))
        if rng.random() < 0.6 and rows[0] not in present:  # people are in most COCO images
            present.append(rows[0])
        absent = rng.sample(rows, 2)
        instances = [r[0] for r in present]

        def word(pool):
            row = rng.choice(pool)
            return rng.choice(row)

        def fill(template: str) -> str:
            pool = present if rng.random() < 0.9 else absent
            s = word(pool)
            return template.format(a=article(word(pool)), s=s, pl=plural(word(pool)), n=rng.choice(NUMBERS),
                                   animal=rng.choice(animals), vehicle=rng.choice(["jet", "train"]))

        target = rng.randint(40, 80)
        closer = rng.choice(CLOSERS)
        sentences = [fill(rng.choice(OPENERS))]
        length = len(sentences[0].split()) + len(closer.split())
        while length < target:
            nxt = fill(rng.choice(MIDDLES))
            if length + len(nxt.split()) > 80 and length >= 40:
                break
            sentences.append(nxt)
            length += len(nxt.split())
        sentences.append(closer)
        caption = " ".join(sentences)
        references = [f"{article(word(present))} next to {article(word(present))}." for _ in range(5)]
        items.append((caption, instances, references))
    return items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    t0 = time.perf_counter()
    vocab = ChairVocabulary()
    t_build = time.perf_counter() - t0
    items = build_dataset(vocab, args.n, args.seed)
    words = [len(c.split()) for c, _, _ in items]
    gts = [vocab.ground_truth(inst, refs) for _, inst, refs in items]

    fresh = ChairVocabulary()  # cold: empty word cache
    t0 = time.perf_counter()
    scores = [fresh.score_caption(c, gt) for (c, _, _), gt in zip(items, gts)]
    t_cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    scores = [fresh.score_caption(c, gt) for (c, _, _), gt in zip(items, gts)]
    t_warm = time.perf_counter() - t0

    m = chair_metrics(scores)
    print(f"captions: {len(items)}, words/caption: mean {sum(words) / len(words):.1f}, "
          f"min {min(words)}, max {max(words)}; matcher build {t_build:.2f} s")
    print(f"cold pass: {len(items) / t_cold:,.0f} captions/s   warm pass: {len(items) / t_warm:,.0f} captions/s")
    print("metrics: " + ", ".join(f"{k} {m[k]:.4f}" for k in ("CHAIR_i", "CHAIR_s", "Recall", "Len"))
          + f", mentions {m['n_mentions']}")


if __name__ == "__main__":
    main()
