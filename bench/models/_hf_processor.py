"""Loading a model's processor, also where torchvision is absent (transformers 5.x).

Qwen2-VL / Qwen2.5-VL processors declare a *video* processor as a mandatory sub-processor, and in transformers 5 the
only video-processor backend is torchvision: without it ``AutoProcessor.from_pretrained(path, backend="pil")``
raises ``ImportError("Video processor cannot be loaded - requested pil backend is not available.")`` (and the
processor class cannot even be instantiated). This holds for the real hub checkpoints as much as for the tiny ones.

``load_processor`` tries the ordinary path first and, only on that error, builds the same processor class with its
video slot removed: image processor (PIL backend) + tokenizer + chat template are loaded by the usual Auto classes
from the same folder, so images and text are processed exactly as by the full processor.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

_VIDEO_ERROR_MARKERS = ("Video processor cannot be loaded", "VIDEO_PROCESSOR_MAPPING", "VideoProcessor")


def load_processor(path: str | os.PathLike, **kwargs: Any):
    """``AutoProcessor.from_pretrained(path, backend="pil", **kwargs)``, falling back to an image-only processor of
    the same class when the only obstacle is a torchvision-only video processor."""
    from transformers import AutoProcessor

    kwargs.setdefault("backend", "pil")
    try:
        return AutoProcessor.from_pretrained(path, **kwargs)
    except (ImportError, AttributeError, ValueError) as err:
        if not any(marker in str(err) for marker in _VIDEO_ERROR_MARKERS):
            raise
    return image_only_processor_class(_processor_class_name(path)).from_pretrained(path, **kwargs)


def _processor_class_name(path) -> str:
    from transformers import AutoConfig
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    model_type = AutoConfig.from_pretrained(path).model_type
    name = PROCESSOR_MAPPING_NAMES.get(model_type)
    if name is None:
        raise ValueError(f"no processor class registered for model type {model_type!r}")
    return name


@lru_cache(maxsize=None)
def image_only_processor_class(name: str):
    """The processor class ``name`` with its ``video_processor`` attribute removed (same name, same behaviour for
    images and text)."""
    import transformers

    base = getattr(transformers, name)

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        self.video_processor = None
        base.__init__(self, image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

    return type(name, (base,), {"__init__": __init__, "__module__": __name__, "__doc__": base.__doc__})
