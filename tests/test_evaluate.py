"""`bench.evaluate` on a model already in memory: the same rows and metrics as `bench run` on the same tiny model
saved in a folder, the model's state as it was afterwards (also after an error), no second copy, and a normal run
folder with the in-memory identity when ``output=`` is given."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import pytest
import torch

import bench
from bench.errors import BenchError, ConfigError
from bench.models.in_memory import InMemoryFactory, weights_sha256
from bench.models.tiny_adapter import build_cached, default_cache_dir
from conftest import run_cli

TASK = "pope_mini_adversarial"
LIMIT = 12
SETTINGS = {"answer_mode": "both", "set": {"max_new_tokens": 6}}
CLI_SETTINGS = ["--answer-mode", "both", "--set", "max_new_tokens=6", "--no-progress", "--no-leaderboard"]


@pytest.fixture(scope="module")
def folder():
    return build_cached("llava", "tiny", 0, default_cache_dir())


@pytest.fixture
def loaded(folder):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    return AutoModelForImageTextToText.from_pretrained(folder), AutoProcessor.from_pretrained(folder, backend="pil")


@pytest.fixture(scope="module")
def cli_run(folder, tmp_path_factory):
    """`bench run --model tiny-llava` on the same folder: the reference rows and metrics."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("cli")
    assert main(["run", "--model", "tiny-llava", "--model-args", f"cache_dir={folder.parent}", "--tasks", TASK,
                 "--limit", str(LIMIT), "--output", str(out), "--run-name", "cli", *CLI_SETTINGS]) == 0
    rows = pd.read_parquet(out / "cli" / "tasks" / TASK / "rows.parquet")
    return rows, json.loads((out / "cli" / "metrics.json").read_text())


def state_of(model, processor) -> dict:
    return {"training": [m.training for m in model.modules()],
            "requires_grad": [p.requires_grad for p in model.parameters()],
            "placement": [(str(t.device), t.dtype) for t in [*model.parameters(), *model.buffers()]],
            "padding_side": processor.tokenizer.padding_side}


def unusual_state(model, processor) -> None:
    """Train mode, a pattern of grad flags (one parameter off, another on) and the padding side on the left: what
    evaluation changes while it runs (eval mode; right padding for scoring)."""
    model.train()
    params = list(model.parameters())
    for i, p in enumerate(params):
        p.requires_grad_(i % 3 != 0)
    params[0].requires_grad_(False)
    params[1].requires_grad_(True)
    processor.tokenizer.padding_side = "left"


def assert_rows_match(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    floats = [c for c in a.columns if pd.api.types.is_float_dtype(a[c]) and a[c].notna().any()]
    others = [c for c in a.columns if c not in floats]
    pd.testing.assert_frame_equal(a[others].reset_index(drop=True), b[others].reset_index(drop=True))
    for c in floats:
        np.testing.assert_allclose(a[c].to_numpy(float), b[c].to_numpy(float), rtol=0, atol=1e-6, err_msg=c)


def test_rows_equal_the_cli_rows_and_the_model_state_is_restored(loaded, cli_run, tmp_path, monkeypatch):
    from bench.models._hf_engine import HFAdapter

    model, processor = loaded
    unusual_state(model, processor)
    before = state_of(model, processor)
    adapters = []
    original = HFAdapter.from_objects.__func__

    def spy(cls, *args, **kwargs):
        adapters.append(original(cls, *args, **kwargs))
        return adapters[-1]

    monkeypatch.setattr(HFAdapter, "from_objects", classmethod(spy))
    ran = []
    hook = model.register_forward_hook(lambda module, args, output: ran.append((module, module.training)))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        results = bench.evaluate(model, processor, TASK, limit=LIMIT, **SETTINGS)
    finally:
        hook.remove()

    cli_rows, cli_metrics = cli_run
    assert_rows_match(results.rows[TASK], cli_rows)
    for name, m in cli_metrics["tasks"][TASK]["metrics"].items():
        got = results.metrics["tasks"][TASK]["metrics"][name]
        assert got["value"] == pytest.approx(m["value"], abs=1e-6, nan_ok=True), name
    assert results.value(TASK) == pytest.approx(cli_metrics["tasks"][TASK]["metrics"]["generate_f1"]["value"])
    # the given object itself ran, in eval mode, in this process: no copy (a copy would reach the hook as itself)
    assert ran and all(module is model and not training for module, training in ran)
    assert len(adapters) == 1 and adapters[0].model is model and adapters[0].processor is processor
    assert state_of(model, processor) == before
    assert results.run_dir is None and list(scratch.iterdir()) == []        # the temporary run folder is gone


def test_output_gives_a_normal_run_folder_with_the_in_memory_identity(loaded, folder, tmp_path):
    from transformers import AutoModelForImageTextToText

    model, processor = loaded
    results = bench.evaluate(model, processor, [TASK], output=tmp_path, limit=4, answer_mode="score")
    digest = weights_sha256(model)
    assert len(digest) == 64 and results.run_dir.parent == tmp_path and digest[:12] in results.run_dir.name
    manifest = json.loads((results.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    identity = manifest["model"]["identity"]
    assert identity["kind"] == "in-memory" and identity["weights_sha256"] == digest
    assert identity["model_type"] == "llava" and identity["name_or_path"] == str(folder)
    assert identity["architectures"] == list(model.config.architectures) and identity["dtype"] == "float32"
    assert manifest["model"]["spec"] == f"in-memory:{folder.name}@{digest[:12]}"
    assert manifest["model"]["description"]["identity"] == identity
    assert json.loads((results.run_dir / "metrics.json").read_text()) == results.metrics
    assert_rows_match(pd.read_parquet(results.run_dir / "tasks" / TASK / "rows.parquet"), results.rows[TASK])

    # the hash is of the weights: equal for another object holding the same ones, different once one value changes
    assert weights_sha256(AutoModelForImageTextToText.from_pretrained(folder)) == digest
    param = next(model.parameters())
    with torch.no_grad():
        param.view(-1)[0] += 1e-3
        assert weights_sha256(model) != digest
        assert InMemoryFactory.over(model, processor).spec.target != manifest["model"]["spec"].split(":", 1)[1]
        param.view(-1)[0] -= 1e-3
    assert weights_sha256(model) == digest


def test_an_error_inside_restores_the_state_and_removes_the_temporary_folder(loaded, tmp_path, monkeypatch):
    model, processor = loaded
    unusual_state(model, processor)
    before = state_of(model, processor)

    def broken(module, args, output):       # the run changes the model's flags and dtype, then fails
        module.requires_grad_(False)
        module.to(torch.float64)
        raise RuntimeError("planted failure")

    hook = model.register_forward_hook(broken)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    try:
        with pytest.raises(BenchError, match="planted failure"):
            bench.evaluate(model, processor, TASK, limit=2, answer_mode="score")
    finally:
        hook.remove()
    assert state_of(model, processor) == before
    assert list(scratch.iterdir()) == []


def test_preserved_state_puts_back_modes_flags_placement_threads_and_rng(loaded):
    from bench.evaluation import preserved_state

    model, processor = loaded
    unusual_state(model, processor)
    before = state_of(model, processor)
    threads, rng = torch.get_num_threads(), torch.random.get_rng_state()
    attn = model.config._attn_implementation
    with pytest.raises(ValueError):
        with preserved_state(model, processor):
            model.eval()
            model.requires_grad_(True)
            model.to(torch.float64)
            processor.tokenizer.padding_side = "right"
            model.set_attn_implementation("eager")
            model.generation_config.max_new_tokens = 3
            torch.set_num_threads(max(1, threads - 1) if threads > 1 else 2)
            torch.rand(5)
            raise ValueError("inside")
    assert state_of(model, processor) == before
    assert model.config._attn_implementation == attn and model.generation_config.max_new_tokens != 3
    assert torch.get_num_threads() == threads and torch.equal(torch.random.get_rng_state(), rng)


def test_the_factory_never_copies_the_model(loaded):
    model, processor = loaded
    factory = InMemoryFactory.over(model, processor)
    with pytest.raises(TypeError, match="never sent to another process"):
        pickle.dumps(factory)
    with pytest.raises(ConfigError, match="cannot run on cuda:0 without a copy"):
        factory.load("cuda:0", 8)
    with pytest.raises(ConfigError, match="expected a transformers"):
        bench.evaluate(torch.nn.Linear(2, 2), processor, TASK)


def test_the_command_line_refuses_the_in_memory_name(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "in-memory", "--tasks", TASK, "--output", str(tmp_path),
                            "--no-progress", "--no-leaderboard"], capsys)
    assert code == 2 and "bench.evaluate()" in err and "hf:<folder>" in err


def test_import_bench_stays_light_and_evaluate_is_lazy():
    code = ("import sys, bench; f = bench.evaluate; r = bench.Results; "
            "from bench.evaluation import evaluate, Results; "
            "assert callable(f) and f is evaluate and r is Results; "
            "print(sorted(n for n in ('torch', 'transformers', 'pandas') if n in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
