"""Why scores drop from valid to test on a pre-split leave-one-out dataset: the data side.

Prints, for the valid and the test targets, how many are items never seen as a training target
or in any training history (cold for an ID table), how popular they are in training, and how
long the histories are. A model that leans on item IDs loses on targets that training never
showed it; the test targets are one step later in time than the valid ones, so more of them can
be new. Usage:

    python benchmarks/valid_test_gap.py --data_path dataset --dataset Scientific
"""

import argparse
import collections
import os

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


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_path", default="dataset")
    parser.add_argument("--dataset", default="Scientific")
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


if __name__ == "__main__":
    main()
