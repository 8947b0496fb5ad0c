"""Why scores drop from valid to test on a pre-split leave-one-out dataset: the data side.

Prints, for the valid and the test targets, how many are items never seen as a training target
or in any training history (cold for an ID table), how popular they are in training, and how
long the histories are. A model that leans on item IDs loses on targets that training never
showed it; the test targets are one step later in time than the valid ones, so more of them can
be new. With ``--results`` (a comparison's folder with ``runs/``) it also prints, per model, the
valid-to-test drop and the part of it that selecting the best of many noisy validations
explains: how far the best valid score lies above the validations around it. Usage:

    python benchmarks/valid_test_gap.py --data_path dataset --dataset Scientific \
        --results results/scientific-converged-cpu/Scientific
"""

import argparse
import collections
import glob
import json
import os
import statistics

import numpy as np


def read_split(path):
    """``(history, target)`` rows of a ``<dataset>.<split>.inter`` benchmark file."""
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            _, history, target = line.rstrip("\n").split("\t")
            rows.append((history.split(), target))
    return rows


def split_statistics(rows, seen, target_counts):
    """Share of cold targets, training popularity of the targets and history length."""
    targets = [target for _, target in rows]
    popularity = np.array([target_counts.get(t, 0) for t in targets])
    return {
        "rows": len(rows),
        "cold target (never in train)": f"{np.mean([t not in seen for t in targets]):.1%}",
        "target never a train target": f"{np.mean(popularity == 0):.1%}",
        "median train count of target": f"{np.median(popularity):.0f}",
        "mean train count of target": f"{popularity.mean():.1f}",
        "mean history length": f"{np.mean([len(h) for h, _ in rows]):.2f}",
    }


def selection_rows(results_dir, neighbours=2):
    """Per model: mean best valid score, mean of the validations around it, test, validations."""
    rows = collections.defaultdict(list)
    for path in sorted(glob.glob(os.path.join(results_dir, "runs", "*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        curve = [point["valid_score"] for point in record.get("valid_curve") or []]
        if record.get("status") != "ok" or not curve:
            continue
        best = max(range(len(curve)), key=curve.__getitem__)
        around = curve[max(0, best - neighbours) : best] + curve[best + 1 : best + 1 + neighbours]
        test = record["test_result"][record["config"]["valid_metric"].lower()]
        rows[record["model"]].append(
            (curve[best], statistics.mean(around or [curve[best]]), test, len(curve))
        )
    return {model: [statistics.mean(column) for column in zip(*runs)] for model, runs in rows.items()}


def print_selection_table(results_dir):
    header = ("model", "best valid", "around it", "selection", "test", "drop", "valids")
    print("\n{:12} {:>10} {:>10} {:>10} {:>8} {:>7} {:>7}".format(*header))
    for model, (best, around, test, count) in sorted(selection_rows(results_dir).items()):
        print(
            f"{model:12} {best:10.4f} {around:10.4f} {(best - around) / best:10.1%} {test:8.4f} "
            f"{(best - test) / best:7.1%} {count:7.0f}"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_path", default="dataset")
    parser.add_argument("--dataset", default="Scientific")
    parser.add_argument("--results", default=None, help="a comparison's folder (with runs/)")
    args = parser.parse_args(argv)
    folder = os.path.join(args.data_path, args.dataset)
    splits = {
        s: read_split(os.path.join(folder, f"{args.dataset}.{s}.inter")) for s in ("train", "valid", "test")
    }
    seen = {item for history, target in splits["train"] for item in (*history, target)}
    target_counts = collections.Counter(target for _, target in splits["train"])
    table = {s: split_statistics(splits[s], seen, target_counts) for s in ("valid", "test")}
    print(f"{'':32} {'valid':>10} {'test':>10}")
    for key in table["valid"]:
        print(f"{key:32} {table['valid'][key]:>10} {table['test'][key]:>10}")
    if args.results:
        print_selection_table(args.results)


if __name__ == "__main__":
    main()
