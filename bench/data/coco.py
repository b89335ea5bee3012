"""COCO-format annotations (instances and captions) through pycocotools, validated first so that a
malformed file is a one-line error naming the file and the field rather than a KeyError."""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DataError

REQUIRED = {
    "images": ("id", "file_name"),
    "annotations": ("image_id", "category_id"),
    "categories": ("id", "name"),
}
CAPTION_REQUIRED = {"images": ("id", "file_name"), "annotations": ("image_id", "caption")}


def read_json(path: Path) -> Any:
    if not path.exists():
        raise DataError(f"annotation file not found: {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}") from None
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text: {exc.reason}") from None


def _check_fields(path: Path, data: Any, required: dict[str, tuple[str, ...]]) -> None:
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a COCO JSON object, got {type(data).__name__}")
    for section, fields in required.items():
        entries = data.get(section)
        if entries is None:
            raise DataError(f"{path}: missing field '{section}'")
        if not isinstance(entries, list):
            raise DataError(f"{path}: field '{section}' must be a list")
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict):
                raise DataError(f"{path}: {section}[{i}] must be an object")
            for name in fields:
                if name not in entry:
                    raise DataError(f"{path}: {section}[{i}] is missing field '{name}'")


def _unique_ids(path: Path, entries: list[dict[str, Any]], section: str) -> set:
    """The ids of a section, which must be unique (a repeated id names both entries)."""
    first: dict[Any, int] = {}
    for i, entry in enumerate(entries):
        key = entry["id"]
        if not isinstance(key, (int, str)) or isinstance(key, bool):
            raise DataError(f"{path}: {section}[{i}] field 'id' must be an integer or a string, got {key!r}")
        if key in first:
            raise DataError(f"{path}: {section}[{i}] repeats the id {key!r} of {section}[{first[key]}]")
        first[key] = i
    return set(first)


def _make_coco(data: dict[str, Any]):
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
        coco.createIndex()
    return coco


@dataclass
class CocoInstances:
    """Object annotations of a COCO-format dataset plus where its images are."""

    path: Path
    image_root: Path
    coco: Any

    @classmethod
    def load(cls, annotations: Path, image_root: Path) -> "CocoInstances":
        data = read_json(annotations)
        _check_fields(annotations, data, REQUIRED)
        image_ids = _unique_ids(annotations, data["images"], "images")
        category_ids = _unique_ids(annotations, data["categories"], "categories")
        for i, cat in enumerate(data["categories"]):
            if not isinstance(cat["name"], str) or not cat["name"].strip():
                raise DataError(f"{annotations}: categories[{i}] field 'name' must be a non-empty string, got {cat['name']!r}")
        for i, img in enumerate(data["images"]):
            if not isinstance(img["file_name"], str) or not img["file_name"].strip():
                raise DataError(f"{annotations}: images[{i}] field 'file_name' must be a non-empty string, got {img['file_name']!r}")
        for i, ann in enumerate(data["annotations"]):
            if ann["image_id"] not in image_ids:
                raise DataError(f"{annotations}: annotations[{i}] field 'image_id' refers to unknown image {ann['image_id']!r}")
            if ann["category_id"] not in category_ids:
                raise DataError(f"{annotations}: annotations[{i}] field 'category_id' refers to unknown category {ann['category_id']!r}")
        return cls(annotations, image_root, _make_coco(data))

    def image_ids(self) -> list[int]:
        return [img["id"] for img in self.coco.dataset["images"]]

    def image_file(self, image_id: int) -> Path:
        return self.image_root / self.coco.imgs[image_id]["file_name"]

    def category_names(self) -> list[str]:
        return [cat["name"] for cat in self.coco.dataset["categories"]]

    def objects(self, image_id: int) -> list[str]:
        """Distinct category names of an image, in the order their first annotation appears."""
        names: list[str] = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            name = self.coco.cats[ann["category_id"]]["name"]
            if name not in names:
                names.append(name)
        return names

    def boxes(self, image_id: int) -> list[tuple[str, list[float]]]:
        return [(self.coco.cats[a["category_id"]]["name"], list(a.get("bbox", []))) for a in self.coco.imgToAnns.get(image_id, [])]


def load_captions(path: Path) -> dict[int, list[str]]:
    """image id -> its reference captions, from a COCO captions file."""
    data = read_json(path)
    _check_fields(path, data, CAPTION_REQUIRED)
    captions: dict[int, list[str]] = {i: [] for i in _unique_ids(path, data["images"], "images")}
    for i, ann in enumerate(data["annotations"]):
        if ann["image_id"] not in captions:
            raise DataError(f"{path}: annotations[{i}] field 'image_id' refers to unknown image {ann['image_id']!r}")
        if not isinstance(ann["caption"], str):
            raise DataError(f"{path}: annotations[{i}] field 'caption' must be a string")
        captions[ann["image_id"]].append(ann["caption"])
    return captions
