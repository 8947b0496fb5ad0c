"""Cold-start benchmark: items never seen in training, added to trained models without retraining.

Protocol (Scientific, pre-split leave-one-out files):

1. Hold out a random ``--fraction`` (10%) of the items (``--split_seed``). Every interaction with
   them leaves the training and validation files: rows whose target is held out are dropped and
   held-out items are cut from every history; users keep the rest of their history. The result
   is the dataset ``<dataset>-cold`` (its feature files hold the remaining items only), so the
   behaviour vectors, the tokenizers and the models are all fitted without the held-out items.
2. Train every model on it over ``--seeds`` (the comparison runner: resumable, one record per
   run in ``<results_dir>/<dataset>-cold/runs/``).
3. Add the held-out items to each trained model (:func:`recbole_bbq.catalogue.add_items`: the
   saved tokenizer encodes their text and image vectors, no behaviour vector, no retraining).
   SASRec cannot take items it was not trained on and stays without them: the floor.
4. Rank the whole catalogue (remaining + held-out items) for every test user of the original
   test file, from the history without held-out items, and report NDCG@10 and Recall@10
   separately for users whose test target is a held-out item ("cold") and for the others
   ("warm"), mean +- std over seeds.

Usage (resumable; rerun after an interruption):

    python benchmarks/cold_start.py --data_path dataset --results_dir results/cold-start \\
        --config_files "benchmarks/configs/scientific.yaml benchmarks/configs/cpu_small.yaml \\
        benchmarks/configs/scientific_converged_cpu.yaml"
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from recbole_bbq.compare.store import read_run, write_json_atomic  # noqa: E402
from recbole_bbq.data.io import write_text_atomic  # noqa: E402

from _bench import ensure_dataset  # noqa: E402

MODELS = ("BBQRec", "TIGER", "MMTIGER", "UniSRec", "SASRec")
SPLITS = ("train", "valid", "test")
CUTOFF = 10
# Models with a learned per-item table (z_ID): their added items are scored with zero rows and,
# in more rows of the table, with the mean of the trained rows and with the nearest trained item's.
LEARNED_ID_ROWS = ("BBQRec",)
# Their added items' learned rows (add_items id_rows) -> suffix of the table row's label.
ID_ROWS = {"zero": "", "mean": ", z_ID mean", "nearest": ", z_ID nearest"}
# score_mode interpolate is scored at these fusion weights: BBQRec's default (chosen on valid) and
# the earlier default.
INTERPOLATE_WEIGHTS = (0.3, 1.0)
# Bumped when the rows evaluate_cell writes change: stored cells of another version are redone.
EVALUATION_VERSION = 2


def read_split(path):
    """``(user, history, target)`` rows of a ``<dataset>.<split>.inter`` file, and its header."""
    with open(path, encoding="utf-8") as lines:
        header = next(lines).rstrip("\n")
        rows = []
        for line in lines:
            user, history, target = line.rstrip("\n").split("\t")
            rows.append((user, history.split(), target))
    return header, rows


def held_out_items(items, fraction, seed):
    """A random ``fraction`` of ``items`` (at least one), sorted."""
    rng = np.random.default_rng(seed)
    count = max(1, int(round(fraction * len(items))))
    return sorted(rng.choice(sorted(items), size=count, replace=False).tolist())


def without_items(rows, held_out):
    """Rows whose target is kept, with held-out items cut from the histories (empty ones dropped)."""
    kept = []
    for user, history, target in rows:
        history = [item for item in history if item not in held_out]
        if target not in held_out and history:
            kept.append((user, history, target))
    return kept


def write_split(path, header, rows):
    with open(path, "w", encoding="utf-8") as out:
        out.write(header + "\n")
        out.writelines(f"{user}\t{' '.join(history)}\t{target}\n" for user, history, target in rows)


def make_cold_dataset(data_path, dataset, fraction, seed):
    """Write ``<data_path>/<dataset>-cold/`` without the held-out items; reuse it when present.

    Returns:
        tuple[str, list[str]]: The new dataset's name and the held-out item tokens.
    """
    from recbole_bbq.data.features import feature_path, read_feature_file, write_feature_file

    name, source = f"{dataset}-cold", os.path.join(data_path, dataset)
    target = os.path.join(data_path, name)
    held_file = os.path.join(target, "held_out_items.json")
    if os.path.isfile(held_file):
        saved = read_run(held_file)
        if saved is None:
            raise SystemExit(f"error: {held_file} is unreadable; move {target} away first")
        if saved["fraction"] != fraction or saved["split_seed"] != seed:
            raise SystemExit(f"error: {target} holds another split ({saved}); move it away first")
        return name, saved["items"]
    splits = {s: read_split(os.path.join(source, f"{dataset}.{s}.inter")) for s in SPLITS}
    items = {i for _, rows in splits.values() for _, history, item in rows for i in (*history, item)}
    held_out = held_out_items(items, fraction, seed)
    building = tempfile.mkdtemp(prefix=f".{name}-", dir=data_path)
    for split, (header, rows) in splits.items():
        write_split(
            os.path.join(building, f"{name}.{split}.inter"), header, without_items(rows, set(held_out))
        )
    for modality in ("text", "image"):
        features = read_feature_file(feature_path(source, dataset, modality))
        keep = ~np.isin(features.tokens, held_out)
        write_feature_file(
            feature_path(building, name, modality), features.tokens[keep], features.features[keep]
        )
        write_feature_file(
            os.path.join(building, f"held_out.{modality}.npz"),
            features.tokens[~keep],
            features.features[~keep],
        )
    shutil.copy(os.path.join(source, f"{dataset}.yaml"), os.path.join(building, f"{name}.yaml"))
    with open(os.path.join(building, "held_out_items.json"), "w") as out:
        json.dump({"fraction": fraction, "split_seed": seed, "items": held_out}, out, indent=1)
    os.rename(building, target)  # the folder appears complete or not at all
    return name, held_out


def test_rows(data_path, dataset, held_out):
    """The original test rows, histories without held-out items, split into cold and warm."""
    _, rows = read_split(os.path.join(data_path, dataset, f"{dataset}.test.inter"))
    held_out = set(held_out)
    cleaned = [(u, [i for i in h if i not in held_out], t) for u, h, t in rows]
    cleaned = [row for row in cleaned if row[1]]
    return {
        "cold": [row for row in cleaned if row[2] in held_out],
        "warm": [row for row in cleaned if row[2] not in held_out],
    }


def ranking_metrics(recommendations, targets):
    """Mean NDCG@10 and Recall@10 of single targets over their top-10 lists."""
    ndcg, recall = [], []
    for recommendation, target in zip(recommendations, targets):
        items = recommendation.items[:CUTOFF]
        rank = items.index(target) if target in items else None
        ndcg.append(0.0 if rank is None else 1.0 / np.log2(rank + 2))
        recall.append(0.0 if rank is None else 1.0)
    return {"ndcg@10": float(np.mean(ndcg)), "recall@10": float(np.mean(recall)), "users": len(targets)}


def evaluate_cell(record, cold_folder, groups, out_path):
    """Add the held-out items to the cell's model (when it can take them) and score both groups.

    A model with score modes (BBQRec) is scored in every mode (``interpolate`` at each of
    :data:`INTERPOLATE_WEIGHTS`), from the same trained weights: the mode decides whether items
    outside the beam, as the added items are at first, can rank.
    BBQRec is scored three times: added items with zero z_ID rows (the default), with the mean
    of the trained rows, and with the row of the trained item with the closest feature vectors.

    Returns:
        dict: ``version`` (:data:`EVALUATION_VERSION`), ``model``, ``seed``, ``items_added`` and
        ``rows``: table row label (``BBQRec (dense)``, ``TIGER``, ...) -> ``{"cold": metrics,
        "warm": metrics}``.
    """
    from recbole_bbq.errors import ConfigError
    from recbole_bbq.quick_start import load_data_and_model

    features = {m: os.path.join(cold_folder, f"held_out.{m}.npz") for m in ("text", "image")}
    rows, added = {}, True
    for id_rows in ID_ROWS if record["model"] in LEARNED_ID_ROWS else ("zero",):
        try:
            model, dataset = _with_held_out_items(record["model_file"], features, id_rows)
        except ConfigError:  # an ID-only model: it ranks the items it was trained on
            _, model, dataset, *_ = load_data_and_model(record["model_file"])
            added = False
        suffix = ID_ROWS[id_rows]
        for mode, settings in score_modes(model):
            label = record["model"] if mode is None else f"{record['model']} ({mode}{suffix})"
            for key, value in settings.items():
                setattr(model, key, value)
            rows[label] = {group: group_metrics(model, dataset, users) for group, users in groups.items()}
    result = {
        "version": EVALUATION_VERSION,
        "model": record["model"],
        "seed": record["seed"],
        "items_added": added,
        "rows": rows,
    }
    write_json_atomic(out_path, result)
    return result


def _with_held_out_items(model_file, features, id_rows):
    """The cell's model and dataset with the held-out items added (``id_rows``: their z_ID)."""
    from recbole_bbq.catalogue import add_items
    from recbole_bbq.quick_start import load_data_and_model

    extended = f"{os.path.splitext(model_file)[0]}-cold-{id_rows}.pth"
    add_items(model_file, features, output_file=extended, id_rows=id_rows)
    _, model, dataset, *_ = load_data_and_model(extended)
    return model, dataset


def score_modes(model):
    """``(label, model attributes)`` of each way to score ``model``: every score mode of a model
    that has them (``interpolate`` at each of :data:`INTERPOLATE_WEIGHTS`), else ``(None, {})``."""
    if not hasattr(model, "score_mode"):
        return [(None, {})]
    from recbole_bbq.model.sequential_recommender.bbqrec import SCORE_MODES

    modes = [(mode, {"score_mode": mode}) for mode in SCORE_MODES if mode != "interpolate"]
    for weight in INTERPOLATE_WEIGHTS:
        modes.append((f"interpolate {weight:g}", {"score_mode": "interpolate", "fusion_weight": weight}))
    return modes


def group_metrics(model, dataset, rows):
    """NDCG@10 and Recall@10 of one user group (histories cut to the model's catalogue)."""
    from recbole_bbq.recommend import topk

    known = dataset.field2token_id[dataset.iid_field]
    histories = [[i for i in history if i in known] for _, history, _ in rows]
    recommendations = topk(model, dataset, histories=histories, k=CUTOFF)
    return ranking_metrics(recommendations, [target for _, _, target in rows])


def all_users(groups, metric):
    """``metric`` over the cold and warm users together (their user-weighted mean)."""
    users = sum(groups[g]["users"] for g in ("cold", "warm"))
    return sum(groups[g][metric] * groups[g]["users"] for g in ("cold", "warm")) / users


def summary_table(results):
    """Markdown table: per row (model, or model and score mode), mean +- std over seeds."""
    lines = [
        "| model | seeds | cold NDCG@10 | cold Recall@10 | warm NDCG@10 | warm Recall@10 | all NDCG@10 "
        "| new items added |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    labels = list(dict.fromkeys(label for r in results for label in r["rows"]))
    for label in labels:
        runs = [r for r in results if label in r["rows"]]
        columns = [(group, metric) for group in ("cold", "warm") for metric in ("ndcg@10", "recall@10")]
        cells = []
        for group, metric in [*columns, ("all", "ndcg@10")]:
            values = [
                all_users(r["rows"][label], metric) if group == "all" else r["rows"][label][group][metric]
                for r in runs
            ]
            spread = np.std(values, ddof=1) if len(values) > 1 else 0.0
            cells.append(f"{np.mean(values):.4f} ± {spread:.4f}")
        added = "yes" if runs[0]["items_added"] else "no (ID-only)"
        lines.append(f"| {label} | {len(runs)} | " + " | ".join(cells) + f" | {added} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data_path", default="dataset")
    parser.add_argument("--dataset", default="Scientific")
    parser.add_argument("--results_dir", default="results/cold-start")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--seeds", default="2020,2021,2022")
    parser.add_argument("--fraction", type=float, default=0.1, help="share of items held out")
    parser.add_argument("--split_seed", type=int, default=0, help="seed of the held-out items")
    parser.add_argument("--config_files", default="", help="space-separated YAML files of every run")
    args = parser.parse_args(argv)
    import recbole_bbq.compat  # noqa: F401

    from recbole_bbq.compare import run_comparison

    if args.dataset == "Scientific":
        ensure_dataset(args.dataset, args.data_path)
    name, held_out = make_cold_dataset(args.data_path, args.dataset, args.fraction, args.split_seed)
    models, seeds = args.models.split(","), [int(s) for s in args.seeds.split(",")]
    groups = test_rows(args.data_path, args.dataset, held_out)
    shared = {
        "config_file_list": args.config_files.split() or None,
        "config_dict": {"data_path": args.data_path},
        "results_dir": args.results_dir,
    }
    out_dir = os.path.join(args.results_dir, name, "cold_start")
    os.makedirs(out_dir, exist_ok=True)
    results = []
    # Cell by cell, so that each trained model is evaluated (and its record kept) at once.
    for seed in seeds:
        for model in models:
            record = run_comparison([model], name, [seed], **shared)["runs"][model, seed]
            path = os.path.join(out_dir, f"{model}-seed{seed}.json")
            stored = read_run(path) or {}
            if stored.get("version") == EVALUATION_VERSION:
                results.append(stored)
            elif record and record.get("status") == "ok":
                results.append(evaluate_cell(record, os.path.join(args.data_path, name), groups, path))
    run_comparison(models, name, seeds, report_only=True, **shared)  # the training report of all cells
    table = summary_table(results)
    header = (
        f"Held out: {len(held_out)} items ({args.fraction:.0%}, split seed {args.split_seed}); "
        f"test users: {len(groups['cold'])} cold (target held out), {len(groups['warm'])} warm.\n\n"
    )
    write_text_atomic(os.path.join(args.results_dir, "cold_start.md"), header + table + "\n")
    print(header + table)


if __name__ == "__main__":
    main()
