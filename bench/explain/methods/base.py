"""The saliency-method protocol and what the captum-based methods share."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Literal

import numpy as np

from ..request import ExplainConfig
from ..seam import Prepared


class SaliencyMethod(ABC):
    name: ClassVar[str]
    kind: ClassVar[Literal["black", "white", "ga"]]
    summary: ClassVar[str] = ""

    @abstractmethod
    def compute(self, seam, prepared: Prepared, config: ExplainConfig, seed: int) -> np.ndarray:
        """A map [rows, cols] on the patch grid."""


def baseline_pixels(prepared: Prepared, which: str, config: ExplainConfig):
    """The reference image in the model-input space: black, the dataset mean colour, or the Gaussian blur
    (kernel and sigma of the config) of the clean pixels."""
    import torch

    from ...metrics.curves import gaussian_blur

    pixels = prepared.pixels
    if which == "black":
        return torch.zeros_like(pixels)
    if which == "mean":
        return torch.tensor(prepared.space.mean, dtype=pixels.dtype)[:, None, None].expand_as(pixels).clone()
    image = pixels.permute(1, 2, 0).cpu().numpy()
    blurred = gaussian_blur(image, config.blur_kernel, config.blur_sigma)
    return torch.from_numpy(blurred).permute(2, 0, 1).to(pixels.dtype)


def cell_mask(prepared: Prepared):
    """[1, 3, H, W] long: the grid cell of each input pixel (a captum feature mask)."""
    import torch

    space = prepared.space
    rows, cols = space.grid
    index = np.arange(rows * cols).reshape(rows, cols)
    mask = space.grid_to_input(index).astype(np.int64)
    return torch.from_numpy(mask)[None, None].expand(1, 3, *mask.shape)


def forward(seam, prepared: Prepared):
    """The target's log-probability as a function of a batch of pixel tensors (what captum calls)."""
    return lambda pixels: seam.logprob(prepared, pixels=pixels)


def abs_to_grid(prepared: Prepared, attribution) -> np.ndarray:
    """Pixel attributions [1, 3, H, W] -> the sum of their absolute values in each grid cell."""
    values = attribution.detach().abs().sum(1)[0].double().cpu().numpy()
    return prepared.space.input_to_grid(values, "sum")


def mean_to_grid(prepared: Prepared, attribution) -> np.ndarray:
    """Pixel attributions [1, 3, H, W] that are constant per perturbed region -> their mean in each grid cell
    (channels averaged)."""
    values = attribution.detach().mean(1)[0].double().cpu().numpy()
    return prepared.space.input_to_grid(values, "mean")
