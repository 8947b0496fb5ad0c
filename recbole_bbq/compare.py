"""Model comparison: every model x seed under one protocol, summarised in ``results/<dataset>/``.

``python run_recbole_bbq.py --model=SASRec,TIGER,BBQRec --dataset=D --seeds=2020,2021,2022``
calls :func:`run_comparison`. A name in ``--model`` may also be a *variant* defined under
``compare_variants`` in a config file (``{label: {model: BBQRec, <overrides>}}``; ``model``
defaults to the label), which is how ablations and per-model settings such as TIGER's
``semantic_ids_from`` enter one comparison. Each (model, seed) cell trains in this process through
:func:`recbole_bbq.pipeline.run_pipeline` and is stored as ``runs/<model>-seed<seed>.json``;
a rerun skips the cells stored as ``ok`` and retries the failed ones. The summary is written
as ``comparison.md``, ``comparison.csv``, ``comparison.png`` and ``protocol.json``.
"""

import csv
import gc
import hashlib
import json
import math
import os
import platform
import re
import shlex
import sys
import time
import traceback
from datetime import datetime, timezone

import numpy as np

from recbole_bbq import compat  # noqa: F401  (before recbole)

from recbole_bbq.data.io import atomic_path, write_text_atomic
from recbole_bbq.errors import ConfigError
from recbole_bbq.pipeline import run_pipeline

STATUS_OK = "ok"
STATUS_FAILED = "failed"
HISTORY_MASKING = "none (RecBole default: history items are not masked)"
# Config keys stored with every cell (those that exist in the model's config).
CELL_CONFIG_KEYS = (
    "seed",
    "epochs",
    "stopping_step",
    "valid_metric",
    "metrics",
    "topk",
    "eval_args",
    "MAX_ITEM_LIST_LENGTH",
    "train_batch_size",
    "eval_batch_size",
    "learning_rate",
    "loss_type",
    "history_length",
    "beam_size",
    "device",
)
# Keys that must agree across models for the comparison to be one protocol.
SHARED_PROTOCOL_KEYS = (
    "eval_args",
    "MAX_ITEM_LIST_LENGTH",
    "metrics",
    "topk",
    "valid_metric",
    "epochs",
    "stopping_step",
)
# Command-line options that select cells rather than configure them.
SELECTION_OPTIONS = ("model", "dataset", "seeds", "results_dir", "report_only")
PLOT_METRICS = ("ndcg@10", "recall@10")
# Paired differences that vary less than this count as constant (no t-test possible).
CONSTANT_DIFFERENCE = 1e-12
# Longest error text in the Markdown table and the progress log (JSON and CSV keep it whole).
MAX_ERROR_CHARS = 160


# --------------------------------------------------------------------------------------------
# Running the cells
# --------------------------------------------------------------------------------------------


def run_comparison(
    models,
    dataset,
    seeds,
    config_file_list=None,
    config_dict=None,
    results_dir="results",
    show_progress=True,
    report_only=False,
):
    """Train every model with every seed and write the comparison to ``results_dir/<dataset>/``.

    A cell that fails is recorded as ``failed`` and the others go on. Cells already stored with
    status ``ok`` are skipped, so an interrupted comparison resumes where it stopped.

    Args:
        models (list[str]): Model names, in the order of the table rows.
        dataset (str): Dataset name.
        seeds (list[int] | None): Seeds; None runs the configured ``seed`` only.
        config_file_list (list[str], optional): YAML files shared by every cell.
        config_dict (dict, optional): Overrides shared by every cell (``seed`` is set per cell).
        results_dir (str): Root folder of the results.
        show_progress (bool): Print one progress line per cell.
        report_only (bool): Train nothing: rebuild the report from the stored cells (cells
            never run count as missing).

    Returns:
        dict: ``dir``, ``markdown``, ``csv``, ``png``, ``protocol`` (paths), ``table`` (the
        Markdown table), ``rows`` (per-model summaries), ``runs`` (per-cell records),
        ``n_ok``, ``n_failed`` and ``n_not_run`` (cells).

    Raises:
        ConfigError: If ``models`` or ``seeds`` is empty or has duplicates.
    """
    models = _check_unique("model", [str(m).strip() for m in models if str(m).strip()])
    config_dict = dict(config_dict or {})
    if seeds is None:
        seeds = [_configured_seed(models, dataset, config_file_list, config_dict)]
    seeds = _check_unique("seed", [int(s) for s in seeds])
    out_dir = os.path.join(results_dir, dataset)
    settings = _cell_settings(config_file_list, config_dict)
    variants = load_variants(config_file_list, config_dict)

    records = {}
    cells = [(model, seed) for model in models for seed in seeds]
    for index, (model, seed) in enumerate(cells, start=1):
        tag = f"[{index}/{len(cells)}] {model} seed {seed}"
        model_name, cell_dict = resolve_variant(model, variants, config_dict)
        if report_only:
            records[model, seed] = read_run(run_file(out_dir, model, seed))
            continue
        records[model, seed] = _run_or_skip_cell(
            model,
            dataset,
            seed,
            config_file_list,
            cell_dict,
            settings,
            out_dir,
            tag,
            show_progress,
            model_name,
        )
    return write_summary(models, dataset, seeds, records, config_file_list, config_dict, out_dir)


_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")


def load_variants(config_file_list, config_dict):
    """``compare_variants`` of the YAML files (later files win) and of ``config_dict``.

    Returns:
        dict[str, dict]: label -> ``{model: <model name>, <config overrides>}``.

    Raises:
        ConfigError: If a variant is not a mapping or its label is not a plain file name.
    """
    import yaml

    variants = {}
    for path in config_file_list or []:
        with open(path, encoding="utf-8") as f:
            variants.update((yaml.safe_load(f) or {}).get("compare_variants") or {})
    variants.update((config_dict or {}).get("compare_variants") or {})
    for label, spec in variants.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"compare_variants.{label} must be a mapping of config keys, got {spec!r}")
        if not _LABEL.match(str(label)):
            raise ConfigError(f"compare_variants label '{label}' may only use letters, digits and _ . + -")
    return variants


def resolve_variant(label, variants, config_dict):
    """Model name and config overrides of one row of the comparison.

    Args:
        label (str): A model name, or a label defined under ``compare_variants``.
        variants (dict): See :func:`load_variants`.
        config_dict (dict): Overrides shared by every cell; the variant's keys win.

    Returns:
        tuple[str, dict]: The model class name and the cell's config overrides.
    """
    spec = dict(variants.get(label) or {})
    model = str(spec.pop("model", label))
    shared = {k: v for k, v in config_dict.items() if k != "compare_variants"}
    return model, {**shared, **spec}


def _check_unique(what, values):
    """Return ``values`` after checking that it is non-empty and has no duplicates."""
    if not values:
        raise ConfigError(f"a comparison needs at least one {what}")
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ConfigError(f"duplicate {what}(s) in the comparison: {', '.join(duplicates)}")
    return values


def _configured_seed(models, dataset, config_file_list, config_dict):
    """The ``seed`` of the first model whose config builds (RecBole's 2020 if none does)."""
    config, _, _ = _first_buildable_config(models, dataset, config_file_list, config_dict)
    return int(config["seed"]) if config is not None else 2020


def run_file(out_dir, model, seed):
    """Path of one cell's JSON record."""
    return os.path.join(out_dir, "runs", f"{model}-seed{seed}.json")


def _cell_settings(config_file_list, config_dict):
    """What the user set for every cell: YAML files, overrides and ``--key=value`` options."""
    cmd = [
        arg
        for arg in sys.argv[1:]
        if arg.startswith("--") and arg[2:].split("=", 1)[0] not in SELECTION_OPTIONS
    ]
    settings = {
        "config_file_list": list(config_file_list or []),
        "config_dict": config_dict,
        "cmd_overrides": cmd,
    }
    return _json_roundtrip(settings)


def _run_or_skip_cell(
    model,
    dataset,
    seed,
    config_file_list,
    config_dict,
    settings,
    out_dir,
    tag,
    show_progress,
    model_name=None,
):
    """Return the stored record of a finished cell, or run the cell and store its record.

    ``model`` is the row label (a model name or a variant); ``model_name`` the class it trains.
    """
    path = run_file(out_dir, model, seed)
    stored = read_run(path)
    if _is_ok(stored):
        note = "" if stored.get("settings") == settings else f", with other settings; delete {path} to rerun"
        _say(show_progress, f"{tag} skip (done{note})")
        return stored
    _say(show_progress, f"{tag} ...")
    # A cut-short cell resumes from its last validation (same label, seed and settings only).
    config_dict = {"checkpoint_name": cell_checkpoint_name(dataset, model, seed, settings), **config_dict}
    record = run_cell(model_name or model, dataset, seed, config_file_list, config_dict)
    record.update(model=model, model_class=model_name or model, settings=settings)
    write_json_atomic(path, record)
    _say(show_progress, f"{tag} {_cell_outcome(record)}")
    return record


def cell_checkpoint_name(dataset, label, seed, settings):
    """``checkpoint_name`` of a cell: its dataset, row label, seed and a digest of its settings,
    including the contents of its config files (an edited file must not resume an old state)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode("utf-8"))
    for path in settings.get("config_file_list") or []:
        with open(path, "rb") as f:
            digest.update(f.read())
    return f"{dataset}-{label}-seed{seed}-{digest.hexdigest()[:10]}"


def run_cell(model, dataset, seed, config_file_list=None, config_dict=None):
    """Train and test one model with one seed; never raises for a failing model.

    Args:
        model (str): Model name.
        dataset (str): Dataset name.
        seed (int): The cell's seed (overrides ``config_dict['seed']``).
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.

    Returns:
        dict: The cell's record: ``status`` (``ok`` or ``failed``), metrics, wall time, the
        config that matters and, for failures, ``error`` and ``traceback``.
    """
    cell_dict = {**(config_dict or {}), "seed": seed}
    record = {"model": model, "dataset": dataset, "seed": seed, "started_at": _now()}
    start = time.perf_counter()
    try:
        record["config"] = _checked_cell_config(model, dataset, seed, config_file_list, cell_dict)
        result = run_pipeline(model, dataset, config_file_list, cell_dict, saved=True)
        if result is None:
            raise RuntimeError("the run returned no result")
        record.update(_result_fields(result, record["config"].get("valid_metric")))
        record["status"] = STATUS_OK
    except Exception as error:  # a failing model must not stop the comparison
        record.update(status=STATUS_FAILED, error=error_text(error), error_type=type(error).__name__)
        record["traceback"] = traceback.format_exc()
    finally:
        _release_memory()
    record["wall_time_s"] = time.perf_counter() - start
    record["finished_at"] = _now()
    return record


def _checked_cell_config(model, dataset, seed, config_file_list, cell_dict):
    """The cell's config values in :data:`CELL_CONFIG_KEYS`; the seed must be the cell's."""
    from recbole_bbq.config import Config

    config = Config(model, dataset, config_file_list=config_file_list, config_dict=cell_dict)
    if int(config["seed"]) != int(seed):
        raise ConfigError(
            f"the config's seed is {config['seed']}, not the cell's {seed}: a --seed=... on the "
            "command line overrides every cell; use --seeds only"
        )
    return config_values(config, CELL_CONFIG_KEYS)


def config_values(config, keys):
    """JSON-safe values of the ``keys`` present in ``config``."""
    return _json_roundtrip({key: config[key] for key in keys if key in config})


def _result_fields(result, valid_metric):
    """The record fields of a :func:`run_pipeline` result (plain floats)."""
    return {
        "valid_metric": valid_metric,
        "best_valid_score": float(result["best_valid_score"]),
        "best_valid_result": {k: float(v) for k, v in (result.get("best_valid_result") or {}).items()},
        "test_result": {k: float(v) for k, v in (result.get("test_result") or {}).items()},
        "stop_reason": result.get("stop_reason"),
        "epochs_trained": result.get("epochs_trained"),
        "valid_curve": result.get("valid_curve") or [],
    }


def error_text(error):
    """``<Type>: <last line of the message>`` of an exception."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    message = lines[-1] if lines else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _release_memory():
    """Free what a finished cell left behind before the next one starts."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except Exception:  # pragma: no cover - best effort only
        pass


def _cell_outcome(record):
    """One-line outcome of a finished cell for the progress log."""
    seconds = f"{record['wall_time_s']:.1f}s"
    if record["status"] != STATUS_OK:
        return f"failed after {seconds}: {shorten(record['error'])}"
    test = record["test_result"]
    shown = ", ".join(f"{m} {test[m]:.4f}" for m in PLOT_METRICS if m in test)
    return f"ok in {seconds}" + (f" (test {shown})" if shown else "")


def _is_ok(record):
    return (record or {}).get("status") == STATUS_OK


def _say(show_progress, message):
    if show_progress:
        print(message, flush=True)


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _json_roundtrip(value):
    """``value`` as it reads back from JSON (tuples become lists, odd objects strings)."""
    return json.loads(json.dumps(value, default=str))


def write_json_atomic(path, value):
    """Write ``value`` as indented JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, default=str) + "\n")


def read_run(path):
    """A cell's stored record, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------


def write_summary(models, dataset, seeds, records, config_file_list=None, config_dict=None, out_dir=None):
    """Write ``protocol.json``, ``comparison.md``, ``comparison.csv`` and ``comparison.png``.

    Args:
        models (list[str]): Models, in row order.
        dataset (str): Dataset name.
        seeds (list[int]): Seeds of the comparison.
        records (dict): ``(model, seed) -> cell record``.
        config_file_list (list[str], optional): YAML files (for the protocol).
        config_dict (dict, optional): Overrides (for the protocol).
        out_dir (str): Output folder.

    Returns:
        dict: See :func:`run_comparison`.
    """
    protocol = build_protocol(models, dataset, seeds, records, config_file_list, config_dict)
    rows = summarize(models, seeds, records)
    metrics = metric_names(models, seeds, records)
    valid_metric = protocol.get("valid_metric") or "valid"
    names = ("protocol.json", "comparison.md", "comparison.csv", "comparison.png", "curves.png")
    paths = {name: os.path.join(out_dir, name) for name in names}

    write_json_atomic(paths["protocol.json"], protocol)
    table = markdown_table(rows, metrics, valid_metric)
    write_text_atomic(paths["comparison.md"], markdown_report(protocol, rows, metrics, table, records, seeds))
    write_csv(paths["comparison.csv"], rows, metrics, valid_metric)
    write_plot(paths["comparison.png"], rows, metrics, dataset)
    write_curves(paths["curves.png"], models, seeds, records, valid_metric, dataset)
    n_ok = sum(_is_ok(r) for r in records.values())
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
    }


def metric_names(models, seeds, records):
    """Test metrics of the successful cells, in the order the runs report them."""
    names = []
    for model in models:
        for seed in seeds:
            record = records.get((model, seed)) or {}
            if _is_ok(record):
                names += [m for m in record.get("test_result", {}) if m not in names]
    return names


def summarize(models, seeds, records):
    """Per-model mean and sample std (ddof=1) of every test metric and of the best valid score.

    Returns:
        list[dict]: One row per model: ``model``, ``status`` (``ok``, ``partial`` or
        ``failed``), ``n_seeds``, ``seeds`` (those that succeeded), ``values`` (metric ->
        per-seed values, ``"valid"`` for the best valid score), ``mean``, ``std`` (metric ->
        float, std None with one seed), ``error``, and per successful seed ``stop_reasons``
        and ``epochs`` (trained epochs; None for records from before they were kept).
    """
    rows = []
    for model in models:
        cells = [(seed, records.get((model, seed)) or {}) for seed in seeds]
        ok = [(seed, r) for seed, r in cells if _is_ok(r)]
        failed = [(seed, r) for seed, r in cells if r and not _is_ok(r)]
        not_run = [seed for seed, r in cells if not r]  # no record: never run, not a failure
        values = _per_seed_values(ok)
        rows.append(
            {
                "model": model,
                "status": _row_status(ok, failed),
                "n_seeds": len(ok),
                "seeds": [seed for seed, _ in ok],
                "values": values,
                "mean": {m: float(np.mean(list(v.values()))) for m, v in values.items()},
                "std": {m: _sample_std(list(v.values())) for m, v in values.items()},
                "error": _model_error(failed),
                "not_run": not_run,
                "stop_reasons": [r.get("stop_reason") for _, r in ok],
                "epochs": [r.get("epochs_trained") for _, r in ok],
            }
        )
    return rows


def _row_status(ok, failed):
    """``ok``, ``partial`` (some seeds failed), ``failed`` or ``not run`` (no record at all)."""
    if ok:
        return "partial" if failed else STATUS_OK
    return STATUS_FAILED if failed else "not run"


def _per_seed_values(ok_cells):
    """``metric -> {seed: value}`` over the successful cells (``"valid"``: best valid score)."""
    values = {}
    for seed, record in ok_cells:
        for metric, value in record.get("test_result", {}).items():
            values.setdefault(metric, {})[seed] = float(value)
        values.setdefault("valid", {})[seed] = float(record["best_valid_score"])
    return values


def _sample_std(values):
    return float(np.std(values, ddof=1)) if len(values) >= 2 else None


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
    """
    scored = [row for row in rows if metric in row["mean"]]
    return sorted(scored, key=lambda row: row["mean"][metric], reverse=_bigger_is_better(direction or metric))


def _best_and_second(rows, metric, direction=None):
    """The best and second-best distinct mean of ``metric`` (None when missing)."""
    distinct = []
    for row in ranking(rows, metric, direction):
        if row["mean"][metric] not in distinct:
            distinct.append(row["mean"][metric])
    return (distinct + [None, None])[:2]


# --------------------------------------------------------------------------------------------
# Protocol
# --------------------------------------------------------------------------------------------


def build_protocol(models, dataset, seeds, records, config_file_list=None, config_dict=None):
    """The evaluation protocol shared by the cells, from the config of one model.

    The config is that of the first model with a successful cell, or else the first model
    whose config builds.

    Returns:
        dict: Dataset, split, candidate set, history masking, history lengths, beam sizes,
        training budget, seeds, command line, package versions and any protocol setting that
        differs between models (``differences``).
    """
    succeeded = [m for m in models if any(_is_ok(records.get((m, s))) for s in seeds)]
    order = succeeded + [m for m in models if m not in succeeded]
    config_dict = {**(config_dict or {}), "seed": seeds[0]}
    classes = [_model_class(m, seeds, records) for m in order]  # variant labels -> their model
    config, model, error = _first_buildable_config(classes, dataset, config_file_list, config_dict)
    protocol = {"dataset": dataset, "models": list(models), "seeds": list(seeds), "config_from_model": model}
    if config is None:
        protocol["config_error"] = error
    else:
        protocol.update(_protocol_settings(config))
    protocol["generative_models"] = _generative_settings(models, seeds, records)
    protocol["differences"] = protocol_differences(models, seeds, records)
    protocol["config_file_list"] = list(config_file_list or [])
    protocol["command"] = shlex.join(sys.argv)
    protocol["versions"] = package_versions()
    protocol["devices"] = sorted(
        {str((r or {}).get("config", {}).get("device")) for r in records.values() if _is_ok(r)}
    )
    return _json_roundtrip(protocol)


def _model_class(label, seeds, records):
    """The model class a row trained (its label unless the row is a ``compare_variants`` entry)."""
    for seed in seeds:
        record = records.get((label, seed)) or {}
        if record.get("model_class"):
            return record["model_class"]
    return label


def _first_buildable_config(models, dataset, config_file_list, config_dict):
    """``(config, model, error)`` of the first model in ``models`` whose config builds."""
    from recbole_bbq.config import Config

    error = None
    for model in models:
        try:
            config = Config(model, dataset, config_file_list=config_file_list, config_dict=config_dict)
            return config, model, None
        except Exception as exc:  # e.g. an unknown model: try the next one
            error = error or error_text(exc)
    return None, None, error


def _protocol_settings(config):
    """The protocol fields that come from one model's config."""
    eval_args = config["eval_args"] or {}
    return {
        "split": {key: eval_args.get(key) for key in ("split", "order", "group_by", "mode")},
        "candidate_set": candidate_set(eval_args.get("mode")),
        "history_masking": HISTORY_MASKING,
        "MAX_ITEM_LIST_LENGTH": config["MAX_ITEM_LIST_LENGTH"],
        "epochs": config["epochs"],
        "stopping_step": config["stopping_step"],
        "valid_metric": config["valid_metric"],
        "metrics": config["metrics"],
        "topk": config["topk"],
    }


def candidate_set(mode):
    """Plain-words candidate set of RecBole's ``eval_args['mode']`` (str or per-phase dict)."""
    mode = _mode_text(mode)
    if isinstance(mode, dict):
        return "; ".join(f"{phase}: {candidate_set(m)}" for phase, m in mode.items())
    mode = str(mode)
    if mode == "full":
        return "all items (full ranking)"
    for prefix, how in (("uni", "uniformly"), ("pop", "popularity-")):
        if mode.startswith(prefix) and mode[len(prefix) :].isdigit():
            return f"the target plus {mode[len(prefix) :]} {how} sampled negatives ({mode})"
    return mode


def _generative_settings(models, seeds, records):
    """``model -> {history_length, effective_history_length, beam_size}`` of the models whose
    config has ``beam_size``.

    The generative models read the last ``min(history_length, MAX_ITEM_LIST_LENGTH)`` items
    (all ``MAX_ITEM_LIST_LENGTH`` when ``history_length`` is unset).
    """
    settings = {}
    for model in models:
        for seed in seeds:
            config = (records.get((model, seed)) or {}).get("config") or {}
            if config.get("beam_size") is not None and _is_generative(_model_class(model, seeds, records)):
                history, max_length = config.get("history_length"), config.get("MAX_ITEM_LIST_LENGTH")
                effective = min(history or max_length, max_length) if max_length else history
                settings[model] = {
                    "history_length": history,
                    "effective_history_length": effective,
                    "beam_size": config["beam_size"],
                }
                break
    return settings


def _is_generative(model_name):
    """True for the semantic-ID models that rank by beam search (``beam_size`` applies to them)."""
    from recbole_bbq.model.generative import GenerativeRecommender
    from recbole_bbq.utils import get_model

    try:
        return issubclass(get_model(model_name), GenerativeRecommender)
    except Exception:  # unknown model: it has no settings to report
        return False


def protocol_differences(models, seeds, records):
    """Protocol keys whose value differs between the models' cells: ``key -> {model: value}``."""
    differences = {}
    for key in SHARED_PROTOCOL_KEYS:
        values = {}
        for model in models:
            for seed in seeds:
                config = (records.get((model, seed)) or {}).get("config") or {}
                if key in config:
                    values.setdefault(model, config[key])
        if len({json.dumps(v, sort_keys=True) for v in values.values()}) > 1:
            differences[key] = values
    return differences


def package_versions():
    """Versions of python, torch, recbole, numpy and recbole_bbq."""
    import recbole
    import torch

    import recbole_bbq

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "numpy": np.__version__,
        "recbole_bbq": recbole_bbq.__version__,
    }


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------


def markdown_report(protocol, rows, metrics, table, records, seeds):
    """The whole ``comparison.md``: protocol header, table, failures and significance tests."""
    limited = budget_limited_rows(rows)
    header = f"# Comparison on `{protocol['dataset']}`"
    if limited:
        header += (
            f"\n\n**Budget-limited table**: not every run was stopped by early stopping "
            f"({', '.join(limited)}: a time budget, the epoch cap, or not recorded); these rows are not converged."
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
    if "config_error" in protocol:
        lines = [f"- Config: could not be built ({protocol['config_error']})"]
    else:
        split = protocol["split"]
        lines = [
            f"- Dataset: `{protocol['dataset']}`",
            f"- Split: `{split.get('split')}`, order `{split.get('order')}`, "
            f"group_by `{split.get('group_by')}`, mode `{_mode_text(split.get('mode'))}`",
            f"- Candidate set: {protocol['candidate_set']}",
            f"- History masking: {protocol['history_masking']}",
            f"- Max history (`MAX_ITEM_LIST_LENGTH`): {protocol['MAX_ITEM_LIST_LENGTH']}",
            f"- Training: epochs {protocol['epochs']}, stopping_step {protocol['stopping_step']}, "
            f"valid_metric `{protocol['valid_metric']}`",
        ]
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


def _mode_text(mode):
    """RecBole's per-phase ``mode`` dict as one value when the phases agree."""
    if isinstance(mode, dict) and len(set(map(str, mode.values()))) == 1:
        return next(iter(mode.values()))
    return mode


def markdown_table(rows, metrics, valid_metric):
    """Rows = models, columns = test metrics, ``n seeds``, best valid score and status."""
    columns = metrics + ["valid"]
    header = (
        ["model"]
        + metrics
        + ["n seeds", f"best valid {valid_metric.lower()}", "stopped by", "epochs", "status"]
    )
    align = ["---"] + ["---:"] * (len(header) - 2) + ["---"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    marks = {m: _best_and_second(rows, m, valid_metric if m == "valid" else None) for m in columns}
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


STOP_WORDS = {"early_stopping": "early stopping", "epoch_limit": "epoch limit", "time_budget": "time budget"}


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
    if row["status"] == "not run":
        return not_run
    error = _escape(row["error"])
    if row["status"] == STATUS_FAILED:
        return f"failed: {error}"
    return f"partial ({row['n_seeds']} seed(s) ok; failed: {error})"


def _escape(text):
    """Shortened text that cannot break a Markdown table row."""
    return shorten(text).replace("|", "\\|").replace("\n", " ")


def shorten(text, limit=MAX_ERROR_CHARS):
    """``text`` cut to ``limit`` characters (with ``...``)."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def failures_markdown(rows, records, seeds):
    """One bullet per failed cell of the rows' models."""
    lines = []
    for row in rows:
        for seed in seeds:
            record = records.get((row["model"], seed))
            if record and not _is_ok(record):
                lines.append(
                    f"- {row['model']} seed {seed}: {_escape(record.get('error', 'no error recorded'))}"
                )
    return "\n".join(lines)


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


# --------------------------------------------------------------------------------------------
# CSV and plot
# --------------------------------------------------------------------------------------------


def write_csv(path, rows, metrics, valid_metric):
    """One row per model: ``<metric>_mean``, ``<metric>_std``, ``n_seeds``, ``status``, ``error``.

    Numbers are written unrounded; missing values (std with one seed, failed models) are empty.
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
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            for row in rows:
                values = [row["model"]]
                for metric in metrics + ["valid"]:
                    values += [_csv_number(row["mean"].get(metric)), _csv_number(row["std"].get(metric))]
                seeds = " ".join(str(s) for s in row["seeds"])
                stops = " ".join(str(r) for r in row["stop_reasons"])
                epochs = " ".join(str(e) for e in row["epochs"])
                writer.writerow(values + [row["n_seeds"], seeds, stops, epochs, row["status"], row["error"]])


def _csv_number(value):
    return "" if value is None else repr(float(value))


def plot_metrics(metrics):
    """The metrics of the chart: NDCG@10 and Recall@10, or the first NDCG/Recall cut-offs."""
    chosen = [m for m in PLOT_METRICS if m in metrics]
    for family in ("ndcg@", "recall@"):
        if not any(m.startswith(family) for m in chosen):
            chosen += [m for m in metrics if m.startswith(family)][:1]
    return chosen or metrics[:2]


def write_plot(path, rows, metrics, dataset):
    """Grouped bar chart (Agg, no pyplot): per metric one bar per model, std as error bars."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    shown = plot_metrics(metrics)
    models = [row for row in rows if row["n_seeds"] > 0]
    figure = Figure(figsize=(max(5.0, 1.2 + 0.6 * len(models) * max(len(shown), 1)), 4.0))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    if not models or not shown:
        axes.text(0.5, 0.5, "no successful runs", ha="center", va="center", transform=axes.transAxes)
    width = 0.8 / max(len(models), 1)
    for i, row in enumerate(models):
        x = [j + (i - (len(models) - 1) / 2) * width for j in range(len(shown))]
        means = [row["mean"].get(m, float("nan")) for m in shown]
        errors = [row["std"].get(m) or 0.0 for m in shown]
        axes.bar(x, means, width, yerr=errors, capsize=3, label=f"{row['model']} (n={row['n_seeds']})")
    axes.set_xticks(range(len(shown)))
    axes.set_xticklabels([m.replace("ndcg", "NDCG").replace("recall", "Recall") for m in shown])
    axes.set_ylabel("test score (mean ± std over seeds)")
    axes.set_title(f"{dataset}: test metrics")
    if models:
        axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)


def write_curves(path, models, seeds, records, valid_metric, dataset):
    """Valid score against epoch for every model (one colour) and seed (one line each)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 4.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for index, model in enumerate(models):
        for seed in seeds:
            record = records.get((model, seed)) or {}
            curve = record.get("valid_curve") if _is_ok(record) else None
            if curve:
                epochs, scores = [p["epoch"] for p in curve], [p["valid_score"] for p in curve]
                axes.plot(epochs, scores, color=f"C{index % 10}", marker=".", lw=1.2, label=model)
    labelled = dict(zip(*reversed(axes.get_legend_handles_labels())))  # one legend entry per model
    if labelled:
        axes.legend(labelled.values(), labelled.keys(), fontsize="small")
    else:
        axes.text(0.5, 0.5, "no recorded curves", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("epoch")
    axes.set_ylabel(f"valid {valid_metric}")
    axes.set_title(f"{dataset}: validation curves (one line per seed)")
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120)
