"""Offline tokenizer builders for the tiny model families.

Nothing is downloaded: a small BPE vocabulary is *trained* (with the ``tokenizers`` library) on a fixed in-code word
list (common English and prompt words, the 80 COCO category names and their plurals, yes/no in all casings, digits,
punctuation), in the style of each family:

===================  =======================================  ===================================================
style                families                                 what mirrors the real tokenizer
===================  =======================================  ===================================================
SentencePiece-like   LLaVA-1.5 (Llama-2), LLaVA-NeXT          ``▁`` word prefix, ``<0x00>``..``<0xFF>`` byte
                     (Mistral), PaliGemma (Gemma)             fallback, ``<unk>/<s>/</s>`` (Gemma: ``<pad>/<eos>/
                                                              <bos>/<unk>/<mask>``) at the real low ids
byte-level BPE       Qwen2-VL / Qwen2.5-VL (Qwen2 regex),     GPT-2 byte alphabet, the family's pre-tokenizer
                     Idefics3 (Llama-3 regex), SmolVLM        regex, special tokens appended after the BPE vocab
                     (GPT-2 / SmolLM2)                        in the real order
CLIP BPE             OWL-ViT                                  lower-casing, ``</w>`` end-of-word suffix,
                                                              ``<|startoftext|>``/``<|endoftext|>`` as the two
                                                              LAST ids (the text tower pools at ``argmax(ids)``)
===================  =======================================  ===================================================

Every word form the prompts need ("▁Yes", "Yes", "ĠYes", "yes</w>", ...) is trained to a single token. The BPE
trainer is run to exhaustion on a fixed corpus, so the result is deterministic; each builder returns a
``transformers`` tokenizer object of the class the real checkpoint names in ``tokenizer_config.json`` (the class
rebuilds its own normaliser/pre-tokeniser on load in transformers 5, so the files are written through it).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Iterable

# ---------------------------------------------------------------------------------------------------------------------
# Word list
# ---------------------------------------------------------------------------------------------------------------------

COCO_CATEGORIES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)

_IRREGULAR_PLURALS = {
    "person": "people", "mouse": "mice", "knife": "knives", "sheep": "sheep", "skis": "skis",
    "scissors": "scissors", "broccoli": "broccoli",
}


def plural(name: str) -> str:
    """English plural of a (possibly multi-word) COCO category name: the last word is inflected."""
    head, _, last = name.rpartition(" ")
    if last in _IRREGULAR_PLURALS:
        last = _IRREGULAR_PLURALS[last]
    elif last.endswith(("s", "x", "z", "ch", "sh")):
        last = last + "es"
    elif last.endswith("y") and last[-2:-1] not in tuple("aeiou"):
        last = last[:-1] + "ies"
    else:
        last = last + "s"
    return f"{head} {last}" if head else last


COMMON_WORDS: tuple[str, ...] = tuple(
    """
    a an the and or but not no yes is are was were be been being am do does did done have has had having
    there here this that these those it its they them their he she his her him we us our you your i me my
    of in on at to from with without by for about into onto over under above below behind between near next
    inside outside up down left right top bottom front back middle center side around through
    what which who whom whose where when why how many much more most less few some any all each every other
    one two three four five six seven eight nine ten zero first second third last only also just very too
    can could will would should may might must shall
    image images picture pictures photo photos photograph scene view frame region area object objects thing
    things item items background foreground
    question questions answer answers answering word words sentence phrase short single brief
    describe description detail details detailed caption captions explain tell show shows showing see seen
    look looks looking appear appears visible present absent contain contains containing include includes
    please only with without using use
    color colour colors red green blue yellow white black brown gray grey pink purple orange dark light bright
    big small large little tall long wide round old young new
    man men woman women boy boys girl girls child children people kid kids baby player players
    table tables street road sky water grass tree trees building buildings house room wall floor field beach
    snow sun cloud clouds window door city park sea river mountain
    sitting standing walking running riding eating holding playing lying flying parked driving wearing
    number count how likely likelihood probability score rate scale
    true false yes no maybe correct incorrect
    user assistant system helpful model human
    following given provided based
    answer en fr de es caption detect segment ocr
    """.split()
)

CAPITALISED_WORDS: tuple[str, ...] = tuple(
    """
    yes no is are was were does do did can could would will there the a an this that it what which who where
    when why how describe please answer question only from one in on of user assistant system you i image
    picture photo count tell list give look
    """.split()
)

# Upper-case forms used verbatim by the real chat templates.
EXTRA_FORMS: tuple[str, ...] = ("USER", "ASSISTANT", "INST", "SYS", "YES", "NO", "OK")

PUNCTUATION = tuple(".,;:?!'\"()[]{}<>-_/\\|@#$%^&*+=~`")
DIGITS = tuple("0123456789")


def word_list() -> list[str]:
    """The fixed, sorted, de-duplicated word list every tokenizer is trained on."""
    words: set[str] = set(COMMON_WORDS) | set(EXTRA_FORMS)
    for name in COCO_CATEGORIES:
        words.update(name.split())
        words.update(plural(name).split())
    words.update(w.capitalize() for w in CAPITALISED_WORDS)
    words.update(w.capitalize() for w in ("yes", "no"))
    return sorted(words)


# ---------------------------------------------------------------------------------------------------------------------
# Byte alphabet (GPT-2 / CLIP "bytes to unicode" table)
# ---------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def byte_alphabet() -> tuple[str, ...]:
    """The 256 printable characters that byte-level BPE uses for the bytes 0..255, in the GPT-2 order."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in mapping:
            mapping[b] = chr(256 + extra)
            extra += 1
    # GPT-2 / CLIP vocabularies list the printable block first, then the remapped control bytes.
    ordered = [mapping[b] for b in printable] + [mapping[b] for b in range(256) if b not in printable]
    return tuple(ordered)


# ---------------------------------------------------------------------------------------------------------------------
# BPE training
# ---------------------------------------------------------------------------------------------------------------------


def _train_bpe(
    corpus: Iterable[str],
    *,
    pre_tokenizer,
    normalizer=None,
    initial_alphabet: Iterable[str] = (),
    end_of_word_suffix: str | None = None,
) -> tuple[list[str], list[tuple[str, str]]]:
    """Train a BPE to exhaustion (every corpus word becomes one token). Returns (tokens in id order, merges)."""
    from tokenizers import Tokenizer, models, trainers

    model = models.BPE(end_of_word_suffix=end_of_word_suffix) if end_of_word_suffix else models.BPE()
    tok = Tokenizer(model)
    if normalizer is not None:
        tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizer
    trainer_kwargs = dict(
        vocab_size=1_000_000,
        min_frequency=1,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=sorted(set(initial_alphabet)),
    )
    if end_of_word_suffix:
        trainer_kwargs["end_of_word_suffix"] = end_of_word_suffix
    trainer = trainers.BpeTrainer(**trainer_kwargs)
    tok.train_from_iterator(list(corpus), trainer=trainer)
    data = json.loads(tok.to_str())
    vocab = sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1])
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in data["model"]["merges"]]
    return [t for t, _ in vocab], merges


def _merge_results(merges: list[tuple[str, str]]) -> list[str]:
    return [a + b for a, b in merges]


def _dedup(tokens: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for t in tokens:
        if t not in seen:
            seen.add(t)
            out.append(t)
    return out


@lru_cache(maxsize=None)
def _metaspace_bpe() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """SentencePiece-style pieces: every word as "▁word" and as "word"; single characters for the rest."""
    from tokenizers import pre_tokenizers

    words = word_list()
    corpus = [" ".join(f"▁{w} {w}" for w in words[i : i + 64]) for i in range(0, len(words), 64)]
    corpus.append(" ".join(PUNCTUATION + DIGITS + tuple(f"▁{c}" for c in PUNCTUATION + DIGITS)))
    alphabet = set("▁") | set("".join(words)) | set(PUNCTUATION) | set(DIGITS)
    tokens, merges = _train_bpe(corpus, pre_tokenizer=pre_tokenizers.WhitespaceSplit(), initial_alphabet=alphabet)
    return tuple(tokens), tuple(merges)


@lru_cache(maxsize=None)
def _bytelevel_bpe(regex: str | None) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """Byte-level BPE trained through the family's own pre-tokenizer (regex split + ByteLevel, or GPT-2 ByteLevel)."""
    from tokenizers import Regex, pre_tokenizers

    if regex is None:
        pre = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        pre = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    words = word_list()
    # "w w" yields both the bare form (start of text / after a newline) and the " w" (Ġw) form.
    corpus = [f"{w} {w}" for w in words]
    corpus.append(" ".join(PUNCTUATION + DIGITS))
    trained, merges = _train_bpe(corpus, pre_tokenizer=pre, initial_alphabet=byte_alphabet())
    tokens = _dedup(list(byte_alphabet()) + _merge_results(merges))
    assert set(trained) == set(tokens), "byte-level vocabulary is not alphabet + merges"
    return tuple(tokens), tuple(merges)


@lru_cache(maxsize=None)
def _clip_bpe() -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """CLIP BPE: lower-cased words with the "</w>" suffix; vocabulary = bytes, bytes+"</w>", merges (as in CLIP).

    The ``tokenizers`` trainer gives the "c</w>" symbols hash-order ids (non-deterministic tie-breaking), so each
    word-final "c</w>" is stood in for by one private-use character while training, then mapped back.
    """
    from tokenizers import Regex, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(CLIP_SPLIT_REGEX), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    alphabet = list(byte_alphabet())
    final = {c: chr(0xE000 + i) for i, c in enumerate(alphabet)}  # "c</w>" stand-ins
    back = {v: k + "</w>" for k, v in final.items()}
    words = sorted({w.lower() for w in word_list()})
    text = normalizer.normalize_str(" ".join(words + list(PUNCTUATION + DIGITS)))
    pieces = [piece for piece, _ in pre.pre_tokenize_str(text)]
    corpus_words = sorted({p[:-1] + final[p[-1]] for p in pieces if p})
    _, merges = _train_bpe(
        [" ".join(corpus_words)],
        pre_tokenizer=pre_tokenizers.WhitespaceSplit(),
        initial_alphabet=alphabet + list(final.values()),
    )

    def restore(sym: str) -> str:
        return sym[:-1] + back[sym[-1]] if sym and sym[-1] in back else sym

    merges = [(restore(a), restore(b)) for a, b in merges]
    tokens = _dedup(alphabet + [c + "</w>" for c in alphabet] + _merge_results(merges))
    return tuple(tokens), tuple(merges)


# ---------------------------------------------------------------------------------------------------------------------
# Family tokenizers
# ---------------------------------------------------------------------------------------------------------------------

QWEN2_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
LLAMA3_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
CLIP_SPLIT_REGEX = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""

BYTE_FALLBACK_TOKENS: tuple[str, ...] = tuple(f"<0x{b:02X}>" for b in range(256))


def _special(content: str, *, special: bool = True):
    from tokenizers import AddedToken

    return AddedToken(content, special=special, normalized=False, lstrip=False, rstrip=False, single_word=False)


def _add_tokens(tok, tokens: Iterable[str], *, special: bool) -> None:
    """Append tokens (in order) as added tokens; ids continue after the current vocabulary."""
    toks = [_special(t, special=special) for t in tokens]
    if toks:
        tok.add_tokens(toks, special_tokens=special)


def word_pair_pieces(vocab: dict[str, int], n: int) -> tuple[list[str], list[tuple[str, str]]]:
    """``n`` generated SentencePiece-style pieces and their merges, to grow a vocabulary to a real model's size.

    Each piece is "▁" + word + word (``("▁car", "dog") -> "▁cardog"``): a word-initial piece followed by a bare,
    alphabetic one, taken in sorted order and skipped when the result is already a token. Ranked after every
    trained merge, such a merge fires only where two words touch without a space, so the tokenization of spaced
    text (every prompt) is unchanged; every piece is a real string, so every id of the grown vocabulary decodes.
    """
    words = [w for w in word_list() if w.isalpha() and f"▁{w}" in vocab and w in vocab]
    pieces: list[str] = []
    merges: list[tuple[str, str]] = []
    seen = set(vocab)
    for a in words:
        for b in words:
            if len(pieces) == n:
                return pieces, merges
            piece = f"▁{a}{b}"
            if piece not in seen:
                seen.add(piece)
                pieces.append(piece)
                merges.append((f"▁{a}", b))
    if len(pieces) < n:
        raise ValueError(f"cannot generate {n} word-pair pieces from {len(words)} words (at most {len(pieces)})")
    return pieces, merges


def llama2_tokenizer(
    extra_special: Iterable[str] = (),
    *,
    pad_token: str | None = None,
    padding_side: str = "left",
    model_max_length: int = 4096,
    size: int | None = None,
):
    """Llama-2 / Mistral style SentencePiece BPE: <unk>=0, <s>=1, </s>=2, byte fallback <0x00>..<0xFF> = 3..258.

    ``size``: the total number of tokens (added ones included) when the model's vocabulary is that of a real
    checkpoint (e.g. 32064): the trained pieces are followed by generated word-pair pieces (`word_pair_pieces`)
    so that every id the model can emit is a token with a real string. None: the trained vocabulary only.

    The ``tokenizer.json`` pipeline is the one of the converted Llama-2 / Mistral checkpoints on the hub (the "legacy"
    SentencePiece conversion): normaliser Prepend("▁") + Replace(" ", "▁"), no pre-tokeniser, BPE with byte fallback
    and ``<unk>``, bos-prepending post-processor. ``tokenizer_class`` is ``LlamaTokenizer`` as in the real repos
    (transformers 5 loads LLaVA / LLaVA-NeXT tokenizers as ``TokenizersBackend`` straight from ``tokenizer.json``).
    """
    from tokenizers import Tokenizer, decoders, models, normalizers
    from transformers import LlamaTokenizer

    pieces, merges = _metaspace_bpe()
    vocab_list = _dedup(["<unk>", "<s>", "</s>", *BYTE_FALLBACK_TOKENS, *pieces])
    vocab = {t: i for i, t in enumerate(vocab_list)}
    merges = list(merges)
    if size is not None:
        extra_special = list(extra_special)
        n_added = len(extra_special) + (pad_token is not None)
        if size < len(vocab) + n_added:
            raise ValueError(f"size {size} is below the trained vocabulary ({len(vocab)} + {n_added} added tokens)")
        grown, grown_merges = word_pair_pieces(vocab, size - len(vocab) - n_added)
        vocab.update({t: i for i, t in enumerate(grown, start=len(vocab))})
        merges += grown_merges
    backend = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True, byte_fallback=True)
    )
    backend.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    backend.pre_tokenizer = None
    backend.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    backend.add_special_tokens([_special(t) for t in ("<unk>", "<s>", "</s>")])
    tok = LlamaTokenizer(
        vocab=vocab,
        merges=merges,
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
        padding_side=padding_side,
        model_max_length=model_max_length,
    )
    _add_tokens(tok, list(extra_special), special=True)
    if pad_token is not None:
        _add_tokens(tok, [pad_token], special=True)
        tok.pad_token = pad_token
    return tok


def gemma_tokenizer(
    *,
    extra_tokens: Iterable[str] = (),
    extra_special: Iterable[str] = (),
    padding_side: str = "right",
    model_max_length: int = 8192,
):
    """Gemma style SentencePiece BPE (``GemmaTokenizer``): <pad>=0, <eos>=1, <bos>=2, <unk>=3, <mask>=4.

    No dummy prefix (Gemma replaces spaces with "▁" but does not prepend one).
    """
    from transformers import GemmaTokenizer

    pieces, merges = _metaspace_bpe()
    head = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "[multimodal]", "<start_of_turn>", "<end_of_turn>"]
    vocab_list = _dedup([*head, *BYTE_FALLBACK_TOKENS, *pieces])
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = GemmaTokenizer(
        vocab=vocab,
        merges=list(merges),
        add_bos_token=True,
        add_eos_token=False,
        padding_side=padding_side,
        model_max_length=model_max_length,
    )
    _add_tokens(tok, head, special=True)
    _add_tokens(tok, list(extra_tokens), special=False)
    _add_tokens(tok, list(extra_special), special=True)
    return tok


def _bytelevel_vocab(regex: str | None) -> tuple[dict[str, int], list[tuple[str, str]]]:
    tokens, merges = _bytelevel_bpe(regex)
    return {t: i for i, t in enumerate(tokens)}, list(merges)


def _bytelevel_backend(regex: str | None, vocab: dict[str, int], merges, added: Iterable[tuple[str, bool]]):
    """A ``tokenizers.Tokenizer`` for byte-level BPE with ``added`` (token, special) appended in order."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers

    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(merges), fuse_unk=False, byte_fallback=False))
    if regex is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    else:
        backend.normalizer = normalizers.NFC()
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(regex), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    for token, special in added:  # one at a time, so the ids follow the given order
        if special:
            backend.add_special_tokens([_special(token)])
        else:
            backend.add_tokens([_special(token, special=False)])
    return backend


def qwen2_tokenizer(special: Iterable[str], *, eos_token: str, pad_token: str, padding_side: str = "right"):
    """Qwen2 byte-level BPE (``Qwen2Tokenizer``); ``special`` is appended in order right after the BPE vocabulary."""
    from transformers import Qwen2Tokenizer

    vocab, merges = _bytelevel_vocab(QWEN2_REGEX)
    backend = _bytelevel_backend(QWEN2_REGEX, vocab, merges, [(t, True) for t in special])
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        tokenizer_object=backend,
        unk_token=None,
        bos_token=None,
        eos_token=eos_token,
        pad_token=pad_token,
        errors="replace",
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
        padding_side=padding_side,
        model_max_length=32768,
    )


def llama3_tokenizer(extra_special: Iterable[str] = (), *, pad_token: str, padding_side: str = "right"):
    """Llama-3 byte-level BPE, saved as a plain ``tokenizer.json`` (``PreTrainedTokenizerFast`` in the real repo).

    Layout: BPE vocabulary, then the first ten Llama-3 special tokens (<|begin_of_text|>, <|end_of_text|>,
    reserved 0..3, <|start_header_id|>, <|end_header_id|>, reserved 4, <|eot_id|>), then ``extra_special``.
    The post-processor prepends <|begin_of_text|> as Llama-3's does.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _bytelevel_vocab(LLAMA3_REGEX)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    llama3_special = [
        "<|begin_of_text|>",
        "<|end_of_text|>",
        "<|reserved_special_token_0|>",
        "<|reserved_special_token_1|>",
        "<|reserved_special_token_2|>",
        "<|reserved_special_token_3|>",
        "<|start_header_id|>",
        "<|end_header_id|>",
        "<|reserved_special_token_4|>",
        "<|eot_id|>",
    ]
    backend.add_special_tokens([_special(t) for t in llama3_special])
    bos_id = backend.token_to_id("<|begin_of_text|>")
    backend.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                special_tokens=[("<|begin_of_text|>", bos_id)],
            ),
        ]
    )
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|begin_of_text|>",
        eos_token="<|end_of_text|>",
        pad_token=pad_token,
        clean_up_tokenization_spaces=False,
        padding_side=padding_side,
        model_max_length=131072,
        model_input_names=["input_ids", "attention_mask"],
    )
    _add_tokens(tok, list(extra_special), special=True)
    return tok


def gpt2_tokenizer(head_special: Iterable[str], extra: Iterable[tuple[str, bool]] = (), **kwargs):
    """GPT-2 / SmolLM2 byte-level BPE (``GPT2Tokenizer``): ``head_special`` take ids 0.. before the BPE vocabulary;
    ``extra`` = (token, special) pairs appended after it, in order."""
    from transformers import GPT2Tokenizer

    head_special = list(head_special)
    tokens, merges = _bytelevel_bpe(None)
    vocab_list = _dedup([*head_special, *tokens])
    vocab = {t: i for i, t in enumerate(vocab_list)}
    backend = _bytelevel_backend(None, vocab, merges, [*((t, True) for t in head_special), *extra])
    return GPT2Tokenizer(vocab=vocab, merges=list(merges), tokenizer_object=backend, add_prefix_space=False, **kwargs)


def clip_tokenizer(*, pad_token: str = "!", model_max_length: int = 16):
    """CLIP BPE (``CLIPTokenizer``) as OWL-ViT uses it: pad "!" (id 0), bos/eos the two last ids."""
    from transformers import CLIPTokenizer

    tokens, merges = _clip_bpe()
    vocab_list = _dedup([*tokens, "<|startoftext|>", "<|endoftext|>"])
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = CLIPTokenizer(
        vocab=vocab,
        merges=list(merges),
        unk_token="<|endoftext|>",
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        pad_token=pad_token,
        model_max_length=model_max_length,
        errors="replace",
    )
    _add_tokens(tok, ["<|startoftext|>", "<|endoftext|>"], special=True)
    return tok


def vocab_size_for(tok, multiple: int = 64) -> int:
    """A model vocab_size >= len(tokenizer), padded up to ``multiple`` (as the real checkpoints pad theirs)."""
    n = len(tok)
    return ((n + multiple - 1) // multiple) * multiple
