"""Where a sample's image lives, and loading it with errors that say where we looked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError


@dataclass(frozen=True)
class ImageRef:
    """A file on disk, or one row of a Hugging Face dataset (``dataset`` is its JSON-encoded spec)."""

    path: str | None = None
    dataset: str | None = None
    row: int | None = None

    @property
    def key(self) -> str:
        if self.path is not None:
            return self.path
        return f"hf:{self.dataset}#{self.row}"

    @property
    def display(self) -> str:
        return self.path if self.path is not None else f"row {self.row} of dataset {self.dataset}"


class ImageLoadError(Exception):
    """An image that exists in the sample list but cannot be read."""


def check_image_root(root: Path, *, what: str) -> Path:
    if not root.exists():
        raise DataError(f"{what}: image folder not found: {root} (set --data-root to the folder that holds it)")
    if not root.is_dir():
        raise DataError(f"{what}: image folder is not a directory: {root}")
    return root


def load_image(ref: ImageRef):
    """Open an image as RGB PIL. Raises ImageLoadError with the reason (missing, corrupt, unreadable)."""
    from PIL import Image, UnidentifiedImageError

    if ref.path is None:
        return _load_dataset_image(ref)
    path = Path(ref.path)
    if not path.exists():
        raise ImageLoadError(f"image file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise ImageLoadError(f"cannot read image {path}: it claims more pixels than PIL allows ({str(exc).split('.')[0]})") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, MemoryError) as exc:
        raise ImageLoadError(f"cannot read image {path}: {exc}") from None


_open_datasets: dict[str, Any] = {}


def _load_dataset_image(ref: ImageRef):
    from .hf import open_dataset

    if ref.dataset not in _open_datasets:
        _open_datasets[ref.dataset] = open_dataset(json.loads(ref.dataset))
    dataset, column = _open_datasets[ref.dataset]
    try:
        image = dataset[int(ref.row)][column]
    except Exception as exc:  # the datasets library raises many kinds; all mean "unreadable row"
        raise ImageLoadError(f"cannot read image of {ref.display}: {exc}") from None
    if image is None:
        raise ImageLoadError(f"{ref.display} has no image")
    return image.convert("RGB")
