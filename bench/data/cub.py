"""CUB-200-2011 in the wsolevaluation metadata layout (Choe et al. 2020, clovaai/wsolevaluation ``metadata/CUB/test``).

A metadata folder holds plain-text files, one record per line, keyed by the image id (the image's path relative to
the image folder, e.g. ``001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg``):
  image_ids.txt      one image id per line
  class_labels.txt   ``<image id>,<class index>``
  localization.txt   ``<image id>,<x0>,<y0>,<x1>,<y1>`` (pixels of the original image; several lines per image for
                     several boxes)
Class names are read from the class folder names (``001.Black_footed_Albatross`` -> "black footed albatross"), or
from CUB's own ``classes.txt`` (``<index> <folder name>``, indices from 1) when given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError


@dataclass(frozen=True)
class CubImage:
    image_id: str
    label: int
    class_name: str
    boxes: tuple[tuple[float, float, float, float], ...]


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    if not path.exists():
        raise DataError(f"CUB metadata file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    return [(n, [part.strip() for part in line.split(",")]) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def readable(folder_name: str) -> str:
    """``001.Black_footed_Albatross`` -> ``black footed albatross``."""
    name = folder_name.split(".", 1)[-1]
    return " ".join(name.replace("_", " ").split()).lower()


def load_cub(metadata: Path, classes_file: Path | None = None) -> list[CubImage]:
    ids = [parts[0] for _, parts in _lines(metadata / "image_ids.txt")]
    if not ids:
        raise DataError(f"{metadata / 'image_ids.txt'}: no images")
    labels: dict[str, int] = {}
    for n, parts in _lines(metadata / "class_labels.txt"):
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"{metadata / 'class_labels.txt'}: line {n} must be '<image id>,<class index>'")
        labels[parts[0]] = int(parts[1])
    boxes: dict[str, list[tuple[float, float, float, float]]] = {}
    for n, parts in _lines(metadata / "localization.txt"):
        try:
            x0, y0, x1, y1 = (float(v) for v in parts[1:5])
        except ValueError:
            raise DataError(f"{metadata / 'localization.txt'}: line {n} must be '<image id>,<x0>,<y0>,<x1>,<y1>'") from None
        if len(parts) != 5 or x1 < x0 or y1 < y0:
            raise DataError(f"{metadata / 'localization.txt'}: line {n} must be '<image id>,<x0>,<y0>,<x1>,<y1>' with x1 >= x0, y1 >= y0")
        boxes.setdefault(parts[0], []).append((x0, y0, x1, y1))
    names: dict[int, str] = {}
    if classes_file is not None:
        for n, parts in _lines(classes_file):
            fields = parts[0].split()
            if len(fields) != 2 or not fields[0].isdigit():
                raise DataError(f"{classes_file}: line {n} must be '<index> <class folder name>'")
            names[int(fields[0]) - 1] = readable(fields[1])
    out = []
    for image_id in ids:
        if image_id not in labels:
            raise DataError(f"{metadata / 'class_labels.txt'}: no class for image {image_id}")
        if image_id not in boxes:
            raise DataError(f"{metadata / 'localization.txt'}: no box for image {image_id}")
        label = labels[image_id]
        name = names.get(label) or readable(Path(image_id).parent.name or str(label))
        out.append(CubImage(image_id, label, name, tuple(boxes[image_id])))
    return out
