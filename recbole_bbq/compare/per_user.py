"""The per-user paired test of two rows: Wilcoxon signed-rank over users, bootstrap interval.

Each successful run stores its per-user test values (``test_per_user`` in its record, see
:func:`recbole_bbq.quick_start.run_recbole_bbq`). Two rows are compared on the seeds both have
values for: each user's value is averaged over those seeds, so the users stay the independent
units (pooling seeds as extra pairs would count a user several times), then the paired
per-user values go to ``scipy.stats.wilcoxon`` and their mean difference gets a percentile
bootstrap interval over users. Records written before per-user values were kept have none;
the tests then say so instead of a p-value.
"""

import math
import warnings

import numpy as np

from recbole_bbq.compare.store import PER_USER_KEY, is_ok
from recbole_bbq.compare.summary import ranking
from recbole_bbq.evaluation import USERS

# scipy.stats.wilcoxon's zero_method: users whose two values are equal are dropped (many users
# score 0 with both models at a cut-off of 10).
ZERO_METHOD = "wilcox"
BOOTSTRAP_RESAMPLES = 10000
BOOTSTRAP_SEED = 2020
CONFIDENCE = 0.95
# The per-user metric when neither the protocol nor a record names the valid metric.
DEFAULT_METRIC = "ndcg@10"
# Resampled values held at once by the bootstrap (memory bound of one vectorised chunk).
_CHUNK_VALUES = 1 << 22


def user_values(record, metric):
    """``{user token: value}`` of a record's stored per-user test ``metric``; None when absent.

    A user with several test rows (a split other than leave-one-out) gets the mean of its rows.
    """
    per_user = (record or {}).get(PER_USER_KEY) if is_ok(record) else None
    if not isinstance(per_user, dict) or metric not in per_user or USERS not in per_user:
        return None
    rows = {}
    for user, value in zip(per_user[USERS], per_user[metric]):
        rows.setdefault(user, []).append(value)
    return {user: sum(values) / len(values) for user, values in rows.items()}


def pooled_pairs(records, first, second, seeds, metric):
    """Each user's ``metric`` of two rows, averaged over the seeds both rows have values for.

    Args:
        records (dict): ``(row, seed) -> record``.
        first (str): Row label of the first values.
        second (str): Row label of the second values.
        seeds (list[int]): The comparison's seeds.
        metric (str): A test metric, e.g. ``ndcg@10``.

    Returns:
        tuple: ``(seeds used, user tokens, first values, second values)``; the users are those
        present in every used record (sorted), the values numpy arrays aligned with them.
    """
    used = []
    for seed in seeds:
        a = user_values(records.get((first, seed)), metric)
        b = user_values(records.get((second, seed)), metric)
        if a is not None and b is not None:
            used.append((seed, a, b))
    if not used:
        return [], [], np.zeros(0), np.zeros(0)
    users = sorted(set.intersection(*(set(a) & set(b) for _, a, b in used)))
    a = np.mean([[values[u] for u in users] for _, values, _ in used], axis=0)
    b = np.mean([[values[u] for u in users] for _, _, values in used], axis=0)
    return [seed for seed, _, _ in used], users, np.asarray(a, float), np.asarray(b, float)


def bootstrap_interval(differences, n_resamples=BOOTSTRAP_RESAMPLES, seed=BOOTSTRAP_SEED):
    """Percentile bootstrap interval (:data:`CONFIDENCE`) of the mean of ``differences``.

    Resamples users with replacement (``numpy.random.default_rng(seed)``), in vectorised
    chunks; the draws are those of ``scipy.stats.bootstrap(..., method="percentile")`` with the
    same generator and ``batch``, so both give the same interval.

    Returns:
        tuple[float, float]: The lower and upper bound.
    """
    differences = np.asarray(differences, float)
    n, rng = len(differences), np.random.default_rng(seed)
    chunk = bootstrap_chunk(n)
    means = [
        differences[rng.integers(0, n, (min(chunk, n_resamples - start), n))].mean(axis=-1)
        for start in range(0, n_resamples, chunk)
    ]
    alpha = (1 - CONFIDENCE) / 2
    low, high = np.quantile(np.concatenate(means), [alpha, 1 - alpha])
    return float(low), float(high)


def bootstrap_chunk(n_users):
    """Resamples per chunk of :func:`bootstrap_interval` for ``n_users`` users (scipy's ``batch``)."""
    return max(1, _CHUNK_VALUES // n_users)


def per_user_test(records, first, second, seeds, metric):
    """Wilcoxon signed-rank test of ``first`` against ``second`` over users (two-sided).

    Returns:
        dict: ``metric``, ``first``, ``second``, ``seeds`` (used), ``n_users``, ``n_differing``
        (users whose values differ: those the test ranks), ``mean_difference`` (first - second),
        ``interval`` (bootstrap 95% of the mean difference), ``p`` (None when no test) and
        ``note`` (why there is no p-value).
    """
    used, users, a, b = pooled_pairs(records, first, second, seeds, metric)
    test = {"metric": metric, "first": first, "second": second, "seeds": used, "n_users": len(users)}
    test.update(n_differing=0, mean_difference=None, interval=None, p=None, note="")
    if not users:
        test["note"] = _missing_note(records, (first, second), seeds, metric)
        return test
    differences = a - b
    test.update(n_differing=int(np.count_nonzero(differences)), mean_difference=float(differences.mean()))
    test["interval"] = bootstrap_interval(differences)
    if not test["n_differing"]:
        test["note"] = "n/a (every user's value is the same in both rows)"
        return test
    p = _wilcoxon_p(differences)
    if math.isfinite(p):
        test["p"] = p
    else:
        test["note"] = "n/a (no valid p-value)"
    return test


def _wilcoxon_p(differences):
    """Two-sided ``scipy.stats.wilcoxon`` p-value of paired ``differences``."""
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():  # small samples: scipy warns about its approximation
        warnings.simplefilter("ignore")
        return float(wilcoxon(differences, zero_method=ZERO_METHOD, alternative="two-sided").pvalue)


def _missing_note(records, rows, seeds, metric):
    """Why two rows have no shared per-user values (none stored, or no seed in common)."""
    without = [row for row in rows if all(user_values(records.get((row, s)), metric) is None for s in seeds)]
    if without:
        return f"no per-user values stored ({', '.join(without)}: runs recorded before they were kept)"
    return "no seed with per-user values for both rows"


def per_user_metric(protocol, records):
    """The test metric of the per-user tests: the valid metric's test counterpart (``ndcg@10``)."""
    valid_metric = protocol.get("valid_metric")
    if not valid_metric:  # no config built: the metric the runs recorded
        valid_metric = next((r.get("valid_metric") for r in records.values() if is_ok(r)), None)
    return str(valid_metric or DEFAULT_METRIC).lower()


def best_against_runner_up(rows, records, seeds, metric):
    """:func:`per_user_test` of the best row (by mean test ``metric``) against the runner-up.

    Returns:
        dict | None: The test; None when fewer than two rows have ``metric``.
    """
    ranked = ranking(rows, metric)
    if len(ranked) < 2:
        return None
    return per_user_test(records, ranked[0]["model"], ranked[1]["model"], seeds, metric)


def reference_tests(rows, records, seeds, reference, metric):
    """``row label -> per_user_test(row, reference)`` for every row but the reference."""
    return {
        row["model"]: per_user_test(records, row["model"], reference, seeds, metric)
        for row in rows
        if row["model"] != reference
    }
