"""The report files of a comparison: ``protocol.json``, ``comparison.md``/``.csv`` and the charts."""

import csv
import os

from recbole_bbq.compare.markdown import markdown_report, markdown_table
from recbole_bbq.compare.per_user import best_against_runner_up, per_user_metric, reference_tests
from recbole_bbq.compare.plots import write_curves, write_plot
from recbole_bbq.compare.protocol import build_protocol
from recbole_bbq.compare.store import is_ok, write_json_atomic
from recbole_bbq.compare.summary import VALID, metric_names, summarize
from recbole_bbq.data.io import atomic_path, write_text_atomic

REPORT_FILES = ("protocol.json", "comparison.md", "comparison.csv", "comparison.png", "curves.png")


def write_summary(comparison, records):
    """Write ``protocol.json``, ``comparison.md``, ``comparison.csv``, ``comparison.png`` and ``curves.png``.

    Args:
        comparison (Comparison): The comparison (rows, seeds, config, output folder, command).
        records (dict): ``(model, seed) -> cell record`` (None for a cell never run).

    Returns:
        dict: See :func:`recbole_bbq.compare.run_comparison`.
    """
    models, seeds, out_dir = comparison.models, comparison.seeds, comparison.out_dir
    protocol = build_protocol(comparison, records)
    rows = summarize(models, seeds, records)
    metrics = metric_names(models, seeds, records)
    valid_metric = protocol.get("valid_metric") or "valid"
    paths = {name: os.path.join(out_dir, name) for name in REPORT_FILES}

    per_user = per_user_tests(comparison, protocol, rows, records)

    write_json_atomic(paths["protocol.json"], protocol)
    table = markdown_table(rows, metrics, valid_metric, per_user["reference"])
    report = markdown_report(protocol, rows, metrics, table, records, seeds, per_user["best"])
    write_text_atomic(paths["comparison.md"], report)
    write_csv(paths["comparison.csv"], rows, metrics, valid_metric, per_user["reference"])
    write_plot(paths["comparison.png"], rows, metrics, comparison.dataset)
    write_curves(paths["curves.png"], models, seeds, records, valid_metric, comparison.dataset)
    n_ok = sum(is_ok(r) for r in records.values())
    n_not_run = sum(not r for r in records.values())
    return {
        "dir": out_dir,
        "markdown": paths["comparison.md"],
        "csv": paths["comparison.csv"],
        "png": paths["comparison.png"],
        "curves": paths["curves.png"],
        "protocol": paths["protocol.json"],
        "table": table,
        "rows": rows,
        "runs": records,
        "n_ok": n_ok,
        "n_failed": len(records) - n_ok - n_not_run,
        "n_not_run": n_not_run,
        "per_user_test": per_user["best"],
        "reference_tests": per_user["reference"][2] if per_user["reference"] else None,
    }


def per_user_tests(comparison, protocol, rows, records):
    """The per-user tests of the report (:mod:`recbole_bbq.compare.per_user`).

    Returns:
        dict: ``best``: the best row against the runner-up (None with fewer than two rows);
        ``reference``: ``(reference row, metric, {row: test against it})``, or None when the
        comparison has no ``compare_reference``.
    """
    metric = per_user_metric(protocol, records)
    best = best_against_runner_up(rows, records, comparison.seeds, metric)
    reference = None
    if comparison.reference:
        tests = reference_tests(rows, records, comparison.seeds, comparison.reference, metric)
        reference = (comparison.reference, metric, tests)
    return {"best": best, "reference": reference}


def write_csv(path, rows, metrics, valid_metric, reference=None):
    """One row per model: ``<metric>_mean``, ``<metric>_std``, ``n_seeds``, ``status``, ``error``.

    Numbers are written unrounded; missing values (std with one seed, failed models) are empty.
    With a ``reference`` (see :func:`per_user_tests`), two last columns give each row's per-user
    mean difference and Wilcoxon p-value against the reference row.
    """
    valid = f"best_valid_{valid_metric.lower()}"
    header = ["model"]
    for metric in metrics:
        header += [f"{metric}_mean", f"{metric}_std"]
    header += [
        f"{valid}_mean",
        f"{valid}_std",
        "n_seeds",
        "seeds",
        "stop_reasons",
        "epochs",
        "status",
        "error",
    ]
    if reference:
        label, metric = reference[:2]
        header += [f"vs_{label}_{metric}_mean_difference", f"vs_{label}_{metric}_p"]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in rows:
                writer.writerow(_csv_row(row, metrics) + _csv_reference(row["model"], reference))


def _csv_row(row, metrics):
    """The CSV cells of one summary row (see :func:`write_csv`)."""
    values = [row["model"]]
    for metric in metrics + [VALID]:
        values += [_csv_number(row["mean"].get(metric)), _csv_number(row["std"].get(metric))]
    seeds = " ".join(str(s) for s in row["seeds"])
    stops = " ".join(str(r) for r in row["stop_reasons"])
    epochs = " ".join(str(e) for e in row["epochs"])
    return values + [row["n_seeds"], seeds, stops, epochs, row["status"], row["error"]]


def _csv_reference(model, reference):
    """The reference columns of one CSV row (none without a reference; empty for the reference)."""
    if not reference:
        return []
    test = reference[2].get(model) or {}
    return [_csv_number(test.get("mean_difference")), _csv_number(test.get("p"))]


def _csv_number(value):
    return "" if value is None else repr(float(value))
