"""Turning a `TargetSpec` into token ids: the prefix the model is given and the target's own tokens.

Spacing follows how the model would write the text after its chat template: the prefix and the target word each
start with a space (``"ASSISTANT:" + " The image shows a" + " bird"``), so a SentencePiece tokenizer gives "▁bird" as
it would when generating. An own-caption target is found in the model's generated TOKEN IDS: the object word's
characters in the decoded caption are mapped back to the tokens that produced them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..text import default_vocabulary
from ..text.tokenizer import TOKEN_RE, _QUOTES
from .request import TargetSpec


class TargetAbsent(Exception):
    """The target cannot be found (the model's own caption has fewer object words); counted, not failed."""


@dataclass(frozen=True)
class Resolved:
    prefix_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    text: str                    # the target as text
    caption: str | None = None   # own_caption: the model's description
    category: str | None = None  # own_caption: the COCO category of the object word


def spaced(text: str) -> str:
    return text if not text or text[0].isspace() else " " + text


def mention_spans(caption: str) -> list[tuple[int, int, str]]:
    """(start, end, category) in characters of every COCO object mention of ``caption``, in order."""
    spans = [m.span() for m in TOKEN_RE.finditer(caption.translate(_QUOTES))]
    out = []
    for mention in default_vocabulary().mentions(caption):
        start = spans[mention.position][0]
        end = spans[mention.position + mention.n_tokens - 1][1]
        out.append((start, end, mention.category))
    return out


def token_span(tokenizer, ids: list[int], start: int, end: int) -> tuple[int, int]:
    """The tokens [i, j) of ``ids`` whose decoded text covers characters [start, end) of ``decode(ids)``."""
    lengths = [len(tokenizer.decode(ids[:k], skip_special_tokens=True)) for k in range(len(ids) + 1)]
    i = max(k for k in range(len(ids)) if lengths[k] <= start)
    j = min(k for k in range(i + 1, len(ids) + 1) if lengths[k] >= end)
    return i, j


def resolve_target(adapter, image, target: TargetSpec, text: str, prompt_ids: list[int],
                   next_token: Callable[[list[int]], int]) -> Resolved:
    """Prefix and target ids of ``target`` after the templated prompt ``text`` (whose ids are ``prompt_ids``)."""
    tokenizer = adapter.tokenizer
    if target.source == "own_caption":
        from ..models.base import GenerateRequest

        (result,) = adapter.generate([GenerateRequest(image, target.prompt, target.max_new_tokens)])
        ids = list(result.token_ids) if result.token_ids else tokenizer(result.text, add_special_tokens=False)["input_ids"]
        caption = tokenizer.decode(ids, skip_special_tokens=True)
        spans = mention_spans(caption)
        if target.index >= len(spans):
            raise TargetAbsent(f"the model's description has {len(spans)} object word(s), no word {target.index + 1}")
        start, end, category = spans[target.index]
        i, j = token_span(tokenizer, ids, start, end)
        return Resolved(tuple(ids[:i]), tuple(ids[i:j]), caption[start:end], caption, category)
    prefix = spaced(target.prefix) if target.prefix else ""
    prefix_ids = tuple(adapter._continuation_ids(text, prefix)) if prefix else ()
    if target.source == "next_token":
        token = next_token(list(prompt_ids) + list(prefix_ids))
        return Resolved(prefix_ids, (token,), tokenizer.decode([token]))
    if not target.word:
        raise ValueError("a given target needs its word")
    word = spaced(target.word)
    return Resolved(prefix_ids, tuple(adapter._continuation_ids(text + prefix, word)), target.word)
