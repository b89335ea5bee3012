"""The images the bias probes edit, and where each one's source attribute comes from.

Three kinds of image set:
- a folder of images (``image_folder``), non-recursive; the image id is the file name;
- COCO-format annotations (``coco``): the images with at least one ``person`` annotation (the image id is the COCO
  id), each with its largest person box (the region a ``region: person`` edit may change);
- counterfactual pairs (``pairs``): the same scenario photographed (or generated) once per attribute, either as
  folders ``<scenario>/<attribute>.<ext>`` (the layout PAIRS publishes; "_" or "-" may stand for a space) or as a
  CSV manifest with the columns ``scenario``, ``attribute``, ``image`` (paths relative to the manifest's folder).

An image's source attribute comes from an optional attributes file (``attributes``): a CSV with the columns
``image`` (the file name, or the COCO id) and ``attribute``, or a JSON object ``{image: attribute}`` or list of
``{"image", "attribute"}`` records. An image it does not list, or lists with an empty attribute, is read by the
scorer at run time (with a margin; images below it are skipped and counted). Every problem is a one-line
`DataError` naming the file: an empty folder, an unknown image or attribute, a scenario with only one attribute
(unpaired), two images for one attribute of a scenario.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from .probes import Axis

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
IMAGE_COLUMNS = ("image", "file", "file_name")


@dataclass(frozen=True)
class ProbeImage:
    image_id: str
    path: str
    attribute: str | None = None                                   # None: the scorer reads it at run time
    person_box: tuple[float, float, float, float] | None = None    # COCO: the largest person box (x1, y1, x2, y2)


@dataclass(frozen=True)
class Scenario:
    """One counterfactual scenario: an image per attribute, ``(attribute, path)`` in the axis's order."""

    scenario_id: str
    images: tuple[tuple[str, str], ...]

    def path(self, attribute: str) -> str | None:
        return dict(self.images).get(attribute)

    @property
    def attributes(self) -> tuple[str, ...]:
        return tuple(a for a, _ in self.images)


def _image_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as exc:
        raise DataError(f"{folder}: cannot list the image folder: {exc.strerror or exc}") from None


def folder_images(folder: Path, axis: Axis, attributes: Path | None = None) -> list[ProbeImage]:
    """The images of a folder, with the attribute each one's row in ``attributes`` gives (if any)."""
    files = _image_files(folder)
    if not files:
        raise DataError(f"{folder}: no images in the image folder (looked for {', '.join(IMAGE_SUFFIXES)})")
    labels = read_attributes(attributes, axis, {p.name for p in files}) if attributes else {}
    return [ProbeImage(p.name, str(p), labels.get(p.name)) for p in files]


def coco_person_images(annotations: Path, image_root: Path, axis: Axis, attributes: Path | None = None,
                       category: str = "person") -> list[ProbeImage]:
    """The COCO images with a ``category`` annotation, each with its largest such box."""
    from ..data.coco import CocoInstances

    coco = CocoInstances.load(annotations, image_root)
    found: list[tuple[str, str, tuple[float, float, float, float]]] = []
    for image_id in coco.image_ids():
        boxes = [b for name, b in coco.boxes(image_id) if name == category and len(b) == 4]
        if category not in coco.objects(image_id):
            continue
        box = None
        if boxes:
            x, y, w, h = max(boxes, key=lambda b: b[2] * b[3])
            box = (float(x), float(y), float(x + w), float(y + h))
        found.append((str(image_id), str(coco.image_file(image_id)), box))
    if not found:
        raise DataError(f"{annotations}: no image has a {category!r} annotation")
    labels = {}
    if attributes:
        keys = {i for i, _, _ in found} | {Path(p).name for _, p, _ in found}
        labels = read_attributes(attributes, axis, keys)
    return [ProbeImage(i, p, labels.get(i, labels.get(Path(p).name)), box) for i, p, box in found]


# -- the attributes file ----------------------------------------------------------------------------------------------


def read_attributes(path: Path, axis: Axis, images: set[str]) -> dict[str, str | None]:
    """image -> attribute (None: left for the scorer) from a CSV or JSON attributes file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"attributes file not found: {path}")
    records = _json_records(path) if path.suffix.lower() == ".json" else _csv_records(path)
    out: dict[str, str | None] = {}
    for where, image, label in records:
        image = str(image).strip()
        if image not in images:
            raise DataError(f"{path}: {where}: image {image!r} is not in the image set")
        if image in out:
            raise DataError(f"{path}: {where}: image {image!r} is listed twice")
        if label is None or not str(label).strip():
            out[image] = None
            continue
        name = axis.match(str(label))
        if name is None:
            raise DataError(f"{path}: {where}: unknown attribute {label!r} of axis {axis.name} "
                            f"(its attributes: {', '.join(axis.names)})")
        out[image] = name
    return out


def _read_csv(path: Path, what: str) -> list[dict[str, str | None]]:
    """The rows of a CSV file with a header, column names stripped; one-line errors naming the file."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [{(k or "").strip(): v for k, v in row.items()} for row in csv.DictReader(handle)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read the CSV file: {exc}") from None
    if not rows:
        raise DataError(f"{path}: the {what} has no rows")
    return rows


def _csv_records(path: Path) -> list[tuple[str, str, str | None]]:
    rows = _read_csv(path, "attributes file")
    header = list(rows[0])
    image_column = next((c for c in IMAGE_COLUMNS if c in header), None)
    if image_column is None or "attribute" not in header:
        raise DataError(f"{path}: the attributes CSV needs the columns 'image' and 'attribute' (has: {', '.join(header)})")
    return [(f"row {i + 2}", row[image_column], row.get("attribute")) for i, row in enumerate(rows)]


def _json_records(path: Path) -> list[tuple[str, str, str | None]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})") from None
    if isinstance(data, dict):
        return [(f"key {k!r}", k, v) for k, v in data.items()]
    if isinstance(data, list):
        out = []
        for i, record in enumerate(data):
            if not isinstance(record, dict) or "attribute" not in record or not any(c in record for c in IMAGE_COLUMNS):
                raise DataError(f"{path}: item {i + 1} must be an object with 'image' and 'attribute'")
            image = next(record[c] for c in IMAGE_COLUMNS if c in record)
            out.append((f"item {i + 1}", image, record["attribute"]))
        return out
    raise DataError(f"{path}: expected an object {{image: attribute}} or a list of {{image, attribute}} records")


# -- counterfactual pairs ---------------------------------------------------------------------------------------------


def pair_scenarios(axis: Axis, root: Path | None = None, manifest: Path | None = None) -> list[Scenario]:
    """The scenarios of a pairs layout (folders under ``root``) or of a CSV manifest; each needs at least two
    attributes of the axis."""
    found: dict[str, dict[str, str]] = {}
    origin: dict[str, str] = {}
    if manifest is not None:
        source = str(manifest)
        for where, scenario, label, image in _manifest_records(Path(manifest)):
            _add_pair(found, origin, axis, source, where, scenario, label, image)
    else:
        if root is None or not Path(root).is_dir():
            raise DataError(f"pairs: image folder not found: {root}")
        source = str(root)
        try:
            folders = sorted(p for p in Path(root).iterdir() if p.is_dir())
        except OSError as exc:
            raise DataError(f"{root}: cannot list the pairs folder: {exc.strerror or exc}") from None
        for folder in folders:
            for file in _image_files(folder):
                _add_pair(found, origin, axis, source, f"{folder.name}/{file.name}", folder.name, file.stem, str(file))
    if not found:
        raise DataError(f"{source}: no counterfactual pairs (expected <scenario>/<attribute>.<ext> images, "
                        f"attributes of axis {axis.name}: {', '.join(axis.names)})")
    scenarios = []
    for scenario, images in found.items():
        if len(images) < 2:
            only = next(iter(images))
            raise DataError(f"{source}: scenario {scenario!r} is unpaired: it has only {origin[f'{scenario}/{only}']} "
                            f"({only}); each scenario needs images of at least two attributes of axis {axis.name} "
                            f"({', '.join(axis.names)})")
        scenarios.append(Scenario(scenario, tuple((a, images[a]) for a in axis.names if a in images)))
    return scenarios


def _add_pair(found: dict, origin: dict, axis: Axis, source: str, where: str, scenario: str, label: str,
              image: str) -> None:
    name = axis.match(label)
    if name is None:
        raise DataError(f"{source}: {where}: {label!r} names no attribute of axis {axis.name} "
                        f"({', '.join(axis.names)})")
    images = found.setdefault(str(scenario), {})
    if name in images:
        raise DataError(f"{source}: {where}: scenario {scenario!r} has two images for {name!r} "
                        f"({origin[f'{scenario}/{name}']} and this one)")
    images[name] = image
    origin[f"{scenario}/{name}"] = where


def _manifest_records(path: Path) -> list[tuple[str, str, str, str]]:
    if not path.is_file():
        raise DataError(f"pairs manifest not found: {path}")
    rows = [{k: (v or "").strip() for k, v in row.items()} for row in _read_csv(path, "pairs manifest")]
    missing = [c for c in ("scenario", "attribute", "image") if c not in rows[0]]
    if missing:
        raise DataError(f"{path}: the pairs manifest needs the columns scenario, attribute, image (missing '{missing[0]}')")
    out = []
    for i, row in enumerate(rows):
        where = f"row {i + 2}"
        if not row["scenario"] or not row["image"]:
            raise DataError(f"{path}: {where}: empty scenario or image")
        image = Path(row["image"]).expanduser()
        image = image if image.is_absolute() else path.parent / image
        out.append((where, row["scenario"], row["attribute"], str(image)))
    return out
