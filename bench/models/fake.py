"""``fake-harness``: NOT a model. Deterministic answers derived from a hash of (image, prompt), for testing and
benchmarking the harness itself: the runner, its resume, its fault handling and its scaling.

``--model-args`` keys (all optional):
  seconds_per_sample  time each request takes (sleep), default 0
  cost_tail           Pareto shape of a per-image cost multiplier (heavy-tailed chunk costs), default none
  cost_seed           a text mixed into the cost hash: another draw of the same costs' distribution, default ""
  fail_on, fail_while requests about images whose path contains ``fail_on`` raise while the file ``fail_while``
                      exists (a poison chunk that a fix of the environment cures)
  oom_on, oom_while   the same, raising torch.OutOfMemoryError
  die_on, die_once    the worker process SIGKILLs itself at the first image containing ``die_on``, once: it
                      creates the marker file ``die_once`` before dying, and never dies while it exists
Its answers mean nothing; they only have to be the same for the same inputs. An image counts by its file name, not
its folder, so the answers are the same wherever the checkout or the data lives.
"""

from __future__ import annotations

import hashlib
from pathlib import PurePath
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..registry import MODELS
from ..validation import param, parse_dataclass
from .base import GenerateRequest, GenerateResult, ModelAdapter, ModelFactory, ModelSpec, ScoreRequest, ScoreResult

FAULT_ARGS = ("fail_on", "fail_while", "oom_on", "oom_while", "die_on", "die_once")


@dataclass
class FakeArgs:
    seconds_per_sample: float = param(0.0, min=0)
    cost_tail: float | None = param(None, min=0, min_open=True)
    cost_seed: str = ""
    fail_on: str | None = None
    fail_while: str | None = None
    oom_on: str | None = None
    oom_while: str | None = None
    die_on: str | None = None
    die_once: str | None = None


def image_name(key: str) -> str:
    """What the answers hash for an image: its file name (``ImageInput.key`` is the full path)."""
    return PurePath(key).name


def unit_hash(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts."""
    digest = hashlib.sha256("\0".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


class FakeAdapter(ModelAdapter):
    def __init__(self, args: FakeArgs, device: str):
        self.args = args
        self.device = device
        self.calls = 0

    def _cost(self, key: str) -> float:
        seconds = self.args.seconds_per_sample
        if self.args.cost_tail:
            u = unit_hash("cost", self.args.cost_seed, image_name(key))
            seconds *= (1.0 - u) ** (-1.0 / self.args.cost_tail)    # Pareto(shape) with minimum 1
        return seconds

    def _faults(self, key: str) -> None:
        a = self.args
        if a.die_on and a.die_once and a.die_on in key and not Path(a.die_once).exists():
            Path(a.die_once).write_text("died once\n")
            os.kill(os.getpid(), signal.SIGKILL)
        if a.fail_on and a.fail_while and a.fail_on in key and Path(a.fail_while).exists():
            raise RuntimeError(f"fake-harness: planted failure on {key}")
        if a.oom_on and a.oom_while and a.oom_on in key and Path(a.oom_while).exists():
            import torch

            raise torch.OutOfMemoryError("CUDA out of memory (fake-harness, planted)")

    def _visit(self, requests: list) -> None:
        """Faults first, then the cost of each request in turn, reporting progress after each."""
        self.calls += 1
        for r in requests:
            self._faults(r.image.key)
        for i, r in enumerate(requests, 1):
            cost = self._cost(r.image.key)
            if cost:
                time.sleep(cost)
            if self.progress is not None:
                self.progress(i, len(requests))

    def generate(self, requests: list[GenerateRequest]) -> list[GenerateResult]:
        self._visit(requests)
        out = []
        for r in requests:
            word = "Yes" if unit_hash("gen", image_name(r.image.key), r.prompt) < 0.5 else "No"
            out.append(GenerateResult(word, 1, True))
        return out

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        self._visit(requests)
        out = []
        for r in requests:
            words = {name: math.log(0.01 + 0.98 * unit_hash("word", name, image_name(r.image.key), r.prompt)) for name, _ in r.first_token_words}
            conts = {c: -10.0 * unit_hash("cont", c, image_name(r.image.key), r.prompt) for c in r.continuations}
            out.append(ScoreResult(continuations=conts, first_token_words=words))
        return out

    def describe(self) -> dict[str, Any]:
        return {"adapter": "fake-harness", "device": self.device, "dtype": None, "attn_implementation": None,
                "image_backend": None, "commit": None, "note": "not a model: answers from a hash of (image, prompt)"}


class FakeFactory(ModelFactory):
    """fake-harness: NOT a model; deterministic answers from a hash, for harness tests and benchmarks"""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.args = parse_dataclass(FakeArgs, dict(spec.args), f"--model-args for {spec.display}", "", coerce=True,
                                    field_word="key")

    def identity(self) -> dict[str, Any]:
        return {"kind": "fake", "answers": "sha256 of (image, prompt)"}

    def load(self, device: str, batch_size: int) -> ModelAdapter:
        return FakeAdapter(self.args, device)


MODELS.register("fake-harness", FakeFactory)
