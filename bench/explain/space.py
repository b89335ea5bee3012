"""The pixel space a saliency method perturbs, and its exact mapping back to the ORIGINAL image.

A model sees its image after the processor's resize and crop (or stretch), as values in [0, 1] that are then
normalised with the processor's mean and std. Perturbations (blur, occlusion, PGD) happen in that model-input
space, before normalisation. Maps live on the model's patch grid (one cell per image token); each cell covers a
known rectangle of the ORIGINAL image, so a map is painted back onto the original pixels exactly. Regions the
processor crops away get no saliency (NaN) and are left out of every metric.

A `PixelSpace` describes one image's geometry:
  original (H0, W0) --resize (scale_y, scale_x)--> resized (Hr, Wr) --crop at (top, left)--> input (H, W)
For a plain stretch (OWL-ViT) the crop offset is 0; for the black-box path over any processor, the "input" is the
original image itself (scale 1, no crop) and the grid is a grid of cells over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PixelSpace:
    original: tuple[int, int]          # (H0, W0) of the original image
    size: tuple[int, int]              # (H, W) of the model-input pixels
    scale: tuple[float, float]         # (sy, sx): resized pixels per original pixel
    offset: tuple[int, int]            # (top, left) of the crop in resized pixels
    grid: tuple[int, int]              # (rows, cols) of the patch grid over the input
    mean: tuple[float, ...] = (0.0, 0.0, 0.0)
    std: tuple[float, ...] = (1.0, 1.0, 1.0)

    @property
    def cell(self) -> tuple[float, float]:
        """Input pixels per grid cell (rows, cols)."""
        return self.size[0] / self.grid[0], self.size[1] / self.grid[1]

    # -- maps between the spaces -----------------------------------------------------------------------------
    def input_coords_of_original(self) -> tuple[np.ndarray, np.ndarray]:
        """For each original pixel centre, its position in input pixels (y [H0], x [W0]; may fall outside)."""
        h0, w0 = self.original
        y = (np.arange(h0) + 0.5) * self.scale[0] - self.offset[0]
        x = (np.arange(w0) + 0.5) * self.scale[1] - self.offset[1]
        return y, x

    def valid_original(self) -> np.ndarray:
        """[H0, W0] bool: original pixels the model sees (False where the processor cropped them away)."""
        y, x = self.input_coords_of_original()
        return ((y >= 0) & (y < self.size[0]))[:, None] & ((x >= 0) & (x < self.size[1]))[None, :]

    def grid_to_input(self, grid_map: np.ndarray) -> np.ndarray:
        """[rows, cols] -> [H, W]: each input pixel takes its cell's value."""
        rows = np.minimum((np.arange(self.size[0]) + 0.5) // self.cell[0], self.grid[0] - 1).astype(int)
        cols = np.minimum((np.arange(self.size[1]) + 0.5) // self.cell[1], self.grid[1] - 1).astype(int)
        return np.asarray(grid_map, dtype=float)[rows][:, cols]

    def grid_to_original(self, grid_map: np.ndarray) -> np.ndarray:
        """[rows, cols] -> [H0, W0]: each original pixel takes the value of the cell its centre falls in; NaN where
        the processor cropped it away."""
        y, x = self.input_coords_of_original()
        rows = np.floor(y / self.cell[0]).astype(int)
        cols = np.floor(x / self.cell[1]).astype(int)
        inside = ((rows >= 0) & (rows < self.grid[0]))[:, None] & ((cols >= 0) & (cols < self.grid[1]))[None, :]
        out = np.asarray(grid_map, dtype=float)[np.clip(rows, 0, self.grid[0] - 1)][:, np.clip(cols, 0, self.grid[1] - 1)]
        return np.where(inside, out, np.nan)

    def input_to_grid(self, pixel_map: np.ndarray, reduce: str = "sum") -> np.ndarray:
        """[H, W] -> [rows, cols]: the pixels of each cell summed (or averaged)."""
        rows = np.minimum((np.arange(self.size[0]) + 0.5) // self.cell[0], self.grid[0] - 1).astype(int)
        cols = np.minimum((np.arange(self.size[1]) + 0.5) // self.cell[1], self.grid[1] - 1).astype(int)
        out = np.zeros(self.grid)
        np.add.at(out, (rows[:, None], cols[None, :]), np.asarray(pixel_map, dtype=float))
        if reduce == "mean":
            counts = np.zeros(self.grid)
            np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
            out = out / np.maximum(counts, 1)
        return out

    def cell_boxes(self) -> np.ndarray:
        """[rows * cols, 4]: each cell's rectangle in ORIGINAL pixels (x1, y1, x2, y2), clipped to the image, in
        raster order of the grid."""
        ch, cw = self.cell
        r, c = np.meshgrid(np.arange(self.grid[0]), np.arange(self.grid[1]), indexing="ij")
        x1 = (c * cw + self.offset[1]) / self.scale[1]
        y1 = (r * ch + self.offset[0]) / self.scale[0]
        x2 = ((c + 1) * cw + self.offset[1]) / self.scale[1]
        y2 = ((r + 1) * ch + self.offset[0]) / self.scale[0]
        h0, w0 = self.original
        boxes = np.stack([np.clip(x1, 0, w0), np.clip(y1, 0, h0), np.clip(x2, 0, w0), np.clip(y2, 0, h0)], -1)
        return boxes.reshape(-1, 4)

    def to_dict(self) -> dict:
        return {"original": list(self.original), "size": list(self.size), "scale": list(self.scale),
                "offset": list(self.offset), "grid": list(self.grid), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict) -> "PixelSpace":
        return cls(tuple(data["original"]), tuple(data["size"]), tuple(data["scale"]), tuple(data["offset"]),
                   tuple(data["grid"]), tuple(data["mean"]), tuple(data["std"]))


def resize_crop_space(original: tuple[int, int], resized: tuple[int, int], crop: tuple[int, int] | None,
                      grid: tuple[int, int], mean, std) -> PixelSpace:
    """The space of a processor that resizes the original (H0, W0) to ``resized`` (Hr, Wr), then centre-crops to
    ``crop`` (H, W) (None: no crop). The crop offset follows transformers' centre crop: (Hr - H) // 2."""
    h0, w0 = original
    hr, wr = resized
    h, w = crop or resized
    top, left = (hr - h) // 2, (wr - w) // 2
    return PixelSpace((h0, w0), (h, w), (hr / h0, wr / w0), (top, left), grid, tuple(mean), tuple(std))
