"""The package ships what it needs: a plain (non-editable) install finds the task specs and bundled data
without the source tree, and the package list in pyproject.toml names every package under bench/."""

from __future__ import annotations

import subprocess
import sys
import tomllib

from conftest import REPO


def test_pyproject_lists_every_package():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "bench").rglob("__init__.py")}
    assert found | {"bench.specs"} == listed


def test_non_editable_install_finds_specs_and_data(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
    code = (
        "import bench, json\n"
        "from bench.spec import all_specs\n"
        "from bench.resources import assets_dir\n"
        "from bench.registry import TASK_TYPES\n"
        "from bench.tasks.base import TaskContext\n"
        "specs = all_specs()\n"
        "task = TASK_TYPES.get('pope')(specs['pope_mini_random'], TaskContext())\n"
        "samples = task.samples()\n"
        "print(json.dumps({'file': bench.__file__, 'specs': sorted(specs), 'samples': len(samples),\n"
        "  'image': samples[0].image.path, 'pope': len(list((assets_dir() / 'pope').glob('*.json'))),\n"
        "  'chair': (assets_dir() / 'chair' / 'synonyms.txt').exists(),\n"
        "  'detector': (assets_dir() / 'detectors' / 'centernet_mbv3_coco80.yaml').exists()}))\n"
    )
    env = {"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    import json

    info = json.loads(out.stdout)
    assert info["file"].startswith(str(target))                 # not the source tree
    assert {"pope_mini_random", "pope_coco_adversarial"} <= set(info["specs"])
    assert info["samples"] > 0 and info["image"].startswith(str(target))
    assert info["pope"] == 3 and info["chair"] and info["detector"]
    assert (target / "bench" / "assets" / "mini_coco" / "images" / "dog.jpg").exists()
    dist = next(target.glob("mllm_bench-*.dist-info"))
    assert (dist / "licenses" / "NOTICE.md").exists() and (dist / "licenses" / "LICENSE").exists()
