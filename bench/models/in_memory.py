"""``in-memory``: a transformers model object already in memory (``bench.evaluate``), run where it is, never copied.

The name is registered only because a run's configuration names its model; from the command line it is refused
(save the model with ``save_pretrained`` and run ``--model hf:<folder>``). `InMemoryFactory.over(model, processor)`
is how `bench.evaluate` builds it.

Identity: the model's config (``model_type``, ``_name_or_path``, ``architectures``), its class, dtype and parameter
count, and a sha256 of its weights: every parameter and buffer (each tied tensor once), sorted by name, each hashed
as its name, dtype and shape followed by the raw bytes of its values, copied to the CPU one tensor at a time.
Cost: one read of all the weights, a device-to-host copy of each tensor in turn (extra memory: the largest tensor,
on the CPU) and sha256 at roughly 0.5 to 2 GB/s on one core: a 7B model in bfloat16 (14 GB) takes on the order of
10 to 30 seconds; the tiny test models take milliseconds. Two identities are equal exactly when the weights are
bit for bit the same, so a resume of an ``output=`` run folder is refused once the weights have changed.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..registry import MODELS
from .base import ModelAdapter, ModelFactory, ModelSpec

NAME = "in-memory"
DEVICE_TYPES = ("cpu", "cuda", "mps")


def weights_sha256(model) -> str:
    """sha256 over every parameter and buffer of ``model`` (sorted by name): name, dtype, shape, then the raw bytes
    of the values on the CPU. Bit-exact: the same weights in another dtype hash differently."""
    import torch

    digest = hashlib.sha256()
    tensors = [(f"parameter:{n}", t) for n, t in model.named_parameters()] + \
              [(f"buffer:{n}", t) for n, t in model.named_buffers()]
    with torch.no_grad():
        for name, tensor in sorted(tensors, key=lambda item: item[0]):
            digest.update(f"{name}\0{str(tensor.dtype)}\0{tuple(tensor.shape)}\0".encode())
            flat = tensor.detach().reshape(-1)
            if flat.numel():
                digest.update(memoryview(flat.view(torch.uint8).cpu().numpy()))
    return digest.hexdigest()


def model_device(model) -> str:
    """The device of the model's first parameter, as `--devices` spells it (``cpu``, ``cuda:0``, ``mps``)."""
    device = next(model.parameters()).device
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"bench.evaluate: the model is on {device}; it runs on {', '.join(DEVICE_TYPES)} only")
    return str(device) if device.type != "cuda" else f"cuda:{device.index or 0}"


def spans_devices(model) -> bool:
    """The model was placed over several devices (``device_map``), so inputs go to the first one."""
    placement = getattr(model, "hf_device_map", None) or {}
    return len({str(d) for d in placement.values()}) > 1


def model_identity(model, processor) -> dict[str, Any]:
    """What the run folder records about an in-memory model (see the module's docstring for the cost)."""
    config = model.config
    first = next(model.parameters())
    return {"kind": NAME, "class": type(model).__name__, "model_type": getattr(config, "model_type", None),
            "name_or_path": getattr(config, "_name_or_path", None) or None,
            "architectures": list(getattr(config, "architectures", None) or []),
            "dtype": str(first.dtype).replace("torch.", ""), "parameters": sum(p.numel() for p in model.parameters()),
            "processor": type(processor).__name__, "weights_sha256": weights_sha256(model)}


def check_objects(model, processor) -> None:
    """One-line refusals of what cannot be evaluated in place."""
    if getattr(model, "config", None) is None or not hasattr(model, "generate") or not hasattr(model, "parameters"):
        inner = " (a wrapper such as DistributedDataParallel or torch.compile's: pass the model inside it)" \
            if hasattr(model, "module") or hasattr(model, "_orig_mod") else ""
        raise ConfigError(f"bench.evaluate: expected a transformers image-text-to-text model, got {type(model).__name__}{inner}")
    if getattr(processor, "tokenizer", None) is None:
        raise ConfigError(f"bench.evaluate: expected the model's processor (with a tokenizer), got {type(processor).__name__}")
    if next(model.parameters(), None) is None:
        raise ConfigError("bench.evaluate: the model has no parameters")


class InMemoryFactory(ModelFactory):
    """in-memory: a transformers model object handed to bench.evaluate() in Python (not a command-line model)"""

    def __init__(self, spec: ModelSpec, model: Any = None, processor: Any = None, identity: dict[str, Any] | None = None):
        super().__init__(spec)
        if model is None or processor is None:
            raise ConfigError(f"--model {NAME} names a model object handed to bench.evaluate() in Python; from the "
                              "command line save it with save_pretrained and run --model hf:<folder>")
        if spec.args:
            raise ConfigError(f"--model-args: the {NAME} model takes none (its settings are the object's own)")
        self.model, self.processor = model, processor
        self._identity = identity

    @classmethod
    def over(cls, model: Any, processor: Any) -> "InMemoryFactory":
        """The factory of ``model`` and ``processor`` as they are now (their weights hashed once, here). Its spec
        reads ``in-memory:<name>@<first 12 hex digits of the weights' sha256>``, so the default run name of each
        state of the weights is its own."""
        check_objects(model, processor)
        identity = model_identity(model, processor)
        name = Path(str(identity["name_or_path"] or "")).name or identity["model_type"] or type(model).__name__
        return cls(ModelSpec(NAME, f"{name}@{identity['weights_sha256'][:12]}", {}), model, processor, identity)

    def __getstate__(self):
        raise TypeError(f"the {NAME} model factory is never sent to another process: that would copy the model")

    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            self._identity = model_identity(self.model, self.processor)
        return self._identity

    def device(self) -> str:
        return model_device(self.model)

    def worker_devices_allowed(self) -> bool:
        return not spans_devices(self.model)

    def capabilities(self) -> set[str]:
        white = {"explain:white"} if getattr(self.model.config, "model_type", None) == "llava" else set()
        return {"generate", "score", "explain:black"} | white

    def load(self, device: str, batch_size: int) -> ModelAdapter:
        """The adapter over the SAME model object, on the device it is on (no other is possible without a copy)."""
        here = self.device()
        if device != here and not (device == "cuda" and here.startswith("cuda")):
            raise ConfigError(f"bench.evaluate: the model is on {here}; it cannot run on {device} without a copy")
        from ._hf_engine import HFAdapter

        args = {"device_map": "given"} if spans_devices(self.model) else {}
        return HFAdapter.from_objects(self.model, self.processor, source=self.identity()["name_or_path"] or NAME,
                                      identity=self.identity(), batch_size=batch_size, args=args)


MODELS.register(NAME, InMemoryFactory)
