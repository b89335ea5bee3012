"""How the runner scales over workers, measured side by side in one run.

1. The same chunks on 1 and on 2 single-threaded CPU worker processes (tiny-llava, POPE generate mode).
   Target: 2 workers at least 1.8x faster (the machine needs 2 free cores for that).
2. A skewed workload: chunk costs from a heavy-tailed (Pareto) distribution, through the `fake-harness` adapter
   whose cost is the point (it sleeps). The makespan of the runner's dynamic queue is compared with a static
   stride split (chunk i on worker i mod N, as popular harnesses shard) and with the ideal,
   max(total / N, largest chunk). Target: the dynamic queue within 1.1x of the ideal.

3. With ``--ray`` (needs the ``[ray]`` extra), the same through the Ray launcher, on a local Ray instance with
   as many logical CPUs as the largest run needs: 1 against 2 single-threaded CPU actors (target at least 1.8x),
   the skewed workload (target within 1.1x of the ideal), and the per-chunk overhead of Ray against the local
   launcher: `fake-harness` at zero cost, one image per chunk, so a chunk's time is the round trip (send the
   unit, compute nothing, return its rows; nothing is written) on 2 worker processes against 2 actors.

Makespans are measured from the moment every worker is ready (model loaded) to the last chunk committed, so
process start-up is reported apart.

    python benchmarks/scaling.py [--copies 10] [--workers 4] [--seconds 0.02] [--tail 1.2] [--draws 5] [--ray]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def replicated_dataset(folder: Path, copies: int) -> Path:
    """A COCO-format task over ``copies`` copies of the bundled mini photos (symlinks under new names, annotations
    repeated with new ids): enough chunks to measure a schedule. Returns the spec file."""
    import json
    import os

    from bench.resources import assets_dir

    mini = assets_dir() / "mini_coco"
    data = json.loads((mini / "instances.json").read_text())
    images, annotations = [], []
    (folder / "images").mkdir(parents=True)
    for k in range(copies):
        for img in data["images"]:
            new_id = k * 100000 + img["id"]
            name = f"{k:03d}_{img['file_name']}"
            os.symlink(mini / "images" / img["file_name"], folder / "images" / name)
            images.append({**img, "id": new_id, "file_name": name})
        for ann in data["annotations"]:
            annotations.append({**ann, "id": k * 100000 + ann["id"], "image_id": k * 100000 + ann["image_id"]})
    (folder / "instances.json").write_text(json.dumps({**data, "images": images, "annotations": annotations}))
    spec = folder / "scaling_pope.yaml"
    spec.write_text(f"task: scaling_pope\ntype: pope\ndataset:\n  source: coco\n  root: {folder}\n"
                    "  annotations: instances.json\n  images: images\nparams:\n  negatives: random\n  min_objects: 1\n"
                    "  num_images: null\n")
    return spec


def make_pool(launcher: str, setup_for, n_workers: int):
    """The pool each launcher gives for ``n_workers`` (local: in the driver's process for one, else processes)."""
    if launcher == "ray":
        from bench.runner.ray_pool import RayPool

        return RayPool(setup_for)
    from bench.runner.launchers import LocalLauncher

    return LocalLauncher().pool(setup_for, n_workers)


def timed_dispatch(config, n_workers: int, launcher: str = "local") -> dict:
    """Run the plan's chunks through the runner's dispatcher and a launcher's pool; return timings."""
    from bench.runner.dispatch import Dispatcher
    from bench.runner.plan import make_plan, work_units
    from bench.runner.worker import WorkerSetup

    plan = make_plan(config)
    plan.factory.prepare()
    chunks = [c for tp in plan.tasks.values() for c in tp.chunks]
    units = work_units(chunks, {n: tp.task.spec.group for n, tp in plan.tasks.items()})
    first = next(iter(plan.tasks.values())).task

    def setup_for(slot: int) -> WorkerSetup:
        return WorkerSetup(plan.factory, "cpu", config.batch_size, 1, {n: tp.task.spec for n, tp in plan.tasks.items()},
                           first.context, False, {})

    ready: list[float] = []
    done: list[float] = []
    pool = make_pool(launcher, setup_for, n_workers)
    t0 = time.perf_counter()
    try:
        Dispatcher(pool, units, n_workers, on_ready=lambda info: ready.append(time.perf_counter()),
                   on_done=lambda d: done.append(time.perf_counter())).run()
    finally:
        pool.close()
    start = max(ready)
    return {"units": len(units), "startup": start - t0, "makespan": max(done) - start, "total": max(done) - t0}


def scaling_1_vs_2(spec: Path, launcher: str = "local") -> None:
    from bench.config import RunConfig

    config = RunConfig(model="tiny-llava", tasks=[str(spec)], chunk_images=4, progress=False,
                       overrides={"answer_mode": "generate", "max_new_tokens": 16}, batch_size=8)
    one = timed_dispatch(config, 1, launcher)
    two = timed_dispatch(config, 2, launcher)
    what = "Ray actors" if launcher == "ray" else "workers"
    print(f"[{launcher}] 1 vs 2 single-threaded CPU {what}, tiny-llava, POPE generate mode (16 tokens), {one['units']} chunks")
    print(f"  1 worker : makespan {one['makespan']:.2f} s (start-up {one['startup']:.2f} s)")
    print(f"  2 workers: makespan {two['makespan']:.2f} s (start-up {two['startup']:.2f} s)")
    print(f"  speed-up {one['makespan'] / two['makespan']:.2f}x (target >= 1.8x); with start-up "
          f"{one['total'] / two['total']:.2f}x")


def skewed(spec: Path, workers: int, seconds: float, tail: float, launcher: str = "local", draws: int = 5) -> None:
    """The skewed workload over ``draws`` draws of the chunk costs (``cost_seed`` 0, 1, ...): one schedule is
    one draw, and where the largest chunks fall in the queue decides much of it, so the range is reported."""
    import statistics

    from bench.config import RunConfig
    from bench.models.fake import FakeAdapter, FakeArgs
    from bench.runner.plan import make_plan

    print(f"[{launcher}] skewed workload: Pareto({tail}) chunk costs, {workers} workers, {draws} draws; "
          f"makespans as multiples of the ideal max(total/N, largest) (target: dynamic <= 1.1x)")
    dynamic, static_ = [], []
    for draw in range(draws):
        args = {"seconds_per_sample": str(seconds), "cost_tail": str(tail), "cost_seed": str(draw)}
        config = RunConfig(model="fake-harness", model_args=args, tasks=[str(spec)], chunk_images=1,
                           overrides={"answer_mode": "score"}, progress=False)
        plan = make_plan(config)
        adapter = FakeAdapter(FakeArgs(seconds_per_sample=seconds, cost_tail=tail, cost_seed=str(draw)), "cpu")
        costs = [sum(adapter._cost(s.image.key) for s in c.samples) for tp in plan.tasks.values() for c in tp.chunks]
        measured = timed_dispatch(config, workers, launcher)
        total = sum(costs)
        ideal = max(total / workers, max(costs))
        static = max(sum(costs[i::workers]) for i in range(workers))
        dynamic.append(measured["makespan"] / ideal)
        static_.append(static / ideal)
        print(f"  draw {draw}: {len(costs)} chunks, total {total:6.2f} s, largest {max(costs):5.2f} s, ideal {ideal:5.2f} s; "
              f"static stride split {static_[-1]:.2f}x (computed from the same costs), dynamic queue {dynamic[-1]:.2f}x (measured)")
    print(f"  median over draws: dynamic queue {statistics.median(dynamic):.2f}x (range {min(dynamic):.2f}-{max(dynamic):.2f}), "
          f"static stride split {statistics.median(static_):.2f}x (range {min(static_):.2f}-{max(static_):.2f})")


def chunk_overhead(spec: Path, launcher: str, workers: int = 2) -> tuple[float, int]:
    """Seconds per chunk when a chunk costs nothing (the launcher's round trip per unit), and the chunk count."""
    from bench.config import RunConfig

    config = RunConfig(model="fake-harness", tasks=[str(spec)], chunk_images=1, overrides={"answer_mode": "score"},
                       progress=False)
    measured = timed_dispatch(config, workers, launcher)
    return measured["makespan"] / measured["units"], measured["units"]


def start_ray(workers: int) -> None:
    """A local Ray instance with enough logical CPUs for the largest run (the skewed workers sleep)."""
    import os

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray

    ray.init(num_cpus=max(2, workers), include_dashboard=False, logging_level="warning")


def ray_section(spec: Path, args) -> None:
    start_ray(args.workers)
    if not args.skip_model:
        scaling_1_vs_2(spec, "ray")
    skewed(spec, args.workers, args.seconds, args.tail, "ray", args.draws)
    local, n = chunk_overhead(spec, "local")
    ray_s, _ = chunk_overhead(spec, "ray")
    print(f"per-chunk overhead, fake-harness at zero cost, {n} one-image chunks, 2 workers each")
    print(f"  local worker processes {local * 1e3:.2f} ms per chunk")
    print(f"  Ray actors             {ray_s * 1e3:.2f} ms per chunk ({ray_s / local:.1f}x local)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=4, help="workers for the skewed workload (they sleep)")
    parser.add_argument("--seconds", type=float, default=0.02, help="base cost per sample of the skewed workload")
    parser.add_argument("--tail", type=float, default=1.2, help="Pareto shape of the chunk costs (smaller: heavier tail)")
    parser.add_argument("--draws", type=int, default=5, help="draws of the skewed workload's chunk costs")
    parser.add_argument("--copies", type=int, default=10, help="copies of the 21 mini photos in the workload")
    parser.add_argument("--skip-model", action="store_true", help="only the skewed workload")
    parser.add_argument("--ray", action="store_true", help="also measure the Ray launcher (a local Ray instance)")
    parser.add_argument("--only-ray", action="store_true", help="only the Ray launcher's measurements")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:       # fake-harness costs hash the image names and the draw: the same
        spec = replicated_dataset(Path(tmp) / "data", args.copies)     # draws for both launchers
        if not args.only_ray:
            if not args.skip_model:
                scaling_1_vs_2(spec)
            skewed(spec, args.workers, args.seconds, args.tail, draws=args.draws)
        if args.ray or args.only_ray:
            ray_section(spec, args)


if __name__ == "__main__":
    main()
