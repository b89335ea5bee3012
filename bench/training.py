"""``bench train-projector``: train the grounded model's projector W (method.md section 1).

Only W is trained; OWL-ViT and the MLLM are frozen. For each image: e = OWL-ViT's vision
hidden_states[-2] without CLS; target = the MLLM's own projected image tokens for the same image;
loss = MSE(W(e), target). AdamW (lr 1e-4, weight decay 1e-2), batch 16, 1 epoch by default, on images
from a folder or a ``datasets`` dataset. A seeded set of images is held out; at the end the held-out
MSE and cosine similarity are printed and saved with the projector.

Checkpoints (projector, optimizer, position in the seeded data order) are written atomically every
``checkpoint_every`` steps; running the same command again resumes from the last one (and refuses a
checkpoint made with other settings). The output folder holds ``projector.safetensors`` and
``projector.json``, which ``--model grounded --model-args projector=<folder>`` loads.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError, DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass
class TrainConfig:
    mllm: str
    owl: str
    output: Path
    images: Path | None = None
    dataset: str | None = None
    split: str = "train"
    image_column: str = "image"
    kind: str = "deeper_mlp"
    hidden_dim: int = 8192
    epochs: int = 1
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 1e-2
    holdout: int = 100
    checkpoint_every: int = 50
    max_steps: int | None = None
    limit: int | None = None
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    progress: bool = True

    def key(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed (everything that changes the result)."""
        skip = {"output", "max_steps", "device", "progress", "checkpoint_every"}
        return {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items() if k not in skip}


class ImageSource:
    """A list of images, from a folder (sorted file names) or a datasets dataset (row order)."""

    def __init__(self, config: TrainConfig):
        if (config.images is None) == (config.dataset is None):
            raise ConfigError("train-projector: give exactly one of --images <folder> or --dataset <name or folder>")
        self.dataset = None
        if config.images is not None:
            folder = Path(config.images)
            if not folder.is_dir():
                raise DataError(f"train-projector: image folder not found: {folder}")
            self.files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            self.n = len(self.files)
            self.listing = [(str(p.relative_to(folder)), p.stat().st_size) for p in self.files]
        else:
            from .data.hf import open_dataset

            spec = {"path": config.dataset, "name": None, "split": config.split, "revision": None, "data_files": None,
                    "columns": {"image": config.image_column}}
            self.dataset, self.column = open_dataset(spec)
            self.n = len(self.dataset)
            self.listing = [config.dataset, config.split, getattr(self.dataset, "_fingerprint", "")]
        if config.limit:
            self.n = min(self.n, config.limit)
        if self.n == 0:
            raise DataError("train-projector: no images found")

    def get(self, index: int):
        from PIL import Image

        if self.dataset is not None:
            return self.dataset[index][self.column].convert("RGB")
        with Image.open(self.files[index]) as image:
            return image.convert("RGB")


class Frozen:
    """OWL-ViT and the MLLM, frozen: e (without CLS) and the MLLM's own projected image tokens."""

    def __init__(self, config: TrainConfig):
        import torch
        from transformers import AutoModelForImageTextToText, OwlViTForObjectDetection, OwlViTProcessor
        from transformers.utils import logging as hf_logging

        from .models._hf_processor import load_processor

        hf_logging.disable_progress_bar()
        dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[config.dtype]
        self.device = torch.device(config.device)
        try:
            self.owl_processor = OwlViTProcessor.from_pretrained(config.owl, backend="pil")
            self.owl = OwlViTForObjectDetection.from_pretrained(config.owl, dtype=dtype).to(self.device).eval()
            self.processor = load_processor(config.mllm, backend="pil")
            self.mllm = AutoModelForImageTextToText.from_pretrained(config.mllm, dtype=dtype).to(self.device).eval()
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"train-projector: cannot load the models: {str(exc).strip().splitlines()[0]}") from None
        if getattr(self.owl.config, "model_type", None) != "owlvit":
            raise ConfigError(f"train-projector: {config.owl!r} is not an OWL-ViT model")
        for p in list(self.owl.parameters()) + list(self.mllm.parameters()):
            p.requires_grad_(False)
        self.in_dim = self.owl.config.vision_config.hidden_size
        self.out_dim = self.mllm.get_input_embeddings().weight.shape[1]
        self.dtype = dtype

    def batch(self, images):
        import torch

        from .models._grounded_engine import owl_embedding

        with torch.no_grad():
            e = owl_embedding(self.owl, self.owl_processor, images, self.device)[:, 1:, :]
            pixels = self.processor.image_processor(images=list(images), return_tensors="pt")["pixel_values"]
            features = self.mllm.model.get_image_features(pixel_values=pixels.to(self.device, self.dtype)).pooler_output
            target = torch.stack(list(features)).float()
            e = e.float()
        if target.shape[1] != e.shape[1]:
            raise ConfigError(f"train-projector: OWL-ViT gives {e.shape[1]} patch tokens but the MLLM {target.shape[1]} "
                              "image tokens; pick a pair whose counts match")
        return e, target


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import torch

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    from .io import atomic_write_json

    atomic_write_json(path.with_suffix(".json"), {"step": state["step"], "epoch": state["epoch"], "batch": state["batch"]})


def evaluate(frozen: Frozen, projector, source: ImageSource, indices: list[int], batch_size: int) -> dict[str, float]:
    import torch

    squared, cosine, tokens = 0.0, 0.0, 0
    with torch.no_grad():
        for start in range(0, len(indices), batch_size):
            e, target = frozen.batch([source.get(i) for i in indices[start:start + batch_size]])
            pred = projector(e)
            squared += float(((pred - target) ** 2).mean(-1).sum())
            cosine += float(torch.nn.functional.cosine_similarity(pred, target, dim=-1).sum())
            tokens += target.shape[0] * target.shape[1]
    return {"mse": squared / tokens, "cosine": cosine / tokens, "images": len(indices)} if tokens else {}


def train(config: TrainConfig, log=print) -> dict[str, Any]:
    import torch
    from tqdm import tqdm

    from .models.projector import ProjectorConfig, build, save

    output = Path(config.output)
    source = ImageSource(config)
    order = list(range(source.n))
    random.Random(config.seed).shuffle(order)
    holdout = min(config.holdout, max(0, source.n - 1))
    held, pool = order[:holdout], order[holdout:]
    n_batches = math.ceil(len(pool) / config.batch_size)
    total = n_batches * config.epochs if config.max_steps is None else min(config.max_steps, n_batches * config.epochs)

    frozen = Frozen(config)
    pconfig = ProjectorConfig(config.kind, frozen.in_dim, frozen.out_dim, config.hidden_dim)
    torch.manual_seed(config.seed)
    projector = build(pconfig).to(frozen.device)   # float32 whatever the models' dtype: AdamW wants it
    optimizer = torch.optim.AdamW(projector.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    key = {**config.key(), "data": source.listing}
    checkpoint = output / "checkpoint.pt"
    step, epoch, batch = 0, 0, 0
    if checkpoint.exists():
        state = torch.load(checkpoint, map_location=frozen.device, weights_only=False)
        if state["key"] != key:
            changed = sorted(k for k in set(key) | set(state["key"]) if key.get(k) != state["key"].get(k))
            raise ConfigError(f"{checkpoint}: made with a different {changed[0]!r}; use another --output or delete it")
        projector.load_state_dict(state["projector"])
        optimizer.load_state_dict(state["optimizer"])
        step, epoch, batch = state["step"], state["epoch"], state["batch"]
        log(f"resuming from {checkpoint} at step {step} (epoch {epoch + 1}, batch {batch})")
    output.mkdir(parents=True, exist_ok=True)

    bar = tqdm(total=total, initial=min(step, total), unit="step", desc="train-projector", disable=not config.progress)
    losses: list[float] = []
    while epoch < config.epochs and step < total:
        epoch_order = list(pool)
        random.Random(config.seed * 1000 + epoch).shuffle(epoch_order)
        while batch < n_batches and step < total:
            e, target = frozen.batch([source.get(i) for i in epoch_order[batch * config.batch_size:(batch + 1) * config.batch_size]])
            loss = torch.nn.functional.mse_loss(projector(e), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
            step, batch = step + 1, batch + 1
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}")
            if step % config.checkpoint_every == 0 or step == total:
                position = (epoch + 1, 0) if batch == n_batches else (epoch, batch)
                _save_checkpoint(checkpoint, {"key": key, "projector": projector.state_dict(), "optimizer": optimizer.state_dict(),
                                              "step": step, "epoch": position[0], "batch": position[1]})
        if batch == n_batches:
            epoch, batch = epoch + 1, 0
    bar.close()
    finished = step >= n_batches * config.epochs
    held_out = evaluate(frozen, projector, source, held, config.batch_size)
    pconfig.trained = {"owl": config.owl, "mllm": config.mllm, "images": source.n, "held_out": held_out, "steps": step,
                       "complete": finished, "settings": config.key(), "last_losses": losses[-10:]}
    save(output, projector, pconfig)
    if held_out:
        log(f"held-out ({held_out['images']} images): MSE {held_out['mse']:.6g}, cosine similarity {held_out['cosine']:.4f}")
    log(f"projector: {output} ({pconfig.kind}, {pconfig.in_dim} -> {pconfig.out_dim}, step {step} of "
        f"{n_batches * config.epochs}{'' if finished else ', stopped early: rerun without --max-steps to continue'})")
    return {"steps": step, "losses": losses, "held_out": held_out, "complete": finished}
