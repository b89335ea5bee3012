"""Comparing two large runs: synthetic POPE-like runs of 1,000,000 rows in 100,000 images, 1,000 bootstrap resamples.

Side by side in one run: reading the two Parquet files alone, against the whole comparison of the count-based
metrics (accuracy, F1, and a CHAIR-like ratio of summed counts): per-image aggregation first, then the paired
bootstrap and the sign-flip test in blocks (`bench.metrics.contract`), no Python loop per resample. AUROC, which
per-image sums cannot express, is timed separately (its draws map onto the rows, block by block).

    python benchmarks/aggregate_compare.py [--rows 1000000] [--images 100000] [--resamples 1000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


COUNTED = ["accuracy", "f1", "CHAIR_i"]


def synthetic(rows: int, images: int, seed: int, shift: float):
    import numpy as np
    import pandas as pd

    shared = np.random.default_rng(1234)             # the same samples (images, labels) in both runs
    image = np.sort(shared.integers(0, images, rows))
    label = shared.random(rows) < 0.5
    rng = np.random.default_rng(seed)                # the answers differ
    p_yes = np.clip(0.5 + (label - 0.5) * 0.4 + rng.normal(0, 0.25, rows) + shift, 0, 1)
    mentions = rng.poisson(4, rows)
    return pd.DataFrame({"image_id": image.astype(str), "label": np.where(label, "yes", "no"),
                         "answer": np.where(p_yes >= 0.5, "yes", "no"), "p_yes": p_yes,
                         "mentions": mentions, "hallucinated": rng.binomial(mentions, 0.12 + shift)})


def statistics(rows):
    import numpy as np

    from bench.metrics.chair import metrics_from_totals
    from bench.metrics.classification import RankedScores, auroc
    from bench.metrics.contract import SampleStatistics, Summed, per_row
    from bench.metrics.paired import f1, ratio

    label = (rows["label"] == "yes").to_numpy()
    pred = (rows["answer"] == "yes").to_numpy()
    counts = np.stack([pred & label, pred & ~label, ~pred & label, pred == label, np.ones(len(pred))], 1).astype(float)
    chair = np.zeros((len(rows), 6))
    chair[:, 0], chair[:, 1] = rows["mentions"], rows["hallucinated"]
    stats = SampleStatistics(rows["image_id"].tolist())
    stats.metrics["accuracy"] = Summed(counts, ratio(3, 4, zero_division=0.0))
    stats.metrics["f1"] = Summed(counts, f1(0, 1, 2, zero_division=0.0))
    stats.metrics["CHAIR_i"] = Summed(np.c_[chair, np.ones(len(rows))], lambda s: metrics_from_totals(s[:, :6], s[:, 6])["CHAIR_i"])
    stats.metrics["auroc"] = per_row(auroc, rows["p_yes"].to_numpy(), label, prepare=RankedScores)
    return stats


def main() -> None:
    import pandas as pd

    from bench.metrics.bootstrap import BootstrapConfig
    from bench.metrics.contract import paired_estimate, paired_estimates
    from bench.metrics.paired import compare_paired_many

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--test-resamples", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3, help="best of this many timings of reading and of the whole")
    parser.add_argument("--auroc-resamples", type=int, default=200, help="bootstrap resamples for the AUROC timing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k, shift in enumerate((0.0, 0.01)):
            path = Path(tmp) / f"run{k}.parquet"
            synthetic(args.rows, args.images, k, shift).to_parquet(path)
            paths.append(path)
        config = BootstrapConfig(args.resamples, 0)
        read, counted = [], []
        for _ in range(args.repeat):   # best of --repeat for each, taken in turn
            t0 = time.perf_counter()
            base, cand = (pd.read_parquet(p) for p in paths)
            read.append(time.perf_counter() - t0)

            t0 = time.perf_counter()
            base, cand = (pd.read_parquet(p) for p in paths)
            sb, sc = statistics(base), statistics(cand)
            results = paired_estimates(sb, sc, COUNTED, config, resamples=args.test_resamples)
            counted.append(time.perf_counter() - t0)
        read, counted = min(read), min(counted)

        # the same work in its parts, on the statistics already prepared
        t0 = time.perf_counter()
        sb, sc = statistics(base), statistics(cand)
        pairs = [(sb.aggregates(m, sb.units), sc.aggregates(m, sb.units), sb.metrics[m].statistic) for m in COUNTED]
        prepare = time.perf_counter() - t0
        t0 = time.perf_counter()
        compare_paired_many(pairs, config, test_resamples=1)
        bootstrap_only = time.perf_counter() - t0
        t0 = time.perf_counter()
        compare_paired_many(pairs, BootstrapConfig(1, 0), test_resamples=args.test_resamples)
        swaps_only = time.perf_counter() - t0

        t0 = time.perf_counter()
        auroc = paired_estimate(sb, sc, "auroc", BootstrapConfig(args.auroc_resamples, 0), resamples=args.auroc_resamples)
        auroc_seconds = time.perf_counter() - t0
    print(f"{args.rows:,} rows in {args.images:,} images per run, {args.resamples} bootstrap resamples, "
          f"{args.test_resamples} sign-flip swaps")
    print(f"reading the two Parquet files alone (best of {args.repeat}): {read:6.2f} s")
    print(f"reading + comparing accuracy, F1 and CHAIR_i (best of {args.repeat}): {counted:6.2f} s = {counted / read:.2f}x reading (target < 5x)")
    print(f"  in parts: per-row statistics and per-image sums {prepare:5.2f} s ({prepare / read:.1f}x reading), "
          f"paired bootstrap {bootstrap_only:5.2f} s ({bootstrap_only / read:.1f}x), "
          f"sign-flip test {swaps_only:5.2f} s ({swaps_only / read:.1f}x)")
    for name, r in results.items():
        print(f"  {name:<9} difference {r.result.difference:+.5f} [{r.result.ci_low:+.5f}, {r.result.ci_high:+.5f}], "
              f"p {r.result.p_value:.3g}, MDE {r.result.mde:.5f}")
    print(f"AUROC, separately ({args.auroc_resamples} resamples and swaps over the rows): {auroc_seconds:6.2f} s; "
          f"difference {auroc.result.difference:+.5f} [{auroc.result.ci_low:+.5f}, {auroc.result.ci_high:+.5f}]")


if __name__ == "__main__":
    main()
