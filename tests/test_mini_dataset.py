"""Checks of the bundled mini COCO dataset (bench/assets/mini_coco).

These tests read the shipped files by path, relative to this test file. They do not import
``bench``. The comparisons against the project's shared folder (the COCO label list and the
original photos) are skipped when ``shared/`` is not beside the repository.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

pycocotools_coco = pytest.importorskip("pycocotools.coco")

# pycocotools' mask decoding warns under NumPy 2 (a third-party issue, not ours).
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / "assets" / "mini_coco"
IMAGES = DATA / "images"
SHARED = Path(__file__).resolve().parents[2] / "shared"
SHARED_PHOTOS = SHARED / "data" / "photos"
SHARED_LABELS = SHARED / "models" / "coco80_labels.txt"

# The 80 official MS-COCO categories: id -> (name, supercategory).
OFFICIAL = {
    1: ("person", "person"), 2: ("bicycle", "vehicle"), 3: ("car", "vehicle"),
    4: ("motorcycle", "vehicle"), 5: ("airplane", "vehicle"), 6: ("bus", "vehicle"),
    7: ("train", "vehicle"), 8: ("truck", "vehicle"), 9: ("boat", "vehicle"),
    10: ("traffic light", "outdoor"), 11: ("fire hydrant", "outdoor"), 13: ("stop sign", "outdoor"),
    14: ("parking meter", "outdoor"), 15: ("bench", "outdoor"), 16: ("bird", "animal"),
    17: ("cat", "animal"), 18: ("dog", "animal"), 19: ("horse", "animal"), 20: ("sheep", "animal"),
    21: ("cow", "animal"), 22: ("elephant", "animal"), 23: ("bear", "animal"), 24: ("zebra", "animal"),
    25: ("giraffe", "animal"), 27: ("backpack", "accessory"), 28: ("umbrella", "accessory"),
    31: ("handbag", "accessory"), 32: ("tie", "accessory"), 33: ("suitcase", "accessory"),
    34: ("frisbee", "sports"), 35: ("skis", "sports"), 36: ("snowboard", "sports"),
    37: ("sports ball", "sports"), 38: ("kite", "sports"), 39: ("baseball bat", "sports"),
    40: ("baseball glove", "sports"), 41: ("skateboard", "sports"), 42: ("surfboard", "sports"),
    43: ("tennis racket", "sports"), 44: ("bottle", "kitchen"), 46: ("wine glass", "kitchen"),
    47: ("cup", "kitchen"), 48: ("fork", "kitchen"), 49: ("knife", "kitchen"), 50: ("spoon", "kitchen"),
    51: ("bowl", "kitchen"), 52: ("banana", "food"), 53: ("apple", "food"), 54: ("sandwich", "food"),
    55: ("orange", "food"), 56: ("broccoli", "food"), 57: ("carrot", "food"), 58: ("hot dog", "food"),
    59: ("pizza", "food"), 60: ("donut", "food"), 61: ("cake", "food"), 62: ("chair", "furniture"),
    63: ("couch", "furniture"), 64: ("potted plant", "furniture"), 65: ("bed", "furniture"),
    67: ("dining table", "furniture"), 70: ("toilet", "furniture"), 72: ("tv", "electronic"),
    73: ("laptop", "electronic"), 74: ("mouse", "electronic"), 75: ("remote", "electronic"),
    76: ("keyboard", "electronic"), 77: ("cell phone", "electronic"), 78: ("microwave", "appliance"),
    79: ("oven", "appliance"), 80: ("toaster", "appliance"), 81: ("sink", "appliance"),
    82: ("refrigerator", "appliance"), 84: ("book", "indoor"), 85: ("clock", "indoor"),
    86: ("vase", "indoor"), 87: ("scissors", "indoor"), 88: ("teddy bear", "indoor"),
    89: ("hair drier", "indoor"), 90: ("toothbrush", "indoor"),
}


def _load_coco(path: Path):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        return pycocotools_coco.COCO(str(path))


@pytest.fixture(scope="module")
def instances():
    return _load_coco(DATA / "instances.json")


@pytest.fixture(scope="module")
def captions():
    return _load_coco(DATA / "captions.json")


@pytest.fixture(scope="module")
def raw_instances():
    return json.loads((DATA / "instances.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def raw_captions():
    return json.loads((DATA / "captions.json").read_text(encoding="utf-8"))


def test_official_category_table_is_complete():
    assert len(OFFICIAL) == 80
    assert len({name for name, _ in OFFICIAL.values()}) == 80


def test_header_fields(raw_instances, raw_captions):
    for raw in (raw_instances, raw_captions):
        assert raw["info"]["version"] == "1.0"
        assert raw["info"]["year"] == 2026
        assert raw["info"]["description"]
        lic_ids = [lic["id"] for lic in raw["licenses"]]
        assert len(lic_ids) == len(set(lic_ids)) >= 1
        assert all(lic["name"] for lic in raw["licenses"])
        assert {im["license"] for im in raw["images"]} <= set(lic_ids)
    assert raw_instances["licenses"] == raw_captions["licenses"]


def test_images_exist_with_recorded_size(instances):
    imgs = instances.dataset["images"]
    assert len(imgs) == 21
    assert [im["id"] for im in imgs] == list(range(1, 22))
    names = [im["file_name"] for im in imgs]
    assert names == sorted(names)
    assert len(set(names)) == 21
    assert sorted(p.name for p in IMAGES.glob("*.jpg")) == names
    for im in imgs:
        path = IMAGES / im["file_name"]
        assert path.is_file(), path
        with Image.open(path) as pil:
            assert pil.size == (im["width"], im["height"]), im["file_name"]


def test_categories_are_the_80_official_ones(instances):
    cats = instances.dataset["categories"]
    got = {c["id"]: (c["name"], c["supercategory"]) for c in cats}
    assert len(cats) == 80
    assert got == OFFICIAL


def test_category_names_match_shared_label_file(instances):
    if not SHARED_LABELS.is_file():
        pytest.skip(f"shared label list not present at {SHARED_LABELS}")
    labels = [line.strip() for line in SHARED_LABELS.read_text(encoding="utf-8").splitlines() if line.strip()]
    cats = sorted(instances.dataset["categories"], key=lambda c: c["id"])
    assert [c["name"] for c in cats] == labels


def test_annotations_are_valid_boxes(instances):
    anns = instances.dataset["annotations"]
    assert anns, "no annotations"
    ids = [a["id"] for a in anns]
    assert len(ids) == len(set(ids))
    cat_ids = set(OFFICIAL)
    for a in anns:
        im = instances.imgs[a["image_id"]]
        x, y, w, h = a["bbox"]
        assert w > 0 and h > 0, a
        assert x >= 0 and y >= 0, a
        assert x + w <= im["width"] + 1e-6, a
        assert y + h <= im["height"] + 1e-6, a
        assert a["category_id"] in cat_ids, a
        assert a["iscrowd"] in (0, 1), a
        assert a["area"] == pytest.approx(w * h, rel=1e-3, abs=0.05), a
        seg = a["segmentation"]
        assert seg == [] or (isinstance(seg, list) and all(len(poly) >= 6 for poly in seg)), a


def test_pycocotools_index_and_masks(instances):
    # getAnnIds / annToMask run over every annotation without errors.
    for img_id in instances.getImgIds():
        im = instances.imgs[img_id]
        for ann in instances.loadAnns(instances.getAnnIds(imgIds=[img_id])):
            if ann["segmentation"]:
                mask = instances.annToMask(ann)
                assert mask.shape == (im["height"], im["width"])
                assert mask.sum() > 0


def test_some_images_have_no_objects(instances):
    empty = [i for i in instances.getImgIds() if not instances.getAnnIds(imgIds=[i])]
    assert len(empty) >= 4


def test_crowd_annotations_are_rare(instances):
    anns = instances.dataset["annotations"]
    crowd = [a for a in anns if a["iscrowd"]]
    assert len(crowd) <= 4
    assert len(anns) - len(crowd) >= 50


def test_captions(instances, captions):
    assert captions.dataset["images"] == instances.dataset["images"]
    per_image = Counter()
    ids = [a["id"] for a in captions.dataset["annotations"]]
    assert len(ids) == len(set(ids))
    for a in captions.dataset["annotations"]:
        assert a["image_id"] in instances.imgs
        assert isinstance(a["caption"], str) and a["caption"].strip(), a
        per_image[a["image_id"]] += 1
    for img_id in instances.getImgIds():
        assert per_image[img_id] >= 2, instances.imgs[img_id]["file_name"]


def test_docs_keep_attribution_next_to_images(instances):
    readme = (DATA / "README.md").read_text(encoding="utf-8")
    notice = (DATA / "NOTICE.md").read_text(encoding="utf-8")
    for im in instances.dataset["images"]:
        stem = im["file_name"].rsplit(".", 1)[0]
        assert stem in readme, stem
        assert im["file_name"] in notice, im["file_name"]
    assert "MIT" in notice


def test_images_identical_to_shared(instances):
    if not SHARED_PHOTOS.is_dir():
        pytest.skip(f"shared photos not present at {SHARED_PHOTOS}")
    for im in instances.dataset["images"]:
        ours = (IMAGES / im["file_name"]).read_bytes()
        theirs = (SHARED_PHOTOS / im["file_name"]).read_bytes()
        assert ours == theirs, im["file_name"]
