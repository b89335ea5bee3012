"""Saliency: which pixels an output token relied on, and how faithful a map is (insertion/deletion).

``request.py``: what a task asks (an `ExplainRequest`: image, target, method) and what it gets back.
``seam.py``: the protocol a model adapter offers to be explained (pixel space, gradients, batched variants).
``space.py``: the model-input pixel space and its exact mapping back to the original image.
``methods/``: one registered saliency method per file. ``faithfulness.py``: the RISE curves.
``engine.py``: answers explain requests (prepares each target once, runs its methods).
"""
