"""Running a comparison: every cell trains in this process, or is skipped when already stored."""

import gc
import json
import os
import re
import time
import traceback
from dataclasses import dataclass, replace

from recbole_bbq.compare.plots import PLOT_METRICS
from recbole_bbq.compare.protocol import first_buildable_config
from recbole_bbq.compare.report import write_summary
from recbole_bbq.compare.shared_weights import (
    EVALUATION_KEYS,
    WEIGHTS_OF,
    check_weights_of,
    finished_source_run,
)
from recbole_bbq.compare.spec import Cell, CommandLine, Comparison
from recbole_bbq.compare.store import (
    PER_USER_KEY,
    STATUS_FAILED,
    STATUS_OK,
    error_text,
    is_ok,
    json_roundtrip,
    now,
    per_user_last,
    read_run,
    run_file,
    shorten,
    write_json_atomic,
)
from recbole_bbq.data.artifacts import sha256_with_files
from recbole_bbq.errors import ConfigError
from recbole_bbq.pipeline import run_pipeline
from recbole_bbq.quick_start import evaluate_saved_model

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
# A variant label names files (runs/<label>-seed<seed>.json), so it must be a plain file name.
_LABEL = re.compile(r"^[A-Za-z0-9_.+-]+$")


def run_comparison(
    models,
    dataset,
    seeds,
    config_file_list=None,
    config_dict=None,
    results_dir="results",
    show_progress=True,
    report_only=False,
    argv=None,
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
        argv (list[str], optional): The command line that started the comparison, program name
            first (as the process got it): its ``--key=value`` options are stored with every cell
            and the whole line in ``protocol.json``. None: an empty command line.

    Returns:
        dict: ``dir``, ``markdown``, ``csv``, ``png``, ``curves``, ``protocol`` (paths),
        ``table`` (the Markdown table), ``rows`` (per-model summaries), ``runs`` (per-cell
        records), ``n_ok``, ``n_failed``, ``n_not_run`` (cells), ``per_user_test`` (best row against
        runner-up over users), ``reference_tests`` (row -> test against ``compare_reference``).

    Raises:
        ConfigError: Empty or repeated models or seeds, bad compare_variants/compare_reference.
    """
    models = _check_unique("model", [str(m).strip() for m in models if str(m).strip()])
    config_dict = dict(config_dict or {})
    if seeds is None:
        seeds = [_configured_seed(models, dataset, config_file_list, config_dict)]
    comparison = Comparison(
        models=models,
        dataset=dataset,
        seeds=_check_unique("seed", [int(s) for s in seeds]),
        config_file_list=config_file_list,
        config_dict=config_dict,
        out_dir=os.path.join(results_dir, dataset),
        command=CommandLine.of(argv),
    )
    variants = load_variants(config_file_list, config_dict)
    check_weights_of(comparison, variants)
    comparison = replace(comparison, reference=compare_reference(comparison))
    if report_only:
        records = {key: read_run(run_file(comparison.out_dir, *key)) for key in _cell_keys(comparison)}
    else:
        records = _run_cells(comparison, variants, show_progress)
    return write_summary(comparison, records)


def _cell_keys(comparison):
    """``(row label, seed)`` of every cell, row by row."""
    return [(label, seed) for label in comparison.models for seed in comparison.seeds]


def _run_cells(comparison, variants, show_progress):
    """Run (or skip, when stored as ``ok``) every cell; ``(label, seed) -> record``."""
    runner = CellRunner(comparison, cell_settings(comparison), show_progress)
    keys = _cell_keys(comparison)
    records = {}
    for index, (label, seed) in enumerate(keys, start=1):
        model, cell_dict = resolve_variant(label, variants, comparison.config_dict)
        weights_of = cell_dict.pop(WEIGHTS_OF, None)
        cell = Cell(label=label, model=model, seed=seed, config_dict=cell_dict, weights_of=weights_of)
        records[label, seed] = runner.run_or_skip(cell, f"[{index}/{len(keys)}] {label} seed {seed}")
    return records


def load_variants(config_file_list, config_dict):
    """``compare_variants`` of the YAML files (later files win) and of ``config_dict``.

    Returns:
        dict[str, dict]: label -> ``{model: <model name>, <config overrides>}``.

    Raises:
        ConfigError: If a variant is not a mapping or its label is not a plain file name.
    """
    variants = {}
    for _, settings in _file_settings(config_file_list):
        variants.update(settings.get("compare_variants") or {})
    variants.update((config_dict or {}).get("compare_variants") or {})
    for label, spec in variants.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"compare_variants.{label} must be a mapping of config keys, got {spec!r}")
        if not _LABEL.match(str(label)):
            raise ConfigError(f"compare_variants label '{label}' may only use letters, digits and _ . + -")
    return variants


def resolve_variant(label, variants, config_dict):
    """Model name and config overrides of one row of the comparison.

    A variant may start from another one with ``base: <label>`` (e.g. an ablation of a tuned
    row): the base's model and overrides come first, then the variant's own keys, where a
    section mapping (``tokenizer: {...}``) updates the base's section instead of replacing it.

    Args:
        label (str): A model name, or a label defined under ``compare_variants``.
        variants (dict): See :func:`load_variants`.
        config_dict (dict): Overrides shared by every cell; the variant's keys win.

    Returns:
        tuple[str, dict]: The model class name and the cell's config overrides.

    Raises:
        ConfigError: A ``base`` names no variant, or the bases form a cycle.
    """
    spec = _variant_spec(label, variants, ())
    model = str(spec.pop("model", label))
    shared = {k: v for k, v in config_dict.items() if k != "compare_variants"}
    return model, {**shared, **spec}


def _variant_spec(label, variants, seen):
    """``variants[label]`` with its ``base`` chain merged in (the base first)."""
    spec = dict(variants.get(label) or {})
    base = spec.pop("base", None)
    if base is None:
        return spec
    if base not in variants or base in (*seen, label):
        problem = "is not a compare_variants label" if base not in variants else "makes a cycle of bases"
        raise ConfigError(f"compare_variants.{label}.base: '{base}' {problem}")
    merged = _variant_spec(base, variants, (*seen, label))
    for key, value in spec.items():
        both_sections = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if both_sections else value
    merged.setdefault("model", base)
    return merged


def _check_unique(what, values):
    """Return ``values`` after checking that it is non-empty and has no duplicates."""
    if not values:
        raise ConfigError(f"a comparison needs at least one {what}")
    duplicates = sorted({str(v) for v in values if values.count(v) > 1})
    if duplicates:
        raise ConfigError(f"duplicate {what}(s) in the comparison: {', '.join(duplicates)}")
    return values


def _file_settings(config_file_list):
    """``(path, mapping)`` of every YAML file, in order (these keys are read outside Config)."""
    import yaml

    for path in config_file_list or []:
        with open(path, encoding="utf-8") as f:
            yield path, yaml.safe_load(f) or {}


def compare_reference(comparison):
    """The comparison's ``compare_reference``: a row label, or None when unset.

    Set like any key (later wins): in a YAML file, in ``config_dict`` or as ``--compare_reference=``
    on the comparison's command line. It is read here, without building a model's Config.

    Raises:
        ConfigError: If it is not one of the comparison's rows (naming where it was set).
    """
    key = "compare_reference"
    sources = [(f"file {path}", settings) for path, settings in _file_settings(comparison.config_file_list)]
    sources.append(("config_dict", comparison.config_dict))
    on_command_line = comparison.command.value(key)
    if on_command_line is not None:
        sources.append(("the command line", {key: on_command_line}))
    reference, source = None, None
    for where, settings in sources:
        if key in settings:
            reference, source = settings[key], where
    if reference is not None and str(reference) not in comparison.models:
        raise ConfigError(
            f"{key} '{reference}' (from {source}) is not a row of this comparison; "
            f"rows: {', '.join(comparison.models)}"
        )
    return None if reference is None else str(reference)


def _configured_seed(models, dataset, config_file_list, config_dict):
    """The ``seed`` of the first model whose config builds (RecBole's 2020 if none does)."""
    config, _, _ = first_buildable_config(models, dataset, config_file_list, config_dict)
    return int(config["seed"]) if config is not None else 2020


def cell_settings(comparison):
    """What the user set for every cell: YAML files, overrides and ``--key=value`` options."""
    settings = {
        "config_file_list": list(comparison.config_file_list or []),
        "config_dict": comparison.config_dict,
        "cmd_overrides": comparison.command.overrides(),
    }
    return json_roundtrip(settings)


@dataclass(frozen=True)
class CellRunner:
    """Runs the cells of one comparison under the same settings, skipping the stored ones.

    Attributes:
        comparison (Comparison): The comparison the cells belong to.
        settings (dict): :func:`cell_settings` of the comparison (stored with every record).
        show_progress (bool): Print one progress line per cell.
    """

    comparison: Comparison
    settings: dict
    show_progress: bool = True

    def run_or_skip(self, cell, tag):
        """Return the stored record of a finished cell, or run the cell and store its record.

        Args:
            cell (Cell): The cell.
            tag (str): Its progress-log prefix, e.g. ``[3/6] SASRec seed 2020``.

        Returns:
            dict: The cell's record.
        """
        path = run_file(self.comparison.out_dir, cell.label, cell.seed)
        stored = read_run(path)
        if is_ok(stored):
            note = (
                ""
                if stored.get("settings") == self.settings
                else f", with other settings; delete {path} to rerun"
            )
            self._say(f"{tag} skip (done{note})")
            return stored
        self._say(
            f"{tag} ..." if cell.weights_of is None else f"{tag} evaluating the weights of {cell.weights_of}"
        )
        # A cut-short cell resumes from its last validation (same label, seed and settings only).
        name = cell_checkpoint_name(self.comparison.dataset, cell.label, cell.seed, self.settings)
        config_dict = {"checkpoint_name": name, **cell.config_dict}
        weights_from = None if cell.weights_of is None else (self.comparison.out_dir, cell.weights_of)
        record = run_cell(
            cell.model,
            self.comparison.dataset,
            cell.seed,
            self.comparison.config_file_list,
            config_dict,
            weights_from=weights_from,
        )
        record.update(model=cell.label, model_class=cell.model, settings=self.settings)
        if cell.weights_of is not None:
            record[WEIGHTS_OF] = cell.weights_of
        write_json_atomic(path, per_user_last(record))
        self._say(f"{tag} {_cell_outcome(record)}")
        return record

    def _say(self, message):
        if self.show_progress:
            print(message, flush=True)


def cell_checkpoint_name(dataset, label, seed, settings):
    """``checkpoint_name`` of a cell: its dataset, row label, seed and a digest of its settings,
    including the contents of its config files (an edited file must not resume an old state)."""
    digest = sha256_with_files(json.dumps(settings, sort_keys=True), paths=settings.get("config_file_list"))
    return f"{dataset}-{label}-seed{seed}-{digest[:10]}"


def run_cell(model, dataset, seed, config_file_list=None, config_dict=None, weights_from=None):
    """Train and test one model with one seed; never raises for a failing model.

    Args:
        model (str): Model name.
        dataset (str): Dataset name.
        seed (int): The cell's seed (overrides ``config_dict['seed']``).
        config_file_list (list[str], optional): YAML files.
        config_dict (dict, optional): Overrides.
        weights_from (tuple[str, str], optional): ``(results folder, row)``: evaluate that row's
            stored model of this seed with this cell's :data:`EVALUATION_KEYS` instead of training.

    Returns:
        dict: The cell's record: ``status`` (``ok`` or ``failed``), metrics, wall time, the
        config that matters and, for failures, ``error`` and ``traceback``.
    """
    cell_dict = {**(config_dict or {}), "seed": seed}
    record = {"model": model, "dataset": dataset, "seed": seed, "started_at": now()}
    start = time.perf_counter()
    try:
        record["config"] = _checked_cell_config(model, dataset, seed, config_file_list, cell_dict)
        if weights_from is None:
            result = run_pipeline(model, dataset, config_file_list, cell_dict, saved=True)
        else:
            evaluation = {key: cell_dict[key] for key in EVALUATION_KEYS if key in cell_dict}
            source = finished_source_run(*weights_from, seed)
            result = evaluate_saved_model(source["model_file"], evaluation)
            # The weights' training gives the table's epochs and stop reason.
            result.update(epochs_trained=source.get("epochs_trained"), stop_reason=source.get("stop_reason"))
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
    record["finished_at"] = now()
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
    return json_roundtrip({key: config[key] for key in keys if key in config})


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
        PER_USER_KEY: result.get(PER_USER_KEY),  # the test users' values (none in DDP runs)
        "model_file": result.get("model_file"),
    }


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
