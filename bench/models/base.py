"""The model-adapter protocol: batched ``generate`` and ``score`` over (image, prompt) requests.

Requests carry the loaded image and a stable ``key`` for it, so an adapter can reuse the work
shared by every request about one image (its vision features, the cached keys/values of the
shared prompt prefix). Adapters that can expose their vision embedding for gradients implement
`EmbeddingAccess` as well.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class ImageInput:
    key: str          # stable identity of the image (its path): the cache key for shared work
    image: Any        # PIL.Image.Image, RGB


@dataclass(frozen=True)
class GenerateRequest:
    image: ImageInput
    prompt: str                 # the user's text; the adapter applies the model's chat template
    max_new_tokens: int = 128   # greedy decoding


@dataclass(frozen=True)
class ScoreRequest:
    """Log-probabilities of what follows the prompt.

    ``continuations``: log P(continuation | image, prompt), summed over the continuation's tokens.
    ``first_token_words``: for each name, log of the summed probability of every vocabulary token
    that spells one of its words (case-insensitive, with or without a leading space) as the FIRST
    answer token, e.g. {"yes": ("yes",), "no": ("no",)}.
    """

    image: ImageInput
    prompt: str
    continuations: tuple[str, ...] = ()
    first_token_words: tuple[tuple[str, tuple[str, ...]], ...] = ()


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


@dataclass(frozen=True)
class ScoreResult:
    continuations: dict[str, float] = field(default_factory=dict)
    first_token_words: dict[str, float] = field(default_factory=dict)


class ModelAdapter(ABC):
    """A loaded model. One instance per worker; ``generate``/``score`` take whole lists and batch them."""

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


@runtime_checkable
class EmbeddingAccess(Protocol):
    """Adapters whose vision embedding can be read, perturbed and differentiated (saliency, bias probes)."""

    def vision_embedding(self, images: list[ImageInput]) -> Any: ...

    def logits_from_embedding(self, embedding: Any, prompts: list[str]) -> Any: ...


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
