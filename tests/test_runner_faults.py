"""The runner under faults: dead workers, a killed driver, poison chunks, two runs on one folder, damaged chunk
files, exact resume (effective settings, an uncached hub model), retrying error rows, artifacts."""

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

FAST = ["--no-progress", "--no-leaderboard"]
POPE = ["--tasks", "pope_mini_adversarial", "--answer-mode", "score", "--chunk-images", "3"]


def rows_of(out: Path, run: str, task: str = "pope_mini_adversarial") -> pd.DataFrame:
    return pd.read_parquet(out / run / "tasks" / task / "rows.parquet")


def manifest_of(out: Path, run: str) -> dict:
    return json.loads((out / run / "manifest.json").read_text())


def children(pid: int) -> list[int]:
    """Live worker processes of ``pid`` (from /proc; multiprocessing's resource tracker is not one)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z" and b"spawn_main" in cmdline:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(predicate, timeout: float = 120.0, what: str = "condition") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def bench_cmd(out: Path, run: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "bench", "run", "--output", str(out), "--run-name", run, *FAST, *args]


def n_chunks(out: Path, run: str, task: str = "pope_mini_adversarial") -> int:
    folder = out / run / "tasks" / task / "chunks"
    return len(list(folder.glob("chunk-*.parquet"))) if folder.exists() else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """pope_mini_adversarial in score mode on one CPU worker: the rows every faulty run must reproduce."""
    from bench.cli import main

    out = tmp_path_factory.mktemp("ref")
    assert main(["run", "--model", "tiny-llava", *POPE, "--output", str(out), "--run-name", "ref", *FAST]) == 0
    return rows_of(out, "ref")


def assert_same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a["sample_id"]) == list(b["sample_id"]) and b["sample_id"].is_unique
    np.testing.assert_allclose(a["score_logp_yes"], b["score_logp_yes"], rtol=0, atol=1e-5)
    assert (a["score_answer"] == b["score_answer"]).all() and b["error"].isna().all()


def test_sigkill_of_one_of_two_workers_requeues_its_chunk(tmp_path, reference):
    out = tmp_path / "out"
    proc = subprocess.Popen(bench_cmd(out, "kw", "--model", "tiny-llava", *POPE, "--devices", "cpu:2", "--batch-size", "1"),
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: n_chunks(out, "kw") >= 1 or proc.poll() is not None, what="a first chunk")
    workers = children(proc.pid)
    assert proc.poll() is None and len(workers) >= 2, "the run ended (or had no workers) before a worker could be killed"
    os.kill(workers[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert_same_rows(reference, rows_of(out, "kw"))
    manifest = manifest_of(out, "kw")
    assert manifest["status"] == "complete" and manifest["lost_workers"] and "SIGKILL" in manifest["lost_workers"][0]


def test_sigkill_of_the_driver_leaves_no_worker_and_the_run_resumes(tmp_path, reference):
    out = tmp_path / "out"
    cmd = bench_cmd(out, "kd", "--model", "tiny-llava", *POPE, "--devices", "cpu:2", "--batch-size", "1")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: n_chunks(out, "kd") >= 1 or proc.poll() is not None, what="a first chunk")
    workers = children(proc.pid)
    assert proc.poll() is None and workers
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(alive(w) for w in workers), timeout=10, what="the workers to exit")
    assert manifest_of(out, "kd")["status"] == "running"       # nobody could say otherwise...
    resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = manifest_of(out, "kd")
    assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1
    assert "ended without saying so" in manifest["interruptions"][0]["reason"]     # marked before it resumed
    assert_same_rows(reference, rows_of(out, "kd"))


def test_sigterm_and_ctrl_c_mark_the_run_interrupted_and_stop_the_workers(tmp_path):
    out = tmp_path / "out"
    args = ["--model", "fake-harness", "--model-args", "seconds_per_sample=0.05", *POPE, "--chunk-images", "1"]
    for sig, code, devices in ((signal.SIGTERM, 143, "cpu:2"), (signal.SIGINT, 130, "cpu"), (signal.SIGTERM, 143, "cpu")):
        run = f"sig{code}{devices.replace(':', '')}"
        proc = subprocess.Popen(bench_cmd(out, run, *args, "--devices", devices), cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        wait_for(lambda: n_chunks(out, run) >= 1 or proc.poll() is not None, what="a first chunk")
        workers = children(proc.pid)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code, err
        manifest = manifest_of(out, run)
        assert manifest["status"] == "interrupted" and n_chunks(out, run) >= 1
        assert "Traceback" not in err
        wait_for(lambda: not any(alive(w) for w in workers), timeout=10, what="the workers to exit")


def test_poison_chunk_uses_its_attempts_the_rest_finish_and_a_resume_after_the_fix_completes(tmp_path, capsys):
    out, poison = tmp_path / "out", tmp_path / "poison"
    poison.write_text("broken\n")
    args = ["run", "--model", "fake-harness", "--model-args", f"fail_on=dog.jpg,fail_while={poison}", *POPE,
            "--output", str(out), "--run-name", "p", *FAST]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "failed after their attempts" in err and "dog.jpg" in err
    manifest = manifest_of(out, "p")
    assert manifest["status"] == "failed" and len(manifest["failed_units"]) == 1
    (unit,) = manifest["failed_units"].values()
    assert unit["attempts"] == 3 and "planted failure" in unit["error"] and "3 attempt(s)" in err
    total = manifest["tasks"]["pope_mini_adversarial"]["n_chunks"]
    assert n_chunks(out, "p") == total - 1                     # every other chunk finished
    poison.unlink()                                             # the fix
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert manifest_of(out, "p")["status"] == "complete" and "failed_units" not in manifest_of(out, "p")
    assert len(rows_of(out, "p")) == 62


def test_a_worker_that_dies_on_a_chunk_is_replaced(tmp_path, capsys):
    out, marker = tmp_path / "out", tmp_path / "died"
    code, _, err = run_cli(["run", "--model", "fake-harness", "--model-args", f"die_on=dog.jpg,die_once={marker}", *POPE,
                            "--devices", "cpu:2", "--output", str(out), "--run-name", "d", *FAST], capsys)
    assert code == 0, err
    assert marker.exists()
    manifest = manifest_of(out, "d")
    assert manifest["status"] == "complete" and "SIGKILL" in manifest["lost_workers"][0] and len(rows_of(out, "d")) == 62


def test_a_second_run_on_a_held_folder_is_refused_and_the_first_is_intact(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", "fake-harness", "--model-args", "seconds_per_sample=0.02", *POPE, "--chunk-images", "1"]
    first = subprocess.Popen(bench_cmd(out, "held", *args), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: n_chunks(out, "held") >= 1 or first.poll() is not None, what="the first run to start")
    code, _, err = run_cli(["run", *args, "--output", str(out), "--run-name", "held", *FAST], capsys)
    assert code == 2 and "another bench run is using this run folder" in err and len(err.strip().splitlines()) == 1
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    manifest = manifest_of(out, "held")
    assert manifest["status"] == "complete" and "resumed" not in manifest and len(rows_of(out, "held")) == 62


def test_cpu_n_is_capped_at_the_pending_work(tmp_path, capsys):
    code, _, err = run_cli(["run", "--model", "fake-harness", *POPE, "--chunk-images", "30", "--devices", "cpu:3",
                            "--output", str(tmp_path), "--run-name", "cap", *FAST], capsys)
    assert code == 0, err
    assert len(manifest_of(tmp_path, "cap")["workers"]) == 1     # one chunk: one worker, not three


def test_group_chunks_about_an_image_go_to_one_worker():
    from bench.config import RunConfig
    from bench.runner.plan import make_plan, work_units

    plan = make_plan(RunConfig(model="fake-harness", tasks=["pope_mini"], chunk_images=4))
    chunks = [c for tp in plan.tasks.values() for c in tp.chunks]
    units = work_units(chunks, {n: tp.task.spec.group for n, tp in plan.tasks.items()})
    assert len(units) == len(chunks) // 3
    for unit in units:
        assert sorted(c.task for c in unit.chunks) == ["pope_mini_adversarial", "pope_mini_popular", "pope_mini_random"]
        assert len({frozenset(s.group for s in c.samples) for c in unit.chunks}) == 1


def test_resume_is_refused_when_the_effective_dtype_differs_and_allowed_when_only_the_spelling_does(tmp_path, capsys, reference):
    out = tmp_path / "out"
    base = ["run", "--model", "tiny-llava", *POPE, "--output", str(out), "--run-name", "dt", "--limit", "12", *FAST]
    assert run_cli(base, capsys)[0] == 0
    chunk = out / "dt" / "tasks" / "pope_mini_adversarial" / "chunks" / "chunk-000001.parquet"
    chunk.unlink()                                              # something left to do
    code, _, err = run_cli(base[:3] + ["--model-args", "dtype=bfloat16"] + base[3:], capsys)
    assert code == 2 and "dtype in effect" in err and "'float32'" in err and "'bfloat16'" in err
    assert not chunk.exists()                                   # refused before its first chunk was accepted
    code, _, err = run_cli(base[:3] + ["--model-args", "dtype=float32"] + base[3:], capsys)
    assert code == 0, err                                       # float32 is what a CPU run uses anyway
    assert_same_rows(reference.iloc[:12].reset_index(drop=True), rows_of(out, "dt"))


def _hub_cache(tmp_path: Path) -> tuple[Path, str, str]:
    """A Hugging Face cache layout holding the tiny LLaVA as the hub repo bench-test/tiny-llava."""
    from bench.models.tiny_adapter import build_cached, default_cache_dir

    folder = build_cached("llava", "tiny", 0, default_cache_dir())
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--bench-test--tiny-llava"
    shutil.copytree(folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return tmp_path / "hub", "bench-test/tiny-llava", commit


def test_first_run_of_an_uncached_hub_model_killed_then_resumed_completes(tmp_path, reference):
    hub, repo, commit = _hub_cache(tmp_path)
    env = {**os.environ, "HF_HUB_CACHE": str(hub), "HF_HUB_OFFLINE": "1"}
    out = tmp_path / "out"
    args = ["run", "--model", f"hf:{repo}", *POPE, "--output", str(out), "--run-name", "hub", *FAST, "--batch-size", "1"]
    # The first run sees no cached commit before loading (as on a machine that has never downloaded the model);
    # its worker then loads the snapshot. Simulated by hiding the cache from the load-free identity only.
    first = ("import sys, bench.models.hf as hf\n"
             "real = hf.hub_identity\n"
             "hf.hub_identity = lambda repo, rev: {**real(repo, rev), 'commit': None}\n"
             "from bench.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", first, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    wait_for(lambda: n_chunks(out, "hub") >= 1 or proc.poll() is not None, what="a first chunk")
    assert proc.poll() is None, proc.stderr.read()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert manifest_of(out, "hub")["resume_key"]["effective"]["commit"] == commit
    resumed = subprocess.run([sys.executable, "-m", "bench", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    manifest = manifest_of(out, "hub")
    assert manifest["status"] == "complete" and manifest["model"]["description"]["commit"] == commit
    assert_same_rows(reference, rows_of(out, "hub"))


@pytest.fixture
def finished(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", "--model", "fake-harness", *POPE, "--output", str(out), "--run-name", "f", *FAST]
    assert run_cli(args, capsys)[0] == 0
    return out, args


def test_a_chunk_recorded_with_another_sample_set_refuses_the_resume(finished, capsys):
    import pyarrow.parquet as pq

    from bench.runner.store import sample_hash

    out, args = finished
    path = out / "f" / "tasks" / "pope_mini_adversarial" / "chunks" / "chunk-000002.parquet"
    table = pq.read_table(path).slice(1)            # a coherent chunk of one sample fewer, as if the samples had changed
    meta = dict(table.schema.metadata)
    meta[b"bench.sample_hash"] = sample_hash(table.column("sample_id").to_pylist()).encode()
    pq.write_table(table.replace_schema_metadata(meta), path)
    (out / "f" / "tasks" / "pope_mini_adversarial" / "chunks" / "chunk-000003.parquet").unlink()
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "chunk-000002.parquet" in err and "different sample set" in err


def test_a_truncated_empty_or_foreign_chunk_is_set_aside_and_recomputed(finished, capsys):
    out, args = finished
    chunks = out / "f" / "tasks" / "pope_mini_adversarial" / "chunks"
    before = rows_of(out, "f")
    data = (chunks / "chunk-000001.parquet").read_bytes()
    (chunks / "chunk-000001.parquet").write_bytes(data[: len(data) // 2])        # truncated
    (chunks / "chunk-000002.parquet").write_bytes(b"")                           # empty
    shutil.copy(chunks / "chunk-000004.parquet", chunks / "chunk-000003.parquet")  # another chunk's rows
    shutil.copy(chunks / "chunk-000004.parquet", chunks / "chunk-000099.parquet")  # no such chunk in this run
    kept = (chunks / "chunk-000000.parquet").stat().st_mtime_ns
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    for name in ("chunk-000001", "chunk-000002", "chunk-000003", "chunk-000099"):
        assert name in err
    assert len(list((out / "f" / "set_aside").rglob("*.parquet.*[0-9]"))) == 4
    assert (chunks / "chunk-000000.parquet").stat().st_mtime_ns == kept          # good chunks untouched
    pd.testing.assert_frame_equal(before, rows_of(out, "f"))
    assert len(manifest_of(out, "f")["set_aside"]) == 4


def test_retry_errors_after_fixing_an_image_keeps_every_other_chunk(tmp_path, mini_copy, capsys):
    from conftest import pope_spec

    spec = pope_spec(tmp_path, mini_copy, num_images=None)
    image = mini_copy / "images" / "kite.jpg"
    good = image.read_bytes()
    image.write_bytes(b"not a jpeg at all")                                      # broken, and another size
    out = tmp_path / "out"
    args = ["run", "--model", "fake-harness", "--tasks", str(spec), "--chunk-images", "3", "--output", str(out),
            "--run-name", "e", *FAST]
    code, _, err = run_cli(args + ["--max-errors", "10"], capsys)
    assert code == 0, err
    failed = rows_of(out, "e", "my_pope")["error"].notna()
    assert failed.any()
    chunks = out / "e" / "tasks" / "my_pope" / "chunks"
    mtimes = {p.name: p.stat().st_mtime_ns for p in chunks.iterdir()}
    image.write_bytes(good)                                                       # the fix
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "fingerprint" in err                                    # without the flag: the data changed
    code, _, err = run_cli(args + ["--retry-errors"], capsys)
    assert code == 0, err
    rows = rows_of(out, "e", "my_pope")
    assert rows["error"].isna().all() and len(rows) == len(failed)
    changed = [name for name, t in mtimes.items() if (chunks / name).stat().st_mtime_ns != t]
    assert len(changed) == 1                                                      # only the chunk with kite.jpg

    clean = tmp_path / "clean"
    assert run_cli(["run", "--model", "fake-harness", "--tasks", str(spec), "--chunk-images", "3", "--output", str(clean),
                    "--run-name", "e", *FAST], capsys)[0] == 0
    pd.testing.assert_frame_equal(rows, rows_of(clean, "e", "my_pope"))


def test_out_of_memory_error_rows_are_recomputed_on_resume(tmp_path, capsys):
    oom = tmp_path / "short-of-memory"
    oom.write_text("")
    out = tmp_path / "out"
    args = ["run", "--model", "fake-harness", "--model-args", f"oom_on=dog.jpg,oom_while={oom}", *POPE,
            "--output", str(out), "--run-name", "o", *FAST, "--max-errors", "20"]
    assert run_cli(args, capsys)[0] == 0
    errors = rows_of(out, "o")["error"].dropna()
    assert len(errors) and errors.str.startswith("OutOfMemoryError").all()
    oom.unlink()
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert rows_of(out, "o")["error"].isna().all()


def test_artifacts_arrive_with_their_chunk(tmp_path, capsys):
    from bench.io import Artifact
    from bench.registry import TASK_TYPES
    from bench.tasks.pope import PopeTask

    class PopeWithNotes(PopeTask):
        """POPE that keeps a small file per sample beside its rows (as saliency keeps overlays)."""

        def artifacts(self, sample, responses, row):
            return [Artifact(f"notes/{sample.id}.txt", f"{row['score_answer']}\n".encode())]

    TASK_TYPES.register("pope_with_notes", PopeWithNotes)
    spec = tmp_path / "notes_task.yaml"
    spec.write_text(f"include: {REPO / 'tasks' / '_pope_mini.yaml'}\ntask: notes_task\ntype: pope_with_notes\ngroup: null\n"
                    "params:\n  negatives: random\n  answer_mode: score\n")
    out = tmp_path / "out"
    code, _, err = run_cli(["run", "--model", "fake-harness", "--tasks", str(spec), "--chunk-images", "5", "--output", str(out),
                            "--run-name", "a", *FAST], capsys)
    assert code == 0, err
    task_dir = out / "a" / "tasks" / "notes_task"
    rows = rows_of(out, "a", "notes_task")
    for sid, answer in zip(rows["sample_id"], rows["score_answer"]):
        assert (task_dir / "notes" / f"{sid}.txt").read_text() == f"{answer}\n"
    assert not list((out / "a").rglob(".*.tmp-*"))


def test_a_cpu2_manifest_equals_a_cpu_one_except_devices_and_times(tmp_path, capsys):
    manifests = {}
    for devices in ("cpu", "cpu:2"):
        run = devices.replace(":", "")
        assert run_cli(["run", "--model", "tiny-llava", *POPE, "--devices", devices, "--output", str(tmp_path / run),
                        "--run-name", "m", *FAST, "--limit", "12"], capsys)[0] == 0
        manifest = manifest_of(tmp_path / run, "m")
        for key in ("devices", "workers", "times", "created", "updated", "finished", "command"):
            manifest.pop(key)
        manifest["config"].pop("devices")
        manifest["config"].pop("output")
        manifests[devices] = manifest
    assert manifests["cpu"] == manifests["cpu:2"]
    description = manifests["cpu"]["model"]["description"]
    assert description["prefix_path"].startswith("shared prefix") and description["batch_size"] == 8
    assert description["first_token_words"]                   # resolved at load, before the first chunk


@pytest.mark.parametrize("n_workers", [1, 2])
def test_progress_arrives_within_a_chunk_before_it_is_committed(n_workers):
    from bench.config import RunConfig
    from bench.runner.dispatch import Dispatcher
    from bench.runner.plan import make_plan, work_units
    from bench.runner.pools import InProcessPool, ProcessPool
    from bench.runner.worker import WorkerSetup

    config = RunConfig(model="fake-harness", model_args={"seconds_per_sample": "0.002"}, tasks=["pope_mini_adversarial"],
                       chunk_images=30, overrides={"answer_mode": "both"})
    plan = make_plan(config)
    (tp,) = plan.tasks.values()
    units = work_units(tp.chunks, {tp.task.name: None})
    assert len(units) == 1 and units[0].n_samples == 62

    def setup_for(slot):
        return WorkerSetup(plan.factory, "cpu", 8, 1, {tp.task.name: tp.task.spec}, tp.task.context, False, {})

    events = []
    pool = InProcessPool(setup_for) if n_workers == 1 else ProcessPool(setup_for)
    try:
        Dispatcher(pool, units, n_workers, on_ready=lambda info: None, on_done=lambda d: events.append(("done", len(d.rows))),
                   on_progress=lambda n: events.append(("progress", n))).run()
    finally:
        pool.close()
    progress = [n for kind, n in events if kind == "progress"]
    assert events[-1] == ("done", 62) and len(progress) >= 10            # many updates, all before the chunk lands
    assert sum(progress) == 62


def test_rerunning_a_finished_run_says_so_in_one_line_and_prints_its_metrics(tmp_path, capsys):
    args = ["run", "--model", "fake-harness", *POPE, "--output", str(tmp_path), "--run-name", "again", *FAST]
    assert run_cli(args, capsys)[0] == 0
    code, out, err = run_cli(args, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "again: all 6 chunks were already finished; nothing to compute"
    assert any(line.startswith("pope_mini_adversarial: F1 (score) = ") for line in lines[1:])
