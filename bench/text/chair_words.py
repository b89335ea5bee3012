"""CHAIR object words: which of the 80 MS-COCO objects a caption mentions, and how often.

This re-implements the text side of CHAIR (Rohrbach et al. 2018, "Object Hallucination in Image
Captioning"; reference code LisaAnne/Hallucination ``utils/chair.py``) without NLTK or ``pattern``.

Pipeline for one caption (the reference's order)
------------------------------------------------
1. Tokenise (:mod:`bench.text.tokenizer`, stands in for ``nltk.word_tokenize``), lower-case.
2. Singularise every token as a noun (:mod:`bench.text.normalise`, stands in for
   ``pattern.en.singularize``).
3. Merge two-word phrases, greedily left to right over the singularised tokens: when tokens i, i+1
   form a known phrase they become ONE item and the scan continues at i+2, otherwise token i stays.
   The phrase table is the reference's, verbatim in meaning:

   * phrases kept as themselves: motor bike, motor cycle, air plane, traffic light, street light,
     traffic signal, stop light, fire hydrant, stop sign, parking meter, suit case, sports ball,
     baseball bat, baseball glove, tennis racket, wine glass, hot dog, cell phone, mobile phone,
     teddy bear, hair drier, potted plant, laptop computer, and "home plate" (no object: it only
     stops "plate" pairing further, kept for parity);
   * "baby X" and "adult X" -> X for X in bird, cat, dog, horse, sheep, cow, elephant, bear, zebra,
     giraffe, animal, cub (so "baby elephant" is an elephant, not a person; "baby animal" is nothing);
   * "passenger jet" -> jet (airplane), "passenger train" -> train (not a person);
   * "bow tie" -> tie; "toilet seat" -> toilet.

   Because singularisation comes first, plurals merge too ("hot dogs", "baby elephants").
   Phrases earlier in the caption win: "baby teddy bear" is baby (person) + teddy bear.
4. If any item is "toilet" (including a merged "toilet seat"), EVERY "seat" item of the caption is
   dropped ("the seat of the toilet" is not a chair). "urinal"/"commode" do not trigger this.
5. Keep the items that are a synonym; each kept item is one mention of its category (the first word
   of its synonyms line). Every occurrence counts: "a dog and a dog" is two dog mentions.

Deliberate differences from the reference (all documented, each covered by tests)
------------------------------------------------------------------------------
* Synonyms are split on "," and each is stripped and lower-cased. The reference splits each line on
  ", " exactly, which leaves " motor bike" and " cheesecake" (the file has a doubled space before
  them) and "iPhone" (capital letter; captions are lower-cased) unmatchable. Here "motor bike",
  "cheesecake" and "iphone" match. ``ChairVocabulary(reference_parsing=True)`` restores the
  reference's parsing of the file (only that: singularisation stays as below).
* Synonyms are normalised with the same singulariser as captions (the reference compares singularised
  caption words with raw synonyms, so "bus" and "minibus", which ``pattern`` turns into "bu" and
  "minibu", could never match there). See :mod:`bench.text.normalise` for word-level differences.
* "wine glas" -> "wine glass" (a patch for pattern's "glass" -> "glas") is not needed and not kept.

Faithful limitations (kept on purpose, not fixed)
-------------------------------------------------
* Homographs count: "orange" the colour is an orange, "remote" (a remote area) a remote, "bow" of a
  boat a tie, "mouse" the animal a (computer) mouse, "bat" alone is nothing (only "baseball bat").
* "stove top oven" is a 3-word synonym that the 2-word merge never sees: it counts as two oven
  mentions (stove, oven). "dining table" is not in the phrase table: it matches through "table"
  (one dining-table mention, surface "table", and two tokens for Len).
* Words not in the list do not match: "hotdog" (only "hot dog"), "hair dryer" (only "hair drier" /
  "hairdryer"), "teddy" alone, "kitty". Hyphenated "hot-dog" /
  "teddy-bear" are one token (as with NLTK) and do not match. ("puppy"/"puppies" are in the list: dog.)
* "computer monitor" is a laptop AND a tv, "sofa bed" a couch AND a bed, "desk" a dining table, "container" a bowl, "sub" a
  sandwich, "bull" a cow: the list's choices, kept.
* "train tracks": the reference counts a train; OPERA-derived ports add "train track" as a no-object
  phrase, so there it is not. Pass ``ignored_phrases=OPERA_IGNORED_PHRASES`` to match those ports.

Len: the number of items after step 3 (tokens, punctuation included, each merged phrase counting
once), which is what the ports with a Len column (OPERA and later) average.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass, field
from typing import Iterable

from .normalise import NounSingulariser
from .tokenizer import tokenize

__all__ = [
    "Mention",
    "CaptionScore",
    "ChairVocabulary",
    "default_vocabulary",
    "load_synonyms_text",
    "parse_synonyms",
    "REFERENCE_DOUBLE_WORDS",
    "ANIMAL_WORDS",
    "VEHICLE_WORDS",
    "REFERENCE_IGNORED_PHRASES",
    "OPERA_IGNORED_PHRASES",
]

SYNONYMS_RESOURCE = "assets/chair/synonyms.txt"

# Two-word phrases that stand for themselves (the reference's list, duplicates removed;
# "stove top oven" has three words and never matched there, so it is left out here too).
REFERENCE_DOUBLE_WORDS: tuple[str, ...] = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
    "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
    "mobile phone", "teddy bear", "hair drier", "potted plant", "laptop computer",
)
# Phrases that are merged (consumed as one item) but are no object.
REFERENCE_IGNORED_PHRASES: tuple[str, ...] = ("home plate",)
OPERA_IGNORED_PHRASES: tuple[str, ...] = ("home plate", "train track")
ANIMAL_WORDS: tuple[str, ...] = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub",
)
VEHICLE_WORDS: tuple[str, ...] = ("jet", "train")


def load_synonyms_text() -> str:
    """The packaged synonyms file (a byte-identical copy of the reference's ``data/synonyms.txt``)."""
    return (importlib.resources.files("bench") / SYNONYMS_RESOURCE).read_text(encoding="utf-8")


def parse_synonyms(text: str, *, reference_parsing: bool = False) -> list[list[str]]:
    """One list per non-empty line: [canonical category, synonym, ...] (synonyms may repeat).

    Default: split on ",", strip and lower-case each entry, drop empty ones. ``reference_parsing``:
    strip the line and split on ", " exactly, keeping case (the reference's behaviour, in which
    " motor bike", " cheesecake" and "iPhone" can never match a lower-cased caption).
    """
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if reference_parsing:
            entries = line.strip().split(", ")
        else:
            entries = [e.strip().lower() for e in line.split(",")]
            entries = [e for e in entries if e]
        rows.append(entries)
    return rows


@dataclass(frozen=True, slots=True)
class Mention:
    """One occurrence of a COCO object in a caption.

    surface: the caption's own text for it, original case ("Passenger Jets", "dog");
    word: the normalised vocabulary word it matched, as the reference's ``words`` ("jet", "dog",
      "traffic light", "person");
    category: the canonical COCO category ("airplane", "dog", "traffic light", "person");
    position: index of its first token in ``ChairVocabulary.tokenize(caption)``;
    n_tokens: 1, or 2 for a merged phrase.
    """

    surface: str
    word: str
    category: str
    position: int
    n_tokens: int = 1


@dataclass(slots=True)
class CaptionScore:
    """CHAIR result for one caption against one image's ground-truth objects.

    mentioned: canonical category of every mention, in caption order, repeats kept;
    words: the matched normalised words, aligned with ``mentioned``;
    hallucinated / hallucinated_words: the mentions whose category is not in gt (repeats kept);
    distinct_hallucinated: sorted distinct hallucinated categories;
    gt: sorted ground-truth categories; recalled: sorted distinct gt categories mentioned;
    n_words: Len of this caption (tokens after phrase merging, punctuation included).
    """

    mentions: list[Mention]
    mentioned: list[str]
    words: list[str]
    hallucinated: list[str]
    hallucinated_words: list[str]
    distinct_hallucinated: list[str]
    gt: list[str]
    recalled: list[str]
    n_words: int
    caption: str = field(default="", repr=False)

    @property
    def n_mentions(self) -> int:
        return len(self.mentioned)

    @property
    def n_hallucinated(self) -> int:
        return len(self.hallucinated)

    @property
    def has_hallucination(self) -> bool:
        return bool(self.hallucinated)

    @property
    def n_gt(self) -> int:
        return len(self.gt)

    @property
    def n_recalled(self) -> int:
        return len(self.recalled)

    def to_dict(self) -> dict:
        """JSON-ready summary (no Mention objects, only plain lists and numbers)."""
        return {
            "mentioned": list(self.mentioned),
            "words": list(self.words),
            "hallucinated": list(self.hallucinated),
            "hallucinated_words": list(self.hallucinated_words),
            "distinct_hallucinated": list(self.distinct_hallucinated),
            "gt": list(self.gt),
            "recalled": list(self.recalled),
            "n_words": self.n_words,
            "n_mentions": self.n_mentions,
            "n_hallucinated": self.n_hallucinated,
        }


class ChairVocabulary:
    """The CHAIR matcher: build once (about 1 s, most of it loading lemminflect), reuse for all captions.

    ``default_vocabulary()`` returns a shared instance built from the packaged synonyms file.
    """

    def __init__(
        self,
        synonyms_text: str | None = None,
        *,
        reference_parsing: bool = False,
        ignored_phrases: Iterable[str] = REFERENCE_IGNORED_PHRASES,
        singulariser: NounSingulariser | None = None,
    ):
        text = load_synonyms_text() if synonyms_text is None else synonyms_text
        self._norm = singulariser or NounSingulariser()
        self.rows = parse_synonyms(text, reference_parsing=reference_parsing)
        self.categories: tuple[str, ...] = tuple(row[0] for row in self.rows)
        self._category_set = frozenset(self.categories)

        # word key (normalised, words joined by one space) -> category; a later line overrides an
        # earlier one, as the reference's dict does (the shipped file has no such clash).
        self._word_to_category: dict[str, str] = {}
        for row in self.rows:
            for synonym in row:
                if reference_parsing and (synonym != synonym.strip() or synonym != synonym.lower()):
                    key = synonym  # as the reference: a key no lower-cased caption word can equal
                else:
                    key = self._key(synonym)
                self._word_to_category[key] = row[0]

        # (first, second) normalised tokens -> the item they become (a word key), or None for no object.
        self._pairs: dict[tuple[str, str], str | None] = {}
        for phrase in REFERENCE_DOUBLE_WORDS:
            self._add_pair(phrase, phrase)
        for animal in ANIMAL_WORDS:
            self._add_pair(f"baby {animal}", animal)
            self._add_pair(f"adult {animal}", animal)
        for vehicle in VEHICLE_WORDS:
            self._add_pair(f"passenger {vehicle}", vehicle)
        self._add_pair("bow tie", "tie")
        self._add_pair("toilet seat", "toilet")
        for phrase in ignored_phrases:
            self._add_pair(phrase, None)
        self._pair_firsts = frozenset(first for first, _ in self._pairs)
        self._toilet = self._key("toilet")
        self._seat = self._key("seat")

    # -- building blocks -------------------------------------------------------------------

    def _key(self, text: str) -> str:
        return " ".join(self._norm(w) for w in text.lower().split())

    def _add_pair(self, phrase: str, target: str | None) -> None:
        first, second = (self._norm(w) for w in phrase.split())
        self._pairs[(first, second)] = None if target is None else self._key(target)

    @staticmethod
    def tokenize(caption: str) -> list[str]:
        """Tokens of ``caption`` in original case (see :mod:`bench.text.tokenizer`)."""
        return tokenize(caption)

    def normalise(self, token: str) -> str:
        """The matching key of one token: lower-cased, singularised."""
        return self._norm(token.lower())

    def category_of(self, word: str) -> str | None:
        """Canonical category of a synonym, category name or plural ("bikes" -> "bicycle"), else None."""
        if word in self._category_set:
            return word
        return self._word_to_category.get(self._key(word))

    # -- matching ----------------------------------------------------------------------------

    def analyse(self, caption: str) -> tuple[list[Mention], int]:
        """(mentions, n_words) of one caption; n_words is its Len (items after phrase merging)."""
        tokens = tokenize(caption)
        norm = self._norm
        keys = [norm(t.lower()) for t in tokens]
        n = len(keys)
        pairs, firsts = self._pairs, self._pair_firsts
        items: list[tuple[str | None, int, int]] = []  # (word key or None, first token, n tokens)
        i = 0
        while i < n:
            key = keys[i]
            if key in firsts and i + 1 < n:
                pair = (key, keys[i + 1])
                if pair in pairs:
                    items.append((pairs[pair], i, 2))
                    i += 2
                    continue
            items.append((key, i, 1))
            i += 1
        n_words = len(items)

        lookup = self._word_to_category
        drop_seat = any(word == self._toilet for word, _, _ in items)
        mentions = []
        for word, pos, width in items:
            if word is None or (drop_seat and word == self._seat):
                continue
            category = lookup.get(word)
            if category is not None:
                surface = tokens[pos] if width == 1 else f"{tokens[pos]} {tokens[pos + 1]}"
                mentions.append(Mention(surface, word, category, pos, width))
        return mentions, n_words

    def mentions(self, caption: str) -> list[Mention]:
        """Every COCO-object mention in ``caption``, in order (repeats kept)."""
        return self.analyse(caption)[0]

    def categories_in(self, caption: str) -> list[str]:
        """Canonical category of every mention (repeats kept)."""
        return [m.category for m in self.analyse(caption)[0]]

    def ground_truth(self, instance_categories: Iterable[str], reference_captions: Iterable[str] = ()) -> set[str]:
        """The image's ground-truth objects: its COCO instance categories (names as in the COCO
        annotation file, e.g. "dining table"; synonyms also accepted) plus every object mentioned
        in its reference captions, all canonical. Raises ValueError for an unknown category name."""
        gt: set[str] = set()
        for name in instance_categories:
            category = self.category_of(name.strip().lower())
            if category is None:
                raise ValueError(f"not a CHAIR/COCO category or synonym: {name!r}")
            gt.add(category)
        for caption in reference_captions:
            gt.update(m.category for m in self.analyse(caption)[0])
        return gt

    def score_caption(self, caption: str, gt: Iterable[str]) -> CaptionScore:
        """Score one generated caption against ``gt`` (canonical categories, e.g. from ``ground_truth``)."""
        gt_set = gt if isinstance(gt, (set, frozenset)) else set(gt)
        unknown = gt_set - self._category_set
        if unknown:
            raise ValueError(f"gt holds names that are not canonical categories: {sorted(unknown)}")
        mentions, n_words = self.analyse(caption)
        mentioned = [m.category for m in mentions]
        hallucinated_idx = [k for k, c in enumerate(mentioned) if c not in gt_set]
        hallucinated = [mentioned[k] for k in hallucinated_idx]
        return CaptionScore(
            mentions=mentions,
            mentioned=mentioned,
            words=[m.word for m in mentions],
            hallucinated=hallucinated,
            hallucinated_words=[mentions[k].word for k in hallucinated_idx],
            distinct_hallucinated=sorted(set(hallucinated)),
            gt=sorted(gt_set),
            recalled=sorted(gt_set.intersection(mentioned)),
            n_words=n_words,
            caption=caption,
        )


@functools.lru_cache(maxsize=None)
def default_vocabulary() -> ChairVocabulary:
    """A shared ChairVocabulary built from the packaged synonyms file with default options."""
    return ChairVocabulary()
