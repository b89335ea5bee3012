"""The torch side of the ``hf`` adapter: loading, batching, scoring and greedy decoding.

Two ways to run a batch:
- generic (every architecture): the processor encodes (image, prompt) pairs; scoring pads on the
  right and reads each row's logits at its own last token, so padding never moves positions;
  generation pads on the left and lets ``generate`` derive positions from the attention mask.
- shared prefix (architectures in `PROFILES` with ``prefix_cache``): the requests about one image
  share the token prefix that holds the image; it runs once (vision tower + prefill) and its cached
  keys/values serve every question about that image, whose remaining tokens run as one batch with
  explicit positions. Greedy decoding continues from there with per-row positions, so rows of
  different lengths stay exact (padding sits in the middle of the cache, masked out).
  Where those tokens go (packed row and tree mask, or padded batch) is laid out in `packing`; this
  module only runs the model on those layouts.
On CUDA out-of-memory a batch is halved and retried.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..errors import ConfigError
from .base import GenerateRequest, GenerateResult, ModelAdapter, ScoreRequest, ScoreResult
from ._packing import (PackedRow, append_continuations, expand_cache, grow_mask, needed, pack_after_prefix,
                      pad_after_prefix, row_scores, tree_mask)

log = logging.getLogger(__name__)

SEQUENCE_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")


@dataclass(frozen=True)
class ArchProfile:
    """What the adapter may assume about an architecture (unknown ones get the safe defaults)."""

    prefix_cache: bool = False      # 1-D positions and the image inside the shared prompt prefix
    nested_images: bool = False     # the processor wants one list of images per text
    appended_token_type: int = 0    # token_type_ids of tokens appended after the prompt


PROFILES = {
    "llava": ArchProfile(prefix_cache=True),
    "llava_next": ArchProfile(prefix_cache=True),
    "idefics3": ArchProfile(prefix_cache=True, nested_images=True),
    "smolvlm": ArchProfile(prefix_cache=True, nested_images=True),
    "qwen2_vl": ArchProfile(),       # 3-D (m-RoPE) positions: generic path
    "qwen2_5_vl": ArchProfile(),
    "paligemma": ArchProfile(appended_token_type=1),  # prefix-LM attention: the image attends to the prompt
}

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class _Row:
    """One sequence to run: an image, the templated prompt, and optional continuation token ids."""

    request: int
    image: Any
    key: str
    text: str
    continuation: tuple[int, ...] = ()


class HFAdapter(ModelAdapter):
    def __init__(self, source: str, args: dict[str, str], *, device: str, batch_size: int, identity: dict[str, Any]):
        from transformers import AutoModelForImageTextToText

        from ._hf_processor import load_processor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()   # the run has its own progress bar

        self.source = source
        self.identity = identity
        self.device = torch.device(device)
        self.batch_size = max(1, batch_size)
        self.device_map = args.get("device_map")
        dtype_name = args.get("dtype") or ("bfloat16" if self.device.type == "cuda" else "float32")
        revision = args.get("revision")
        backend = args.get("image_backend", "pil")
        try:
            self.processor = load_processor(source, revision=revision, backend=backend)
            kwargs: dict[str, Any] = {"revision": revision, "dtype": "auto" if dtype_name == "auto" else DTYPES[dtype_name]}
            if args.get("attn_implementation"):
                kwargs["attn_implementation"] = args["attn_implementation"]
            if self.device_map:
                kwargs["device_map"] = self.device_map
            self.model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
        except (OSError, ValueError, ImportError) as exc:
            raise ConfigError(f"cannot load model {source!r}: {str(exc).strip().splitlines()[0]}") from None
        if not self.device_map:
            self.model.to(self.device)
        else:
            self.device = next(self.model.parameters()).device
        self._attach(args, requested_backend=backend)
        self.commit = None if Path(source).expanduser().is_dir() else _loaded_commit(source, revision, self.model)

    @classmethod
    def from_objects(cls, model, processor, *, source: str, identity: dict[str, Any], batch_size: int,
                     args: dict[str, str] | None = None) -> "HFAdapter":
        """An adapter over a model and processor already in memory (``bench.evaluate``): nothing is loaded, copied
        or moved. The model runs where its parameters are (inputs go to the first one's device), in eval mode: the
        caller restores its mode afterwards. ``args``: the ``prefix_cache`` keys of `HFArgs` (nothing to load)."""
        self = cls.__new__(cls)
        args = dict(args or {})
        self.source = source
        self.identity = identity
        self.device = next(model.parameters()).device
        self.batch_size = max(1, batch_size)
        self.device_map = args.get("device_map")
        self.model, self.processor = model, processor
        self._attach(args, requested_backend=None)
        self.commit = None      # weights in memory (perhaps trained since loading): no hub commit names them
        return self

    def _attach(self, args: dict[str, str], requested_backend: str | None) -> None:
        """Everything after loading, on ``self.model`` and ``self.processor``: eval mode, tokenizer, architecture
        profile, caches. ``requested_backend``: the image backend asked for (a warning when the processor lacks it)."""
        from transformers.image_processing_backends import PilBackend

        self.model.eval()
        self.tokenizer = self.processor.tokenizer
        image_processor = getattr(self.processor, "image_processor", None)
        self.image_backend = "pil" if isinstance(image_processor, PilBackend) else type(image_processor).__name__
        if requested_backend == "pil" and self.image_backend != "pil":
            log.warning("image processor %s has no PIL backend; using it as is", type(image_processor).__name__)
        self.model_type = self.model.config.model_type
        self.profile = PROFILES.get(self.model_type, ArchProfile())
        self.use_prefix_cache = self.profile.prefix_cache and args.get("prefix_cache", "auto") != "off"
        self.prefix_cache_size = int(args.get("prefix_cache_size", 8))
        self._prefixes: OrderedDict[str, tuple[tuple[int, ...], Any]] = OrderedDict()
        self.image_token_id = _image_token_id(self.model.config)
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else min(self.eos_ids)
        import inspect

        self.keeps_logits = "logits_to_keep" in inspect.signature(self.model.forward).parameters
        # With these attention implementations a custom 4-D mask is honoured, so the questions about one image
        # run packed into ONE sequence after the shared prefix (see _packed_forward); otherwise as a batch.
        attn = getattr(self.model.config, "_attn_implementation", None) or "sdpa"
        self.mask_kind = {"sdpa": "bool", "eager": "float"}.get(attn)
        self._vocab_strings: list[str] | None = None
        self._word_ids: dict[str, torch.Tensor] = {}   # word list -> token ids, found once per adapter
        self.word_tokens: dict[str, list[str]] = {}
        self.prefix_passes = 0   # shared-prefix forward passes run (one per image group)
        self.oom_retries = 0     # batches retried smaller after a CUDA out-of-memory error
        self._description: dict[str, Any] | None = None

    # -- description ------------------------------------------------------------------------------
    def prepare_words(self, word_sets: Sequence[tuple[tuple[str, tuple[str, ...]], ...]]) -> None:
        """Find the first-token ids of every word list the tasks will score, now (at load), and check that the
        lists of one question (yes vs no) share no token: a shared token would count for both answers."""
        for word_set in word_sets:
            ids = {name: set(self._word_token_ids(words).tolist()) for name, words in word_set}
            names = list(ids)
            for i, a in enumerate(names):
                for b in names[i + 1:]:
                    shared = ids[a] & ids[b]
                    if shared:
                        spelled = ", ".join(repr(self.tokenizer.decode([t])) for t in sorted(shared))
                        raise ConfigError(f"first-token words of {a!r} and {b!r} share the token(s) {spelled} in the "
                                          f"tokenizer of {self.source}; give word lists that no token spells both of")

    def prefix_path(self) -> str:
        """How the questions about one image run: after a shared prefix, packed in one row (tree mask) or as a
        batch on views of its cache; or each with its own full prompt (generic)."""
        if not self.use_prefix_cache:
            return "generic"
        return f"shared prefix, packed ({self.mask_kind} mask)" if self.mask_kind else "shared prefix, batched"

    def describe(self) -> dict[str, Any]:
        """A snapshot taken once, at load (after `prepare_words`): what the model is and how it runs."""
        if self._description is None:
            self._description = self._describe()
        return self._description

    def _describe(self) -> dict[str, Any]:
        import transformers

        return {
            "adapter": "hf",
            "source": self.source,
            "identity": self.identity,
            "class": type(self.model).__name__,
            "model_type": self.model_type,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""),
            "device": str(self.device),
            "device_map": self.device_map,
            "attn_implementation": getattr(self.model.config, "_attn_implementation", None),
            "image_processor": type(getattr(self.processor, "image_processor", None)).__name__,
            "image_backend": self.image_backend,
            "chat_template": getattr(self.processor, "chat_template", None),
            "prefix_cache": self.use_prefix_cache,
            "prefix_path": self.prefix_path(),
            "batch_size": self.batch_size,
            "parameters": sum(p.numel() for p in self.model.parameters()),
            "commit": self.commit,
            "decoding": {"do_sample": False, "num_beams": 1, "eos_token_ids": sorted(self.eos_ids)},
            "first_token_words": {k: list(v) for k, v in sorted(self.word_tokens.items())},
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        }

    def format_prompt(self, prompt: str) -> str:
        if getattr(self.processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
            return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return prompt  # no chat template (e.g. PaliGemma): the processor adds the image tokens itself

    # -- encoding -----------------------------------------------------------------------------------
    def _encode(self, images: Sequence[Any], texts: Sequence[str], side: str):
        self.tokenizer.padding_side = side
        batch_images = [[im] for im in images] if self.profile.nested_images else list(images)
        enc = self.processor(images=batch_images, text=list(texts), return_tensors="pt", padding=True)
        return {k: v for k, v in enc.items() if v is not None and k != "labels"}  # PaliGemma adds labels

    def _to_device(self, enc: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for k, v in enc.items():
            if isinstance(v, torch.Tensor):
                v = v.to(self.device)
                if v.is_floating_point():
                    v = v.to(self.model.dtype)
            out[k] = v
        return out

    def _continuation_ids(self, text: str, continuation: str) -> tuple[int, ...]:
        prompt_ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        full_ids = self.tokenizer(text + continuation, add_special_tokens=False)["input_ids"]
        if full_ids[: len(prompt_ids)] == prompt_ids and len(full_ids) > len(prompt_ids):
            return tuple(full_ids[len(prompt_ids):])
        return tuple(self.tokenizer(continuation, add_special_tokens=False)["input_ids"])

    # -- out-of-memory handling -------------------------------------------------------------------
    def _in_batches(self, items: list, run: Callable[[list], list]) -> list:
        """``run`` over ``items`` in batches of ``batch_size``; on CUDA out-of-memory the caches are dropped and
        the batch retried at half the size, for the rest of THIS call only (the next call starts at full size)."""
        out: list = []
        start, size = 0, self.batch_size
        while start < len(items):
            chunk = items[start:start + size]
            try:
                out.extend(run(chunk))
            except torch.OutOfMemoryError:
                self.free_memory()
                if size == 1:
                    raise
                size = max(1, size // 2)
                self.oom_retries += 1
                log.warning("CUDA out of memory: batch retried at size %d", size)
                continue
            start += len(chunk)
        return out

    def _retry_once(self, run: Callable[[], Any]) -> Any:
        """A single pass (e.g. an image's prefix) that cannot be split: on out-of-memory, free the caches and try
        once more; a second failure propagates (its samples become error rows, retried on resume)."""
        try:
            return run()
        except torch.OutOfMemoryError:
            self.free_memory()
            self.oom_retries += 1
            return run()

    def free_memory(self) -> None:
        """Drop every cached prefix (and, in subclasses, cached embeddings) and return the memory to CUDA."""
        self._prefixes.clear()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # -- scoring ----------------------------------------------------------------------------------
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        rows: list[_Row] = []
        for i, req in enumerate(requests):
            text = self.format_prompt(req.prompt)
            key = req.image.cache_key
            rows.append(_Row(i, req.image.image, key, text))
            for cont in req.continuations:
                rows.append(_Row(i, req.image.image, key, text, self._continuation_ids(text, cont)))
            for ids in req.continuation_ids:
                rows.append(_Row(i, req.image.image, key, text, tuple(ids)))
        outputs = self._run_rows(rows, self._score_rows_generic, self._score_rows_prefix)
        per_request: list[list[dict[str, Any]]] = [[] for _ in requests]
        for row, out in zip(rows, outputs):
            per_request[row.request].append(out)
        results = []
        for req, mine in zip(requests, per_request):
            first = mine[0]["first"]
            words = {name: float(torch.logsumexp(first[self._word_token_ids(w)], 0)) for name, w in req.first_token_words}
            n = len(req.continuations)
            conts = {c: out["continuation"] for c, out in zip(req.continuations, mine[1:1 + n])}
            by_ids = tuple(out["continuation"] for out in mine[1 + n:])
            results.append(ScoreResult(continuations=conts, first_token_words=words, continuation_ids=by_ids))
        return results

    def _run_rows(self, rows: list[_Row], generic: Callable, prefix: Callable) -> list:
        """Runs rows grouped by image through the shared-prefix path where possible, in request order; reports
        the rows done after each batch (generic) or image (shared prefix) to ``self.progress``."""
        out: list = [None] * len(rows)
        done = 0

        def report(n: int) -> None:
            nonlocal done
            done += n
            if self.progress is not None:
                self.progress(done, len(rows))

        if not self.use_prefix_cache:
            def run(idx: list[int]) -> list:
                results = generic([rows[i] for i in idx])
                report(len(idx))
                return results

            return self._in_batches(list(range(len(rows))), run)
        groups: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            groups.setdefault(row.key, []).append(i)
        for indices in groups.values():
            group_rows = [rows[i] for i in indices]
            results = prefix(group_rows)
            if results is None:  # this group cannot share a prefix: run it the generic way
                results = self._in_batches(group_rows, generic)
            for i, result in zip(indices, results):
                out[i] = result
            report(len(indices))
        return out

    @torch.inference_mode()
    def _score_rows_generic(self, rows: list[_Row]) -> list[dict[str, Any]]:
        enc = self._encode([r.image for r in rows], [r.text for r in rows], "right")
        lengths = enc["attention_mask"].sum(1).tolist()
        if any(r.continuation for r in rows):
            enc = self._append(enc, lengths, [r.continuation for r in rows])
        logits = self._logits(self._to_device(enc), [needed(n - 1, r.continuation) for n, r in zip(lengths, rows)])
        return [row_scores(logits[b], row.continuation) for b, row in enumerate(rows)]

    def _logits(self, inputs: dict[str, Any], positions: list[list[int]], **kwargs) -> torch.Tensor:
        """Float logits [batch, k, vocab] at each row's ``positions`` (padded by repeating the last one).

        Only those positions go through the output head, which matters: the head is a large share of
        a forward pass's cost for long prompts."""
        width = max(len(p) for p in positions)
        keep = torch.tensor([p + [p[-1]] * (width - len(p)) for p in positions], device=self.device)
        if self.keeps_logits:
            return self.model(**inputs, logits_to_keep=keep, **kwargs).logits.float()
        logits = self.model(**inputs, **kwargs).logits
        return logits.gather(1, keep[..., None].expand(-1, -1, logits.shape[-1])).float()

    def _append(self, enc: dict[str, Any], lengths: list[int], continuations: list[tuple[int, ...]]) -> dict[str, Any]:
        """Re-lay the sequence tensors of a right-padded batch with each row's continuation appended."""
        return append_continuations(enc, lengths, continuations, keys=SEQUENCE_KEYS,
                                    fill={"input_ids": self.pad_id, "attention_mask": 0},
                                    append={"attention_mask": 1, "token_type_ids": self.profile.appended_token_type})

    # -- shared prefix -------------------------------------------------------------------------------
    def _group_ids(self, image: Any, texts: list[str]) -> tuple[list[list[int]], dict[str, Any]]:
        """Prompt token ids of several texts about one image, and the image's processed inputs.

        The image is processed once: the part of each text after its last image placeholder is
        tokenized on its own and appended to the first text's image part, after checking on the
        first text that this reproduces the processor's own tokens exactly (tokenizers split text at
        special tokens, so it does wherever the placeholder is one). Otherwise every text goes
        through the processor with the image."""
        enc = self._encode([image], [texts[0]], "right")
        first = enc["input_ids"][0, : int(enc["attention_mask"][0].sum())].tolist()
        image_inputs = {k: v for k, v in enc.items() if k not in SEQUENCE_KEYS and isinstance(v, torch.Tensor)}
        if len(texts) == 1:
            return [first], image_inputs
        marker = getattr(self.processor, "image_token", None) or "<image>"
        cut = [t.rfind(marker) + len(marker) if marker in t else -1 for t in texts]
        if min(cut) >= 0 and all(t[:c] == texts[0][:cut[0]] for t, c in zip(texts, cut)):
            tails = [self.tokenizer(t[c:], add_special_tokens=False)["input_ids"] for t, c in zip(texts, cut)]
            head = first[: len(first) - len(tails[0])]
            if head + tails[0] == first:
                return [head + tail for tail in tails], image_inputs
        enc = self._encode([image] * len(texts), texts, "right")
        lengths = enc["attention_mask"].sum(1).tolist()
        return [enc["input_ids"][b, :n].tolist() for b, n in enumerate(lengths)], image_inputs

    def _vision_inputs(self, key: str, image: Any, processed: dict[str, Any]) -> dict[str, Any]:
        """The model's image inputs for one image: the processor's (pixel values etc.). The grounded
        adapter replaces them with projected OWL-ViT features."""
        return processed

    @torch.inference_mode()
    def _prefix(self, rows: list[_Row]):
        """Token ids of a group of rows about one image, and the cache of their shared prefix: the
        tokens up to the image's last token, computed once per image (kept for the next
        ``prefix_cache_size`` images, so other tasks asking about the same image reuse it).
        None if the rows cannot share a prefix."""
        ids, image_inputs = self._group_ids(rows[0].image, [r.text for r in rows])
        lengths = [len(x) for x in ids]
        full = [x + list(r.continuation) for x, r in zip(ids, rows)]
        image_positions = [p for p, t in enumerate(full[0]) if t == self.image_token_id]
        if self.image_token_id is None or not image_positions:
            return None
        common = image_positions[-1] + 1
        if common > min(lengths) - 1 or any(f[:common] != full[0][:common] for f in full[1:]):
            return None   # every row keeps its last prompt token after the prefix
        key = rows[0].key
        prefix_ids = tuple(full[0][:common])
        cached = self._prefixes.get(key)
        if cached is not None and cached[0] == prefix_ids:
            self._prefixes.move_to_end(key)
            cache = cached[1]
        else:
            tensor = torch.tensor([prefix_ids])
            inputs = self._to_device({"input_ids": tensor, "attention_mask": torch.ones_like(tensor),
                                      **self._vision_inputs(key, rows[0].image, image_inputs)})
            extra = {"logits_to_keep": 1} if self.keeps_logits else {}
            cache = self.model(**inputs, use_cache=True, **extra).cache   # no logits needed: only the cache
            self.prefix_passes += 1
            if self.prefix_cache_size > 0:
                self._prefixes[key] = (prefix_ids, cache)
                while len(self._prefixes) > self.prefix_cache_size:
                    self._prefixes.popitem(last=False)
        return cache, common, lengths, [f[common:] for f in full]

    def _suffix_forward(self, cache, common: int, suffixes: list[list[int]], positions: list[list[int]]):
        """Run ``suffixes`` after the cached prefix; logits [n, k, vocab] at each suffix's ``positions``
        (suffix-relative). Returns (logits, state) where ``state`` continues greedy decoding."""
        if self.mask_kind is not None:
            return self._packed_forward(cache, common, suffixes, positions)
        return self._batched_forward(cache, common, suffixes, positions)

    def _packed_forward(self, cache, common: int, suffixes: list[list[int]], positions: list[list[int]]):
        """All suffixes in ONE row after the prefix ("tree attention"): each token sees the prefix and the
        earlier tokens of its own suffix, with the positions it would have had alone. The prefix's keys and
        values are read once instead of being copied for every question."""
        layout = pack_after_prefix(common, [len(s) for s in suffixes], positions)
        view = expand_cache(cache, 1)
        logits = self._packed_logits(layout, torch.tensor([sum(suffixes, [])]), view)
        return layout.split(logits), {"kind": "packed", "cache": view, "layout": layout}

    def _packed_logits(self, layout: PackedRow, input_ids: torch.Tensor, cache) -> torch.Tensor:
        """One packed row through the model: logits [len(layout.keep), vocab] of the kept tokens."""
        mask = tree_mask(layout.owner, layout.query_columns, device=self.device,
                         dtype=None if self.mask_kind == "bool" else self.model.dtype)
        inputs = {"input_ids": input_ids.to(self.device), "attention_mask": mask,
                  "position_ids": layout.position_ids[None].to(self.device)}
        return self._logits(inputs, [layout.keep], cache=cache, use_cache=True)[0]

    def _batched_forward(self, cache, common: int, suffixes: list[list[int]], positions: list[list[int]]):
        """Suffixes as a right-padded batch on views of the prefix cache (for attention kernels that
        take no custom mask)."""
        batch = pad_after_prefix(common, suffixes, self.pad_id)
        batch_cache = expand_cache(cache, len(suffixes))
        mask = batch.attention_mask.to(self.device)
        inputs = {"input_ids": batch.input_ids.to(self.device), "attention_mask": mask,
                  "position_ids": batch.position_ids.to(self.device)}
        logits = self._logits(inputs, positions, cache=batch_cache, use_cache=True)
        return logits, {"kind": "batched", "cache": batch_cache, "mask": mask, "next_position": batch.next_position}

    def _decode_step(self, state: dict[str, Any], tokens: torch.Tensor) -> torch.Tensor:
        """Append one token per sequence; logits [n, vocab] for the next one."""
        if state["kind"] == "packed":
            layout = state["layout"] = state["layout"].step()
            return self._packed_logits(layout, tokens[None], state["cache"])
        place = state["next_position"]
        mask = state["mask"] = grow_mask(state["mask"])
        inputs = {"input_ids": tokens[:, None].to(self.device), "attention_mask": mask, "position_ids": place[:, None].to(self.device)}
        state["next_position"] = place + 1
        return self._logits(inputs, [[0]] * len(tokens), cache=state["cache"], use_cache=True)[:, 0]

    @torch.inference_mode()
    def _score_rows_prefix(self, rows: list[_Row]):
        prepared = self._retry_once(lambda: self._prefix(rows))
        if prepared is None:
            return None
        cache, common, lengths, suffixes = prepared

        def run(indices: list[int]) -> list[dict[str, Any]]:
            positions = [needed(lengths[i] - common - 1, rows[i].continuation) for i in indices]
            logits, _ = self._suffix_forward(cache, common, [suffixes[i] for i in indices], positions)
            return [row_scores(logits[j], rows[i].continuation) for j, i in enumerate(indices)]

        return self._in_batches(list(range(len(rows))), run)

    # -- first-token word sets ----------------------------------------------------------------------
    def _word_token_ids(self, words: Sequence[str]) -> torch.Tensor:
        """Every vocabulary token that spells one of ``words`` (case-insensitive, leading space or not)."""
        key = ",".join(words)
        if key in self._word_ids:
            return self._word_ids[key]
        if self._vocab_strings is None:
            self._vocab_strings = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        wanted = {w.strip().lower() for w in words}
        limit = self.model.get_output_embeddings().weight.shape[0]
        ids = [i for i, s in enumerate(self._vocab_strings) if i < limit and s.strip().lower() in wanted and s.strip()]
        if not ids:  # no single token spells the word: use the first token of its spellings
            spellings = {v for w in words for v in (w, w.capitalize(), " " + w, " " + w.capitalize())}
            ids = sorted({self.tokenizer(v, add_special_tokens=False)["input_ids"][0] for v in spellings})
        self.word_tokens[key] = [self._vocab_strings[i] for i in ids]
        self._word_ids[key] = torch.tensor(ids)
        return self._word_ids[key]

    # -- explanation --------------------------------------------------------------------------------
    def explain_seam(self):
        """The saliency seam: gradients and variants for LLaVA-1.5-style models, perturbations for the others."""
        from ._hf_explain import model_explain_seam

        return model_explain_seam(self)

    # -- generation ---------------------------------------------------------------------------------
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        results: list[GenerateResult | None] = [None] * len(requests)
        by_length: dict[int, list[int]] = {}
        for i, req in enumerate(requests):
            by_length.setdefault(req.max_new_tokens, []).append(i)
        for max_new, indices in by_length.items():
            rows = [_Row(i, requests[i].image.image, requests[i].image.cache_key, self.format_prompt(requests[i].prompt))
                    for i in indices]
            outs = self._run_rows(rows, lambda rs, m=max_new: self._generate_generic(rs, m),
                                  lambda rs, m=max_new: self._generate_prefix(rs, m))
            for row, out in zip(rows, outs):
                results[row.request] = out
        return results  # type: ignore[return-value]

    def _result(self, tokens: list[int], logprobs: list[float]) -> GenerateResult:
        """The text up to the first end-of-sequence token, with the ids and log-probabilities of its tokens."""
        finished = False
        kept = []
        for t in tokens:
            if t in self.eos_ids:
                finished = True
                break
            kept.append(t)
        return GenerateResult(self.tokenizer.decode(kept, skip_special_tokens=True), len(kept), finished,
                              tuple(kept), tuple(float(v) for v in logprobs[: len(kept)]))

    @torch.inference_mode()
    def _generate_generic(self, rows: list[_Row], max_new: int) -> list[GenerateResult]:
        from transformers import GenerationConfig

        enc = self._to_device(self._encode([r.image for r in rows], [r.text for r in rows], "left"))
        config = GenerationConfig(max_new_tokens=max_new, do_sample=False, num_beams=1,
                                  eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id,
                                  output_scores=True, return_dict_in_generate=True)
        out = self.model.generate(**enc, generation_config=config)
        new = out.sequences[:, enc["input_ids"].shape[1]:]
        steps = torch.stack([torch.log_softmax(step.float(), -1) for step in out.scores], 1)    # [B, steps, vocab]
        chosen = steps.gather(2, new[:, : steps.shape[1], None]).squeeze(2)
        return [self._result(tokens, logps) for tokens, logps in zip(new.tolist(), chosen.tolist())]

    @torch.inference_mode()
    def _generate_prefix(self, rows: list[_Row], max_new: int):
        prepared = self._retry_once(lambda: self._prefix(rows))
        if prepared is None:
            return None
        cache, common, lengths, suffixes = prepared

        def run(indices: list[int]) -> list[GenerateResult]:
            b = len(indices)
            last = [[len(suffixes[i]) - 1] for i in indices]
            logits, state = self._suffix_forward(cache, common, [suffixes[i] for i in indices], last)
            step_logits = logits[:, 0]
            tokens: list[list[int]] = [[] for _ in range(b)]
            logprobs: list[list[float]] = [[] for _ in range(b)]
            done = [False] * b
            for step in range(max_new):
                next_tokens = step_logits.argmax(-1)
                chosen = torch.log_softmax(step_logits.float(), -1).gather(1, next_tokens[:, None])[:, 0].cpu().tolist()
                next_tokens = next_tokens.cpu()
                for j, t in enumerate(next_tokens.tolist()):
                    if not done[j]:
                        tokens[j].append(t)
                        logprobs[j].append(chosen[j])
                        done[j] = t in self.eos_ids
                if all(done) or step == max_new - 1:
                    break
                step_logits = self._decode_step(state, next_tokens)
            return [self._result(t, lp) for t, lp in zip(tokens, logprobs)]

        return self._in_batches(list(range(len(rows))), run)


def _loaded_commit(repo: str, revision: str | None, model) -> str | None:
    """The hub commit a model was loaded from: its snapshot folder in the local cache, else what transformers
    recorded on the config."""
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "config.json", revision=revision)
        if isinstance(cached, str):
            return Path(cached).parent.name
    except Exception:  # noqa: BLE001 - an old huggingface_hub or an odd cache: fall back to the config
        pass
    return getattr(model.config, "_commit_hash", None)


def _image_token_id(config) -> int | None:
    for name in ("image_token_id", "image_token_index"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return None


def _eos_ids(model, tokenizer) -> set[int]:
    ids: set[int] = set()
    value = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(value, int):
        ids.add(value)
    elif isinstance(value, (list, tuple)):
        ids.update(int(v) for v in value)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return ids
