"""The planted bias models of `bench/models/tiny/planted_bias.py`, built once per test session (the bias tests share
them through the session's base temporary folder)."""

from __future__ import annotations

import pytest

from bench.models.tiny import planted_bias as pb


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "bias_planted"
    if not (root / "done").exists():
        pb.build_owlvit(root / "owlvit")
        for twin, name in ((False, "llava"), (True, "twin")):
            pb.build_llava(root / name, twin=twin)
        pb.build_grounded(root / "trio")
        pb.build_grounded(root / "twin_trio", twin=True)
        (root / "done").write_text("ok")
    return root
