"""Saliency methods, one per file, each registered under its name in `bench.registry.SALIENCY_METHODS`.

A method is a `SaliencyMethod`: its ``kind`` says what the model must offer ("black": perturbations only, any model;
"white": gradients or attention, LLaVA-style models and the grounded model; "ga": a grounded model's detector), and
``compute(seam, prepared, config, seed)`` returns a map on the patch grid [rows, cols] (higher: more important).
Gradient methods sum absolute attributions over a cell's pixels and channels; perturbation methods give the drop
of the target's log-probability when the cell is replaced by the baseline.
"""
