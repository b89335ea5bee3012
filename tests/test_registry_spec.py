"""The typed registry, YAML task specs (include, cycles, validation) and fingerprints."""

import json
import shutil
import sys
import subprocess

import pytest

from bench.errors import ConfigError, DataError
from bench.registry import MODELS, TASK_TYPES, Registry
from bench.spec import all_specs, listing_hash, load_spec_file, spec_files
from bench.tasks.base import TaskContext


def test_registry_rejects_duplicates_and_suggests_close_matches():
    reg: Registry = Registry("widget")
    reg.register("alpha", 1)
    reg.register("alpha", 1)   # the same object again is harmless (module re-import)
    with pytest.raises(ValueError, match="duplicate widget name 'alpha'"):
        reg.register("alpha", 2)
    with pytest.raises(ConfigError, match="unknown widget 'alpah'; did you mean alpha"):
        reg.get("alpah")


def test_registry_type_check():
    class Base:
        pass

    reg: Registry = Registry("thing", base=Base)
    with pytest.raises(TypeError):
        reg.register("x", int)


def test_builtin_names():
    assert "pope" in TASK_TYPES.names()
    assert {"hf", "tiny-llava", "tiny-qwen2-vl"} <= set(MODELS.names())
    with pytest.raises(ConfigError, match="did you mean tiny-llava"):
        MODELS.get("tiny-lava")


def test_import_bench_and_listing_plugins_stays_light():
    code = ("import sys, bench, bench.registry as r; r.load_plugins(); "
            "print(sorted(m for m in ('torch', 'transformers', 'datasets', 'onnxruntime', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_packaged_specs_load_and_validate():
    specs = all_specs()
    assert {"pope_mini_random", "pope_mini_popular", "pope_mini_adversarial",
            "pope_coco_random", "pope_coco_popular", "pope_coco_adversarial"} <= set(specs)
    assert not any(name.startswith("_") for name in spec_files())          # templates are not tasks
    for spec in specs.values():
        TASK_TYPES.get(spec.type)(spec, TaskContext())
    mini = specs["pope_mini_adversarial"]
    assert mini.group == "pope_mini" and mini.params["negatives"] == "adversarial" and mini.params["min_objects"] == 1
    assert mini.dataset["root"] == "bundled:mini_coco"                    # from the included template


def write(path, text):
    path.write_text(text)
    return path


def test_include_merges_mappings_and_overrides(tmp_path):
    write(tmp_path / "_base.yaml", "type: pope\ndataset: {source: coco, annotations: a.json, images: imgs}\n"
                                   "params: {min_objects: 2, negatives: random}\n")
    spec = load_spec_file(write(tmp_path / "child.yaml", "task: child\ninclude: _base.yaml\nparams: {negatives: popular}\n"))
    assert spec.params == {"min_objects": 2, "negatives": "popular"}
    assert spec.dataset["annotations"] == "a.json"


def test_include_cycle_is_detected(tmp_path):
    write(tmp_path / "a.yaml", "task: a\ntype: pope\ninclude: b.yaml\n")
    write(tmp_path / "b.yaml", "include: c.yaml\n")
    write(tmp_path / "c.yaml", "include: b.yaml\n")
    with pytest.raises(ConfigError, match=r"include cycle: a.yaml -> b.yaml -> c.yaml -> b.yaml"):
        load_spec_file(tmp_path / "a.yaml")


@pytest.mark.parametrize("text, message", [
    ("task: t\ntype: pope\nparams: [1, 2\n", "malformed YAML"),
    ("task: t\ntype: pope\nparmas: {}\n", "unknown field 'parmas'"),
    ("type: pope\n", "missing field 'task'"),
    ("task: other\ntype: pope\n", "must match"),
    ("- a\n- b\n", "must be a mapping"),
    ("", "empty task spec"),
    ("task: t\ntype: pope\ninclude: missing.yaml\n", "task spec file not found"),
])
def test_bad_spec_files_name_the_file(tmp_path, text, message):
    path = write(tmp_path / "t.yaml", text)
    with pytest.raises(ConfigError, match=message) as info:
        load_spec_file(path)
    assert str(tmp_path) in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("params, message", [
    ({"negatives": "sometimes"}, "params field 'negatives' must be"),
    ({"negatives": "random", "min_objects": "3"}, "params field 'min_objects' must be an integer"),
    ({"negatives": "random", "answer_mode": "guess"}, "params field 'answer_mode'"),
    ({"negatives": "random", "typo": 1}, "unknown params field 'typo'"),
    ({}, "params field 'negatives' .* is required"),
])
def test_task_type_validates_params(tmp_path, params, message):
    from bench.spec import TaskSpec

    spec = TaskSpec("t", "pope", tmp_path / "t.yaml", dataset={"source": "coco", "annotations": "a", "images": "b"}, params=params)
    with pytest.raises(ConfigError, match=message):
        TASK_TYPES.get("pope")(spec, TaskContext())


def test_unknown_dataset_source(tmp_path):
    from bench.spec import TaskSpec

    spec = TaskSpec("t", "pope", tmp_path / "t.yaml", dataset={"source": "ftp"}, params={})
    with pytest.raises(ConfigError, match="dataset field 'source' must be one of"):
        TASK_TYPES.get("pope")(spec, TaskContext())


def test_listing_hash_uses_names_and_sizes_only(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"12345")
    (tmp_path / "b.jpg").write_bytes(b"xy")
    first = listing_hash(tmp_path)
    (tmp_path / "a.jpg").write_bytes(b"54321")       # same size, other bytes: same listing
    assert listing_hash(tmp_path) == first
    (tmp_path / "b.jpg").write_bytes(b"xyz")
    assert listing_hash(tmp_path) != first
    assert first["files"] == 2


def test_fingerprint_follows_annotation_content(tmp_path):
    from bench.runner.plan import task_fingerprint
    from bench.resources import assets_dir
    from bench.spec import TaskSpec

    root = tmp_path / "data"
    shutil.copytree(assets_dir() / "mini_coco", root)
    spec = TaskSpec("t", "pope", tmp_path / "t.yaml", dataset={"source": "coco", "root": str(root), "annotations": "instances.json",
                                                                "images": "images"},
                    params={"negatives": "random", "min_objects": 1, "num_images": None})

    def fingerprint():
        task = TASK_TYPES.get("pope")(spec, TaskContext())
        task.samples()
        return task_fingerprint(task)

    before = fingerprint()
    assert before == fingerprint()
    data = json.loads((root / "instances.json").read_text())
    data["info"] = {"description": "edited"}
    (root / "instances.json").write_text(json.dumps(data))
    after = fingerprint()
    assert after["sha256"] != before["sha256"] and after["spec_sha256"] == before["spec_sha256"]
    assert after["data"]["images"] == before["data"]["images"]
    with pytest.raises(DataError, match="image folder not found"):
        shutil.rmtree(root / "images")
        fingerprint()
