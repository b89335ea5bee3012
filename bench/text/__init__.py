"""Text processing for caption metrics: a data-free tokenizer, a noun singulariser, CHAIR object words."""

from .chair_words import CaptionScore, ChairVocabulary, Mention, default_vocabulary
from .normalise import NounSingulariser
from .tokenizer import tokenize

__all__ = ["CaptionScore", "ChairVocabulary", "Mention", "NounSingulariser", "default_vocabulary", "tokenize"]
