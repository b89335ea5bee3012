"""The ``bench`` command line: argument parsing only; each subcommand builds one config and hands it on."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import yaml

from .errors import BenchError, ConfigError
from .runner.signals import Terminated


def _value(text: str) -> Any:
    """Command-line values are read as YAML scalars: 3 -> int, true -> bool, null -> None, else text."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _overrides(pairs: list[str]) -> dict[str, Any]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected KEY=VALUE, got {pair!r}")
        out[key.strip()] = _value(value.strip())
    return out


def add_run_parser(sub) -> None:
    p = sub.add_parser("run", help="evaluate a model on tasks", description=(
        "Evaluate a model on one or more tasks. Re-running the same --run-name resumes it, skipping finished chunks."))
    p.add_argument("--model", required=True, help="tiny-llava, bench-llava-100m, hf:<hub id or folder>, ... (see `bench models`)")
    p.add_argument("--model-args", default="", help="comma-separated key=value pairs, e.g. dtype=bfloat16,device_map=auto")
    p.add_argument("--tasks", required=True, help="comma-separated task names, group names or spec files (see `bench tasks`)")
    p.add_argument("--devices", default="cpu", help="cpu | cpu:N (N worker processes) | cuda:0,cuda:1 | auto (default: cpu)")
    p.add_argument("--batch-size", type=int, default=8, help="sequences per forward pass (halved on CUDA out-of-memory)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples of each task")
    p.add_argument("--run-name", default=None, help="results/<run-name>; default: derived from model and tasks")
    p.add_argument("--output", type=Path, default=Path("results"), help="folder of run folders (default: results)")
    p.add_argument("--data-root", type=Path, default=None, help="root folder of the tasks' data (e.g. the COCO folder holding val2014/)")
    p.add_argument("--max-errors", type=int, default=0, help="failing samples tolerated as error rows (default 0: stop at the first)")
    p.add_argument("--seed", type=int, default=0, help="seed of sampling and bootstrap (default 0)")
    p.add_argument("--answer-mode", choices=["generate", "score", "both"], default=None,
                   help="POPE-style tasks: generate, score (one forward pass) or both; default: the task spec's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a task parameter (repeatable)")
    p.add_argument("--chunk-images", type=int, default=8, help="images per chunk: the unit of resume (default 8)")
    p.add_argument("--bootstrap-resamples", type=int, default=1000, help="bootstrap resamples for intervals (default 1000)")
    p.add_argument("--leaderboard", type=Path, default=None, help="leaderboard file to refresh (default: leaderboard.md inside --output)")
    p.add_argument("--no-leaderboard", action="store_true", help="do not refresh the leaderboard")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="resolve everything and print what would run; load no model, write nothing")
    p.add_argument("--threads", type=int, default=None, help="torch threads per CPU worker (default: the cores shared out)")
    p.add_argument("--launcher", choices=["local", "ray"], default="local",
                   help="where workers run: local (this machine, default) or ray (actors on a Ray cluster; needs the [ray] extra)")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="--launcher ray: the cluster to join (auto: the one this machine belongs to); default: a local Ray instance")
    p.add_argument("--retry-errors", action="store_true",
                   help="recompute the samples that became error rows (after fixing their files); everything else is kept")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from .config import RunConfig, parse_key_values
    from .runner.run import run

    overrides = _overrides(args.set)
    if args.answer_mode:
        overrides["answer_mode"] = args.answer_mode
    config = RunConfig(
        model=args.model, model_args=parse_key_values(args.model_args, "--model-args"),
        tasks=[t.strip() for t in args.tasks.split(",") if t.strip()], devices=args.devices, batch_size=args.batch_size,
        limit=args.limit, run_name=args.run_name, output=args.output, data_root=args.data_root, max_errors=args.max_errors,
        seed=args.seed, dry_run=args.dry_run, overrides=overrides, chunk_images=args.chunk_images,
        leaderboard=args.leaderboard, write_leaderboard=not args.no_leaderboard, progress=not args.no_progress,
        bootstrap_resamples=args.bootstrap_resamples, retry_errors=args.retry_errors, threads=args.threads,
        launcher=args.launcher, ray_address=args.ray_address,
    )
    result = run(config)
    if result.metrics:
        print(summary(result.metrics))
        print(f"results: {result.run_dir}" + (f"; leaderboard: {result.leaderboard}" if result.leaderboard else ""))
    return 0


def summary(metrics: dict[str, Any]) -> str:
    lines = []
    for kind in ("tasks", "groups"):
        for name, entry in metrics.get(kind, {}).items():
            primary = entry["metrics"].get(entry["primary"])
            errors = f", {entry['n_errors']} errors" if entry.get("n_errors") else ""
            if primary is None or primary.get("value") is None:
                lines.append(f"{name}: no metric{errors}")
                continue
            scale = primary.get("scale", 1.0)
            lo, hi = primary.get("ci_low"), primary.get("ci_high")
            interval = f" [{lo * scale:.1f}, {hi * scale:.1f}]" if lo is not None and hi is not None else ""
            what = entry.get("label", f"{entry.get('n_samples', '?')} samples{errors}")
            lines.append(f"{name}: {primary['label']} = {primary['value'] * scale:.1f}{interval} ({what})")
    return "\n".join(lines)


def cmd_tasks(args) -> int:
    from .registry import TASK_TYPES
    from .spec import all_specs

    specs = all_specs()
    width = max((len(n) for n in specs), default=4)
    for name, spec in specs.items():
        TASK_TYPES.get(spec.type)
        group = f" [{spec.group}]" if spec.group else ""
        print(f"{name:<{width}}  {spec.type}{group}  {spec.description.splitlines()[0] if spec.description else ''}".rstrip())
    groups = sorted({s.group for s in specs.values() if s.group})
    if groups:
        print("groups (run all their tasks, and report their mean): " + ", ".join(groups))
    return 0


def cmd_models(args) -> int:
    from .registry import MODELS

    for name, factory in MODELS.items():
        print(f"{name:<18} {factory.summary(name)}")
    return 0


def cmd_validate(args) -> int:
    from .registry import TASK_TYPES
    from .spec import load_spec_file, spec_files
    from .tasks.base import TaskContext

    paths = [Path(p) for p in args.files] or list(spec_files().values())
    for path in paths:
        spec = load_spec_file(path)
        TASK_TYPES.get(spec.type)(spec, TaskContext())  # checks the type's params and dataset fields
        print(f"ok  {path}")
    return 0


def cmd_leaderboard(args) -> int:
    from .results.leaderboard import write_leaderboard

    formats = tuple(f.strip() for f in args.format.split(","))
    for fmt in formats:
        if fmt not in ("md", "csv", "latex"):
            raise ConfigError(f"--format: unknown format {fmt!r} (md, csv, latex)")
    out = write_leaderboard(args.results, args.out or args.results / "leaderboard.md", args.sort, formats,
                            warn=lambda message: print(f"bench: warning: {message}", file=sys.stderr))
    print(f"wrote {out}" + "".join(f", {out.with_suffix(s)}" for s in ({"csv": ".csv", "latex": ".tex"}.get(f) for f in formats[1:]) if s))
    return 0


def cmd_rescore(args) -> int:
    if args.labels:
        from .results.relabel import relabel_run

        path, metrics, report = relabel_run(args.run_dir, args.labels, args.labels_name, args.bootstrap_resamples)
        print(summary(metrics))
        source = metrics["labels"]["source"]
        for r in report:
            print(f"{r.task} under {source} labels ({r.file}): {r.n_kept} questions kept, {r.n_removed} removed, "
                  f"{r.n_relabelled} relabelled")
        print(f"wrote {path} (metrics.json is unchanged)")
        return 0
    from .results.rescore import rescore

    metrics = rescore(args.run_dir, bootstrap_resamples=args.bootstrap_resamples)
    print(summary(metrics))
    return 0


def cmd_score(args) -> int:
    from .results.aggregate import task_entry
    from .results.captions import score_captions
    from .runner.plan import build_tasks
    from .config import RunConfig
    from .io import atomic_write_json, write_table

    if args.kind != "chair":
        raise ConfigError(f"bench score: only 'chair' scores a captions file, got {args.kind!r}")
    config = RunConfig(model="hf", tasks=[args.task], data_root=args.data_root, seed=args.seed,
                       bootstrap_resamples=args.bootstrap_resamples)
    if args.output is not None and args.output.exists() and not args.output.is_dir():
        raise ConfigError(f"--output {args.output}: is a file; give a folder for rows.parquet and metrics.json")
    (task,) = build_tasks(config)
    rows, _, report = score_captions(args.captions, task, skip_unknown=args.skip_unknown, workdir=args.output)
    entry = task_entry(task, rows)
    print(summary({"tasks": {task.name: entry}}))
    for name, value in entry["metrics"].items():
        print(f"  {value['label']}: {_scaled(value, 'value')} [{_scaled(value, 'ci_low')}, {_scaled(value, 'ci_high')}]")
    print(f"  {report.n_scored} captions scored of {report.n_lines} lines; {report.n_empty} empty (scored as mentioning "
          f"nothing); {report.n_unknown_skipped} with unknown image ids skipped")
    if args.output:
        write_table(args.output / "rows.parquet", rows, task.row_schema())
        atomic_write_json(args.output / "metrics.json", {"captions": str(args.captions), "task": task.name,
                                                          "report": report.__dict__, **entry})
        print(f"wrote {args.output / 'rows.parquet'} and {args.output / 'metrics.json'}")
    return 0


def _scaled(metric: dict[str, Any], key: str) -> str:
    """A metric's value (or bound) as papers print it; "n/a" when undefined (e.g. CHAIR_i with no mention at all)."""
    value = metric.get(key)
    return "n/a" if value is None else f"{value * metric.get('scale', 1.0):.2f}"


def cmd_report(args) -> int:
    from .results.report import write_report

    out, size, runs = write_report(args.runs, args.output,
                                   warn=lambda message: print(f"bench: warning: {message}", file=sys.stderr))
    print(f"wrote {out} ({size:,} bytes; {len(runs)} run{'s' if len(runs) != 1 else ''}: {', '.join(r.name for r in runs)})")
    return 0


def cmd_compare(args) -> int:
    from .io import atomic_write_text
    from .results.compare import compare_runs

    if args.format not in ("md", "json"):
        raise ConfigError(f"--format: md or json, got {args.format!r}")
    split = lambda text: [t.strip() for t in text.split(",") if t.strip()] if text else None  # noqa: E731
    comparison = compare_runs(args.base, args.candidates, tasks=split(args.tasks), metrics=split(args.metrics),
                              margin=args.margin, allow_different=split(args.allow_different) or (),
                              resamples=args.bootstrap_resamples, seed=args.seed)
    text = comparison.to_markdown() if args.format == "md" else json.dumps(comparison.to_dict(), indent=2) + "\n"
    if args.output:
        atomic_write_text(args.output, text)
        print(f"wrote {args.output}")
    else:
        print(text, end="")
    if comparison.regressed:
        print("bench: regression beyond --margin in a gated metric", file=sys.stderr)
        return 1
    return 0


def cmd_train_projector(args) -> int:
    from .training import TrainConfig, train

    config = TrainConfig(mllm=args.mllm, owl=args.owl, output=args.output, images=args.images, dataset=args.dataset,
                         split=args.split, image_column=args.image_column, kind=args.kind, hidden_dim=args.hidden_dim,
                         epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                         holdout=args.holdout, checkpoint_every=args.checkpoint_every, max_steps=args.max_steps,
                         limit=args.limit, seed=args.seed, device=args.device, dtype=args.dtype, progress=not args.no_progress)
    train(config)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bench", description="Batch evaluation of multi-modal LLMs: hallucination, "
                                     "explanation and bias, reproducibly and at scale.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(sub)
    p = sub.add_parser("tasks", help="list the task specs", description="List the packaged task specs and groups.")
    p.set_defaults(func=cmd_tasks)
    p = sub.add_parser("models", help="list the model adapters", description="List the model adapters and tiny models.")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser("validate", help="check task YAML", description="Check task spec files (default: all packaged ones).")
    p.add_argument("files", nargs="*", help="spec files to check")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("leaderboard", help="write the leaderboard", description="Scan a results folder and write a leaderboard.")
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    p.add_argument("--out", type=Path, default=None,
                   help="output file (default: leaderboard.md inside --results; the repository's board is "
                        "regenerated on purpose with --out leaderboard.md)")
    p.add_argument("--sort", default=None, help="column to sort by (a prefix is enough), in its declared direction")
    p.add_argument("--format", default="md", help="comma-separated: md, csv, latex (extra ones are written beside --out)")
    p.set_defaults(func=cmd_leaderboard)
    p = sub.add_parser("rescore", help="re-score a saved run without the model",
                       description="Recompute derived fields and metrics of a saved run from its raw outputs. With "
                                   "--labels, score its POPE tasks under other labels (RePOPE) instead, into "
                                   "metrics.<source>.json; metrics.json is left as it was.")
    p.add_argument("run_dir", type=Path, help="results/<run>")
    p.add_argument("--bootstrap-resamples", type=int, default=None, help="default: as in the run")
    p.add_argument("--labels", type=Path, nargs="+", default=None, metavar="FILE",
                   help="POPE-format labels files (e.g. RePOPE's coco_repope_*.json), each matched to the run's POPE "
                        "task by question ids; questions a file leaves out are dropped")
    p.add_argument("--labels-name", default=None, metavar="NAME",
                   help="the label source, named in the leaderboard column (default: RePOPE, for the pinned RePOPE files)")
    p.set_defaults(func=cmd_rescore)
    p = sub.add_parser("score", help="score a captions file without any model (CHAIR)",
                       description="Score a JSON-lines captions file (image_id, caption per line) with CHAIR, "
                                   "against the ground truth of a CHAIR task spec.")
    p.add_argument("kind", help="what to score: chair")
    p.add_argument("--captions", type=Path, required=True, help="JSON lines: {\"image_id\": ..., \"caption\": ...}")
    p.add_argument("--task", default="chair_mini", help="CHAIR task whose ground truth to use (default chair_mini)")
    p.add_argument("--data-root", type=Path, default=None, help="data root of that task (e.g. the COCO folder)")
    p.add_argument("--skip-unknown", action="store_true", help="skip (and count) lines whose image id is not in the ground truth")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0, as runs)")
    p.add_argument("--bootstrap-resamples", type=int, default=1000)
    p.add_argument("--output", type=Path, default=None, help="folder for rows.parquet and metrics.json")
    p.set_defaults(func=cmd_score)
    p = sub.add_parser("report", help="write one self-contained HTML report of runs",
                       description="Write one self-contained HTML file (inline style, images as data URIs, no network "
                                   "access) of the runs' metrics and figures; with two or more runs, the bench "
                                   "compare table of each later run against the first.")
    p.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="run folders (results/<run>)")
    p.add_argument("-o", "--output", type=Path, default=Path("report.html"), help="the HTML file (default: report.html)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("compare", help="compare runs: paired differences, a CI gate",
                       description="Compare candidate runs with a baseline run on the same samples: paired bootstrap "
                                   "over images, sign-flip test, McNemar, Holm. Exit 0, 1 on a regression beyond "
                                   "--margin, 2 when the runs are not comparable.")
    p.add_argument("base", type=Path, help="the baseline run folder")
    p.add_argument("candidates", type=Path, nargs="+", help="candidate run folders")
    p.add_argument("--tasks", default=None, help="comma-separated tasks or groups to compare (default: all)")
    p.add_argument("--metrics", default=None, help="comma-separated metrics to show and gate (default: all shown, primaries gated)")
    p.add_argument("--margin", type=float, default=None, help="gate: exit 1 when a gated metric may be more than this worse")
    p.add_argument("--allow-different", default=None, help="compare anyway although these differ: fingerprint, samples, prompts, settings")
    p.add_argument("--format", default="md", help="md (a table for a pull request) or json")
    p.add_argument("--output", type=Path, default=None, help="write here instead of printing")
    p.add_argument("--bootstrap-resamples", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("train-projector", help="train the grounded model's projector W",
                       description="Train W (OWL-ViT tokens -> the MLLM's image features) with OWL-ViT and the MLLM frozen: "
                                   "MSE to the MLLM's own projected image tokens. Rerunning resumes from the last checkpoint.")
    p.add_argument("--mllm", required=True, help="MLLM hub id or folder (LLaVA-style), e.g. llava-hf/llava-1.5-7b-hf")
    p.add_argument("--owl", required=True, help="OWL-ViT hub id or folder, e.g. google/owlvit-base-patch32")
    p.add_argument("--output", type=Path, required=True, help="folder for checkpoints and the trained projector")
    p.add_argument("--images", type=Path, default=None, help="a folder of images (searched recursively)")
    p.add_argument("--dataset", default=None, help="or a datasets dataset (hub name or a save_to_disk folder)")
    p.add_argument("--split", default="train")
    p.add_argument("--image-column", default="image")
    p.add_argument("--kind", choices=["deeper_mlp", "llava_mlp"], default="deeper_mlp",
                   help="deeper_mlp (the reference, 4 layers) or llava_mlp (LLaVA's 2-layer shape)")
    p.add_argument("--hidden-dim", type=int, default=8192, help="hidden width of deeper_mlp (default 8192)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-2)
    p.add_argument("--holdout", type=int, default=100, help="images held out for the final MSE and cosine similarity")
    p.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (a later run continues)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32", help="dtype of the frozen models")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train_projector)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; finished chunks are kept, rerun the same command to resume", file=sys.stderr)
        return 130
    except Terminated:
        print("bench: terminated; finished chunks are kept, rerun the same command to resume", file=sys.stderr)
        return Terminated.exit_code


if __name__ == "__main__":
    sys.exit(main())
