"""bench: reproducible batch evaluation of multi-modal LLMs.

`import bench` is light on purpose: torch, transformers and the data libraries are imported
only by the modules that need them, when they are used.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    """``bench.evaluate`` and ``bench.Results`` (from `bench.evaluation`), imported on first use, so ``import bench``
    loads no torch."""
    if name in ("evaluate", "Results"):
        from . import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
