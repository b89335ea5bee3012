"""The detector protocol shared by every object detector in ``bench``.

A detector takes PIL images and returns one :class:`Detections` per image, with
boxes in the ORIGINAL image's pixel coordinates (x1, y1, x2, y2; the image
spans [0, width] x [0, height]).  Closed-set detectors (a fixed list of class
names, e.g. COCO's 80) expose it as ``vocabulary``; open-vocabulary detectors
(e.g. OWL-ViT) have ``vocabulary = None`` and are driven by ``queries``.

This module imports only numpy, PIL (for typing) and the standard library.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    import PIL.Image

__all__ = ["Detections", "Detector", "QueryError", "resolve_queries"]


class QueryError(ConfigError, ValueError):
    """A query a closed-set detector cannot answer (or an empty query list); one line."""


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float32, copy=True)
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections for one image, sorted by nothing in particular unless the
    producer says so (``OnnxDetector`` returns them by descending score).

    boxes:  float32 [N, 4], x1 y1 x2 y2 in original image pixels.
    scores: float32 [N].
    labels: N class names.

    The arrays are copied and made read-only, so an instance is truly immutable.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes, dtype=np.float32)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        labels = tuple(self.labels)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"Detections.boxes must have shape [N, 4], got {list(boxes.shape)}")
        if not (len(boxes) == len(scores) == len(labels)):
            raise ValueError(
                f"Detections: {len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels "
                "(they must be equal)"
            )
        if not all(isinstance(x, str) for x in labels):
            raise TypeError("Detections.labels must be strings (class names)")
        object.__setattr__(self, "boxes", _readonly(boxes))
        object.__setattr__(self, "scores", _readonly(scores))
        object.__setattr__(self, "labels", labels)

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), ())

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        items = ", ".join(
            f"{lab}:{s:.2f}@[{b[0]:.0f},{b[1]:.0f},{b[2]:.0f},{b[3]:.0f}]"
            for lab, s, b in zip(self.labels, self.scores, self.boxes)
        )
        return f"Detections({len(self)}: {items})"

    def _take(self, keep: np.ndarray) -> "Detections":
        idx = np.flatnonzero(keep)
        return Detections(self.boxes[idx], self.scores[idx], tuple(self.labels[i] for i in idx))

    def max_score(self, name: str) -> float:
        """Highest score among detections labelled ``name``; 0.0 when there are none."""
        found = [float(s) for lab, s in zip(self.labels, self.scores) if lab == name]
        return max(found) if found else 0.0

    def filter(self, min_score: float) -> "Detections":
        """Detections whose score is >= ``min_score``."""
        return self._take(self.scores >= np.float32(min_score))

    def only(self, names: Iterable[str]) -> "Detections":
        """Detections whose label is one of ``names``."""
        wanted = set(names)
        return self._take(np.array([lab in wanted for lab in self.labels], dtype=bool))


@runtime_checkable
class Detector(Protocol):
    """What every detector provides.

    name:       stable identifier, used to name leaderboard columns,
                e.g. ``"onnx:centernet_mbv3_coco80"``.
    vocabulary: the closed set of class names, or None for an open-vocabulary detector.
    detect:     one :class:`Detections` per image, boxes in original image pixels.
                ``queries``: for a closed-set detector, keep only those classes
                (a query outside the vocabulary or an empty list is a ValueError);
                for an open-vocabulary detector, the text queries to look for.
    """

    name: str
    vocabulary: tuple[str, ...] | None

    def detect(
        self,
        images: Sequence[PIL.Image.Image],
        queries: Sequence[str] | None = None,
    ) -> list[Detections]: ...


def _norm(s: str) -> str:
    return " ".join(s.split()).lower()


def resolve_queries(
    queries: Sequence[str] | None,
    vocabulary: Sequence[str],
    detector_name: str = "detector",
) -> tuple[str, ...] | None:
    """Map ``queries`` onto a closed ``vocabulary`` (case- and spacing-insensitive).

    Returns the matching vocabulary names (in query order, without duplicates),
    or None when ``queries`` is None (meaning: all classes).  Raises a ValueError
    naming an unknown query and listing close matches, or for an empty list.
    """
    if queries is None:
        return None
    if isinstance(queries, (str, bytes)):
        raise TypeError(
            f"{detector_name}: queries must be a sequence of class names, not a single string "
            f"(use [{queries!r}])"
        )
    queries = list(queries)
    if not queries:
        raise QueryError(
            f"{detector_name}: empty query list (pass queries=None to keep all classes)"
        )
    by_norm: dict[str, str] = {}
    for v in vocabulary:
        by_norm.setdefault(_norm(v), v)
    out: list[str] = []
    for q in queries:
        if not isinstance(q, str):
            raise TypeError(f"{detector_name}: query {q!r} is not a string")
        hit = by_norm.get(_norm(q))
        if hit is None:
            close = difflib.get_close_matches(_norm(q), list(by_norm), n=5, cutoff=0.6)
            hint = (
                "close matches: " + ", ".join(repr(by_norm[c]) for c in close)
                if close
                else "no close match"
            )
            raise QueryError(
                f"{detector_name}: query {q!r} is not in its closed vocabulary of "
                f"{len(by_norm)} classes; {hint}"
            )
        if hit not in out:
            out.append(hit)
    return tuple(out)
