"""``comparison.md``: the protocol, the table of test results, failed runs and significance tests."""

from recbole_bbq.compare.per_user import BOOTSTRAP_RESAMPLES, BOOTSTRAP_SEED, CONFIDENCE, ZERO_METHOD
from recbole_bbq.compare.protocol import mode_text
from recbole_bbq.compare.store import STATUS_FAILED, STATUS_NOT_RUN, STATUS_OK, is_ok, shorten
from recbole_bbq.compare.summary import VALID, best_and_second, significance_tests

# How the per-user test is done (printed under its table).
PER_USER_METHOD = (
    "Each test user's {metric} is averaged over the seeds both models have per-user values for "
    "(users are the independent units), then paired by user: Wilcoxon signed-rank test "
    f"(`scipy.stats.wilcoxon`, two-sided, `zero_method='{ZERO_METHOD}'`: users whose value is the "
    "same in both models are dropped; {n_differing} users differ). Mean difference: best minus "
    f"runner-up, with a percentile bootstrap {CONFIDENCE:.0%} interval over users "
    f"({BOOTSTRAP_RESAMPLES} resamples, seed {BOOTSTRAP_SEED})."
)
STOP_WORDS = {"early_stopping": "early stopping", "epoch_limit": "epoch limit", "time_budget": "time budget"}


def markdown_report(protocol, rows, metrics, table, records, seeds, per_user=None):
    """The whole ``comparison.md``: protocol header, table, failures and significance tests.

    ``per_user`` is the per-user test of the best row against the runner-up
    (:func:`~recbole_bbq.compare.per_user.best_against_runner_up`; None: fewer than two rows).
    """
    limited = budget_limited_rows(rows)
    header = f"# Comparison on `{protocol['dataset']}`"
    if limited:
        header += (
            f"\n\n**Budget-limited table**: not every run was stopped by early stopping "
            f"({', '.join(limited)}: a time budget, the epoch cap, or not recorded); "
            "these rows are not converged."
        )
    parts = [
        header,
        "## Protocol\n\n" + protocol_markdown(protocol),
        "## Test results\n\n"
        "Mean ± sample standard deviation over seeds (ddof=1; one seed: the value only). "
        "**Bold**: best mean, <u>underlined</u>: second best.\n\n" + table,
    ]
    shared = shared_weights_markdown(rows, records, seeds)
    if shared:
        parts[-1] += "\n\n" + shared
    failures = failures_markdown(rows, records, seeds)
    if failures:
        parts.append("## Failed runs\n\n" + failures)
    parts.append("## Significance\n\n" + significance_markdown(rows, metrics, per_user))
    return "\n\n".join(parts) + "\n"


def protocol_markdown(protocol):
    """The protocol as a Markdown bullet list."""
    lines = _config_lines(protocol)
    for model, gen in protocol["generative_models"].items():
        history = gen["history_length"]
        if gen["effective_history_length"] != history:
            history = f"{history} (uses {gen['effective_history_length']}: capped at MAX_ITEM_LIST_LENGTH)"
        lines.append(f"- {model}: history_length {history}, beam_size {gen['beam_size']}")
    for key, values in protocol["differences"].items():
        shown = ", ".join(f"{m} `{v}`" for m, v in values.items())
        lines.append(f"- **Warning**: `{key}` differs between models: {shown}")
    if protocol.get("compare_reference"):
        reference = protocol["compare_reference"]
        lines.append(
            f"- Reference row (`compare_reference`): `{reference}`; the table's `vs {reference}` column "
            "gives each row's mean per-user difference from it (row minus reference) and the Wilcoxon "
            "p-value, computed as the per-user test under Significance"
        )
    lines += [
        f"- Seeds: {', '.join(str(s) for s in protocol['seeds'])}",
        f"- Command: `{protocol['command']}`",
        f"- Runs trained on: {', '.join(protocol.get('devices') or ['-'])}",
        "- Report built with: " + ", ".join(f"{k} {v}" for k, v in protocol["versions"].items()),
    ]
    return "\n".join(lines)


def _config_lines(protocol):
    """The bullets that come from the protocol's config (or why it could not be built)."""
    if "config_error" in protocol:
        return [f"- Config: could not be built ({protocol['config_error']})"]
    split = protocol["split"]
    return [
        f"- Dataset: `{protocol['dataset']}`",
        f"- Split: `{split.get('split')}`, order `{split.get('order')}`, "
        f"group_by `{split.get('group_by')}`, mode `{mode_text(split.get('mode'))}`",
        f"- Candidate set: {protocol['candidate_set']}",
        f"- History masking: {protocol['history_masking']}",
        f"- Max history (`MAX_ITEM_LIST_LENGTH`): {protocol['MAX_ITEM_LIST_LENGTH']}",
        f"- Training: epochs {protocol['epochs']}, stopping_step {protocol['stopping_step']}, "
        f"valid_metric `{protocol['valid_metric']}`",
    ]


def markdown_table(rows, metrics, valid_metric, reference=None):
    """Rows = models, columns = test metrics, ``n seeds``, best valid score and status.

    Args:
        rows (list[dict]): Rows of :func:`~recbole_bbq.compare.summary.summarize`.
        metrics (list[str]): Test metrics, in column order.
        valid_metric (str): The valid metric (header of the best valid score).
        reference (tuple, optional): ``(reference row, metric, {row: per-user test})``: adds the
            column ``vs <reference>`` after the metrics (mean difference and Wilcoxon p-value).
    """
    columns = metrics + [VALID]
    extra = [f"vs {reference[0]}: Δ {reference[1]} (p)"] if reference else []
    header = (
        ["model"]
        + metrics
        + extra
        + ["n seeds", f"best valid {valid_metric.lower()}", "stopped by", "epochs", "status"]
    )
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    marks = {m: best_and_second(rows, m, valid_metric if m == VALID else None) for m in columns}
    for row in rows:
        cells = [_markdown_cell(row, metric, marks[metric]) for metric in columns]
        cells.insert(len(metrics), str(row["n_seeds"]))
        if reference:
            cells.insert(len(metrics), _reference_cell(row["model"], reference))
        stops = [
            row["model"],
            *cells,
            _stop_text(row["stop_reasons"]),
            _epochs_text(row["epochs"]),
            _status_text(row),
        ]
        lines.append("| " + " | ".join(stops) + " |")
    return "\n".join(lines)


def _reference_cell(model, reference):
    """``+0.0012 (p 0.0345)`` of a row against the reference row; ``reference`` for itself."""
    label, _, tests = reference
    if model == label:
        return "reference"
    test = tests[model]
    if test["mean_difference"] is None:
        return "no per-user values"
    p = "no test" if test["p"] is None else f"p {test['p']:.4f}"
    return f"{test['mean_difference']:+.4f} ({p})"


def _stop_text(reasons):
    """``early stopping`` (all seeds alike) or ``early stopping 2, time budget 1``; ``–`` if unknown."""
    words = [STOP_WORDS.get(r, "unknown") for r in reasons if r]
    if not words:
        return "–"
    counts = {w: words.count(w) for w in dict.fromkeys(words)}
    return next(iter(counts)) if len(counts) == 1 else ", ".join(f"{w} {n}" for w, n in counts.items())


def _epochs_text(epochs):
    return ", ".join(str(e) for e in epochs if e is not None) or "–"


def budget_limited_rows(rows):
    """Models with a seed that was not stopped by early stopping (budget, epoch cap or unknown)."""
    return [row["model"] for row in rows if any(r != "early_stopping" for r in row["stop_reasons"])]


def _markdown_cell(row, metric, marks):
    """``mean ± std`` (bold when best, underlined when second best); ``–`` when missing."""
    if metric not in row["mean"]:
        return "–"
    mean, std = row["mean"][metric], row["std"][metric]
    text = f"{mean:.4f}" if std is None else f"{mean:.4f} ± {std:.4f}"
    best, second = marks
    if mean == best:
        return f"**{text}**"
    if mean == second:
        return f"<u>{text}</u>"
    return text


def _status_text(row):
    not_run = f"not run: seed {', '.join(map(str, row['not_run']))}" if row.get("not_run") else ""
    if row["status"] == STATUS_OK:
        return f"ok; {not_run}" if not_run else "ok"
    if row["status"] == STATUS_NOT_RUN:
        return not_run
    error = _escape(row["error"])
    if row["status"] == STATUS_FAILED:
        return f"failed: {error}"
    return f"partial ({row['n_seeds']} seed(s) ok; failed: {error})"


def _escape(text):
    """Shortened text that cannot break a Markdown table row."""
    return shorten(text).replace("|", "\\|").replace("\n", " ")


def shared_weights_markdown(rows, records, seeds):
    """A note naming the rows that evaluate another row's trained weights (``weights_of``)."""
    sources = {}
    for row in rows:
        for seed in seeds:
            source = (records.get((row["model"], seed)) or {}).get("weights_of")
            if source:
                sources[row["model"]] = source
    if not sources:
        return ""
    pairs = ", ".join(f"{label} (weights of {source})" for label, source in sources.items())
    return (
        f"Not trained on their own: {pairs}. Each seed evaluates the named row's model of that seed, "
        "changing only evaluation settings; their epochs and stop reasons are that row's."
    )


def failures_markdown(rows, records, seeds):
    """One bullet per failed cell of the rows' models."""
    lines = []
    for row in rows:
        for seed in seeds:
            record = records.get((row["model"], seed))
            if record and not is_ok(record):
                lines.append(
                    f"- {row['model']} seed {seed}: {_escape(record.get('error', 'no error recorded'))}"
                )
    return "\n".join(lines)


def significance_markdown(rows, metrics, per_user=None):
    """The significance section: one row per metric, how to read it, then the per-user test."""
    tests = significance_tests(rows, metrics)
    if not tests:
        return "n/a (needs at least two models with results)."
    lines = [
        "| metric | best | runner-up | shared seeds | p-value | p < 0.05 |",
        "|---|---|---|---:|---:|:---:|",
    ]
    for t in tests:
        p = t["note"] if t["p"] is None else f"{t['p']:.4f}"
        star = "*" if t["p"] is not None and t["p"] < 0.05 else ""
        lines.append(f"| {t['metric']} | {t['best']} | {t['runner_up']} | {t['n']} | {p} | {star} |")
    lines.append(
        "\nPaired t-test (`scipy.stats.ttest_rel`) of the best model against the runner-up, "
        "paired by seed over the seeds both completed; `*` marks p < 0.05. Seed-paired tests "
        "with 3 seeds have low power: a p-value above 0.05 is not evidence that the models are "
        "equal, and with so few pairs a small p-value is fragile too."
    )
    if per_user is not None:
        lines.append("\n" + per_user_markdown(per_user))
    return "\n".join(lines)


def per_user_markdown(test):
    """The per-user test of the best row against the runner-up: a one-row table and its method."""
    pair = f"{test['metric']}, {test['first']} vs {test['second']}"
    if test["mean_difference"] is None:
        return f"Per-user test ({pair}): {test['note']}."
    low, high = test["interval"]
    p = test["note"] if test["p"] is None else f"{test['p']:.4f}"
    star = "*" if test["p"] is not None and test["p"] < 0.05 else ""
    seeds = ", ".join(str(s) for s in test["seeds"])
    lines = [
        "Per-user test:\n",
        "| metric | best | runner-up | seeds | users | mean difference | 95% interval | p-value | p < 0.05 |",
        "|---|---|---|---|---:|---:|---|---:|:---:|",
        f"| {test['metric']} | {test['first']} | {test['second']} | {seeds} | {test['n_users']} | "
        f"{test['mean_difference']:+.4f} | [{low:+.4f}, {high:+.4f}] | {p} | {star} |",
        f"\n{PER_USER_METHOD.format(metric=test['metric'], n_differing=test['n_differing'])}",
    ]
    return "\n".join(lines)
