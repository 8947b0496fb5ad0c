"""Pick each model's configuration by valid score among finished comparisons, then test the picks.

Several comparisons of the same models on the same dataset and seeds (e.g. the untuned defaults
and the tuned settings) each give every model a mean best valid score over the seeds. This script
keeps, per model, the comparison whose mean valid score is highest, so the choice never looks at
test. It prints the picks' test metrics (mean ± std over seeds) and the per-user Wilcoxon test of
every pick against the reference model's pick (:func:`recbole_bbq.compare.per_user.per_user_test`).

Per-user test values come from the run records, or, for runs recorded before they were kept,
from ``benchmarks/valid_test_gap.py --per_user``'s re-evaluation cache (``valid_test_gap/`` in
the comparison's folder), which that script checks against the run's test result. Usage:

    python benchmarks/select_by_valid.py --models SASRec,UniSRec,TIGER,BBQRec --reference BBQRec \\
        --out results/scientific-tuned-cpu/selected.md \\
        default=results/scientific-converged-cpu/Scientific tuned=results/scientific-tuned-cpu/Scientific
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole_bbq.compare.per_user import per_user_test  # noqa: E402
from recbole_bbq.compare.store import PER_USER_KEY, is_ok, read_run, run_file  # noqa: E402
from recbole_bbq.data.io import write_text_atomic  # noqa: E402

METRICS = ("ndcg@10", "recall@10")


def load_runs(folder, model, seeds):
    """``{seed: record}`` of the model's finished runs in a comparison folder, each with its
    per-user test values (from the record or the valid_test_gap cache; None when neither has them)."""
    runs = {}
    for seed in seeds:
        record = read_run(run_file(folder, model, seed))
        if not is_ok(record):
            continue
        if not record.get(PER_USER_KEY):
            cached = os.path.join(folder, "valid_test_gap", f"{model}-seed{seed}.json")
            if os.path.isfile(cached):
                with open(cached, encoding="utf-8") as f:
                    record = {**record, PER_USER_KEY: json.load(f)["test"]}
        runs[seed] = record
    return runs


def pick(sources, model, seeds):
    """``(source name, runs, mean valid)`` of the source whose runs of ``model`` have the highest
    mean best valid score; only sources with every seed finished compete."""
    candidates = []
    for name, folder in sources.items():
        runs = load_runs(folder, model, seeds)
        if len(runs) == len(seeds):
            candidates.append((name, runs, float(np.mean([r["best_valid_score"] for r in runs.values()]))))
    if not candidates:
        raise SystemExit(f"{model}: no comparison has all seeds {seeds} finished")
    return max(candidates, key=lambda candidate: candidate[2])


def selection_table(sources, models, seeds, reference):
    """Markdown table of every model's pick, its test metrics and its per-user test against
    ``reference``'s pick."""
    picks = {model: pick(sources, model, seeds) for model in models}
    records = {(model, seed): run for model, (_, runs, _) in picks.items() for seed, run in runs.items()}
    header = ["model", "picked", "mean best valid ndcg@10", *[f"test {m}" for m in METRICS]]
    header.append(f"vs {reference}: Δ ndcg@10 [95% interval] (p)")
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(header) - 2)) + "|",
    ]
    for model, (name, runs, valid) in picks.items():
        cells = [model, name, f"{valid:.4f}"]
        for metric in METRICS:
            values = [r["test_result"][metric] for r in runs.values()]
            cells.append(f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}")
        cells.append(reference_cell(records, model, reference, seeds))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reference_cell(records, model, reference, seeds):
    if model == reference:
        return "reference"
    test = per_user_test(records, model, reference, seeds, "ndcg@10")
    if test["p"] is None:
        return test["note"] or "no per-user values"
    low, high = test["interval"]
    return f"{test['mean_difference']:+.4f} [{low:+.4f}, {high:+.4f}] (p {test['p']:.4f})"


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="+", help="name=folder of a finished comparison (with runs/)")
    parser.add_argument("--models", required=True)
    parser.add_argument("--reference", required=True)
    parser.add_argument("--seeds", default="2020,2021,2022")
    parser.add_argument("--out", default=None, help="also write the table here (Markdown)")
    args = parser.parse_args(argv)
    sources = dict(source.split("=", 1) for source in args.sources)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    table = selection_table(sources, args.models.split(","), seeds, args.reference)
    print(table)
    if args.out:
        write_text_atomic(args.out, table + "\n")


if __name__ == "__main__":
    main()
