"""bench train-projector on tiny models and the mini photos: the loss falls, a killed run resumes from its
checkpoint to exactly the uninterrupted result, and the saved projector loads into the grounded model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from bench.errors import ConfigError
from bench.resources import assets_dir
from conftest import REPO
from grounded_fixtures import tiny_parts

IMAGES = assets_dir() / "mini_coco" / "images"


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    return tiny_parts(tmp_path_factory.mktemp("cache"))


def args(parts, output, *extra):
    llava, owl = parts
    return ["train-projector", "--mllm", str(llava), "--owl", str(owl), "--images", str(IMAGES), "--output", str(output),
            "--kind", "llava_mlp", "--holdout", "4", "--lr", "1e-3", "--no-progress", *extra]


def weights(folder):
    from safetensors.torch import load_file

    return load_file(str(folder / "projector.safetensors"))


def test_loss_falls_and_the_projector_loads_into_the_grounded_model(parts, tmp_path):
    from bench.models.base import ModelSpec
    from bench.models.projector import load
    from bench.registry import MODELS
    from bench.training import TrainConfig, train

    llava, owl = parts
    out = tmp_path / "p"
    result = train(TrainConfig(mllm=str(llava), owl=str(owl), output=out, images=IMAGES, kind="llava_mlp", epochs=6,
                               batch_size=4, holdout=4, lr=1e-3, progress=False), log=lambda *_: None)
    losses = result["losses"]
    assert len(losses) == 6 * 5 and sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert result["held_out"]["images"] == 4 and result["held_out"]["mse"] > 0
    module, config = load(out)
    assert (config.kind, config.in_dim, config.out_dim) == ("llava_mlp", 32, 64)
    assert config.trained["held_out"] == result["held_out"] and config.trained["complete"]
    adapter = MODELS.get("grounded")(ModelSpec("grounded", None, {"mllm": str(llava), "owl": str(owl),
                                                                  "projector": str(out)})).load("cpu", 4)
    assert torch.equal(adapter.projector[0].weight, module[0].weight)


def test_killed_training_resumes_from_its_checkpoint(parts, tmp_path, capsys):
    from bench.cli import main

    whole, killed = tmp_path / "whole", tmp_path / "killed"
    common = ("--batch-size", "1", "--epochs", "3", "--checkpoint-every", "1")
    assert main(args(parts, whole, *common)) == 0
    cmd = [sys.executable, "-m", "bench", *args(parts, killed, *common)]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    marker = killed / "checkpoint.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads(marker.read_text())["step"] >= 3:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    assert proc.poll() is None, "the training ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    stopped_at = json.loads(marker.read_text())["step"]
    assert 3 <= stopped_at < 51 and not (killed / "projector.safetensors").exists()
    capsys.readouterr()
    assert main(args(parts, killed, *common)) == 0
    assert f"resuming from {killed / 'checkpoint.pt'} at step {stopped_at}" in capsys.readouterr().out
    a, b = weights(whole), weights(killed)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_stopping_early_then_continuing_equals_one_run(parts, tmp_path, capsys):
    from bench.cli import main

    assert main(args(parts, tmp_path / "one", "--batch-size", "4", "--epochs", "2")) == 0
    assert main(args(parts, tmp_path / "two", "--batch-size", "4", "--epochs", "2", "--max-steps", "3")) == 0
    assert "stopped early" in capsys.readouterr().out
    assert main(args(parts, tmp_path / "two", "--batch-size", "4", "--epochs", "2")) == 0
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_a_checkpoint_with_other_settings_is_refused(parts, tmp_path, capsys):
    from bench.cli import main

    assert main(args(parts, tmp_path / "p", "--batch-size", "4", "--max-steps", "1")) == 0
    code = main(args(parts, tmp_path / "p", "--batch-size", "2"))
    err = capsys.readouterr().err
    assert code == 2 and "made with a different 'batch_size'" in err


def test_bad_inputs(parts, tmp_path, capsys):
    from bench.cli import main

    llava, owl = parts
    code = main(["train-projector", "--mllm", str(llava), "--owl", str(llava), "--images", str(IMAGES), "--output", str(tmp_path)])
    assert code == 2 and "OWL-ViT" in capsys.readouterr().err
    code = main(["train-projector", "--mllm", str(llava), "--owl", str(owl), "--images", str(tmp_path / "none"), "--output", str(tmp_path)])
    assert code == 2 and "image folder not found" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        from bench.models.projector import ProjectorConfig

        ProjectorConfig("transformer", 1, 2)


def test_training_from_a_datasets_dataset(parts, tmp_path):
    import datasets
    from PIL import Image

    from bench.training import TrainConfig, train

    names = sorted(p.name for p in IMAGES.glob("*.jpg"))[:8]
    features = datasets.Features({"image": datasets.Image(), "name": datasets.Value("string")})
    datasets.Dataset.from_dict({"image": [Image.open(IMAGES / n).convert("RGB") for n in names], "name": names},
                               features=features).save_to_disk(str(tmp_path / "ds"))
    llava, owl = parts
    result = train(TrainConfig(mllm=str(llava), owl=str(owl), output=tmp_path / "p", dataset=str(tmp_path / "ds"),
                               kind="llava_mlp", batch_size=3, holdout=2, progress=False), log=lambda *_: None)
    assert result["steps"] == 2 and result["held_out"]["images"] == 2 and result["complete"]
