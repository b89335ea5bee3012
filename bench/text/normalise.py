"""Noun singularisation for CHAIR, offline, with ``lemminflect``.

Choice
------
The CHAIR reference (LisaAnne/Hallucination ``utils/chair.py``) runs ``pattern.en.singularize`` on
EVERY token (no POS tags); many later ports (OPERA, VCD and the ones derived from them) run NLTK's
WordNet lemmatiser with ``nltk.pos_tag`` tags. Neither can be used here: ``pattern`` is not
installable and NLTK needs downloaded data (WordNet, a tagger).

We use ``lemminflect.getLemma(word, upos="NOUN")``: its lemma dictionary and out-of-vocabulary rules
ship inside the PyPI wheel, it is deterministic and needs no POS tagger. Like the reference we treat
every token as a noun (no tagging), so verbs/adjectives are never turned into objects by a tagger.
``inflect`` was rejected: ``inflect.engine().singular_noun`` is purely rule-based and reproduces the
worst ``pattern`` bug, "bus" -> "bu" (also "minibus" -> "minibu", "lens" -> "len", "us" -> "me"),
and it returns False for words it takes as singular, so it needs extra guarding.

A lemma is used as the matching key only; the vocabulary's synonyms are normalised with the same
function, so a caption word and a synonym match whenever they share a noun lemma.

Where this differs from the reference ports (each checked word below)
--------------------------------------------------------------------
pattern.en.singularize (original reference), checked word by word against a transcription of its
rules, over every synonym and its plural forms (these are all the disagreements found):

* "bus" -> "bu", "minibus" -> "minibu", "airbus" -> "airbu", "busses" -> "buss": pattern never
  matches a singular bus ("buses" does), a minibus or an airbus. Here -> bus, bus, airplane, bus.
  The largest difference in practice: captions mention buses often.
* "ties" -> "ty": pattern never matches plural ties ("bow ties" neither). Here -> tie.
* "canoes" -> "cano", "magpies" -> "magpy", "taxies" -> "taxy", "thieves" -> "thieve": pattern
  misses them. Here -> boat, bird, car, person.
* "collies", "doggies" are left unchanged by pattern (its "-ie" exception list), so they miss.
  Here -> collie, doggie (dog).
* "glass" -> "glas": pattern; the reference patches this with a "wine glas" -> "wine glass" rule.
  Here "glass" stays "glass", so "wine glass(es)" matches without the patch.
* "childrens" -> pattern "children" (person); here "childrens" is no object. Nonsense forms such as
  "dobermen" also go pattern's way only.
* The synonyms "bus", "minibus", "airbus" are themselves unreachable in the reference (a caption word
  is singularised but compared with the raw synonym). Here both sides are normalised.
* Same result in both: people -> person (a synonym either way), children -> child, men/women ->
  man/woman, mice -> mouse, knives -> knife, geese -> goose, oxen -> ox (lemminflect lacks "oxen":
  covered by an override), calves -> calf, skis -> ski, scissors, sheep, cattle, bison, puppies ->
  puppy, ponies -> pony, benches, sandwiches, buffaloes, tomatoes, lorries, ferries, potties,
  palominoes, broccolis (these two via the fallbacks below), luggage, wine glasses, hot dogs,
  teddy bears, traffic lights, cell phones, sports balls, tvs, iphones, remotes, fridges.
* Non-noun tokens: pattern "this" -> "thi"; pattern and lemminflect "was" -> "wa", "has" -> "ha".
  None of these is (or becomes) an object word, so they cannot change CHAIR. Checked over all
  ~70,000 words of lemminflect's dictionary: the only words whose lemma is an object word without
  being "<lemma>s"/"<lemma>es"-like plurals are true irregular plurals (men, mice, geese, children, ...).

NLTK WordNet lemmatiser with POS tags (OPERA/VCD-style ports), by construction of WordNet's morphy
(not run here: no WordNet data offline):

* A token tagged as a verb is lemmatised as a verb, so those ports count activity words as objects:
  "skiing" -> ski (skis), "seated" -> seat (chair), "biking" -> bike (bicycle), "bowling" -> bowl,
  "skateboarding" -> skateboard, "snowboarding" -> snowboard, "boating" -> boat, "phoning" -> phone.
  Here (as with pattern) these stay as they are and are not objects.
* "people" stays "people" in WordNet (still the person synonym); tagger errors (a noun tagged as a
  verb or adjective: "remote", "orange") can flip individual mentions either way.

How lemminflect is used: a word in its dictionary takes its first noun lemma ("glasses" -> glass,
"leaves" -> leave, "dice" -> die, "taxes" -> tax, not taxis). A word outside it is kept as it is
unless it ends in -s (its suffix rules would otherwise invent Latin plurals: "corgi" -> "corgus");
an -s word goes through its suffix rules ("tvs" -> tv, "iphones" -> iphone, "remotes" -> remote,
"fridges" -> fridge), "-oes" drops "es" ("palominoes" -> palomino), and one the rules leave unchanged
drops its final s unless it ends in -ss/-us ("broccolis" -> broccoli). "womens"/"mens" become
"women"/"men" (no object; pattern gives the same); "women's" is tokenised as "women" "'s" and matches.
Normalisation is idempotent on the vocabulary (checked for every synonym).
"""

from __future__ import annotations

__all__ = ["NounSingulariser", "OVERRIDES"]

# Irregular plurals lemminflect does not know (checked: getLemma("oxen", "NOUN") == ("oxen",)).
OVERRIDES: dict[str, str] = {
    "oxen": "ox",
}


class NounSingulariser:
    """``singulariser(word) -> noun lemma`` for one lower-case token, memoised (lemminflect is ~20 us/call).

    Tokens that are not purely alphabetic (numbers, hyphenated compounds, punctuation, clitics) are
    returned unchanged: none of them can be a CHAIR object word.
    """

    def __init__(self, overrides: dict[str, str] | None = None, max_cache: int = 200_000):
        from lemminflect import getLemma  # imported here: loading its tables takes ~0.5 s

        self._get_lemma = getLemma
        self._overrides = dict(OVERRIDES if overrides is None else overrides)
        self._cache: dict[str, str] = {}
        self._max_cache = max_cache

    def __call__(self, word: str) -> str:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        lemma = self._lemma(word)
        if len(self._cache) >= self._max_cache:
            self._cache.clear()
        self._cache[word] = lemma
        return lemma

    def _lemma(self, word: str) -> str:
        if word in self._overrides:
            return self._overrides[word]
        if not word.isalpha():
            return word
        known = self._get_lemma(word, upos="NOUN", lemmatize_oov=False)
        if known:  # in lemminflect's dictionary (includes its irregular plurals)
            return known[0].lower()
        if not word.endswith("s"):
            # An unknown word without -s is taken as singular. lemminflect's suffix rules would
            # otherwise make Latin plurals of it: "corgi" -> "corgus".
            return word
        if word.endswith("oes"):
            return word[:-2]  # "palominoes" -> "palomino" (the rules give "palominoe")
        guessed = self._get_lemma(word, upos="NOUN", lemmatize_oov=True)
        lemma = guessed[0].lower() if guessed else word
        if lemma == word and not word.endswith(("ss", "us")):
            lemma = word[:-1]  # "broccolis" -> "broccoli", which the rules leave unchanged
        return lemma
