"""Why scores drop from valid to test on a pre-split leave-one-out dataset: the data side.

Prints, for the valid and the test targets, how many are items never seen as a training target
or in any training history (cold for an ID table), how popular they are in training, and how
long the histories are. A model that leans on item IDs loses on targets that training never
showed it; the test targets are one step later in time than the valid ones, so more of them can
be new. With ``--results`` (a comparison's folder with ``runs/``) it also prints, per model, the
valid-to-test drop and the part of it that selecting the best of many noisy validations
explains: how far the best valid score lies above the validations around it.

With ``--per_user`` it also splits each model's drop by the target's training popularity. Every
run's saved model is evaluated again on valid and test, user by user (cached, one JSON per run,
in ``<results>/valid_test_gap/``; run from the folder the runs' ``model_file`` paths are relative
to, or pass ``--model_root``). The drop is then the part due to the test targets' other mix of
popularity buckets, plus the part due to lower scores within the buckets. Usage:

    python benchmarks/valid_test_gap.py --data_path dataset --dataset Scientific \
        --results results/scientific-converged-cpu/Scientific [--per_user]
"""

import argparse
import collections
import glob
import json
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_bbq.data.io import write_text_atomic  # noqa: E402

# Per-user values of this metric are split by popularity (the runs' valid metric).
PER_USER_METRIC = "ndcg@10"


def read_split(path, with_users=False):
    """``(history, target)`` rows of a ``<dataset>.<split>.inter`` benchmark file
    (``(user, history, target)`` with ``with_users``)."""
    rows = []
    with open(path, encoding="utf-8") as f:
        next(f)
        for line in f:
            user, history, target = line.rstrip("\n").split("\t")
            rows.append((user, history.split(), target) if with_users else (history.split(), target))
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


SPLITS = ("valid", "test")


def split_file(folder, dataset, split):
    return os.path.join(folder, f"{dataset}.{split}.inter")


def per_user_values(results_dir, model_root=".", trust=False):
    """``{(model, seed): {"valid": {user: value}, "test": {user: value}}}`` of every finished run,
    from the cache or by evaluating the run's saved model again (then cached)."""
    cache = os.path.join(results_dir, "valid_test_gap")
    values = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "runs", "*.json"))):
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
        if record.get("status") != "ok" or not record.get("model_file") or record.get("weights_of"):
            continue
        cached = os.path.join(cache, os.path.basename(path))
        if not os.path.isfile(cached):
            os.makedirs(cache, exist_ok=True)
            values_of_run = evaluate_per_user(os.path.join(model_root, record["model_file"]), trust)
            write_text_atomic(cached, json.dumps(values_of_run))
        with open(cached, encoding="utf-8") as f:
            stored = json.load(f)
        values[record["model"], record["seed"]] = {
            split: dict(zip(stored[split]["users"], stored[split][PER_USER_METRIC])) for split in SPLITS
        }
        check_same_test(path, record, values[record["model"], record["seed"]]["test"])
    return values


def check_same_test(path, record, test):
    """The evaluated model must be the run's: its test values equal the ones the run stored (or,
    for runs that kept no per-user values, their mean is the run's test result)."""
    kept, mean = record.get("test_per_user"), (record.get("test_result") or {}).get(PER_USER_METRIC)
    if kept:
        same = dict(zip(kept["users"], kept[PER_USER_METRIC])) == test
    elif mean is not None:
        same = round(float(np.mean(list(test.values()))), 4) == mean
    else:
        return  # nothing stored to compare with
    if not same:
        raise SystemExit(f"{path}: {record['model_file']} does not reproduce the run's test values")


def evaluate_per_user(model_file, trust=False):
    """The valid and test per-user values of a saved model (``{"valid": ..., "test": ...}``)."""
    from recbole_bbq.quick_start import evaluate_saved_model

    sys.argv = sys.argv[:1]  # RecBole's Config reads --key=value options from the command line
    result = evaluate_saved_model(model_file, trust=trust)
    return {"model_file": model_file, "valid": result["valid_per_user"], "test": result["test_per_user"]}


def popularity_bucket(count, edges):
    """``0``, ``1-4``, ..., ``20+``: the bucket of a training-target count (``edges`` = 1, 5, 20)."""
    if count == 0:
        return "0"
    upper = [edge for edge in edges if edge > count]
    lower = max(edge for edge in edges if edge <= count)
    return f"{lower}+" if not upper else f"{lower}-{upper[0] - 1}"


def popularity_gap(values, targets, target_counts, edges):
    """Per model (seeds pooled), per popularity bucket of the target: user shares and mean values
    on valid and test, and the drop split into its mix and within-bucket parts.

    With ``w`` the buckets' user shares and ``m`` their mean values, the drop is
    ``sum(w_valid m_valid) - sum(w_test m_test) = sum((w_valid - w_test) m_valid)`` (mix)
    ``+ sum(w_test (m_valid - m_test))`` (within buckets).

    Returns:
        dict: model -> ``{"buckets": {bucket: {"valid_share", "test_share", "valid", "test"}},
        "valid", "test", "mix", "within"}``.
    """
    order = ["0"] + [popularity_bucket(edge, edges) for edge in edges]
    rows = {}
    for model in sorted({model for model, _ in values}):
        pooled = {split: collections.defaultdict(list) for split in SPLITS}
        for (name, _), per_split in values.items():
            if name != model:
                continue
            for split in SPLITS:
                for user, value in per_split[split].items():
                    bucket = popularity_bucket(target_counts.get(targets[split][user], 0), edges)
                    pooled[split][bucket].append(value)
        totals = {split: sum(len(v) for v in pooled[split].values()) for split in SPLITS}
        buckets = {}
        for bucket in order:
            cell = {}
            for split in SPLITS:
                scores = pooled[split].get(bucket, [])
                cell[f"{split}_share"] = len(scores) / totals[split]
                cell[split] = float(np.mean(scores)) if scores else 0.0
            buckets[bucket] = cell
        mean = {split: sum(b[f"{split}_share"] * b[split] for b in buckets.values()) for split in SPLITS}
        mix = sum((b["valid_share"] - b["test_share"]) * b["valid"] for b in buckets.values())
        within = sum(b["test_share"] * (b["valid"] - b["test"]) for b in buckets.values())
        rows[model] = {"buckets": buckets, **mean, "mix": mix, "within": within}
    return rows


def print_popularity_table(rows):
    metric = PER_USER_METRIC
    print(f"\n{metric} by the target's training-target count (seeds pooled; share of users in brackets)")
    for model, row in rows.items():
        drop = row["valid"] - row["test"]
        print(
            f"{model}: valid {row['valid']:.4f}, test {row['test']:.4f}, drop {drop:.4f} = "
            f"mix {row['mix']:.4f} + within buckets {row['within']:.4f}"
        )
        for bucket, cell in row["buckets"].items():
            print(
                f"  {bucket:>6}: valid {cell['valid']:.4f} ({cell['valid_share']:5.1%})"
                f"  test {cell['test']:.4f} ({cell['test_share']:5.1%})"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_path", default="dataset")
    parser.add_argument("--dataset", default="Scientific")
    parser.add_argument("--results", default=None, help="a comparison's folder (with runs/)")
    parser.add_argument("--per_user", action="store_true", help="split the drop by target popularity")
    parser.add_argument("--model_root", default=".", help="folder the runs' model_file paths start from")
    parser.add_argument(
        "--trust_checkpoints", action="store_true", help="unpickle older checkpoints (only files you trust)"
    )
    parser.add_argument(
        "--edges",
        default="1,5,20",
        type=lambda text: [int(v) for v in text.split(",")],
        help="lower edges of the popularity buckets (training-target counts) after 0",
    )
    args = parser.parse_args(argv)
    folder = os.path.join(args.data_path, args.dataset)
    splits = {s: read_split(split_file(folder, args.dataset, s)) for s in ("train", *SPLITS)}
    seen = {item for history, target in splits["train"] for item in (*history, target)}
    target_counts = collections.Counter(target for _, target in splits["train"])
    table = {s: split_statistics(splits[s], seen, target_counts) for s in ("valid", "test")}
    print(f"{'':32} {'valid':>10} {'test':>10}")
    for key in table["valid"]:
        print(f"{key:32} {table['valid'][key]:>10} {table['test'][key]:>10}")
    if args.results:
        print_selection_table(args.results)
    if args.results and args.per_user:
        targets = {
            s: {u: t for u, _, t in read_split(split_file(folder, args.dataset, s), True)} for s in SPLITS
        }
        values = per_user_values(args.results, args.model_root, args.trust_checkpoints)
        print_popularity_table(popularity_gap(values, targets, target_counts, args.edges))


if __name__ == "__main__":
    main()
