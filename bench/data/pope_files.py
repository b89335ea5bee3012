"""The official POPE question files (RUCAIBox/POPE, ``output/coco/``), shipped as data and pinned by sha256; and the
sha256 of the RePOPE files (YanNeu/RePOPE ``annotations/``), which are NOT shipped (their source states no licence):
users give their folder, and a file of another version is refused unless its spec names its own sha256."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError
from ..spec import sha256_file
from .jsonl import read_jsonl

OFFICIAL_SHA256 = {
    "coco_pope_random.json": "ac25245170b975a5bdf9080b23fd431dfe6be458bc038259c1f4f09a6bef7994",
    "coco_pope_popular.json": "72c1a8ad45d0c13514f5f22598261df41d3b533854d29682e924db50ed8aa753",
    "coco_pope_adversarial.json": "420b3407db1fa9f1187a805dca41cb7b97fd91504e6c2179706188c107fb8ef8",
}

# RePOPE (Neuhaus & Hein 2025, arXiv 2504.15707), YanNeu/RePOPE annotations/ at commit bcf22e5: the official
# questions with wrong labels corrected and ambiguous questions removed (same ids, images and texts).
REPOPE_SHA256 = {
    "coco_repope_random.json": "f464fcaf60b24ce2f280cf33f122e000dbdd35c8e88f77c4141c9c2cba864611",
    "coco_repope_popular.json": "57832b055bae5fd6176278a4f104c98ddd84811f7d26dfcb93d481f6c9da09a5",
    "coco_repope_adversarial.json": "8c346dbb060bf422ff92e769fa68e5ab3e8a777cb28a26e973387441e05c9ccf",
}
REPOPE_SOURCE = "github.com/YanNeu/RePOPE, annotations/ at commit bcf22e5"

QUESTION_RE = re.compile(r"^Is there (?:a|an) (?P<object>.+) in the image\?$")
COCO_FILE_RE = re.compile(r"(\d+)\.\w+$")


@dataclass(frozen=True)
class PopeQuestion:
    question_id: int
    image: str
    text: str
    object: str
    label: str


def verify_checksum(path: Path, expected: str | None, what: str = "official file",
                    hint: str = "other copies of the POPE files differ from the official ones") -> str:
    """The file's sha256, refused with one line when it is not the ``expected`` (pinned) one."""
    actual = sha256_file(path)
    if expected is not None and actual != expected:
        raise DataError(f"{path}: sha256 {actual} does not match the pinned {what} ({expected}); {hint}")
    return actual


def read_questions(path: Path) -> list[PopeQuestion]:
    questions = []
    for lineno, item in read_jsonl(path, ("question_id", "image", "text", "label"), "POPE question file"):
        match = QUESTION_RE.match(item["text"])
        if not match:
            raise DataError(f"{path}: line {lineno} field 'text' is not a POPE question: {item['text']!r}")
        if item["label"] not in ("yes", "no"):
            raise DataError(f"{path}: line {lineno} field 'label' must be 'yes' or 'no', got {item['label']!r}")
        questions.append(PopeQuestion(int(item["question_id"]), item["image"], item["text"], match["object"], item["label"]))
    return questions


def image_id_from_file(name: str) -> str:
    """COCO_val2014_000000310196.jpg -> '310196' (the file name itself when it has no number)."""
    match = COCO_FILE_RE.search(name)
    return str(int(match.group(1))) if match else name
