"""Per-model statistics over seeds: mean and sample std (pandas), ranking and the paired t-test."""

import math

import numpy as np
import pandas as pd

from recbole_bbq.compare.store import STATUS_FAILED, STATUS_NOT_RUN, STATUS_OK, STATUS_PARTIAL, is_ok

# The pseudo-metric that holds a cell's best valid score beside its test metrics.
VALID = "valid"
# Paired differences that vary less than this count as constant (no t-test possible).
CONSTANT_DIFFERENCE = 1e-12


def seed_values(models, seeds, records):
    """The successful cells' numbers as a long table, row by row and seed by seed.

    Returns:
        pandas.DataFrame: Columns ``model``, ``seed``, ``metric`` (test metrics in the order the
        run reports them, then :data:`VALID` for the best valid score) and ``value`` (float).
    """
    rows = []
    for model in models:
        for seed in seeds:
            record = records.get((model, seed)) or {}
            if is_ok(record):
                rows += [(model, seed, m, float(v)) for m, v in record.get("test_result", {}).items()]
                rows.append((model, seed, VALID, float(record["best_valid_score"])))
    return pd.DataFrame(rows, columns=["model", "seed", "metric", "value"])


def metric_names(models, seeds, records):
    """Test metrics of the successful cells, in the order the runs report them."""
    metrics = seed_values(models, seeds, records)["metric"]
    return [metric for metric in metrics.unique().tolist() if metric != VALID]


def seed_statistics(values):
    """Mean, sample std (ddof=1) and number of seeds of every (model, metric) of :func:`seed_values`.

    Each group is reduced by numpy, as the reports always were: pandas' built-in ``"mean"`` and
    ``"std"`` sum in another order (compensated sum, one-pass variance), which changes the last
    digit of the unrounded numbers in ``comparison.csv``.

    Returns:
        pandas.DataFrame: Index ``(model, metric)`` in order of appearance; columns ``mean``,
        ``std`` (NaN with one seed) and ``n``.
    """
    grouped = values.groupby(["model", "metric"], sort=False)["value"]
    return grouped.agg([("mean", _mean), ("std", _sample_std), ("n", "size")])


def _mean(values):
    return float(np.mean(values.to_numpy()))


def _sample_std(values):
    return float(np.std(values.to_numpy(), ddof=1)) if len(values) >= 2 else math.nan


def summarize(models, seeds, records):
    """Per-model mean and sample std (ddof=1) of every test metric and of the best valid score.

    Returns:
        list[dict]: One row per model: ``model``, ``status`` (``ok``, ``partial``, ``failed`` or
        ``not run``), ``n_seeds``, ``seeds`` (those that succeeded), ``values`` (metric ->
        per-seed values, ``"valid"`` for the best valid score), ``mean``, ``std`` (metric ->
        float, std None with one seed), ``error``, ``not_run`` (seeds without a record), and per
        successful seed ``stop_reasons`` and ``epochs`` (trained epochs; None for records from
        before they were kept).
    """
    statistics = _model_statistics(seed_values(models, seeds, records))
    return [
        _summary_row(model, seeds, records, statistics.get(model) or _no_statistics()) for model in models
    ]


def _no_statistics():
    """The statistics of a model without successful cells (see :func:`_model_statistics`)."""
    return {"values": {}, "mean": {}, "std": {}}


def _model_statistics(values):
    """``model -> {"values": metric -> {seed: value}, "mean": metric -> float, "std": metric -> float
    or None}`` of the models in :func:`seed_values`' table, metrics in order of appearance."""
    statistics = {}

    def of(model):
        return statistics.setdefault(model, _no_statistics())

    for model, seed, metric, value in values.itertuples(index=False, name=None):
        of(model)["values"].setdefault(metric, {})[seed] = value
    for (model, metric), mean, std, n in seed_statistics(values).itertuples(name=None):
        of(model)["mean"][metric] = float(mean)
        of(model)["std"][metric] = float(std) if n >= 2 else None
    return statistics


def _summary_row(model, seeds, records, statistics):
    """One row of :func:`summarize`: the model's cell outcomes and its ``statistics``."""
    cells = [(seed, records.get((model, seed)) or {}) for seed in seeds]
    ok = [(seed, r) for seed, r in cells if is_ok(r)]
    failed = [(seed, r) for seed, r in cells if r and not is_ok(r)]
    return {
        "model": model,
        "status": _row_status(ok, failed),
        "n_seeds": len(ok),
        "seeds": [seed for seed, _ in ok],
        **statistics,
        "error": _model_error(failed),
        "not_run": [seed for seed, r in cells if not r],  # no record: never run, not a failure
        "stop_reasons": [r.get("stop_reason") for _, r in ok],
        "epochs": [r.get("epochs_trained") for _, r in ok],
    }


def _row_status(ok, failed):
    """``ok``, ``partial`` (some seeds failed), ``failed`` or ``not run`` (no record at all)."""
    if ok:
        return STATUS_PARTIAL if failed else STATUS_OK
    return STATUS_FAILED if failed else STATUS_NOT_RUN


def _model_error(failed_cells):
    """The error of a model's failed cells: one text when they agree, else per seed."""
    errors = [(seed, r.get("error") or "no error recorded") for seed, r in failed_cells]
    if not errors:
        return ""
    if len({e for _, e in errors}) == 1:
        return errors[0][1]
    return "; ".join(f"seed {seed}: {e}" for seed, e in errors)


def _bigger_is_better(metric):
    """False for RecBole's smaller-is-better metrics (MAE, RMSE, AveragePopularity, ...)."""
    from recbole.evaluator.register import smaller_metrics

    return metric.split("@")[0].lower() not in {m.lower() for m in smaller_metrics}


def ranking(rows, metric, direction=None):
    """Models with a value of ``metric``, best mean first.

    Args:
        rows (list[dict]): Rows of :func:`summarize`.
        metric (str): Key of ``row["mean"]``.
        direction (str, optional): Metric name that decides whether bigger is better
            (default: ``metric``; the ``"valid"`` column passes ``valid_metric``).

    Returns:
        list[dict]: The rows that have ``metric``, best first.
    """
    scored = [row for row in rows if metric in row["mean"]]
    return sorted(scored, key=lambda row: row["mean"][metric], reverse=_bigger_is_better(direction or metric))


def best_and_second(rows, metric, direction=None):
    """The best and second-best distinct mean of ``metric`` (None when missing)."""
    distinct = []
    for row in ranking(rows, metric, direction):
        if row["mean"][metric] not in distinct:
            distinct.append(row["mean"][metric])
    return (distinct + [None, None])[:2]


def significance_tests(rows, metrics):
    """Paired t-test (``scipy.stats.ttest_rel``) of the best vs. the runner-up per metric.

    The pairs are the seeds both models completed; fewer than two give no test.

    Returns:
        list[dict]: ``metric``, ``best``, ``runner_up``, ``n`` (shared seeds), ``p`` (float or
        None) and ``note`` (why there is no p-value).
    """
    tests = []
    for metric in metrics:
        ranked = ranking(rows, metric)
        if len(ranked) >= 2:
            tests.append(paired_test(metric, ranked[0], ranked[1]))
    return tests


def paired_test(metric, best, runner):
    """``ttest_rel`` of two rows' per-seed values of ``metric`` over their shared seeds."""
    from scipy.stats import ttest_rel

    shared = [seed for seed in best["values"][metric] if seed in runner["values"][metric]]
    test = {"metric": metric, "best": best["model"], "runner_up": runner["model"], "n": len(shared)}
    test.update(p=None, note="n/a (needs >= 2 seeds)")
    if len(shared) < 2:
        return test
    a = np.array([best["values"][metric][seed] for seed in shared])
    b = np.array([runner["values"][metric][seed] for seed in shared])
    if np.ptp(a - b) <= CONSTANT_DIFFERENCE:  # no variance: the t statistic is undefined
        test.update(note="n/a (the paired differences are constant)")
        return test
    p = float(ttest_rel(a, b).pvalue)
    if math.isfinite(p):
        test.update(p=p, note="")
    else:
        test.update(note="n/a (no valid p-value)")
    return test
