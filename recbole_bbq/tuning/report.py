"""``tuning.md`` and ``tuned.yaml`` from the stored trials of every tuned row of a dataset."""

import os

import yaml

from recbole_bbq.data.io import write_text_atomic
from recbole_bbq.tuning.search import stored_trials, trial_score

MARKDOWN_NAME = "tuning.md"
YAML_NAME = "tuned.yaml"


def stored_rows(out_dir):
    """label -> its stored trial records, for every row tuned under ``out_dir/tuning/``."""
    root = os.path.join(out_dir, "tuning")
    labels = sorted(os.listdir(root)) if os.path.isdir(root) else []
    rows = {label: stored_trials(os.path.join(root, label, "trials")) for label in labels}
    return {label: records for label, records in rows.items() if records}


def best_trial(records):
    """``(number, record)`` of the best trial (the first of equal scores); numbers start at 1."""
    number = max(range(len(records)), key=lambda i: (trial_score(records[i]), -i))
    return number + 1, records[number]


def is_complete(records, settings):
    """True when the row has its whole budget of trials and a trial that trained."""
    return len(records) >= settings.trials and trial_score(best_trial(records)[1]) > float("-inf")


def tuned_variants(rows, settings):
    """``compare_variants`` entries of the complete rows: the best trial's model and overrides."""
    variants = {}
    for label, records in rows.items():
        if is_complete(records, settings):
            best = best_trial(records)[1]
            variants[label] = {"model": best["model"], **best["overrides"]}
    return variants


def tuned_yaml(rows, settings, dataset):
    """The text of ``tuned.yaml``: a comment per row, then ``compare_variants``."""
    lines = [
        f"# Best trial of each tuned row on {dataset} (run_recbole_bbq.py --tune), chosen on valid",
        f"# {settings.valid_metric} only. Add this file to --config_files of the comparison.",
    ]
    for label, records in rows.items():
        number, best = best_trial(records)
        state = "" if is_complete(records, settings) else " (incomplete: not in compare_variants)"
        lines.append(
            f"# {label}: trial {number} of {len(records)}, valid {settings.valid_metric} "
            f"{trial_score(best):.4f}{state}"
        )
    body = yaml.safe_dump({"compare_variants": tuned_variants(rows, settings)}, sort_keys=True)
    return "\n".join(lines) + "\n" + body


def tuning_markdown(rows, settings, dataset):
    """Every trial of every row, the best one in bold, with the shared budget stated once."""
    lines = [
        f"# Tuning on {dataset} (valid split only)",
        "",
        f"Budget of every row: {settings.trials} trials ({settings.algo} search, seed {settings.seed}), "
        f"at most {settings.epochs} epochs per trial; trials are ranked by valid {settings.valid_metric}. "
        "The test split is never evaluated while tuning.",
    ]
    for label, records in rows.items():
        lines += ["", *_row_markdown(label, records, settings)]
    return "\n".join(lines) + "\n"


def _row_markdown(label, records, settings):
    number, _ = best_trial(records)
    hours = sum(r.get("wall_time_s") or 0 for r in records) / 3600
    state = "" if is_complete(records, settings) else ", in progress"
    lines = [
        f"## {label} ({len(records)} of {settings.trials} trials, {hours:.2f} h{state})",
        "",
        f"| trial | valid {settings.valid_metric} | epochs | stop | minutes | sampled settings |",
        "| ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for index, record in enumerate(records, start=1):
        score = "failed" if record["status"] != "ok" else f"{trial_score(record):.4f}"
        score = f"**{score}**" if index == number else score
        minutes = (record.get("wall_time_s") or 0) / 60
        settings_text = ", ".join(f"{k}={_short(v)}" for k, v in sorted(record["params"].items()))
        lines.append(
            f"| {index} | {score} | {record.get('epochs_trained', '')} | {record.get('stop_reason') or ''} "
            f"| {minutes:.1f} | {settings_text.replace('|', '/')} |"
        )
    return lines


def write_tuning_reports(out_dir, settings, dataset):
    """Write ``tuning.md`` and ``tuned.yaml`` into ``out_dir`` (atomically); return their paths."""
    rows = stored_rows(out_dir)
    paths = {"markdown": os.path.join(out_dir, MARKDOWN_NAME), "yaml": os.path.join(out_dir, YAML_NAME)}
    write_text_atomic(paths["markdown"], tuning_markdown(rows, settings, dataset))
    write_text_atomic(paths["yaml"], tuned_yaml(rows, settings, dataset))
    return paths


def _short(value):
    """Floats to 4 significant digits, so the table stays readable."""
    return f"{value:.4g}" if isinstance(value, float) else value
