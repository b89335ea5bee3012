"""Model adapters, one module each; they register themselves in `bench.registry.MODELS`.

Modules here import torch/transformers only inside functions, so listing models stays cheap.
"""
