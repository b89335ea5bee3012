"""bench: reproducible batch evaluation of multi-modal LLMs.

`import bench` is light on purpose: torch, transformers and the data libraries are imported
only by the modules that need them, when they are used.
"""

__version__ = "0.1.0"
