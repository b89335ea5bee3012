"""Text processing: a data-free tokenizer, a noun singulariser, CHAIR object words, the bias probes' rating parser."""

from .chair_words import CaptionScore, ChairVocabulary, Mention, default_vocabulary
from .normalise import NounSingulariser
from .rating import Rating, RatingParser, ScoreDistribution, digit_options, expected_score, load_refusals
from .tokenizer import tokenize

__all__ = ["CaptionScore", "ChairVocabulary", "Mention", "NounSingulariser", "Rating", "RatingParser", "ScoreDistribution",
           "default_vocabulary", "digit_options", "expected_score", "load_refusals", "tokenize"]
