"""The Ray launcher behind the launcher seam, on CPU: rows equal to a local run, an actor killed mid-chunk, a poison
chunk, an actor that never gets room, fake GPUs, a two-node cluster that loses a node, SIGTERM, and the device
strings each launcher owns. Ray instances are small (80 MiB object store, one or two CPUs a node)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, run_cli

ray = pytest.importorskip("ray")

FAST = ["--no-progress", "--no-leaderboard"]
POPE = ["--tasks", "pope_mini_adversarial", "--answer-mode", "score", "--chunk-images", "3", "--threads", "1"]
TASK = "pope_mini_adversarial"
STORE = 80 * 1024 ** 2
HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500, "health_check_timeout_ms": 500,
          "health_check_failure_threshold": 2}


def rows_of(out: Path, run: str) -> pd.DataFrame:
    return pd.read_parquet(out / run / "tasks" / TASK / "rows.parquet")


def manifest_of(out: Path, run: str) -> dict:
    return json.loads((out / run / "manifest.json").read_text())


def chunk_files(out: Path, run: str) -> list[Path]:
    folder = out / run / "tasks" / TASK / "chunks"
    return sorted(folder.glob("chunk-*.parquet")) if folder.exists() else []


def assert_equal_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Text and integer columns equal, floats within 1e-6, row for row."""
    assert list(a.columns) == list(b.columns) and len(a) == len(b) and b["sample_id"].is_unique
    for column in a.columns:
        if pd.api.types.is_float_dtype(a[column]):
            np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=0, atol=1e-6, err_msg=column)
        else:
            assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column


def start_ray(**resources) -> None:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray.init(object_store_memory=STORE, include_dashboard=False, logging_level="warning", **resources)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """tiny-llava, POPE score mode, one local CPU worker with one thread."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("ref")
    assert main(["run", "--model", "tiny-llava", *POPE, "--output", str(out), "--run-name", "ref", *FAST]) == 0
    return out


@pytest.fixture(scope="module")
def fake_reference(tmp_path_factory):
    """fake-harness over the same chunks, locally, no faults."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("fake")
    assert main(["run", "--model", "fake-harness", *POPE, "--chunk-images", "1", "--output", str(out), "--run-name", "f", *FAST]) == 0
    return rows_of(out, "f")


# -- no Ray instance needed ------------------------------------------------------------------------------------


def test_each_launcher_parses_its_own_device_strings(capsys, tmp_path):
    from bench.runner.launchers import LocalLauncher, RayLauncher

    assert LocalLauncher().devices("cpu:3", False) == ["cpu"] * 3
    assert RayLauncher().devices("cpu:2", False) == ["cpu", "cpu"] and RayLauncher().devices("cpu", False) == ["cpu"]
    base = ["run", "--model", "fake-harness", *POPE, "--output", str(tmp_path), *FAST]
    for extra, words in ((["--launcher", "ray", "--devices", "cuda:0,cuda:1"], "GPUs are not named"),
                         (["--launcher", "ray", "--devices", "cuda:1"], "--devices auto"),
                         (["--launcher", "ray", "--devices", "gpu:2"], "cannot read"),
                         (["--ray-address", "auto"], "is for --launcher ray"),
                         (["--launcher", "ray", "--ray-address", "head:99999"], "HOST:PORT"),
                         (["--launcher", "ray", "--ray-address", "not an address"], "HOST:PORT"),
                         (["--launcher", "ray", "--devices", "cpu:0"], "at least 1")):
        code, _, err = run_cli(base + extra, capsys)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (extra, err)
    from bench.errors import ConfigError

    with pytest.raises(ConfigError, match="needs --launcher local"):     # device_map=auto: one model over GPUs
        RayLauncher().devices("auto", single_worker=True)


def test_without_ray_installed_the_ray_launcher_is_refused_in_one_line(monkeypatch):
    import importlib.util

    from bench.errors import ConfigError
    from bench.runner.launchers import RayLauncher

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'mllm-bench\[ray\]'"):
        RayLauncher()


def test_an_address_where_nothing_answers_is_one_line(tmp_path, capsys):
    import socket

    with socket.socket() as probe:              # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, _, err = run_cli(["run", "--model", "fake-harness", *POPE, "--launcher", "ray", "--ray-address", f"127.0.0.1:{port}",
                            "--devices", "cpu:2", "--output", str(tmp_path), "--run-name", "x", *FAST], capsys)
    assert code == 2 and "nothing answers there" in err and len(err.strip().splitlines()) == 1
    assert not ray.is_initialized()


def test_import_bench_and_a_local_run_never_import_ray(tmp_path):
    code = ("import sys\nfrom bench.cli import main\n"
            f"assert main(['run', '--model', 'fake-harness', '--tasks', 'pope_mini_adversarial', '--limit', '6', "
            f"'--output', {str(tmp_path)!r}, '--no-progress', '--no-leaderboard']) == 0\n"
            "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# -- a local Ray instance with two CPUs -------------------------------------------------------------------------


@pytest.fixture(scope="class")
def two_cpus():
    start_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.mark.usefixtures("two_cpus")
class TestLocalRay:
    def test_a_ray_run_equals_the_local_run_and_a_local_run_resumes_on_ray(self, tmp_path, capsys, reference):
        out = tmp_path / "out"
        code, _, err = run_cli(["run", "--model", "tiny-llava", *POPE, "--launcher", "ray", "--devices", "cpu:2",
                                "--output", str(out), "--run-name", "r", *FAST], capsys)
        assert code == 0, err
        assert_equal_rows(rows_of(reference, "ref"), rows_of(out, "r"))
        manifest = manifest_of(out, "r")
        assert manifest["status"] == "complete" and manifest["config"]["launcher"] == "ray"
        assert all(w["placement"]["launcher"] == "ray" and w["device"] == "cpu" for w in manifest["workers"])

        shutil.copytree(reference / "ref", out / "local")                 # a finished local run...
        (out / "local" / "manifest.json").write_text(
            (out / "local" / "manifest.json").read_text().replace('"run_name": "ref"', '"run_name": "local"'))
        removed = chunk_files(out, "local")[1::2]
        for path in removed:                                               # ...with chunks left to compute
            path.unlink()
        code, _, err = run_cli(["run", "--model", "tiny-llava", *POPE, "--launcher", "ray", "--devices", "cpu:2",
                                "--output", str(out), "--run-name", "local", *FAST], capsys)
        assert code == 0, err
        assert all(p.exists() for p in removed)
        manifest = manifest_of(out, "local")
        assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1
        assert_equal_rows(rows_of(reference, "ref"), rows_of(out, "local"))

    def test_an_actor_killed_mid_chunk_has_its_chunk_requeued(self, tmp_path, capsys, fake_reference):
        out, marker = tmp_path / "out", tmp_path / "died"
        code, _, err = run_cli(["run", "--model", "fake-harness", "--model-args", f"die_on=dog.jpg,die_once={marker}", *POPE,
                                "--chunk-images", "1", "--launcher", "ray", "--devices", "cpu:2", "--output", str(out),
                                "--run-name", "k", *FAST], capsys)
        assert code == 0, err
        assert marker.exists()                                             # it did die, inside a chunk about dog.jpg
        manifest = manifest_of(out, "k")
        assert manifest["status"] == "complete" and "Ray actor was lost" in manifest["lost_workers"][0]
        assert_equal_rows(fake_reference, rows_of(out, "k"))

    def test_a_poison_chunk_uses_its_attempts_while_the_rest_finish(self, tmp_path, capsys):
        out, poison = tmp_path / "out", tmp_path / "poison"
        poison.write_text("broken\n")
        args = ["run", "--model", "fake-harness", "--model-args", f"fail_on=dog.jpg,fail_while={poison}", *POPE,
                "--launcher", "ray", "--devices", "cpu:2", "--output", str(out), "--run-name", "p", *FAST]
        code, _, err = run_cli(args, capsys)
        assert code == 2 and "failed after their attempts" in err and "dog.jpg" in err
        manifest = manifest_of(out, "p")
        (unit,) = manifest["failed_units"].values()
        assert unit["attempts"] == 3 and "planted failure" in unit["error"]
        assert len(chunk_files(out, "p")) == manifest["tasks"][TASK]["n_chunks"] - 1

    def test_an_actor_that_never_gets_room_is_abandoned_and_with_none_left_the_run_fails(self, tmp_path, capsys, monkeypatch):
        from bench.runner import launchers

        monkeypatch.setitem(launchers.LAUNCHERS, "ray", lambda config: launchers.RayLauncher(config.ray_address, ready_timeout=1.0))
        out = tmp_path / "out"
        code, _, err = run_cli(["run", "--model", "fake-harness", *POPE, "--threads", "4", "--launcher", "ray",
                                "--output", str(out), "--run-name", "n", *FAST], capsys)   # 4 CPUs wanted, 2 in the cluster
        assert code == 2 and "no worker is left" in err and "worker 2 (device slot 0)" in err   # the first, 2 replacements
        assert "not placed within 1 s" in err and manifest_of(out, "n")["status"] == "failed"

    def test_auto_on_a_cluster_without_gpus_is_refused(self, tmp_path, capsys):
        code, _, err = run_cli(["run", "--model", "fake-harness", *POPE, "--launcher", "ray", "--devices", "auto",
                                "--output", str(tmp_path), *FAST], capsys)
        assert code == 2 and "has no GPU" in err and "cpu:N" in err


# -- fake GPUs ----------------------------------------------------------------------------------------------------


def test_fake_gpus_each_actor_sees_its_own_device_and_the_rows_are_right(tmp_path, capsys, monkeypatch, reference):
    from bench.runner import launchers

    # The two GPUs exist only in Ray's books: torch cannot see them, so the actors run the model on the CPU
    # (RayLauncher's test-only gpu_device), while Ray hands each its own GPU id.
    monkeypatch.setitem(launchers.LAUNCHERS, "ray", lambda config: launchers.RayLauncher(config.ray_address, gpu_device="cpu"))
    start_ray(num_cpus=2, num_gpus=2)
    try:
        out = tmp_path / "out"
        code, _, err = run_cli(["run", "--model", "tiny-llava", *POPE, "--chunk-images", "1", "--launcher", "ray",
                                "--devices", "auto", "--output", str(out), "--run-name", "g", *FAST], capsys)
    finally:
        ray.shutdown()
    assert code == 0, err
    manifest = manifest_of(out, "g")
    assert manifest["devices"] == ["cuda", "cuda"]
    placements = [w["placement"] for w in manifest["workers"]]
    assert len(placements) == 2
    for p in placements:
        assert len(p["gpu_ids"]) == 1 and p["cuda_visible_devices"] == p["gpu_ids"][0]
    assert sorted(p["gpu_ids"][0] for p in placements) == ["0", "1"]
    assert_equal_rows(rows_of(reference, "ref"), rows_of(out, "g"))


# -- a two-node cluster that loses a node -----------------------------------------------------------------------


def test_a_two_node_cluster_that_loses_a_node_mid_chunk_completes(tmp_path, capsys, monkeypatch, fake_reference):
    from ray.cluster_utils import Cluster

    from bench.runner import ray_pool
    from bench.runner.messages import ChunkDone, Ready, WorkerLost

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "object_store_memory": STORE,
                                                            "include_dashboard": False, "_system_config": HEALTH})
    doomed = cluster.add_node(num_cpus=1, object_store_memory=STORE)
    cluster.wait_for_nodes()
    seen: dict[str, list] = {"ready": [], "done": [], "lost": [], "sent": []}
    real_poll, real_send = ray_pool.RayPool.poll, ray_pool.RayPool.send

    def poll(self, timeout):
        events = real_poll(self, timeout)
        for e in events:
            if isinstance(e, Ready):
                seen["ready"].append((e.worker, e.info["placement"]["node_id"]))
            elif isinstance(e, ChunkDone):
                seen["done"].append((e.worker, e.key))
            elif isinstance(e, WorkerLost):
                seen["lost"].append(e.worker)
        return events

    def send(self, worker, unit):
        real_send(self, worker, unit)
        on_doomed = {w for w, node in seen["ready"] if node == doomed.node_id}
        # The deterministic point: after the first committed chunk, the next unit sent to the actor on the
        # second node; the node goes while that actor computes it.
        if unit is not None and seen["done"] and worker in on_doomed and not seen["sent"]:
            seen["sent"].append((worker, unit.key))
            cluster.remove_node(doomed)

    monkeypatch.setattr(ray_pool.RayPool, "poll", poll)
    monkeypatch.setattr(ray_pool.RayPool, "send", send)
    try:
        out = tmp_path / "out"
        code, _, err = run_cli(["run", "--model", "fake-harness", "--model-args", "seconds_per_sample=0.1", *POPE,
                                "--chunk-images", "1", "--launcher", "ray", "--ray-address", cluster.address,
                                "--devices", "cpu:2", "--output", str(out), "--run-name", "c", *FAST], capsys)
        assert not ray.is_initialized()            # the run connected itself, and disconnected at the end
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert code == 0, err
    assert len({node for _, node in seen["ready"]}) == 2                  # an actor on each node
    ((victim, unit_key),) = seen["sent"]
    assert seen["lost"] == [victim]
    survivors = [w for w, key in seen["done"] if key == unit_key]
    assert survivors and victim not in survivors                           # computed again, by the other actor
    manifest = manifest_of(out, "c")
    assert manifest["status"] == "complete" and "node has died" in manifest["lost_workers"][0]
    assert all(w["placement"]["cwd"] == os.getcwd() for w in manifest["workers"])   # relative paths as on the driver
    assert_equal_rows(fake_reference, rows_of(out, "c"))


# -- the driver under SIGTERM -------------------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                children.append(int(entry.name))
    return children + [d for c in children for d in _descendants(c)]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_marks_a_ray_run_interrupted_and_leaves_no_ray_process(tmp_path):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bench", "run", "--model", "fake-harness", "--model-args", "seconds_per_sample=0.05", *POPE,
           "--chunk-images", "1", "--launcher", "ray", "--devices", "cpu:2", "--output", str(out), "--run-name", "t", *FAST]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not chunk_files(out, "t") and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    started = _descendants(proc.pid)                  # the local Ray instance and its actors
    assert started
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and manifest_of(out, "t")["status"] == "interrupted"
    deadline = time.time() + 15
    while any(_alive(p) for p in started) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in started)
