"""A small regex word tokenizer that stands in for ``nltk.word_tokenize`` in CHAIR.

The CHAIR reference (Rohrbach et al. 2018, LisaAnne/Hallucination ``utils/chair.py``) and its ports
tokenise with ``nltk.word_tokenize``, which needs the punkt models (a download). This module needs no
data and follows the Penn-Treebank conventions that matter for CHAIR:

* words are runs of letters/digits; a hyphen, period, slash, ``+`` or apostrophe between two word
  characters keeps them in one token ("hot-dog", "t-shirt", "3.5", "cat/dog", "o'clock"), as in NLTK,
  so "hot-dog" is one token and does NOT match the two-word object "hot dog";
* the clitics ``'s 're 've 'll 'd 'm`` and ``n't`` are split off ("dog's" -> "dog" "'s",
  "isn't" -> "is" "n't", "can't" -> "ca" "n't"), so a possessive still matches its object;
* punctuation is its own token ("dogs." -> "dogs" "."); "..." and "--" runs are one token each;
  digit groups "1,000" and times "12:30" stay one token;
* typographic apostrophes/quotes (’ ‘ “ ”) are first mapped to ASCII ones.

Known differences from ``nltk.word_tokenize`` (they only move the token count, i.e. CHAIR's ``Len``,
never which objects are found, unless noted):

* NLTK runs punkt sentence splitting first and then splits only a sentence-final period; an
  abbreviation keeps its period ("mr." / "e.g." stay one token). Here a period that is not between two
  word characters is always its own token: "mr." -> "mr" "." (one token more than NLTK).
* NLTK rewrites quotes to `` and '' (same count); it splits some odd symbols differently ("$5",
  "#1": NLTK "$" "5"; same here). Emoji and other symbols are one token per character here.
* Contractions NLTK knows as whole words ("cannot" -> "can" "not", "gonna" -> "gon" "na") are not
  split here (one token fewer).
"""

from __future__ import annotations

import re

__all__ = ["tokenize", "TOKEN_RE"]

_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u2032": "'"})

_CLITIC = r"'(?:s|re|ve|ll|d|m)\b"
TOKEN_RE = re.compile(
    rf"""
      \w+(?=n't\b)                       # "is" of "isn't", "ca" of "can't"
    | n't\b                              # negation clitic
    | {_CLITIC}                          # 's 're 've 'll 'd 'm
    | \w+(?:(?:[-./+]|'(?!(?:s|re|ve|ll|d|m)\b)|(?<=\d)[,:](?=\d))\w+)*   # words, numbers, compounds
    | \.\.\.+ | --+                      # ellipsis, dashes
    | [^\w\s]                            # any other symbol
    """,
    re.VERBOSE | re.IGNORECASE,
)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens, keeping their original case (callers lower-case for matching)."""
    return TOKEN_RE.findall(text.translate(_QUOTES))
