"""Bias probes through semantic adversarial edits of what a model perceives (method.md section 1).

``probes.py``: axes, characteristics and templates as data (``bench/assets/bias/``). ``imagesets.py``: image
folders, COCO images with a person, counterfactual pairs, and the optional attributes file. ``request.py``: what the
bias task asks (`BiasRequest`, `EditSpec`) and gets back; its handler is ``engine.py`` (loaded lazily).
``edits/``: one registered edit per module (embedding, pixel, placebo, pairs); their engines ``pgd.py``,
``embedding_attack.py``, ``noise.py``. ``scorer.py``: the attribute scorer (OWL-ViT, or the grounded model's own
detector). ``stats.py``: per-cell paired statistics on `bench.metrics.paired`. ``plots.py``: the shift plot.

Light to import: torch, transformers and scipy load only when an edit runs or statistics are computed.
"""
