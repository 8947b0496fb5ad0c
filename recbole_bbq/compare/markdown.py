"""``comparison.md``: the protocol, the table of test results, failed runs and significance tests."""

from recbole_bbq.compare.protocol import mode_text
from recbole_bbq.compare.store import STATUS_FAILED, STATUS_NOT_RUN, STATUS_OK, is_ok, shorten
from recbole_bbq.compare.summary import VALID, best_and_second, significance_tests

STOP_WORDS = {"early_stopping": "early stopping", "epoch_limit": "epoch limit", "time_budget": "time budget"}


def markdown_report(protocol, rows, metrics, table, records, seeds):
    """The whole ``comparison.md``: protocol header, table, failures and significance tests."""
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
    failures = failures_markdown(rows, records, seeds)
    if failures:
        parts.append("## Failed runs\n\n" + failures)
    parts.append("## Significance\n\n" + significance_markdown(rows, metrics))
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


def markdown_table(rows, metrics, valid_metric):
    """Rows = models, columns = test metrics, ``n seeds``, best valid score and status."""
    columns = metrics + [VALID]
    header = (
        ["model"]
        + metrics
        + ["n seeds", f"best valid {valid_metric.lower()}", "stopped by", "epochs", "status"]
    )
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    marks = {m: best_and_second(rows, m, valid_metric if m == VALID else None) for m in columns}
    for row in rows:
        cells = [_markdown_cell(row, metric, marks[metric]) for metric in columns]
        cells.insert(len(metrics), str(row["n_seeds"]))
        stops = [
            row["model"],
            *cells,
            _stop_text(row["stop_reasons"]),
            _epochs_text(row["epochs"]),
            _status_text(row),
        ]
        lines.append("| " + " | ".join(stops) + " |")
    return "\n".join(lines)


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


def significance_markdown(rows, metrics):
    """The significance section: one row per metric, then how to read it."""
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
    return "\n".join(lines)
