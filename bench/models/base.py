"""The model-adapter protocol: batched ``generate`` and ``score`` over (image, prompt) requests.

Requests carry the loaded image and a stable ``key`` for it, so an adapter can reuse the work
shared by every request about one image (its vision features, the cached keys/values of the
shared prompt prefix). Request kinds map to the adapter methods that answer them through
`register_handler`, so an analysis can add a kind of its own without the runner knowing it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class ImageInput:
    key: str          # stable identity of the image (its path)
    image: Any        # PIL.Image.Image, RGB
    variant: str = ""  # a perturbed version of it (e.g. "occlusion:3"): never served the clean image's caches

    @property
    def cache_key(self) -> str:
        """What caches of shared work (prefix keys/values, embeddings) are keyed by: the image AND its variant."""
        return f"{self.key}#{self.variant}" if self.variant else self.key


@dataclass(frozen=True)
class GenerateRequest:
    image: ImageInput
    prompt: str                 # the user's text; the adapter applies the model's chat template
    max_new_tokens: int = 128   # greedy decoding


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probabilities of what follows the prompt.

    ``continuations``: log P(continuation | image, prompt), summed over the continuation's tokens.
    ``continuation_ids``: the same for continuations given as token ids, answered in order.
    ``first_token_words``: for each name, log of the summed probability of every vocabulary token
    that spells one of its words (case-insensitive, with or without a leading space) as the FIRST
    answer token, e.g. {"yes": ("yes",), "no": ("no",)}.
    """

    image: ImageInput
    prompt: str
    continuations: tuple[str, ...] = ()
    first_token_words: tuple[tuple[str, tuple[str, ...]], ...] = ()
    continuation_ids: tuple[tuple[int, ...], ...] = ()   # continuations given as token ids (no re-tokenising)


@dataclass(frozen=True)
class DetectRequest:
    """The detector's highest confidence for each query on the image, read from the model's OWN vision
    embedding (grounded models only)."""

    image: ImageInput
    queries: tuple[str, ...]


@dataclass(frozen=True)
class DetectResult:
    max_scores: dict[str, float]


@dataclass(frozen=True)
class GenerateResult:
    text: str
    n_tokens: int
    finished: bool      # stopped on an end-of-sequence token (False: hit max_new_tokens)
    token_ids: tuple[int, ...] = ()          # the generated tokens (end-of-sequence excluded), so an output token
    token_logprobs: tuple[float, ...] = ()   # is explained by id and position; and each one's log-probability


@dataclass(frozen=True)
class ScoreResult:
    continuations: dict[str, float] = field(default_factory=dict)
    first_token_words: dict[str, float] = field(default_factory=dict)
    continuation_ids: tuple[float, ...] = ()     # log P of each of the request's continuation_ids, in order


class ModelAdapter(ABC):
    """A loaded model. One instance per worker; ``generate``/``score`` take whole lists and batch them.

    ``progress``, when set, is called as ``progress(done, total)`` while a call is running: the requests (or rows) of
    that call finished so far, so a long batch of a large model shows signs of life before its chunk is done."""

    progress: Callable[[int, int], None] | None = None

    @abstractmethod
    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]: ...

    @abstractmethod
    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]: ...

    def detect_scores(self, requests: list[DetectRequest]) -> list[DetectResult]:
        from ..errors import ConfigError

        raise ConfigError(f"{type(self).__name__} has no detector reading its own vision embedding "
                          "(use a grounded model, or an external detector)")

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """Manifest information: source, revision or content hash, dtype, image backend, template."""

    def format_prompt(self, prompt: str) -> str:
        """The exact text the model sees for ``prompt`` (chat template applied), for the manifest."""
        return prompt

    def close(self) -> None:
        pass


_HANDLERS: dict[type, Callable[[ModelAdapter, list], list]] = {}


def register_handler(kind: type, handler: Callable[[ModelAdapter, list], list]) -> None:
    """Say how requests of ``kind`` are answered (``handler(adapter, requests) -> answers``); the analyses
    (saliency, bias) register their request kinds here, so the runner needs to know none of them."""
    if kind in _HANDLERS and _HANDLERS[kind] is not handler:
        raise ValueError(f"duplicate request handler for {kind.__name__}")
    _HANDLERS[kind] = handler


def handle_requests(adapter: ModelAdapter, kind: type, requests: list) -> list:
    handler = _HANDLERS.get(kind)
    if handler is None:
        raise TypeError(f"no handler for requests of kind {kind.__name__}")
    return handler(adapter, requests)


register_handler(GenerateRequest, lambda adapter, requests: adapter.generate(requests))
register_handler(ScoreRequest, lambda adapter, requests: adapter.score(requests))
register_handler(DetectRequest, lambda adapter, requests: adapter.detect_scores(requests))


@dataclass(frozen=True)
class ModelSpec:
    """What ``--model`` and ``--model-args`` name: an adapter, its target, and its arguments."""

    adapter: str
    target: str | None
    args: dict[str, str]

    @property
    def display(self) -> str:
        return f"{self.adapter}:{self.target}" if self.target else self.adapter


class ModelFactory(ABC):
    """Registered under a name; knows the model's identity without loading it, and loads it."""

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    @classmethod
    def summary(cls, name: str) -> str:
        """One line for `bench models`."""
        return (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""

    def prepare(self) -> None:
        """Make the model available locally (e.g. build a tiny model); called before `identity` in real runs."""

    def pin(self, effective: dict[str, Any]) -> None:
        """Load exactly what a run recorded (the hub commit it loaded first), so a resume gets the same weights."""
        self.pinned = dict(effective)

    @abstractmethod
    def identity(self) -> dict[str, Any]:
        """Cheap, load-free identity (hub revision or a hash of config + weight index) for the resume key."""

    @abstractmethod
    def load(self, device: str, batch_size: int) -> ModelAdapter: ...

    def worker_devices_allowed(self) -> bool:
        """False when one worker spans several devices (device_map=auto)."""
        return True

    def capabilities(self) -> set[str]:
        """The request kinds its adapter answers: generate and score; "detect" for grounded models."""
        return {"generate", "score"}
