"""The evaluation protocol of a comparison (``protocol.json``): split, candidates, budgets, versions."""

import json
import platform

import numpy as np

from recbole_bbq.compare.store import error_text, is_ok, json_roundtrip
from recbole_bbq.errors import UnknownModelError

HISTORY_MASKING = "none (RecBole default: history items are not masked)"
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


def build_protocol(comparison, records):
    """The evaluation protocol shared by the cells, from the config of one model.

    The config is that of the first model with a successful cell, or else the first model
    whose config builds.

    Args:
        comparison (Comparison): The comparison (its command line is recorded as is).
        records (dict): ``(model, seed) -> cell record`` (None for a cell never run).

    Returns:
        dict: Dataset, split, candidate set, history masking, history lengths, beam sizes,
        training budget, seeds, command line, package versions and any protocol setting that
        differs between models (``differences``).
    """
    models, seeds = comparison.models, comparison.seeds
    succeeded = [m for m in models if any(is_ok(records.get((m, s))) for s in seeds)]
    order = succeeded + [m for m in models if m not in succeeded]
    config_dict = {**comparison.config_dict, "seed": seeds[0]}
    classes = [model_class(m, seeds, records) for m in order]  # variant labels -> their model
    config, model, error = first_buildable_config(
        classes, comparison.dataset, comparison.config_file_list, config_dict
    )
    protocol = {
        "dataset": comparison.dataset,
        "models": list(models),
        "seeds": list(seeds),
        "config_from_model": model,
    }
    if config is None:
        protocol["config_error"] = error
    else:
        protocol.update(_protocol_settings(config))
    protocol["generative_models"] = _generative_settings(models, seeds, records)
    protocol["differences"] = protocol_differences(models, seeds, records)
    protocol["config_file_list"] = list(comparison.config_file_list or [])
    protocol["command"] = comparison.command.text
    if comparison.reference:  # only when set: older protocols stay as they were
        protocol["compare_reference"] = comparison.reference
    protocol["versions"] = package_versions()
    protocol["devices"] = sorted(
        {str((r or {}).get("config", {}).get("device")) for r in records.values() if is_ok(r)}
    )
    return json_roundtrip(protocol)


def model_class(label, seeds, records):
    """The model class a row trained (its label unless the row is a ``compare_variants`` entry)."""
    for seed in seeds:
        record = records.get((label, seed)) or {}
        if record.get("model_class"):
            return record["model_class"]
    return label


def first_buildable_config(models, dataset, config_file_list, config_dict):
    """``(config, model, error)`` of the first model in ``models`` whose config builds.

    Returns:
        tuple: The :class:`~recbole_bbq.config.Config` and its model, or ``(None, None,
        <text of the first error>)`` when no config builds.
    """
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


def mode_text(mode):
    """RecBole's per-phase ``mode`` dict as one value when the phases agree."""
    if isinstance(mode, dict) and len(set(map(str, mode.values()))) == 1:
        return next(iter(mode.values()))
    return mode


def candidate_set(mode):
    """Plain-words candidate set of RecBole's ``eval_args['mode']`` (str or per-phase dict)."""
    mode = mode_text(mode)
    if isinstance(mode, dict):
        return "; ".join(f"{phase}: {candidate_set(m)}" for phase, m in mode.items())
    mode = str(mode)
    if mode == "full":
        return "all items (full ranking)"
    for prefix, how in (("uni", "uniformly"), ("pop", "popularity-")):
        if mode.startswith(prefix) and mode[len(prefix) :].isdigit():
            return f"the target plus {mode[len(prefix) :]} {how} sampled negatives ({mode})"
    return mode


def _cell_configs(model, seeds, records):
    """The stored config of each of a row's cells, seed by seed (``{}`` when it has none)."""
    return [(records.get((model, seed)) or {}).get("config") or {} for seed in seeds]


def _generative_settings(models, seeds, records):
    """``model -> {history_length, effective_history_length, beam_size}`` of the generative
    models whose config has ``beam_size``.

    The generative models read the last ``min(history_length, MAX_ITEM_LIST_LENGTH)`` items
    (all ``MAX_ITEM_LIST_LENGTH`` when ``history_length`` is unset).
    """
    settings = {}
    for model in models:
        for config in _cell_configs(model, seeds, records):
            if config.get("beam_size") is not None and is_generative(model_class(model, seeds, records)):
                history, max_length = config.get("history_length"), config.get("MAX_ITEM_LIST_LENGTH")
                effective = min(history or max_length, max_length) if max_length else history
                settings[model] = {
                    "history_length": history,
                    "effective_history_length": effective,
                    "beam_size": config["beam_size"],
                }
                break
    return settings


def is_generative(model_name):
    """True for the semantic-ID models that rank by beam search (``beam_size`` applies to them)."""
    from recbole_bbq.model.traits import model_traits

    try:
        return model_traits(model_name).generative
    except UnknownModelError:  # unknown model: it has no settings to report
        return False


def protocol_differences(models, seeds, records):
    """Protocol keys whose value differs between the models' cells: ``key -> {model: value}``."""
    differences = {}
    for key in SHARED_PROTOCOL_KEYS:
        values = {}
        for model in models:
            for config in _cell_configs(model, seeds, records):
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
